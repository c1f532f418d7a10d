"""`paco sweep`: presets × seeds as Ray tasks, each an ordinary run directory DIR/<preset>/seed<seed>.

Every run is `paco.trainer.train` on the config `paco train --preset P --seed S ... --out DIR/P/seedS` would
build, so a sweep's runs resume, load and report like any other. Running a sweep again continues it: finished
runs are skipped without touching a file, interrupted ones resume from their newest checkpoint. A run whose
worker process dies is retried by Ray (`--max-retries`), resuming from its newest checkpoint; an error raised
by training fails that run alone. Without --address the sweep starts Ray on this machine.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from paco import checkpoint
from paco.config import Config, replace
from paco.run_config import differences, holds_run, parse_seeds, preset_config
from paco.runlock import live_owner
from paco.trainer import train

INSTALL_HINT = "paco sweep needs Ray: pip install -e '.[cluster]'"
REFRESH_S = 5.0
LOG_EVERY_S = 60.0
TAIL_BYTES = 1 << 16  # enough for the last few lines of metrics.jsonl, evaluation lines of MT50 included
JAX_SHARE_OF_A_GPU = 0.75  # JAX's default XLA_PYTHON_CLIENT_MEM_FRACTION for a process alone on a GPU


@dataclass(frozen=True)
class SweepSettings:
    presets: tuple[str, ...]
    seeds: tuple[int, ...]
    out: Path
    overrides: tuple[str, ...] = ()
    """`--SECTION.FIELD VALUE` flags applied to every preset, as `paco train` applies them."""
    address: str | None = None
    """A running Ray cluster to connect to; None starts Ray on this machine."""
    cpus_per_run: float = 1.0
    gpus_per_run: float = 0.0
    max_retries: int = 3
    """Times Ray re-runs a run whose worker process died (each time from its newest checkpoint)."""


@dataclass(frozen=True)
class PlannedRun:
    preset: str
    seed: int
    config: Config
    run_dir: Path
    finished: bool
    """Already trained to its budget: the sweep skips it."""

    @property
    def name(self) -> str:
        return f"{self.preset}/seed{self.seed}"


@dataclass(frozen=True)
class RunProgress:
    state: Literal["done", "running", "failed", "queued"]
    env_steps: int
    total_env_steps: int


class _Parser(argparse.ArgumentParser):
    def error(self, message):
        raise ValueError(message)


def parse_sweep_args(argv: list[str]) -> SweepSettings:
    parser = _Parser(prog="paco sweep", allow_abbrev=False, description="Train presets × seeds as Ray tasks, "
                     "each into OUT/<preset>/seed<seed>; any other --SECTION.FIELD VALUE applies to every run.")
    parser.add_argument("--presets", required=True, help="comma-separated preset names")
    parser.add_argument("--seeds", required=True, help="'0-9', '0,3,5' or '4'")
    parser.add_argument("--out", required=True, type=Path, help="parent of the run directories")
    parser.add_argument("--address", help="Ray cluster to connect to (e.g. 'auto'); default: start Ray here")
    parser.add_argument("--cpus-per-run", type=float, default=1.0)
    parser.add_argument("--gpus-per-run", type=float, default=0.0, help="may be fractional, e.g. 0.25")
    parser.add_argument("--max-retries", type=int, default=3, help="retries of a run whose worker process died")
    known, overrides = parser.parse_known_args(argv)
    names = [name.strip() for name in known.presets.split(",")]
    if "" in names or len(set(names)) < len(names):
        raise ValueError(f"bad --presets {known.presets!r}: give distinct preset names separated by commas")
    if any(arg.split("=")[0] == "--seed" for arg in overrides):
        raise ValueError("--seeds, not --seed, gives a sweep's seeds")
    if not known.cpus_per_run > 0 or not known.gpus_per_run >= 0 or known.max_retries < 0:
        raise ValueError(f"--cpus-per-run must be positive and --gpus-per-run, --max-retries not negative; got "
                         f"{known.cpus_per_run}, {known.gpus_per_run}, {known.max_retries}")
    return SweepSettings(tuple(names), parse_seeds(known.seeds), known.out, tuple(overrides), known.address,
                         known.cpus_per_run, known.gpus_per_run, known.max_retries)


def plan_runs(settings: SweepSettings) -> list[PlannedRun]:
    """Every (preset, seed) with its config and state; a ValueError before anything starts where an override
    does not fit a preset, or a run directory holds a run of other settings or is being trained."""
    out = settings.out.resolve()  # workers may run in another directory, or on another node
    runs, conflicts = [], []
    for preset in settings.presets:
        base = preset_config(preset, settings.overrides)
        for seed in settings.seeds:
            run_dir = out / preset / f"seed{seed}"
            config = replace(base, seed=seed, out=str(run_dir), train={"progress": False})
            owner = live_owner(run_dir)
            if owner is not None:
                raise ValueError(f"{run_dir} is being trained by process {owner}; wait for it or stop it first")
            if holds_run(run_dir):
                try:
                    found = differences(config, checkpoint.read_config(run_dir))
                except checkpoint.CheckpointError as error:
                    raise ValueError(str(error)) from None
                if found:
                    conflicts.append(f"{run_dir} ({'; '.join(found)})")
            finished = _trained_steps(run_dir) >= base.train.total_env_steps
            runs.append(PlannedRun(preset, seed, config, run_dir, finished))
    if conflicts:
        raise ValueError(f"the out directory holds runs of other settings: {', '.join(conflicts)}; give another "
                         f"--out or the settings they were started with")
    return runs


def _trained_steps(run_dir: Path) -> int:
    """Env step of the newest good checkpoint, 0 where there is none."""
    try:
        return checkpoint.newest_step(run_dir)
    except checkpoint.CheckpointError:
        return 0


def train_run(config: Config, run_dir: Path) -> None:
    """One run, in a Ray worker: from its newest good checkpoint where it has one (a retry after its worker died,
    or a sweep started again), from the start otherwise."""
    train(config, run_dir, resume=_trained_steps(run_dir) > 0)


def logged_env_steps(run_dir: Path) -> int:
    """`env_steps` of the last complete line of RUN_DIR/metrics.jsonl (0 where there is none), read from the
    file's tail so that polling a long run stays cheap."""
    try:
        with open(run_dir / "metrics.jsonl", "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES))
            tail = f.read()
    except FileNotFoundError:
        return 0
    for line in reversed(tail.splitlines()):
        try:
            return int(json.loads(line)["env_steps"])
        except (ValueError, KeyError):  # the line the tail cut, or one still being written
            continue
    return 0


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}h{seconds // 60 % 60:02d}m" if seconds >= 3600 else f"{seconds // 60}m{seconds % 60:02d}s"


def summary_line(progress: list[RunProgress], elapsed_s: float, env_steps_at_start: int) -> str:
    """'2 done, 1 running, 0 failed, 1 queued; 30.0k of 40.0k env steps (75%), ETA 0m40s'. The ETA is the
    env steps the unfailed runs still need at the rate this sweep has trained so far."""
    counts = {state: sum(p.state == state for p in progress) for state in ("done", "running", "failed", "queued")}
    done = sum(p.total_env_steps if p.state == "done" else p.env_steps for p in progress)
    total = sum(p.total_env_steps for p in progress)
    remaining = sum(p.total_env_steps - p.env_steps for p in progress if p.state in ("running", "queued"))
    rate = (done - env_steps_at_start) / elapsed_s if elapsed_s > 0 else 0.0
    eta = _duration(remaining / rate) if rate > 0 else "-"
    states = ", ".join(f"{n} {state}" for state, n in counts.items())
    return f"{states}; {done / 1e3:.1f}k of {total / 1e3:.1f}k env steps ({done / max(total, 1):.0%}), ETA {eta}"


def last_error_line(error: BaseException) -> str:
    """One line for a failed run: the exception training raised, or why Ray gave up on its worker."""
    cause = getattr(error, "cause", None) or error  # RayTaskError carries the exception training raised
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    return f"{type(cause).__name__}: {lines[-1] if lines else ''}".rstrip(": ")


def _progress(run: PlannedRun, state: str) -> RunProgress:
    if state == "pending":
        state = "running" if live_owner(run.run_dir) is not None else "queued"
    return RunProgress(state, logged_env_steps(run.run_dir), run.config.train.total_env_steps)


def _task_options(settings: SweepSettings) -> dict:
    """Ray options of one run: its resources, retries of a dead worker (never of an error raised by training),
    a process of its own (JAX lets go of a GPU only when its process ends), and, on a shared GPU, a JAX that
    grows its memory on demand up to the run's share instead of taking 75% of the GPU at start."""
    options = {"num_cpus": settings.cpus_per_run, "num_gpus": settings.gpus_per_run,
               "max_retries": settings.max_retries, "retry_exceptions": False}
    if 0 < settings.gpus_per_run < 1:
        options["runtime_env"] = {"env_vars": {
            "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
            "XLA_PYTHON_CLIENT_MEM_FRACTION": f"{JAX_SHARE_OF_A_GPU * settings.gpus_per_run:.3f}"}}
    return options


def run_sweep(settings: SweepSettings, runs: list[PlannedRun], refresh_s: float = REFRESH_S,
              stream: TextIO | None = None) -> dict[str, str]:
    """Train the unfinished runs on the Ray session of this process, writing a summary line every `refresh_s`
    seconds (rewritten in place on a terminal); returns the failed runs' names with their last error line."""
    import ray

    stream = stream or sys.stdout
    remote, options = ray.remote(max_calls=1)(train_run), _task_options(settings)
    pending = {remote.options(name=run.name, **options).remote(run.config, run.run_dir): run
               for run in runs if not run.finished}
    states = {run.name: "done" if run.finished else "pending" for run in runs}
    failures: dict[str, str] = {}
    start = time.monotonic()
    at_start = sum(p.total_env_steps if p.state == "done" else p.env_steps
                   for p in (_progress(run, states[run.name]) for run in runs))
    end = "\r" if stream.isatty() else "\n"
    written_at, written_states = -math.inf, None
    while pending:
        ready, _ = ray.wait(list(pending), num_returns=len(pending), timeout=refresh_s)
        for ref in ready:
            run = pending.pop(ref)
            try:
                ray.get(ref)
                states[run.name] = "done"
            except ray.exceptions.RayError as error:
                states[run.name], failures[run.name] = "failed", last_error_line(error)
        now = time.monotonic()
        # A log file (not a terminal) gets a line when a run changes state, or once a minute.
        if end == "\r" or states != written_states or now - written_at >= LOG_EVERY_S:
            line = summary_line([_progress(run, states[run.name]) for run in runs], now - start, at_start)
            stream.write(f"sweep: {line}{end}")
            stream.flush()
            written_at, written_states = now, dict(states)
    if end == "\r":
        stream.write("\n")
    return failures


def _connect(settings: SweepSettings) -> None:
    """Start Ray on this machine (all its cores), or join the cluster at --address; quietly either way."""
    import ray

    quiet = {"logging_level": logging.ERROR, "log_to_driver": False}
    if settings.address:
        ray.init(address=settings.address, **quiet)
        return
    ray.init(num_cpus=os.cpu_count(), include_dashboard=False, **quiet)
    have = ray.cluster_resources()
    for resource, each in (("CPU", settings.cpus_per_run), ("GPU", settings.gpus_per_run)):
        if each > have.get(resource, 0):
            ray.shutdown()
            raise ValueError(f"each run asks for {each:g} {resource}s but this machine has {have.get(resource, 0):g}")


def main(argv: list[str]) -> int:
    """`paco sweep ...`: 0 when every run is trained, 1 when some failed; bad input is a ValueError."""
    settings = parse_sweep_args(argv)
    try:
        import ray
    except ImportError:
        raise ValueError(INSTALL_HINT) from None
    runs = plan_runs(settings)
    todo = [run for run in runs if not run.finished]
    print(f"sweep: {len(runs)} runs into {settings.out}, {len(runs) - len(todo)} of them finished already")
    failures = {}
    if todo:
        started_here = not ray.is_initialized()
        if started_here:
            _connect(settings)
        try:
            failures = run_sweep(settings, runs)
        finally:
            if started_here:
                ray.shutdown()
    for name, message in failures.items():
        print(f"failed: {name}: {message}")
    from paco.analysis.report import render_report

    print(render_report([settings.out], by="preset"))
    return 1 if failures else 0
