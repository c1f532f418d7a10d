"""`paco report` and `paco plot` on run directories written here with known numbers: the statistics against
independent computations, every run that is not finished listed instead of averaged, grouping, the eval-*.json of
`paco evaluate` replacing the training evaluation, and the files and figures written."""

import csv
import json

import numpy as np
import pytest
from matplotlib.image import imread

from paco import config as config_lib
from paco import presets
from paco.analysis import curves, report
from paco.analysis.runs import FINISHED, HALF_WRITTEN, NO_EVALUATION, UNFINISHED, read_run
from paco.envs import task_names

REPS = 1000  # bootstrap resamples: enough for the interval to bracket the IQM, fast enough for a test
PRESET = presets.get("pointmass-paco")
TASKS = task_names(PRESET.env)
TOTAL = PRESET.train.total_env_steps
EVERY = PRESET.train.eval_every_env_steps


def make_run(run_dir, seed: int, evals: list[list[float]], config=PRESET, scored: dict | None = None):
    """A run directory whose config.json is the preset's (seed and out set) and whose metrics.jsonl holds a training
    line and an evaluation line (per-task success `evals[i]`) every EVERY env steps; `scored`: {step: (episodes,
    per-task success)} written as eval-paco-<step>.json."""
    run_dir.mkdir(parents=True)
    config_lib.save(config_lib.replace(config, seed=seed, out=str(run_dir)), run_dir / "config.json")
    lines = []
    for i, success in enumerate(evals, 1):
        lines.append({"env_steps": i * EVERY - 100, "updates": i, "loss/critic": 1.0})
        lines.append({"env_steps": i * EVERY, "updates": i, "eval/success_rate": float(np.mean(success)),
                      "eval/return": 1.0, **{f"eval/success/{task}": rate for task, rate in zip(TASKS, success)}})
    (run_dir / "metrics.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    for step, (episodes, success) in (scored or {}).items():
        result = {"protocol": "paco", "step": step, "episodes": episodes, "seed": seed + 20_000,
                  "success": dict(zip(TASKS, success)), "success_rate": float(np.mean(success))}
        (run_dir / f"eval-paco-{step}.json").write_text(json.dumps(result))
    return run_dir


FINALS = np.array([[1.0, 0.9, 0.2, 0.6], [0.8, 1.0, 0.0, 0.5], [0.9, 0.7, 0.4, 0.3], [1.0, 1.0, 0.1, 0.7]])
EARLY = np.array([[0.5, 0.5, 0.0, 0.2], [0.9, 1.0, 0.3, 0.6], [0.2, 0.1, 0.0, 0.0], [0.6, 0.9, 0.5, 0.8]])


def four_seeds(root):
    for seed, (early, final) in enumerate(zip(EARLY, FINALS)):
        make_run(root / f"seed{seed}", seed, [list(early), [0.1] * 4, list(final)])


def test_statistics_match_an_independent_computation(tmp_path):
    four_seeds(tmp_path / "runs")
    state = np.random.get_state()[1].copy()
    built = report.build_report([tmp_path / "runs"], bootstrap_reps=REPS)
    (group,) = built.groups
    finals = FINALS.mean(axis=1)
    best = np.maximum(EARLY.mean(axis=1), FINALS.mean(axis=1))
    assert (group.label, group.seeds, group.left_out) == ("pointmass-paco", 4, 0)
    assert group.final_mean == pytest.approx(np.mean(finals))
    assert group.final_std == pytest.approx(np.sqrt(np.sum((finals - finals.mean()) ** 2) / 3))
    assert group.iqm == pytest.approx(np.sort(FINALS.ravel())[4:12].mean())  # 16 scores: the middle 8
    assert group.iqm_low <= group.iqm <= group.iqm_high and group.iqm_low < group.iqm_high
    assert group.best_mean == pytest.approx(best.mean()) and group.best_std == pytest.approx(np.std(best, ddof=1))
    for i, task in enumerate(TASKS):
        assert group.per_task[task] == pytest.approx((FINALS[:, i].mean(), np.std(FINALS[:, i], ddof=1)))
    assert group.evaluation == "training eval, 10 ep/task" and group.episode_length == 50
    again = report.build_report([tmp_path / "runs"], bootstrap_reps=REPS).groups[0]
    assert (again.iqm_low, again.iqm_high) == (group.iqm_low, group.iqm_high)  # a seeded bootstrap
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # ... that leaves the global generator alone
    expected = f"{100 * np.mean(finals):.1f} ± {100 * np.std(finals, ddof=1):.1f}"
    assert f"| pointmass-paco | 4 | {expected} | {100 * group.iqm:.1f} [" in built.markdown
    assert "best eval (not the paper's number)" in built.markdown and "sample std" in built.markdown


def test_runs_not_finished_are_listed_not_averaged(tmp_path):
    root = tmp_path / "runs"
    for seed in (0, 1):
        make_run(root / f"seed{seed}", seed, [[0.0] * 4, [0.5] * 4, list(FINALS[seed])])
    torn = make_run(root / "seed2", 2, [[0.0] * 4, [0.5] * 4, [1.0] * 4])
    with open(torn / "metrics.jsonl", "a") as f:
        f.write('{"env_steps": 60000, "eval/succ')
    make_run(root / "seed3", 3, [[1.0] * 4, [1.0] * 4])
    (root / "seed4").mkdir()
    config_lib.save(config_lib.replace(PRESET, seed=4), root / "seed4" / "config.json")
    (root / "copied").mkdir()
    (root / "copied" / "metrics.jsonl").write_text(json.dumps({"env_steps": 4000, "updates": 1}) + "\n")

    assert read_run(torn).status == HALF_WRITTEN and len(read_run(torn).evaluations) == 3  # lines before it read
    built = report.build_report([root], bootstrap_reps=REPS)
    (group,) = built.groups
    assert (group.seeds, group.left_out) == (2, 3)
    assert group.final_mean == pytest.approx(FINALS[:2].mean())
    statuses = {run.path.name: (run.status, run.reason) for run in built.runs}
    assert statuses == {
        "seed0": (FINISHED, ""), "seed1": (FINISHED, ""),
        "seed2": (HALF_WRITTEN, "metrics.jsonl line 7 is not complete JSON (a torn write)"),
        "seed3": (UNFINISHED, "stopped at 40,000 of 60,000 env steps"),
        "seed4": (NO_EVALUATION, "0 of 60,000 env steps, no evaluation line yet"),
        "copied": (HALF_WRITTEN, "no config.json")}
    left_out = built.markdown.split("## Runs not in the statistics")[1]
    for name, (status, reason) in statuses.items():
        assert (f"{root / name} |" in left_out) == (status != FINISHED)
        assert status == FINISHED or f"| {status} | {reason} |" in left_out


def test_mixed_settings_in_a_group_are_refused(tmp_path):
    make_run(tmp_path / "seed0", 0, [[0.5] * 4] * 3)
    make_run(tmp_path / "seed1", 1, [[0.5] * 4] * 3, config=config_lib.replace(PRESET, sac={"gamma": 0.9}))
    with pytest.raises(ValueError, match=r"group preset=pointmass-paco differ in more than the seed: "
                                         r"sac\.gamma: 0\.99 \(.*seed0\) vs 0\.9 \(.*seed1\)$"):
        report.build_report([tmp_path], bootstrap_reps=REPS)


def test_grouping_by_a_numeric_field_and_scored_finals(tmp_path):
    root = tmp_path / "sweep"
    scored = {0: [1.0, 1.0, 0.0, 0.5], 1: [0.5, 0.5, 0.5, 0.5]}
    for k in (10, 3):
        config = config_lib.replace(PRESET, network={"num_components": k})
        for seed in (0, 1):
            finals = list(FINALS[seed] if k == 3 else FINALS[seed + 2])
            results = {TOTAL: (50, scored[seed]), EVERY: (50, [0.0] * 4)} if k == 10 or seed == 0 else {}
            make_run(root / f"k{k}" / f"seed{seed}", seed, [[0.0] * 4, [0.2] * 4, finals], config, results)
    built = report.build_report([root / "k*"], by="network.num_components", bootstrap_reps=REPS)
    k3, k10 = built.groups
    assert (k3.label, k10.label) == ("3", "10") and k3.seeds == k10.seeds == 2  # numeric order, not "10" < "3"
    assert k10.final_mean == pytest.approx(np.mean([np.mean(scored[0]), np.mean(scored[1])]))
    assert k10.evaluation == "paco protocol, 50 ep/task"
    assert k3.final_mean == pytest.approx(np.mean([np.mean(scored[0]), FINALS[1].mean()]))
    assert k3.evaluation == "mixed: 1× paco protocol, 50 ep/task; 1× training eval, 10 ep/task"
    assert "| 10 | 2 |" in built.markdown and "| network.num_components | seeds |" in built.markdown


def test_bad_paths_and_fields_are_errors(tmp_path):
    four_seeds(tmp_path)
    with pytest.raises(ValueError, match="valid fields include: network.num_components"):
        report.build_report([tmp_path], by="network.num_compnents")
    with pytest.raises(ValueError, match="nowhere-.* matches no file or directory"):
        report.build_report([tmp_path / "nowhere-*"])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="holds no run directory"):
        report.build_report([tmp_path / "empty"])


def test_seed_curves_count_each_seed_where_it_has_data():
    curve = curves.over_seeds([([10, 20, 30], [0.2, 0.4, 0.9]), ([10, 20], [0.4, 0.8])])
    assert curve.steps == (10, 20, 30) and curve.seeds == (2, 2, 1)
    assert curve.mean == pytest.approx((0.3, 0.6, 0.9))
    assert (curve.low, curve.high) == ((0.2, 0.4, 0.9), (0.4, 0.8, 0.9))


def test_plot_writes_figures_with_content(tmp_path):
    four_seeds(tmp_path / "runs")
    make_run(tmp_path / "runs" / "short", 7, [[1.0] * 4], config_lib.replace(PRESET, preset="pointmass-other"))
    written = curves.plot_curves([tmp_path / "runs"], out_dir=tmp_path / "out")
    assert written == [tmp_path / "out" / "curves.png", tmp_path / "out" / "per-task.png"]
    for path in written:
        pixels = imread(path)
        assert pixels.shape[0] >= 300 and pixels.shape[1] >= 400
        assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 10


def test_cli_writes_the_three_report_files(tmp_path, capsys):
    four_seeds(tmp_path / "runs")
    report.main([str(tmp_path / "runs" / "seed*"), "--out", str(tmp_path / "out"), "--bootstrap-reps", str(REPS)])
    out, err = capsys.readouterr()
    assert out == (tmp_path / "out" / "report.md").read_text() and out.startswith("# paco report")
    assert err.strip() == f"wrote {', '.join(str(tmp_path / 'out' / name) for name in report.OUTPUT_FILES)}"
    (row,) = list(csv.DictReader(open(tmp_path / "out" / "report.csv")))
    assert float(row["final_success_mean_pct"]) == pytest.approx(100 * FINALS.mean())
    assert row["seeds"] == "4" and row["group"] == "pointmass-paco"
    per_task = (tmp_path / "out" / "report-per-task.csv").read_text().splitlines()
    assert len(per_task) == 1 + len(TASKS) and per_task[1].startswith(f"preset,pointmass-paco,{TASKS[0]},4,")
