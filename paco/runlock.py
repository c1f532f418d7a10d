"""One process trains a run directory at a time.

Two trainers writing one run directory would interleave their logs and checkpoints into a run that is neither.
`run_lock` holds an advisory `flock` on RUN_DIR/.lock for the whole of training; the file records the holder's
pid and host, for messages only. The kernel drops the lock when its holder dies, however it dies, so a lock
left by a killed process never stands in the way of `--resume`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

LOCK_FILE = ".lock"
ACQUIRE_PATIENCE_S = 1.0
"""How long a trainer keeps trying before it refuses: `live_owner`'s probe holds the lock for microseconds, and
must not make a trainer that starts at that moment refuse."""
_RETRY_S = 0.05


class RunDirectoryBusy(Exception):
    """Another live process is training this run directory."""


def _owner(fd: int) -> dict:
    """What the holder recorded ({} where it has not written it yet)."""
    try:
        return json.loads(os.pread(fd, 4096, 0) or b"{}")
    except ValueError:
        return {}


def _acquire(fd: int, mode: int, patience_s: float) -> bool:
    deadline = time.monotonic() + patience_s
    while True:
        try:
            fcntl.flock(fd, mode | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(_RETRY_S)


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold RUN_DIR's lock (creating the directory) while the block runs; RunDirectoryBusy where a live process
    holds it."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if not _acquire(fd, fcntl.LOCK_EX, ACQUIRE_PATIENCE_S):
            owner = _owner(fd)
            raise RunDirectoryBusy(f"{run_dir} is being trained by process {owner.get('pid', '(unknown)')} on "
                                   f"{owner.get('host', 'an unknown host')}; wait for it to end or stop it first")
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({"pid": os.getpid(), "host": socket.gethostname()}).encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def live_owner(run_dir: str | Path) -> int | None:
    """Pid (on its own host) of the process training RUN_DIR now, or None; never blocks a trainer for long."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        if _acquire(fd, fcntl.LOCK_SH, 0.0):
            return None  # nobody holds it; closing the file lets go of the probe at once
        return _owner(fd).get("pid")
    finally:
        os.close(fd)
