"""The run-directory contract read from files alone: which runs some paths hold, how far each got, which of them
may enter statistics, and how they group.

A run is "finished" when metrics.jsonl holds an evaluation at its train.total_env_steps, "unfinished" when its
evaluations stop before that, "no evaluation yet" before its first one, and "half-written" when config.json or a
line of metrics.jsonl or an eval-*.json is not complete JSON (a run killed mid-write, or copied while it trained;
the complete lines before a torn one are still read). Only finished runs enter statistics; every run found is
returned with its status and the reason, so that reports can list what they left out instead of dropping it.
"""

from __future__ import annotations

import argparse
import difflib
import glob
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paco.checkpoint import checkpoint_steps
from paco.plots import success_curves
from paco.run_config import SEED_LEVEL_SETTINGS

RUN_MARKERS = ("config.json", "metrics.jsonl")
FINISHED, UNFINISHED, HALF_WRITTEN, NO_EVALUATION = "finished", "unfinished", "half-written", "no evaluation yet"
SCORED_FILE = re.compile(r"^eval-([a-z]+)-(\d+)\.json$")
SCORED_KEYS = ("protocol", "step", "episodes", "success")
REQUIRED_SETTINGS = ("train.total_env_steps", "train.eval_episodes", "env.max_episode_steps", "seed")
GLOB_CHARACTERS = frozenset("*?[")
DEFAULT_OUT = Path("reports")  # where `paco report` and `paco plot` write, by default
EXAMPLE_FIELDS = ("preset", "env.suite", "network.method", "network.num_components", "stability.mode", "seed")


@dataclass(frozen=True)
class Run:
    path: Path
    config: dict[str, Any] | None
    """config.json as written; None where it is missing or not valid JSON."""
    preset: str
    seed: int | None
    env_steps: int
    """The furthest env step that a complete metrics line or a checkpoint of the run reached."""
    total_env_steps: int | None
    evaluations: tuple[dict, ...]
    """The evaluation lines of metrics.jsonl, in order (what `paco.plots.success_curves` reads)."""
    scored: tuple[dict, ...]
    """The eval-<protocol>-<step>.json files that `paco evaluate` wrote, ordered by file name."""
    status: str
    reason: str
    """Why the run is not in the statistics ('' for a finished run)."""


@dataclass(frozen=True)
class FinalScore:
    """The final policy's success per task, and which evaluation measured it."""

    success: dict[str, float]
    source: str
    """'training eval' or '<protocol> protocol' (an eval-*.json of `paco evaluate`)."""
    episodes: int
    """Episodes per task behind each task's success."""

    @property
    def label(self) -> str:
        return f"{self.source}, {self.episodes} ep/task"


def setting(config: dict[str, Any], dotted: str) -> Any:
    """The value of a dotted config field ('network.num_components'); KeyError where the config lacks it."""
    value = config
    for part in dotted.split("."):
        if not isinstance(value, dict):
            raise KeyError(dotted)
        value = value[part]
    return value


def flatten(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Every leaf of a nested config as {'section.field': value}."""
    flat = {}
    for key, value in config.items():
        if isinstance(value, dict):
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = value
    return flat


# -- discovery ----------------------------------------------------------------------------------------------
def is_run_dir(path: Path) -> bool:
    return any((path / marker).exists() for marker in RUN_MARKERS)


def _run_dirs_under(root: Path) -> list[Path]:
    """`root` if it is a run directory, else every run directory below it at any depth (not looking inside runs)."""
    if is_run_dir(root):
        return [root]
    found = []
    for directory, subdirectories, _ in os.walk(root):
        subdirectories.sort()
        runs = [name for name in subdirectories if is_run_dir(Path(directory) / name)]
        found += [Path(directory) / name for name in runs]
        subdirectories[:] = [name for name in subdirectories if name not in runs]
    return found


def find_run_dirs(paths: Sequence[str | Path]) -> list[Path]:
    """Run directories named by `paths`: each a run directory, a directory holding runs at any depth, or a glob
    pattern (expanded here, so that quoted patterns work too). Each run once, in the order found."""
    if not paths:
        raise ValueError("no run directories given")
    found: dict[Path, Path] = {}
    for argument in map(str, paths):
        matches = sorted(glob.glob(argument, recursive=True)) if GLOB_CHARACTERS & set(argument) else []
        if not matches and os.path.exists(argument):
            matches = [argument]
        if not matches:
            raise ValueError(f"{argument} matches no file or directory")
        runs = [run for match in matches if os.path.isdir(match) for run in _run_dirs_under(Path(match))]
        if not runs:
            raise ValueError(f"{argument} holds no run directory (a directory with config.json or metrics.jsonl)")
        for run in runs:
            found.setdefault(run.resolve(), run)
    return list(found.values())


# -- reading one run ----------------------------------------------------------------------------------------
def _complete_lines(path: Path) -> tuple[list[dict], int | None]:
    """The JSON objects of a .jsonl file up to its first line that is not complete JSON, and that line's number."""
    records = []
    with open(path, "rb") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError:
                return records, number
            if not isinstance(record, dict) or not line.endswith(b"\n"):  # a last line cut after a complete value
                return records, number
            records.append(record)
    return records, None


def _read_config(run_dir: Path) -> tuple[dict | None, str]:
    try:
        config = json.loads((run_dir / "config.json").read_text())
    except FileNotFoundError:
        return None, "no config.json"
    except ValueError:
        return None, "config.json is not complete JSON"
    if not isinstance(config, dict):
        return None, "config.json is not a JSON object"
    for name in REQUIRED_SETTINGS:
        try:
            setting(config, name)
        except KeyError:
            return None, f"config.json has no {name}"
    return config, ""


def _read_scored(run_dir: Path) -> tuple[list[dict], str]:
    scored = []
    for path in sorted(run_dir.iterdir()):
        if not SCORED_FILE.match(path.name):
            continue
        try:
            result = json.loads(path.read_text())
        except ValueError:
            return scored, f"{path.name} is not complete JSON"
        if not isinstance(result, dict) or any(key not in result for key in SCORED_KEYS):
            return scored, f"{path.name} lacks one of {', '.join(SCORED_KEYS)}"
        scored.append(result)
    return scored, ""


def evaluation_lines(records: list[dict]) -> list[dict]:
    """The evaluation lines among a run's metrics records (those `paco.plots.success_curves` draws)."""
    return [r for r in records if "eval/success_rate" in r and "env_steps" in r]


def read_run(run_dir: str | Path) -> Run:
    """Everything the report and the plots need from one run directory, with its status."""
    run_dir = Path(run_dir)
    config, config_problem = _read_config(run_dir)
    metrics = run_dir / "metrics.jsonl"
    records, torn_line = _complete_lines(metrics) if metrics.exists() else ([], None)
    scored, scored_problem = _read_scored(run_dir)
    evaluations = tuple(evaluation_lines(records))
    reached = max([r["env_steps"] for r in records if "env_steps" in r] + checkpoint_steps(run_dir), default=0)
    total = setting(config, "train.total_env_steps") if config else None
    if config_problem:
        status, reason = HALF_WRITTEN, config_problem
    elif torn_line is not None:
        status, reason = HALF_WRITTEN, f"metrics.jsonl line {torn_line} is not complete JSON (a torn write)"
    elif scored_problem:
        status, reason = HALF_WRITTEN, scored_problem
    elif any(r["env_steps"] >= total for r in evaluations):
        status, reason = FINISHED, ""
    elif evaluations:
        status, reason = UNFINISHED, f"stopped at {reached:,} of {total:,} env steps"
    else:
        status, reason = NO_EVALUATION, f"{reached:,} of {total:,} env steps, no evaluation line yet"
    return Run(path=run_dir, config=config, preset=config.get("preset", "") if config else "",
               seed=config["seed"] if config else None, env_steps=reached, total_env_steps=total,
               evaluations=evaluations, scored=tuple(scored), status=status, reason=reason)


def read_runs(paths: Sequence[str | Path]) -> list[Run]:
    return [read_run(run_dir) for run_dir in find_run_dirs(paths)]


def final_score(run: Run) -> FinalScore | None:
    """The final policy's per-task success of a finished run (None for any other): an eval-*.json of `paco evaluate`
    at the final step where there is one — the paper's protocol before Meta-World's, then the one with the most
    episodes — since it usually scores more episodes than training did; else the training evaluation at the end."""
    if run.status != FINISHED:
        return None
    last = run.evaluations[-1]
    at_end = [s for s in run.scored if s["step"] == last["env_steps"]]
    if at_end:
        chosen = max(at_end, key=lambda s: (s["protocol"] == "paco", s["episodes"]))
        return FinalScore({task: float(rate) for task, rate in chosen["success"].items()},
                          f"{chosen['protocol']} protocol", int(chosen["episodes"]))
    _, _, curves = success_curves([last])
    return FinalScore({task: rates[0] for task, rates in curves.items()}, "training eval",
                      int(setting(run.config, "train.eval_episodes")))


# -- grouping -----------------------------------------------------------------------------------------------
def _label(value: Any) -> str:
    if isinstance(value, str):
        return value or "(none)"
    return json.dumps(value)


def _order(value: Any) -> tuple:
    """Numbers in numeric order, before everything else in the order of its label."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    return (0, value, "") if number else (1, 0, _label(value))


def _known_field(runs: Sequence[Run], by: str) -> str:
    fields = sorted({name for run in runs if run.config for name in flatten(run.config)})
    for candidate in (by, by.replace("-", "_")):
        if candidate in fields:
            return candidate
    suggestions = difflib.get_close_matches(by, fields, n=3) or [f for f in EXAMPLE_FIELDS if f in fields]
    raise ValueError(f"unknown config field {by!r} to group by; valid fields include: {', '.join(suggestions)}")


def _mixed_settings(runs: Sequence[Run], by: str) -> list[str]:
    """'field: value (paths) vs value (paths)' for every setting in which the runs differ, seed-level ones aside."""
    flats = [flatten(run.config) for run in runs]
    ignored = {*SEED_LEVEL_SETTINGS, by}
    differences = []
    for name in dict.fromkeys(name for flat in flats for name in flat):
        if name in ignored:
            continue
        holders: dict[str, list[str]] = {}
        for run, flat in zip(runs, flats):
            holders.setdefault(json.dumps(flat.get(name, "(missing)")), []).append(str(run.path))
        if len(holders) > 1:
            differences.append(f"{name}: " + " vs ".join(
                f"{value} ({', '.join(paths[:2])}{', ...' if len(paths) > 2 else ''})" for value, paths in
                holders.items()))
    return differences


def group_runs(runs: Sequence[Run], by: str = "preset") -> dict[str, list[Run]]:
    """The runs that have a config, grouped by the value of the dotted config field `by` (groups in the order of
    their values, runs by seed). A group whose runs differ in any setting but the seed, the output directory, the
    progress bar and `by` is a ValueError: averaging them would mix experiments."""
    configured = [run for run in runs if run.config is not None]
    if not configured:
        return {}
    by = _known_field(configured, by)
    values: dict[str, Any] = {}
    groups: dict[str, list[Run]] = {}
    for run in configured:
        try:
            value = setting(run.config, by)
        except KeyError:
            value = "(not set)"
        values.setdefault(_label(value), value)
        groups.setdefault(_label(value), []).append(run)
    for label, members in groups.items():
        differences = _mixed_settings(members, by)
        if differences:
            raise ValueError(f"the runs of group {by}={label} differ in more than the seed: "
                             f"{'; '.join(differences)}")
    return {label: sorted(groups[label], key=lambda run: (run.seed, str(run.path)))
            for label in sorted(groups, key=lambda label: _order(values[label]))}


def runs_parser(prog: str, description: str, writes: str) -> argparse.ArgumentParser:
    """The arguments every multi-run command takes: paths, --by and --out (where `writes` go)."""
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("paths", nargs="+", metavar="PATH",
                        help="a run directory, a directory holding runs at any depth, or a glob pattern")
    parser.add_argument("--by", default="preset", metavar="FIELD",
                        help="dotted config field to group by (default: preset), e.g. network.num_components")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, metavar="DIR",
                        help=f"where {writes} go (default: {DEFAULT_OUT}/)")
    return parser
