"""Helpers several test files share, as fixtures."""

import os
import shutil

import pytest

from paco.checkpoint import remove
from paco.config import replace
from paco.trainer import train


@pytest.fixture
def resumes_identically():
    """`check(config, run_dir, newest_step)`: a copy of a finished run, killed after its previous checkpoint (its
    newest one removed) and resumed, ends with the same metrics and events, byte for byte."""
    def check(config, run_dir, newest_step):
        killed = run_dir.parent / f"{run_dir.name}-killed"
        shutil.copytree(run_dir, killed)
        remove(killed, newest_step)
        train(replace(config, out=str(killed)), killed, resume=True)
        for name in ("metrics.jsonl", "events.jsonl"):
            assert (killed / name).read_bytes() == (run_dir / name).read_bytes(), name

    return check


@pytest.fixture(scope="module")
def subprocess_env(tmp_path_factory):
    """CPU, and a compilation cache shared by the module's processes: a resumed process then starts in about a
    second instead of compiling the update again (the cached executable computes the same numbers)."""
    return {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_COMPILATION_CACHE_DIR": str(tmp_path_factory.mktemp("jax-cache"))}
