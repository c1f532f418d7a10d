"""The envs of the seeds trained together, stepped in this process or in worker processes.

Each seed keeps its own `MultiTaskEnv` (`make_env(config, seed, stream)`); both kinds of stack below step them
all at once and stack every array on a leading seed axis. Workers are fresh interpreters started with
`subprocess` (fork + exec, like multiprocessing's "spawn": forking a process whose JAX threads run can
deadlock), talking over one socket pair each. Unlike multiprocessing, nothing re-imports the parent's
`__main__` (a Ray worker, a script that imports JAX), so a worker imports only numpy, gymnasium and Meta-World.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import traceback
from multiprocessing import Pipe
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from paco.config import EnvConfig
from paco.envs import make_env, pointmass_tasks
from paco.envs.base import MultiTaskEnv, Transition

# MuJoCo and the envs' numpy are single threaded; a BLAS thread pool per worker would only oversubscribe cores.
WORKER_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
CLOSE_TIMEOUT_S = 5.0
COMMANDS = ("reset", "step", "checkpointable", "get_state", "set_state")


def cpu_cores() -> int:
    """The CPU cores this process may run on."""
    return len(os.sched_getaffinity(0))


def resolve_workers(setting: str | int, config: EnvConfig, num_seeds: int, cpus: int | None = None) -> int:
    """Worker processes for `num_seeds` seeds (0: step in this process).

    "auto" steps in process where workers do not pay: the point mass (microseconds a step, less than a pipe
    round trip), a single seed (nothing to step in parallel), 2 cores or fewer (the update needs them);
    otherwise one worker per seed, leaving one core to this process. A number is taken as is, capped at one
    worker per seed.
    """
    if setting == "auto":
        cpus = cpu_cores() if cpus is None else cpus
        if pointmass_tasks(config.suite) is not None or num_seeds <= 1 or cpus <= 2:
            return 0
        return min(num_seeds, cpus - 1)
    try:
        workers = int(setting)
    except (TypeError, ValueError):
        workers = -1
    if workers < 0:
        raise ValueError(f"env workers must be 'auto' or a number of processes >= 0 (0: none), got {setting!r}")
    return min(workers, num_seeds)


def make_seed_envs(config: EnvConfig, seeds: Sequence[int], streams: Sequence[int],
                   workers: int) -> LocalSeedEnvs | WorkerSeedEnvs:
    """Each seed's env (seed `seeds[i]`, random stream `streams[i]`): in this process (`workers` 0) or split into
    contiguous groups of seeds, as even as possible, over `workers` processes (never more than one per seed)."""
    if len(seeds) != len(streams) or not seeds:
        raise ValueError(f"one stream per seed, at least one seed: got {len(seeds)} seeds, {len(streams)} streams")
    if workers < 0:
        raise ValueError(f"workers must be >= 0, got {workers}")
    if workers == 0:
        return LocalSeedEnvs([make_env(config, seed, stream) for seed, stream in zip(seeds, streams)])
    groups = [g.tolist() for g in np.array_split(np.arange(len(seeds)), min(workers, len(seeds)))]
    return WorkerSeedEnvs(config, [([seeds[i] for i in g], [streams[i] for i in g]) for g in groups])


def _stack(transitions: Sequence[Transition], join: Callable) -> Transition:
    return Transition(*(join([getattr(t, f.name) for t in transitions]) for f in dataclasses.fields(Transition)))


def _check_actions(actions, num_seeds: int) -> np.ndarray:
    actions = np.asarray(actions)
    if actions.ndim != 3 or len(actions) != num_seeds:
        raise ValueError(f"actions must be (seeds={num_seeds}, tasks, action_dim), got shape {actions.shape}")
    return actions


class LocalSeedEnvs:
    """The seeds' envs stepped in turn in this process (also what each worker runs for its group)."""

    def __init__(self, envs: Sequence[MultiTaskEnv]):
        self.envs = list(envs)
        first = self.envs[0]
        self.num_seeds, self.num_tasks, self.task_names = len(self.envs), first.num_tasks, first.task_names
        self.obs_dim, self.action_dim = first.obs_dim, first.action_dim
        self.max_episode_steps = first.max_episode_steps
        self.actions: np.ndarray | None = None  # set by step_async, consumed by step_wait

    def reset(self) -> np.ndarray:
        return np.stack([env.reset() for env in self.envs]).astype(np.float32, copy=False)

    def step_async(self, actions) -> None:
        self.actions = _check_actions(actions, self.num_seeds)

    def step_wait(self) -> Transition:
        if self.actions is None:
            raise RuntimeError("step_wait without step_async")
        actions, self.actions = self.actions, None
        return _stack([env.step(a) for env, a in zip(self.envs, actions)], np.stack)

    def step(self, actions) -> Transition:
        self.step_async(actions)
        return self.step_wait()

    def checkpointable(self) -> bool:
        return all(env.checkpointable() for env in self.envs)

    def get_state(self) -> list[dict]:
        return [env.get_state() for env in self.envs]

    def set_state(self, states: Sequence[dict]) -> None:
        if len(states) != self.num_seeds:
            raise ValueError(f"one env state per seed: got {len(states)} for {self.num_seeds} seeds")
        for env, state in zip(self.envs, states):
            env.set_state(state)

    def close(self) -> None:
        for env in self.envs:
            env.close()
        self.envs = []

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class EnvWorkerError(RuntimeError):
    """An env worker raised, or died; the message holds the worker's traceback."""


@dataclasses.dataclass
class Worker:
    """One worker process, its end of the pipe, and the contiguous seeds it steps."""

    process: subprocess.Popen
    conn: Connection
    seeds: list[int]
    start: int  # index of its first seed in the stack

    def describe(self) -> str:
        return f"env worker pid {self.process.pid} (seeds {', '.join(map(str, self.seeds))})"


class WorkerSeedEnvs:
    """The seeds' envs in worker processes, each a contiguous group of seeds; the same interface as
    `LocalSeedEnvs`. `step_async` returns once the actions are sent, so the caller works while workers step."""

    def __init__(self, config: EnvConfig, groups: Sequence[tuple[list[int], list[int]]]):
        """`groups`: each worker's (seeds, streams). Workers build their envs concurrently; this returns once
        all are built."""
        self.workers: list[Worker] = []
        self.stepping = False
        package_root = str(Path(__file__).resolve().parents[2])
        pythonpath = os.pathsep.join(p for p in (package_root, os.environ.get("PYTHONPATH")) if p)
        env = {**os.environ, **WORKER_ENV, "PYTHONPATH": pythonpath}
        try:
            start = 0
            for seeds, streams in groups:
                parent, child = Pipe()
                process = subprocess.Popen(
                    [sys.executable, "-c", "import sys; from paco.envs.workers import serve; serve(int(sys.argv[1]))",
                     str(child.fileno())], pass_fds=[child.fileno()], env=env)
                child.close()
                self.workers.append(Worker(process, parent, list(seeds), start))
                parent.send((config, list(seeds), list(streams)))
                start += len(seeds)
            info = self._receive("start")[0]
        except BaseException:
            self.close()
            raise
        self.num_seeds = start
        self.num_tasks, self.task_names = len(info["task_names"]), info["task_names"]
        self.obs_dim, self.action_dim = info["obs_dim"], info["action_dim"]
        self.max_episode_steps = info["max_episode_steps"]

    def _send(self, command: str, args_per_worker: Sequence[tuple]) -> None:
        if self.stepping:
            raise RuntimeError(f"{command} while a step is in flight: call step_wait first")
        for worker, args in zip(self.workers, args_per_worker):
            try:
                worker.conn.send((command, args))
            except OSError:
                pass  # a dead worker: its EOF is reported by _receive

    def _receive(self, command: str) -> list:
        """Every worker's reply, in order; raises (once all have replied) the first worker's error."""
        replies, errors = [], []
        for worker in self.workers:
            try:
                status, value = worker.conn.recv()
            except (EOFError, OSError):
                try:
                    code = worker.process.wait(timeout=1)
                except subprocess.TimeoutExpired:
                    code = None
                errors.append(f"{worker.describe()} died during {command} (exit code {code})")
                continue
            if status == "error":
                errors.append(f"{worker.describe()} failed during {command}:\n{value}")
            replies.append(value)
        if errors:
            raise EnvWorkerError(errors[0])
        return replies

    def _call(self, command: str, args_per_worker: Sequence[tuple] | None = None) -> list:
        self._send(command, args_per_worker or [()] * len(self.workers))
        return self._receive(command)

    def reset(self) -> np.ndarray:
        return np.concatenate(self._call("reset"))

    def step_async(self, actions) -> None:
        actions = _check_actions(actions, self.num_seeds)
        self._send("step", [(actions[w.start:w.start + len(w.seeds)],) for w in self.workers])
        self.stepping = True

    def step_wait(self) -> Transition:
        if not self.stepping:
            raise RuntimeError("step_wait without step_async")
        self.stepping = False
        return _stack(self._receive("step"), np.concatenate)

    def step(self, actions) -> Transition:
        self.step_async(actions)
        return self.step_wait()

    def checkpointable(self) -> bool:
        return all(self._call("checkpointable"))

    def get_state(self) -> list[dict]:
        return [state for group in self._call("get_state") for state in group]

    def set_state(self, states: Sequence[dict]) -> None:
        if len(states) != self.num_seeds:
            raise ValueError(f"one env state per seed: got {len(states)} for {self.num_seeds} seeds")
        self._call("set_state", [(list(states[w.start:w.start + len(w.seeds)]),) for w in self.workers])

    def imported_modules(self) -> list[list[str]]:
        """Each worker's `sys.modules` names: how the tests check that workers stay free of JAX."""
        return self._call("modules")

    def close(self) -> None:
        """Stops every worker (killing one that does not exit in time); safe to call twice."""
        for worker in self.workers:
            try:
                worker.conn.send(("close", ()))
            except OSError:
                pass
        for worker in self.workers:
            try:
                worker.process.wait(timeout=CLOSE_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()
            worker.conn.close()
        self.workers = []
        self.stepping = False

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def serve(fd: int) -> None:
    """A worker's loop: build its group's envs from the first message, then answer commands until "close" or
    until the parent's end of the pipe closes (the parent exited)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle (it may save a checkpoint)
    conn = Connection(fd)
    try:
        config, seeds, streams = conn.recv()
    except (EOFError, OSError):
        return
    envs = None
    try:
        envs = LocalSeedEnvs([make_env(config, seed, stream) for seed, stream in zip(seeds, streams)])
        conn.send(("ok", {"task_names": envs.task_names, "obs_dim": envs.obs_dim, "action_dim": envs.action_dim,
                          "max_episode_steps": envs.max_episode_steps}))
    except Exception:
        conn.send(("error", traceback.format_exc()))
    while envs is not None:
        try:
            command, args = conn.recv()
        except (EOFError, OSError):
            break
        if command == "close":
            break
        try:
            if command == "modules":
                result = sorted(sys.modules)
            elif command in COMMANDS:
                result = getattr(envs, command)(*args)
            else:
                raise ValueError(f"unknown env worker command {command!r}")
            conn.send(("ok", result))
        except Exception:
            conn.send(("error", traceback.format_exc()))
    if envs is not None:
        envs.close()
