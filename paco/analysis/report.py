"""`paco report PATHS... [--by FIELD] [--out DIR]`: the multi-seed table of a set of runs, as papers report it.

Per group of runs (same settings but the seed): the final policy's success as mean ± sample standard deviation
over seeds (the paper's number), the interquartile mean over runs × tasks with its stratified-bootstrap confidence
interval (Agarwal et al. 2021, computed by rliable; robust to a single outlying seed where the mean is not), and,
labelled apart, the best evaluation during training (an optimistic figure some papers report instead). Every run
found that is not finished is listed with its reason rather than averaged in or dropped.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from rliable import library, metrics

from paco.analysis.runs import (DEFAULT_OUT, FINISHED, Run, final_score, group_runs, read_runs, runs_parser,
                                setting)

BOOTSTRAP_REPS = 10_000
BOOTSTRAP_SEED = 0
CONFIDENCE = 0.95
OUTPUT_FILES = ("report.md", "report.csv", "report-per-task.csv")


@dataclass(frozen=True)
class GroupSummary:
    """One group's statistics over its finished runs, as fractions (NaN where there are too few runs)."""

    label: str
    seeds: int
    left_out: int
    """Runs of the group that are not finished, so not in these numbers."""
    final_mean: float
    final_std: float
    """Sample standard deviation (ddof = 1) over seeds of each run's mean final success over tasks."""
    iqm: float
    iqm_low: float
    iqm_high: float
    best_mean: float
    best_std: float
    per_task: dict[str, tuple[float, float]]
    """task -> (mean, sample std) of the final success over seeds."""
    evaluation: str
    """Which evaluation stands behind the final numbers ('training eval, 10 ep/task', or a mix, named)."""
    episode_length: int
    total_env_steps: int


@dataclass(frozen=True)
class Report:
    by: str
    bootstrap_reps: int
    runs: tuple[Run, ...]
    groups: tuple[GroupSummary, ...]
    group_of: dict[Path, str]
    """Each grouped run's group label (runs without a readable config have none)."""
    markdown: str


def sample_std(values: Sequence[float]) -> float:
    return float(np.std(values, ddof=1)) if len(values) > 1 else float("nan")


def iqm_with_ci(scores: np.ndarray, reps: int = BOOTSTRAP_REPS) -> tuple[float, float, float]:
    """IQM of a runs × tasks score matrix and its 95% stratified-bootstrap confidence interval (runs resampled
    within each task), by rliable.

    rliable's StratifiedBootstrap draws its resamples from NumPy's global generator (`np.random.choice`) whatever
    `random_state` it is given, so the global generator is seeded here, for an interval that is the same on every
    call, and given back its state afterwards."""
    saved = np.random.get_state()
    np.random.seed(BOOTSTRAP_SEED)
    try:
        point, interval = library.get_interval_estimates(
            {"runs": scores}, lambda x: np.array([metrics.aggregate_iqm(x)]), reps=reps,
            confidence_interval_size=CONFIDENCE)
    finally:
        np.random.set_state(saved)
    return float(point["runs"][0]), float(interval["runs"][0, 0]), float(interval["runs"][1, 0])


def _evaluation_label(labels: Sequence[str]) -> str:
    counts = Counter(labels)
    if len(counts) == 1:
        return labels[0]
    return "mixed: " + "; ".join(f"{count}× {label}" for label, count in counts.items())


def summarize(label: str, runs: Sequence[Run], reps: int = BOOTSTRAP_REPS) -> GroupSummary:
    """Statistics of one group (runs of the same settings) over its finished runs."""
    finished = [run for run in runs if run.status == FINISHED]
    scores = [final_score(run) for run in finished]
    nan = float("nan")
    common = dict(label=label, seeds=len(finished), left_out=len(runs) - len(finished),
                  episode_length=setting(runs[0].config, "env.max_episode_steps"),
                  total_env_steps=runs[0].total_env_steps)
    if not finished:
        return GroupSummary(final_mean=nan, final_std=nan, iqm=nan, iqm_low=nan, iqm_high=nan, best_mean=nan,
                            best_std=nan, per_task={}, evaluation="", **common)
    tasks = list(scores[0].success)
    for run, score in zip(finished, scores):
        if set(score.success) != set(tasks):
            raise ValueError(f"{run.path} was evaluated on other tasks than {finished[0].path} of group {label}")
    matrix = np.array([[score.success[task] for task in tasks] for score in scores])  # runs × tasks
    finals = matrix.mean(axis=1)
    best = [max(line["eval/success_rate"] for line in run.evaluations) for run in finished]
    iqm, low, high = iqm_with_ci(matrix, reps)
    return GroupSummary(
        final_mean=float(finals.mean()), final_std=sample_std(finals), iqm=iqm, iqm_low=low, iqm_high=high,
        best_mean=float(np.mean(best)), best_std=sample_std(best),
        per_task={task: (float(matrix[:, i].mean()), sample_std(matrix[:, i])) for i, task in enumerate(tasks)},
        evaluation=_evaluation_label([score.label for score in scores]), **common)


# -- Markdown -----------------------------------------------------------------------------------------------
def _pct(value: float) -> str:
    return "—" if np.isnan(value) else f"{100 * value:.1f}"


def _mean_std(mean: float, std: float) -> str:
    if np.isnan(mean):
        return "—"
    return f"{_pct(mean)} (1 seed)" if np.isnan(std) else f"{_pct(mean)} ± {_pct(std)}"


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return lines + ["| " + " | ".join(str(cell).replace("|", "\\|") for cell in row) + " |" for row in rows]


def _finished_row(run: Run, group: str) -> list:
    score = final_score(run)
    return [run.path, group, run.seed, _pct(float(np.mean(list(score.success.values())))), score.label]


def _markdown(by: str, reps: int, runs: Sequence[Run], groups: Sequence[GroupSummary],
              group_of: dict[Path, str]) -> str:
    finished = [run for run in runs if run.status == FINISHED]
    left_out = [run for run in runs if run.status != FINISHED]
    lines = ["# paco report", "",
             f"{len(runs)} runs found: {len(finished)} finished, in the statistics; {len(left_out)} not (listed at "
             f"the end). Grouped by `{by}`.", "",
             "- **final success**: the final policy's evaluation, as the paper reports it: each run's success rate "
             "averaged over tasks, then mean ± sample standard deviation (ddof = 1) over seeds, in %.",
             f"- **IQM**: interquartile mean of the runs × tasks matrix of final success, with its "
             f"{CONFIDENCE:.0%} stratified-bootstrap confidence interval (rliable; {reps:,} resamples of the runs "
             f"within each task, NumPy seed {BOOTSTRAP_SEED}).",
             "- **best eval (not the paper's number)**: each run's highest evaluation during training, mean ± sample "
             "std over seeds; picking the best of many noisy evaluations overstates the final policy.",
             "- **evaluation**: what the final numbers come from: the training run's last evaluation, or an "
             "eval-*.json that `paco evaluate` wrote at the final step (which then replaces it).", "",
             "## Final success", ""]
    lines += _table(
        [by, "seeds", "final success (mean ± sample std)", f"IQM [{CONFIDENCE:.0%} CI]",
         "best eval (not the paper's number)", "evaluation", "episode length", "env steps", "runs left out"],
        [[g.label, g.seeds, _mean_std(g.final_mean, g.final_std),
          "—" if np.isnan(g.iqm) else f"{_pct(g.iqm)} [{_pct(g.iqm_low)}, {_pct(g.iqm_high)}]",
          _mean_std(g.best_mean, g.best_std), g.evaluation or "—", f"{g.episode_length} steps",
          f"{g.total_env_steps:,}", g.left_out] for g in groups])
    measured = [g for g in groups if g.seeds]
    if measured:
        tasks = list(dict.fromkeys(task for g in measured for task in g.per_task))
        lines += ["", "## Final success per task (%, mean ± sample std over seeds)", ""]
        lines += _table(["task", *(g.label for g in measured)],
                        [[task, *(_mean_std(*g.per_task[task]) if task in g.per_task else "—" for g in measured)]
                         for task in tasks])
    lines += ["", "## Runs in the statistics", ""]
    if finished:
        lines += _table(["run", by, "seed", "final success (%)", "evaluation"],
                        [_finished_row(run, group_of[run.path]) for run in finished])
    else:
        lines.append("None: no run found is finished.")
    lines += ["", "## Runs not in the statistics", ""]
    if left_out:
        lines += _table(["run", by, "seed", "status", "reason"],
                        [[run.path, group_of.get(run.path, "—"), "—" if run.seed is None else run.seed, run.status,
                          run.reason] for run in left_out])
    else:
        lines.append("None: every run found is finished.")
    return "\n".join(lines) + "\n"


# -- the report and its files -------------------------------------------------------------------------------
def build_report(paths: Sequence[str | Path], by: str = "preset", bootstrap_reps: int = BOOTSTRAP_REPS) -> Report:
    """Read, group and summarise the runs under `paths`; ValueError for paths without runs, an unknown field or
    a group of mixed settings."""
    if bootstrap_reps < 1:
        raise ValueError(f"bootstrap resamples must be positive, got {bootstrap_reps}")
    runs = read_runs(paths)
    grouped = group_runs(runs, by)
    groups = tuple(summarize(label, members, bootstrap_reps) for label, members in grouped.items())
    group_of = {run.path: label for label, members in grouped.items() for run in members}
    return Report(by, bootstrap_reps, tuple(runs), groups, group_of,
                  _markdown(by, bootstrap_reps, runs, groups, group_of))


def render_report(paths: list[str | Path], by: str = "preset", bootstrap_reps: int = BOOTSTRAP_REPS) -> str:
    """The report of the runs under `paths`, grouped by the dotted config field `by`, as Markdown."""
    return build_report(paths, by, bootstrap_reps).markdown


def _csv_pct(value: float) -> str:
    return "" if np.isnan(value) else f"{100 * value:.6g}"


def write_report(report: Report, out_dir: str | Path = DEFAULT_OUT) -> list[Path]:
    """Write report.md, report.csv (one row per group) and report-per-task.csv (one row per group and task) into
    `out_dir`; returns their paths. Figures are in %."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    markdown, summary, per_task = (out_dir / name for name in OUTPUT_FILES)
    markdown.write_text(report.markdown)
    with open(summary, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group_by", "group", "seeds", "runs_left_out", "final_success_mean_pct",
                         "final_success_sample_std_pct", "iqm_pct", "iqm_ci95_low_pct", "iqm_ci95_high_pct",
                         "best_eval_mean_pct", "best_eval_sample_std_pct", "evaluation", "episode_length",
                         "total_env_steps", "bootstrap_reps"])
        for g in report.groups:
            writer.writerow([report.by, g.label, g.seeds, g.left_out, *map(_csv_pct, (
                g.final_mean, g.final_std, g.iqm, g.iqm_low, g.iqm_high, g.best_mean, g.best_std)),
                g.evaluation, g.episode_length, g.total_env_steps, report.bootstrap_reps])
    with open(per_task, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["group_by", "group", "task", "seeds", "final_success_mean_pct",
                         "final_success_sample_std_pct"])
        for g in report.groups:
            for task, (mean, std) in g.per_task.items():
                writer.writerow([report.by, g.label, task, g.seeds, _csv_pct(mean), _csv_pct(std)])
    return [markdown, summary, per_task]


def main(argv: list[str]) -> None:
    parser = runs_parser("paco report", "Multi-seed table of runs: final success, IQM with its confidence interval, "
                         "per-task success, and every run left out with its reason. Markdown on stdout; the paths "
                         "written on stderr.", "report.md, report.csv and report-per-task.csv")
    parser.add_argument("--bootstrap-reps", type=int, default=BOOTSTRAP_REPS, metavar="N",
                        help=f"bootstrap resamples for the IQM's confidence interval (default: {BOOTSTRAP_REPS:,})")
    options = parser.parse_args(argv)
    report = build_report(options.paths, options.by, options.bootstrap_reps)
    written = write_report(report, options.out)
    print(report.markdown, end="")
    print(f"wrote {', '.join(map(str, written))}", file=sys.stderr)
