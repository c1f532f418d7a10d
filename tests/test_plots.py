"""success.png: the curves drawn are the evaluation lines of metrics.jsonl, task by task, and their mean."""

import json

import numpy as np
import pytest

from paco.plots import MAX_TASKS_IN_LEGEND, plot_success, success_curves

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def write_metrics(run_dir, evals: dict[int, dict[str, float]]) -> None:
    lines = []
    for steps, success in evals.items():
        lines.append({"env_steps": steps - 1, "updates": 3, "loss/critic": 1.0})  # a training line: not drawn
        lines.append({"env_steps": steps, "eval/success_rate": float(np.mean(list(success.values()))),
                      **{f"eval/success/{task}": rate for task, rate in success.items()}})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))


def test_curves_are_the_evaluation_lines(tmp_path):
    evals = {1000: {"reach-v3": 0.0, "push-v3": 0.5}, 2000: {"reach-v3": 0.4, "push-v3": 1.0}}
    write_metrics(tmp_path, evals)
    figure = plot_success(tmp_path)
    assert (tmp_path / "success.png").read_bytes().startswith(PNG_MAGIC)
    lines = {line.get_label(): line for line in figure.axes[0].get_lines()}
    assert set(lines) == {"reach-v3", "push-v3", "mean of 2 tasks"}
    np.testing.assert_array_equal(lines["reach-v3"].get_xdata(), [1000, 2000])
    np.testing.assert_allclose(lines["reach-v3"].get_ydata(), [0, 40])
    np.testing.assert_allclose(lines["push-v3"].get_ydata(), [50, 100])
    np.testing.assert_allclose(lines["mean of 2 tasks"].get_ydata(), [25, 70])


def test_many_tasks_name_only_the_mean(tmp_path):
    tasks = [f"task-{i}" for i in range(MAX_TASKS_IN_LEGEND + 1)]
    write_metrics(tmp_path, {500: {task: i / len(tasks) for i, task in enumerate(tasks)}})
    legend = plot_success(tmp_path).axes[0].get_legend()
    assert [text.get_text() for text in legend.get_texts()] == [f"mean of {len(tasks)} tasks"]


def test_no_evaluation_yet(tmp_path):
    (tmp_path / "metrics.jsonl").write_text(json.dumps({"env_steps": 10, "updates": 1}) + "\n")
    assert success_curves([]) == ([], [], {})
    with pytest.raises(ValueError, match="has no evaluation lines yet"):
        plot_success(tmp_path)
