"""`paco plot PATHS... [--by FIELD] [--out DIR]`: learning curves over seeds, one line per group of runs.

`curves.png` draws each group's evaluation success (mean over tasks) against env steps, averaged over its seeds,
with a band from the lowest to the highest seed; `per-task.png` draws every group's mean curve in one small panel
per task. Unfinished runs are drawn as far as they got (a point's mean is over the seeds evaluated there), so a
sweep can be watched while it trains; runs without an evaluation yet are left out and named.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from paco.analysis.runs import DEFAULT_OUT, Run, group_runs, read_runs, runs_parser
from paco.plots import success_curves

DPI = 110
PANEL_COLUMNS = 5  # MT10: 2 rows of 5 panels; MT50: 10 rows


@dataclass(frozen=True)
class SeedCurve:
    """The curve of a group over its seeds: at each env step any seed was evaluated, the mean, lowest and highest
    value over the seeds evaluated there, and how many they were."""

    steps: tuple[int, ...]
    mean: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    seeds: tuple[int, ...]


def over_seeds(curves: Sequence[tuple[Sequence[int], Sequence[float]]]) -> SeedCurve:
    """Combine (steps, values) curves of several seeds; a seed counts at the steps where it has a value."""
    at: dict[int, list[float]] = {}
    for steps, values in curves:
        for step, value in zip(steps, values):
            at.setdefault(step, []).append(value)
    steps = sorted(at)
    return SeedCurve(tuple(steps), tuple(float(np.mean(at[s])) for s in steps), tuple(min(at[s]) for s in steps),
                     tuple(max(at[s]) for s in steps), tuple(len(at[s]) for s in steps))


def drawn_runs(runs: Sequence[Run]) -> tuple[list[Run], list[Run]]:
    """(runs with a config and at least one evaluation, every other run)."""
    drawn = [run.config is not None and bool(run.evaluations) for run in runs]
    return [run for run, d in zip(runs, drawn) if d], [run for run, d in zip(runs, drawn) if not d]


def _group_curves(groups: dict[str, list[Run]]) -> dict[str, tuple[SeedCurve, dict[str, SeedCurve], int]]:
    """Per group: the mean-over-tasks curve over seeds, each task's curve over seeds, and the number of seeds."""
    result = {}
    for label, members in groups.items():
        curves = [success_curves(list(run.evaluations)) for run in members]
        tasks = dict.fromkeys(task for _, _, per_task in curves for task in per_task)
        result[label] = (over_seeds([(steps, mean) for steps, mean, _ in curves]),
                         {task: over_seeds([(steps, per_task[task]) for steps, _, per_task in curves
                                            if task in per_task]) for task in tasks}, len(members))
    return result


def _percent(values: Sequence[float]) -> list[float]:
    return [100 * v for v in values]


def plot_curves(paths: Sequence[str | Path], by: str = "preset", out_dir: str | Path = DEFAULT_OUT) -> list[Path]:
    """Write curves.png and per-task.png of the runs under `paths`, grouped by the dotted config field `by`, into
    `out_dir`; returns their paths. ValueError where no run has an evaluation yet."""
    return plot_runs(read_runs(paths), by, out_dir)


def plot_runs(runs: Sequence[Run], by: str = "preset", out_dir: str | Path = DEFAULT_OUT) -> list[Path]:
    """`plot_curves` of runs already read."""
    runs, _ = drawn_runs(runs)
    if not runs:
        raise ValueError("no run under the paths given has an evaluation yet; nothing to draw")
    groups = _group_curves(group_runs(runs, by))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    colours = {label: f"C{i % 10}" for i, label in enumerate(groups)}

    figure = Figure(figsize=(8, 4.8), layout="constrained")
    axes = figure.add_subplot()
    for label, (curve, _, seeds) in groups.items():
        axes.fill_between(curve.steps, _percent(curve.low), _percent(curve.high), color=colours[label], alpha=0.2,
                          linewidth=0)
        axes.plot(curve.steps, _percent(curve.mean), color=colours[label], marker=".", linewidth=2,
                  label=f"{label} (n={seeds} seed{'s' if seeds != 1 else ''})")
    axes.set(xlabel="env steps (all tasks)", ylabel="evaluation success (%), mean over tasks", ylim=(-3, 103),
             title=f"mean over seeds; band: min–max over seeds (grouped by {by})")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    curves_png = out_dir / "curves.png"
    figure.savefig(curves_png, dpi=DPI)

    tasks = list(dict.fromkeys(task for _, per_task, _ in groups.values() for task in per_task))
    columns = min(PANEL_COLUMNS, len(tasks))
    rows = math.ceil(len(tasks) / columns)
    figure = Figure(figsize=(2.8 * columns + 0.4, 2.3 * rows + 0.9), layout="constrained")
    panels = figure.subplots(rows, columns, sharex=True, sharey=True, squeeze=False).ravel()
    for panel, task in zip(panels, tasks):
        for label, (_, per_task, seeds) in groups.items():
            if task in per_task:
                panel.plot(per_task[task].steps, _percent(per_task[task].mean), color=colours[label], linewidth=1.5,
                           label=f"{label} (n={seeds})")
        panel.set_title(task, fontsize="small")
        panel.set_ylim(-3, 103)
        panel.grid(alpha=0.3)
        panel.tick_params(labelsize="x-small")
    for panel in panels[len(tasks):]:
        panel.set_visible(False)
    figure.supxlabel("env steps (all tasks)", fontsize="small")
    figure.supylabel("evaluation success (%), mean over seeds", fontsize="small")
    legend = {label: handle for panel in panels for handle, label in zip(*panel.get_legend_handles_labels())}
    figure.legend(legend.values(), legend.keys(), loc="outside upper center", ncols=min(4, len(legend)),
                  fontsize="small", frameon=False)
    per_task_png = out_dir / "per-task.png"
    figure.savefig(per_task_png, dpi=DPI)
    return [curves_png, per_task_png]


def main(argv: list[str]) -> None:
    parser = runs_parser("paco plot", "Learning curves over seeds: curves.png (mean over tasks, one line per group) "
                         "and per-task.png (one panel per task).", "curves.png and per-task.png")
    options = parser.parse_args(argv)
    runs = read_runs(options.paths)
    drawn, left_out = drawn_runs(runs)
    for run in drawn:
        if run.reason:
            print(f"drawn as far as it got: {run.path} ({run.status}: {run.reason})", file=sys.stderr)
    for run in left_out:
        print(f"not drawn: {run.path} ({run.status}: {run.reason})", file=sys.stderr)
    for path in plot_runs(runs, options.by, options.out):
        print(f"wrote {path}")
