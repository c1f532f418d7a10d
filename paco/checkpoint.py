"""Checkpoints: everything a run needs to continue bit for bit, written atomically and checked on load.

Layout of one checkpoint, RUN_DIR/checkpoints/step_<env steps>/:

    params.msgpack   TrainState.params alone, so that loading an agent never reads the replay buffer
    state.msgpack    the rest of the TrainState (target critic, optimiser states, PRNG key, update count)
                     and the actor composed for acting
    replay/*.npy     the stored transitions, one file per field
    trainer.json     counters, every other PRNG state, environment states, episode trackers, log offsets
    manifest.json    format version, step, size and sha256 of every file above; written last

A checkpoint is assembled in a hidden temporary directory; every file and the directory are fsynced before
the directory is renamed into place, so a crash leaves either a complete checkpoint or a temporary directory
that is ignored (and removed by the next write). Loading verifies every checksum it reads; a corrupt or
partial newest checkpoint is reported on stderr and the one before it is used.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from flax import serialization

from paco import config as config_lib
from paco.config import Config

FORMAT_VERSION = 3  # 3: one config class per method, optimiser groups by parameter role; 2: twin critics as
#                    a pair of parameter trees (1: one stacked tree)
DIRECTORY = "checkpoints"
MANIFEST = "manifest.json"
PARAMS = "params.msgpack"
STATE = "state.msgpack"
TRAINER = "trainer.json"
REPLAY = "replay"
_NAME = re.compile(r"^step_(\d+)$")
_CHUNK = 1 << 24


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, or of another format: the message says which."""


class FormatVersionError(CheckpointError):
    """A checkpoint written by another version of the format: falling back to an older one would not help."""


@dataclass
class Snapshot:
    """The content of one checkpoint. `state` is any pytree; `replay` maps field names to arrays."""

    step: int
    params: Any
    state: Any
    replay: dict
    trainer: dict


def directory(run_dir) -> Path:
    return Path(run_dir) / DIRECTORY


def step_name(step: int) -> str:
    return f"step_{step:012d}"


def checkpoint_steps(run_dir) -> list[int]:
    """Steps of the checkpoints present (complete or not; temporary directories excluded), ascending."""
    root = directory(run_dir)
    if not root.is_dir():
        return []
    return sorted(int(m.group(1)) for p in root.iterdir() if p.is_dir() and (m := _NAME.match(p.name)))


# -- JSON with exact numpy arrays ---------------------------------------------------------------------------
def _encode(value):
    if isinstance(value, (np.integer, np.floating, np.bool_)):
        return value.item()
    if hasattr(value, "__array__"):
        array = np.asarray(value)  # tobytes() is C order; ascontiguousarray would turn 0-d into 1-d
        return {"__ndarray__": base64.b64encode(array.tobytes()).decode("ascii"), "dtype": array.dtype.str,
                "shape": list(array.shape)}
    if isinstance(value, dict):
        return {str(k): _encode(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_encode(v) for v in value]
    return value


def _decode(value):
    if isinstance(value, dict):
        if "__ndarray__" in value:
            data = base64.b64decode(value["__ndarray__"])
            return np.frombuffer(data, np.dtype(value["dtype"])).reshape(tuple(value["shape"])).copy()
        return {k: _decode(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_decode(v) for v in value]
    return value


# -- writing ------------------------------------------------------------------------------------------------
class _HashingWriter:
    """A write-only file that hashes what passes through it (np.save writes through it in chunks)."""

    def __init__(self, f):
        self.f, self.sha256, self.size = f, hashlib.sha256(), 0

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        self.sha256.update(data)
        self.size += len(data)
        return self.f.write(data)


def _write_file(path: Path, write) -> dict:
    with open(path, "wb") as f:
        writer = _HashingWriter(f)
        write(writer)
        f.flush()
        os.fsync(f.fileno())
    return {"sha256": writer.sha256.hexdigest(), "bytes": writer.size}


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _remove(path: Path) -> None:
    """Rename first, so that a crash during the removal never leaves something that looks like a checkpoint."""
    trash = path.with_name(f".trash-{path.name}-{os.getpid()}")
    os.replace(path, trash)
    shutil.rmtree(trash)


def remove(run_dir, step: int) -> None:
    _remove(directory(run_dir) / step_name(step))


def save(run_dir, snapshot: Snapshot, keep: int) -> Path:
    """Write `snapshot` atomically as step_<step>, then keep only the newest `keep` checkpoints."""
    root = directory(run_dir)
    root.mkdir(parents=True, exist_ok=True)
    for stale in root.glob(".*"):  # left by a crash during an earlier write or removal
        shutil.rmtree(stale, ignore_errors=True)
    final = root / step_name(snapshot.step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    tmp.mkdir()
    (tmp / REPLAY).mkdir()
    files = {
        PARAMS: _write_file(tmp / PARAMS, lambda f: f.write(serialization.msgpack_serialize(
            serialization.to_state_dict(_to_numpy(snapshot.params))))),
        STATE: _write_file(tmp / STATE, lambda f: f.write(serialization.to_bytes(_to_numpy(snapshot.state)))),
        TRAINER: _write_file(tmp / TRAINER, lambda f: f.write(json.dumps(_encode(snapshot.trainer)).encode())),
    }
    for name, array in snapshot.replay.items():
        files[f"{REPLAY}/{name}.npy"] = _write_file(tmp / REPLAY / f"{name}.npy",
                                                     lambda f, a=array: np.save(f, a, allow_pickle=False))
    _fsync_dir(tmp / REPLAY)
    manifest = {"format": FORMAT_VERSION, "step": snapshot.step, "files": files}
    _write_file(tmp / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    _fsync_dir(tmp)
    if final.exists():  # a corrupt checkpoint of the same step, skipped on resume
        _remove(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for step in checkpoint_steps(run_dir)[:-keep]:
        _remove(root / step_name(step))
    return final


def _to_numpy(tree):
    import jax

    return jax.tree.map(np.asarray, jax.device_get(tree))


# -- reading ------------------------------------------------------------------------------------------------
def _manifest(path: Path) -> dict:
    try:
        manifest = json.loads((path / MANIFEST).read_text())
        version = manifest["format"]
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path.name} is incomplete (no {MANIFEST})") from None
    except (ValueError, KeyError, TypeError):
        raise CheckpointError(f"checkpoint {path.name} is corrupt (unreadable {MANIFEST})") from None
    if version != FORMAT_VERSION:
        raise FormatVersionError(f"checkpoint {path.name} has format version {version}; this paco reads version "
                                 f"{FORMAT_VERSION}")
    return manifest


def _verified_bytes(path: Path, manifest: dict, name: str) -> bytes:
    entry = manifest["files"].get(name)
    if entry is None:
        raise CheckpointError(f"checkpoint {path.name} is corrupt ({name} not in its manifest)")
    try:
        data = (path / name).read_bytes()
    except OSError:
        raise CheckpointError(f"checkpoint {path.name} is incomplete ({name} missing)") from None
    if len(data) != entry["bytes"] or hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise CheckpointError(f"checkpoint {path.name} is corrupt (checksum mismatch in {name})")
    return data


def _verify_file(path: Path, manifest: dict, name: str) -> None:
    """Checksum a (possibly large) file by streaming it."""
    entry = manifest["files"][name]
    sha256, size = hashlib.sha256(), 0
    try:
        with open(path / name, "rb") as f:
            while chunk := f.read(_CHUNK):
                sha256.update(chunk)
                size += len(chunk)
    except OSError:
        raise CheckpointError(f"checkpoint {path.name} is incomplete ({name} missing)") from None
    if size != entry["bytes"] or sha256.hexdigest() != entry["sha256"]:
        raise CheckpointError(f"checkpoint {path.name} is corrupt (checksum mismatch in {name})")


def _newest_good(run_dir, step: int | None, check, warn: bool = True) -> tuple[int, Path, Any]:
    """`check(path, manifest)` on the given step, or on the newest checkpoint that passes it (warning on stderr
    about each newer one that does not, unless `warn` is False)."""
    steps = checkpoint_steps(run_dir)
    if not steps:
        raise CheckpointError(f"no checkpoint in {run_dir}")
    if step is not None:
        if step not in steps:
            raise CheckpointError(f"no checkpoint at step {step} in {run_dir}; there are: "
                                  f"{', '.join(map(str, steps))}")
        path = directory(run_dir) / step_name(step)
        return step, path, check(path, _manifest(path))
    errors = []
    for candidate in reversed(steps):
        path = directory(run_dir) / step_name(candidate)
        try:
            result = check(path, _manifest(path))
        except FormatVersionError:
            raise
        except CheckpointError as error:
            errors.append(str(error))
            continue
        for error in errors if warn else ():
            print(f"paco: warning: {error}; using {path.name}", file=sys.stderr)
        return candidate, path, result
    raise CheckpointError(f"no good checkpoint in {run_dir}: {'; '.join(errors)}")


def read_config(run_dir) -> Config:
    path = Path(run_dir) / "config.json"
    try:
        return config_lib.from_dict(json.loads(path.read_text()))
    except FileNotFoundError:
        raise CheckpointError(f"{run_dir} is not a run directory (no config.json)") from None
    except (ValueError, TypeError):
        raise CheckpointError(f"{path} is not a valid config") from None


def restore_params(run_dir, step: int | None = None) -> tuple[Config, dict, int]:
    """(the run's Config, TrainState.params as numpy arrays, env step) of the newest good checkpoint or `step`.

    Reads and verifies only the parameters, never the replay buffer.
    """
    config = read_config(run_dir)

    def params(path, manifest):
        return serialization.msgpack_restore(_verified_bytes(path, manifest, PARAMS))

    found, _, params = _newest_good(run_dir, step, params)
    return config, params, found


def newest_step(run_dir) -> int:
    """Env step of the newest checkpoint whose manifest and small files verify; a quiet check before resuming
    (the load that follows warns about what it skips)."""
    def small(path, manifest):
        for name in (PARAMS, STATE, TRAINER):
            _verified_bytes(path, manifest, name)

    return _newest_good(run_dir, None, small, warn=False)[0]


def load(run_dir, state_template: Any) -> Snapshot:
    """The newest checkpoint whose every file verifies; `state_template` gives the structure of `state`."""

    def everything(path, manifest):
        for name in manifest["files"]:
            if name.startswith(f"{REPLAY}/"):
                _verify_file(path, manifest, name)
        params = serialization.msgpack_restore(_verified_bytes(path, manifest, PARAMS))
        state = serialization.from_bytes(state_template, _verified_bytes(path, manifest, STATE))
        trainer = _decode(json.loads(_verified_bytes(path, manifest, TRAINER)))
        return params, state, trainer, manifest

    step, path, (params, state, trainer, manifest) = _newest_good(run_dir, None, everything)
    # Memory-mapped: the caller copies them into its own buffer, so the replay is never held twice.
    replay = {name[len(REPLAY) + 1:-len(".npy")]: np.load(path / name, mmap_mode="r", allow_pickle=False)
              for name in manifest["files"] if name.startswith(f"{REPLAY}/")}
    return Snapshot(step, params, state, replay, trainer)
