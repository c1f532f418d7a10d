"""Checkpoints: everything a run needs to continue bit for bit, written atomically and checked on load.

Layout, RUN_DIR/checkpoints/:

    step_<env steps>/    one checkpoint
        params.msgpack   TrainState.params alone, so that loading an agent never reads the replay buffer
        state.msgpack    the rest of the TrainState (target critic, optimiser states, PRNG key, update count)
                         and the actor composed for acting
        trainer.json     counters, every other PRNG state, environment states, episode trackers, log offsets
        replay.json      the replay's cursor, size, count of transitions added and PRNG state
        replay/*.npy     the replay's small parts, written whole: the newest slot's next observation and the
                         ring of final observations (paco/replay.py)
        manifest.json    format version, step, size and sha256 of every file above and of every replay chunk
                         the checkpoint needs; written last
    replay/<first>-<end>/*.npy
                         a replay chunk: the transitions added with counts first to end - 1 (replay.added before
                         each add), one file per array of MultiTaskReplay.slots, (tasks, end - first, ...)

Replay is most of a checkpoint, so each one writes only the chunk of transitions added since the newest checkpoint
before it and lists that one's chunks still in the buffer: the checkpoint at count N needs counts
[N - min(N, capacity), N). A chunk never spans the end of the ring (it is split there), so it is one contiguous
range of slots. Chunks no checkpoint lists any more are removed after pruning, and a chunk's name is written again
only when no checkpoint lists it (after a resume from an older checkpoint, whose newer ones were removed).

A chunk is written in a hidden temporary directory, fsynced and renamed into place before the checkpoint that
lists it; a checkpoint is assembled in a hidden temporary directory, every file and the directory fsynced before
it is renamed into place. A crash therefore leaves complete checkpoints, each with every chunk it lists, plus
temporary directories and unlisted chunks that the next write removes. Loading verifies every checksum it reads;
a corrupt or partial newest checkpoint is reported on stderr and the one before it is used.
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
from typing import TYPE_CHECKING, Any

import numpy as np
from flax import serialization

from paco import config as config_lib
from paco.config import Config

if TYPE_CHECKING:  # only for annotations: reading parameters never needs the replay's imports
    from paco.replay import MultiTaskReplay

FORMAT_VERSION = 4  # 4: replay stores each observation once and is written in chunks shared between checkpoints;
#                    3: one config class per method, optimiser groups by parameter role; 2: twin critics as a pair
#                    of parameter trees (1: one stacked tree)
DIRECTORY = "checkpoints"
MANIFEST = "manifest.json"
PARAMS = "params.msgpack"
STATE = "state.msgpack"
TRAINER = "trainer.json"
REPLAY_STATE = "replay.json"
REPLAY = "replay"  # in a checkpoint, the replay's small parts; in the checkpoints directory, the chunks
_NAME = re.compile(r"^step_(\d+)$")
_CHUNK = 1 << 24


class CheckpointError(Exception):
    """A checkpoint that is missing, corrupt, or of another format: the message says which."""


class FormatVersionError(CheckpointError):
    """A checkpoint written by another version of the format: falling back to an older one would not help."""


@dataclass
class Snapshot:
    """The content of one checkpoint. `state` is any pytree; `replay` is the live buffer (`save` reads from it,
    `load` fills it in place)."""

    step: int
    params: Any
    state: Any
    replay: MultiTaskReplay
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
    """Remove one checkpoint, and the replay chunks no other one lists."""
    _remove(directory(run_dir) / step_name(step))
    _remove_unlisted_chunks(run_dir)


def save(run_dir, snapshot: Snapshot, keep: int) -> Path:
    """Write `snapshot` atomically as step_<step>, then keep only the newest `keep` checkpoints.

    Of the replay, writes only the transitions added since the newest older checkpoint on disk: those checkpoints
    are this run's past (a fresh run starts with none, and a resumed one removes those newer than where it
    resumed), so their chunks hold what this buffer held at the same counts.
    """
    root = directory(run_dir)
    (root / REPLAY).mkdir(parents=True, exist_ok=True)
    for stale in (*root.glob(".*"), *(root / REPLAY).glob(".*")):  # left by a crash during a write or removal
        shutil.rmtree(stale, ignore_errors=True)
    replay = snapshot.replay
    chunks = _write_chunks(root / REPLAY, replay, _manifests(run_dir), snapshot.step)
    final = root / step_name(snapshot.step)
    tmp = root / f".tmp-{final.name}-{os.getpid()}"
    tmp.mkdir()
    (tmp / REPLAY).mkdir()
    files = {
        PARAMS: _write_file(tmp / PARAMS, lambda f: f.write(serialization.msgpack_serialize(
            serialization.to_state_dict(_to_numpy(snapshot.params))))),
        STATE: _write_file(tmp / STATE, lambda f: f.write(serialization.to_bytes(_to_numpy(snapshot.state)))),
        TRAINER: _write_file(tmp / TRAINER, lambda f: f.write(json.dumps(_encode(snapshot.trainer)).encode())),
        REPLAY_STATE: _write_file(tmp / REPLAY_STATE, lambda f: f.write(json.dumps(replay.state()).encode())),
    }
    for name, array in replay.extras.items():
        files[f"{REPLAY}/{name}.npy"] = _write_file(tmp / REPLAY / f"{name}.npy",
                                                     lambda f, a=array: np.save(f, a, allow_pickle=False))
    _fsync_dir(tmp / REPLAY)
    manifest = {"format": FORMAT_VERSION, "step": snapshot.step, "files": files,
                "replay": {"capacity": replay.capacity, "added": replay.added, "chunks": chunks}}
    _write_file(tmp / MANIFEST, lambda f: f.write(json.dumps(manifest, indent=1).encode()))
    _fsync_dir(tmp)
    if final.exists():  # a corrupt checkpoint of the same step, skipped on resume
        _remove(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    for step in checkpoint_steps(run_dir)[:-keep]:
        _remove(root / step_name(step))
    _remove_unlisted_chunks(run_dir)
    return final


def _write_chunks(chunk_dir: Path, replay: MultiTaskReplay, manifests: dict[int, dict], step: int) -> dict:
    """The chunks the checkpoint of `replay` at `step` lists: those of the newest older checkpoint still in the
    buffer, and new ones (written here) for the transitions added since."""
    added, capacity = replay.added, replay.capacity
    oldest = added - min(added, capacity)  # the first count still in the buffer
    chunks, start = {}, oldest
    base = max((s for s, m in manifests.items() if s < step and m["replay"]["added"] <= added), default=None)
    if base is not None:
        kept = {name: chunk for name, chunk in manifests[base]["replay"]["chunks"].items() if chunk["end"] > oldest}
        if all(_chunk_present(chunk_dir / name, chunk) for name, chunk in kept.items()):
            chunks, start = kept, max(oldest, manifests[base]["replay"]["added"])
    listed = {name for m in manifests.values() for name in m["replay"]["chunks"]}
    while start < added:
        end = min(added, (start // capacity + 1) * capacity)  # split at the end of the ring
        name = _unlisted_name(f"{start:012d}-{end:012d}", listed)
        chunks[name] = {"first": start, "end": end, "files": _write_chunk(chunk_dir, name, replay, start, end)}
        start = end
    return chunks


def _chunk_present(path: Path, chunk: dict) -> bool:
    """Every file of the chunk is there, at its size (reading it all is left to `load`)."""
    try:
        return all((path / name).stat().st_size == entry["bytes"] for name, entry in chunk["files"].items())
    except OSError:
        return False


def _unlisted_name(name: str, listed: set) -> str:
    """`name`, or a variant of it that no checkpoint lists (the same range written by a checkpoint of the same
    step, which this one replaces only once it is complete)."""
    variant, n = name, 1
    while variant in listed:
        n += 1
        variant = f"{name}.{n}"
    return variant


def _write_chunk(chunk_dir: Path, name: str, replay: MultiTaskReplay, first: int, end: int) -> dict:
    """Counts [first, end) of every slot field, from one contiguous range of slots."""
    tmp = chunk_dir / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    slots = slice(first % replay.capacity, first % replay.capacity + end - first)
    files = {f"{field}.npy": _write_file(tmp / f"{field}.npy", lambda f, a=array[:, slots]:
                                         np.save(f, a, allow_pickle=False))  # streamed: the view is not copied
             for field, array in replay.slots.items()}
    _fsync_dir(tmp)
    if (chunk_dir / name).exists():  # no checkpoint lists it: left by a removed one, or by a crash before listing
        _remove(chunk_dir / name)
    os.replace(tmp, chunk_dir / name)
    _fsync_dir(chunk_dir)
    return files


def _remove_unlisted_chunks(run_dir) -> None:
    chunk_dir = directory(run_dir) / REPLAY
    if not chunk_dir.is_dir():
        return
    listed = {name for m in _manifests(run_dir).values() for name in m["replay"]["chunks"]}
    for path in chunk_dir.iterdir():
        if not path.name.startswith(".") and path.name not in listed:
            _remove(path)


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


def _verify_file(path: Path, entry: dict, checkpoint: str, label: str) -> None:
    """Checksum a (possibly large) file by streaming it; errors name `checkpoint` and the file as `label`."""
    sha256, size = hashlib.sha256(), 0
    try:
        with open(path, "rb") as f:
            while chunk := f.read(_CHUNK):
                sha256.update(chunk)
                size += len(chunk)
    except OSError:
        raise CheckpointError(f"checkpoint {checkpoint} is incomplete ({label} missing)") from None
    if size != entry["bytes"] or sha256.hexdigest() != entry["sha256"]:
        raise CheckpointError(f"checkpoint {checkpoint} is corrupt (checksum mismatch in {label})")


def _manifests(run_dir) -> dict[int, dict]:
    """The manifest of every checkpoint that has a readable one of this format, by step."""
    manifests = {}
    for step in checkpoint_steps(run_dir):
        try:
            manifests[step] = _manifest(directory(run_dir) / step_name(step))
        except CheckpointError:
            continue
    return manifests


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
        for name in (PARAMS, STATE, TRAINER, REPLAY_STATE):
            _verified_bytes(path, manifest, name)

    return _newest_good(run_dir, None, small, warn=False)[0]


def checkpoint_bytes(run_dir, step: int) -> int:
    """Bytes of the checkpoint at `step`: its own files and the replay chunks it lists (which other checkpoints
    may list too)."""
    path = directory(run_dir) / step_name(step)
    manifest = _manifest(path)
    chunk_files = [entry for chunk in manifest["replay"]["chunks"].values() for entry in chunk["files"].values()]
    return (path / MANIFEST).stat().st_size + sum(e["bytes"] for e in [*manifest["files"].values(), *chunk_files])


def load(run_dir, state_template: Any, replay: MultiTaskReplay, step: int | None = None) -> Snapshot:
    """The newest checkpoint whose every file verifies, or the one at `step`; `state_template` gives the structure
    of `state`. Fills `replay` in place (a buffer of the run's shape) and returns it as the snapshot's."""
    chunk_dir = directory(run_dir) / REPLAY

    def everything(path, manifest):
        for name, entry in manifest["files"].items():
            if name.startswith(f"{REPLAY}/"):
                _verify_file(path / name, entry, path.name, name)
        for name, chunk in manifest["replay"]["chunks"].items():
            for file, entry in chunk["files"].items():
                _verify_file(chunk_dir / name / file, entry, path.name, f"replay chunk {name}/{file}")
        params = serialization.msgpack_restore(_verified_bytes(path, manifest, PARAMS))
        state = serialization.from_bytes(state_template, _verified_bytes(path, manifest, STATE))
        trainer = _decode(json.loads(_verified_bytes(path, manifest, TRAINER)))
        replay_state = json.loads(_verified_bytes(path, manifest, REPLAY_STATE))
        return params, state, trainer, replay_state, manifest

    step, path, (params, state, trainer, replay_state, manifest) = _newest_good(run_dir, step, everything)
    _fill(replay, path, manifest, chunk_dir, replay_state)
    return Snapshot(step, params, state, replay, trainer)


def _fill(replay: MultiTaskReplay, path: Path, manifest: dict, chunk_dir: Path, replay_state: dict) -> None:
    """Copy the checkpoint's replay into `replay`, checking every shape before changing anything. Chunks are read
    memory-mapped, so that the buffer is never held twice."""
    if manifest["replay"]["capacity"] != replay.capacity:
        raise CheckpointError(f"checkpoint {path.name} does not fit this run's replay buffer (capacity "
                              f"{manifest['replay']['capacity']}, the buffer's {replay.capacity})")
    extras = {}
    for name, target in replay.extras.items():
        extras[name] = np.load(path / REPLAY / f"{name}.npy", allow_pickle=False)
        _check_fits(path, f"{REPLAY}/{name}.npy", extras[name], target.dtype, target.shape)
    chunks = []
    for name, chunk in manifest["replay"]["chunks"].items():
        arrays = {}
        for field, target in replay.slots.items():
            arrays[field] = np.load(chunk_dir / name / f"{field}.npy", mmap_mode="r", allow_pickle=False)
            _check_fits(path, f"replay chunk {name}/{field}.npy", arrays[field], target.dtype,
                        (target.shape[0], chunk["end"] - chunk["first"], *target.shape[2:]))
        chunks.append((chunk, arrays))
    added = replay_state["added"]
    oldest = added - min(added, replay.capacity)
    for chunk, arrays in chunks:
        first = max(chunk["first"], oldest)  # counts before `oldest` had been overwritten in the buffer saved
        slots = slice(first % replay.capacity, first % replay.capacity + chunk["end"] - first)
        for field, array in arrays.items():
            replay.slots[field][:, slots] = array[:, first - chunk["first"]:]
    for name, array in extras.items():
        replay.extras[name][...] = array
    replay.load_state(replay_state)


def _check_fits(path: Path, label: str, array: np.ndarray, dtype: np.dtype, shape: tuple) -> None:
    if (array.dtype, array.shape) != (dtype, tuple(shape)):
        raise CheckpointError(f"checkpoint {path.name} does not fit this run's replay buffer ({label} is "
                              f"{array.dtype}{list(array.shape)}, the buffer needs {dtype}{list(shape)})")
