"""The allocator setting: repeated jitted calls reuse their freed buffers instead of faulting them in."""

import subprocess
import sys

import pytest

PROGRAM = """
import resource, sys
import jax, jax.numpy as jnp
if sys.argv[1] == "tuned":
    from paco.allocator import keep_freed_memory
    assert keep_freed_memory()
double = jax.jit(lambda x: 2.0 * x)
# 40 MB, like the paper-shape update's scratch space: above the largest mmap threshold glibc picks itself.
x = jnp.ones((10_000_000,), jnp.float32)
for _ in range(10):
    jax.block_until_ready(double(x))
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    jax.block_until_ready(double(x))
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def page_faults(mode: str) -> int:
    done = subprocess.run([sys.executable, "-c", PROGRAM, mode], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="tunes glibc's malloc")
def test_freed_buffers_are_reused():
    # 20 calls, each allocating a fresh 40 MB output (9766 pages): faulted in every time by default.
    assert page_faults("default") > 20 * 9766 // 2
    # Tuned, the heap keeps them: at most a few growths of the heap over all 20 calls.
    assert page_faults("tuned") < 5 * 9766
