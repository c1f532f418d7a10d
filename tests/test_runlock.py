"""One trainer per run directory: a second process refuses with the owner's pid; a killed owner's lock is gone."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from paco.checkpoint import checkpoint_steps
from paco.runlock import RunDirectoryBusy, live_owner, run_lock

PROCESS_TIMEOUT = 300  # seconds
TINY = ["--preset", "pointmass-mtsac", "--network.hidden", "16", "--sac.batch-per-task", "16",
        "--train.total-env-steps", "2000", "--train.warmup-env-steps", "400", "--train.log-every-env-steps", "400",
        "--train.eval-every-env-steps", "1000", "--train.eval-episodes", "2",
        "--train.checkpoint-every-env-steps", "400", "--train.replay-capacity-per-task", "2000", "--train.no-progress"]


def paco_train(*args):
    return [sys.executable, "-m", "paco.cli", "train", *map(str, args)]


def test_lock_names_its_live_owner_and_is_free_once_released(tmp_path):
    run_dir = tmp_path / "run"
    assert live_owner(run_dir) is None and not run_dir.exists(), "asking must not create anything"
    with run_lock(run_dir):
        assert live_owner(run_dir) == os.getpid()
        with pytest.raises(RunDirectoryBusy) as refused, run_lock(run_dir):
            pass
        assert str(refused.value) == (f"{run_dir} is being trained by process {os.getpid()} on "
                                      f"{socket.gethostname()}; wait for it to end or stop it first")
    assert live_owner(run_dir) is None
    with run_lock(run_dir):  # taken again at once
        assert live_owner(run_dir) == os.getpid()


def test_second_process_refuses_and_a_killed_owner_does_not_block_resume(tmp_path, subprocess_env):
    run_dir = tmp_path / "run"
    env = subprocess_env  # a compilation cache shared by the processes: the resumed one does not compile again
    log = tmp_path / "owner.txt"  # a file, not a pipe: a full pipe would block the process
    with open(log, "wb") as out:
        owner = subprocess.Popen(paco_train(*TINY, "--out", run_dir), stdout=out, stderr=out, env=env)
    try:
        deadline = time.monotonic() + PROCESS_TIMEOUT
        while not checkpoint_steps(run_dir) or live_owner(run_dir) != owner.pid:
            assert owner.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "no checkpoint in time"
            time.sleep(0.02)
        owner.send_signal(signal.SIGSTOP)  # holds the lock, trains no further
        before = {p: p.read_bytes() for p in run_dir.glob("*.jsonl")}
        second = subprocess.run(paco_train(*TINY, "--out", run_dir, "--overwrite"), capture_output=True, env=env,
                                timeout=PROCESS_TIMEOUT)
        assert second.returncode == 2, second.stderr.decode()
        assert second.stderr.decode().splitlines() == [
            f"paco: error: {run_dir} is being trained by process {owner.pid} on {socket.gethostname()}; wait for "
            f"it to end or stop it first"]
        assert {p: p.read_bytes() for p in run_dir.glob("*.jsonl")} == before, "the refused run wrote something"
    finally:
        owner.send_signal(signal.SIGKILL)
        owner.wait()
    assert live_owner(run_dir) is None
    resumed = subprocess.run(paco_train("--resume", run_dir), capture_output=True, env=env, timeout=PROCESS_TIMEOUT)
    assert resumed.returncode == 0, resumed.stderr.decode()
    assert checkpoint_steps(run_dir)[-1] == 2000
