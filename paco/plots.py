"""The run's learning curve, `success.png`: evaluation success per task and their mean against env steps,
drawn from metrics.jsonl (so it can be redrawn from any run directory, finished or not)."""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure

from paco.logger import read_jsonl

PREFIX = "eval/success/"
MAX_TASKS_IN_LEGEND = 12  # MT50's 50 names would cover the plot; there only the mean is named


def success_curves(records: list[dict]) -> tuple[list[int], list[float], dict[str, list[float]]]:
    """Env steps of the evaluation lines, the logged mean success at each, and each task's success there."""
    evals = [r for r in records if "eval/success_rate" in r]
    tasks = [key[len(PREFIX):] for key in evals[0] if key.startswith(PREFIX)] if evals else []
    return ([r["env_steps"] for r in evals], [r["eval/success_rate"] for r in evals],
            {task: [r[PREFIX + task] for r in evals] for task in tasks})


def plot_success(run_dir) -> Figure:
    """Write `success.png` into the run directory and return its figure (one line per task, mean in black)."""
    run_dir = Path(run_dir)
    steps, mean, curves = success_curves(read_jsonl(run_dir / "metrics.jsonl"))
    if not steps:
        raise ValueError(f"{run_dir / 'metrics.jsonl'} has no evaluation lines yet")
    figure = Figure(figsize=(7.5, 4.5), layout="constrained")
    axes = figure.add_subplot()
    named = len(curves) <= MAX_TASKS_IN_LEGEND
    for task, success in curves.items():
        axes.plot(steps, [100 * s for s in success], linewidth=1, alpha=0.8, marker=".",
                  label=task if named else None)
    axes.plot(steps, [100 * m for m in mean], color="black", linewidth=2.5, marker="o", label=f"mean of {len(curves)} tasks")
    axes.set(xlabel="env steps (all tasks)", ylabel="evaluation success (%)", ylim=(-3, 103),
             title=f"{run_dir.resolve().parent.name}/{run_dir.resolve().name}")
    axes.grid(alpha=0.3)
    axes.legend(fontsize="small", loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    figure.savefig(run_dir / "success.png", dpi=110)
    return figure
