"""Bad input to `paco train`: exit code 2, exactly one line on stderr naming the problem, nothing written."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from paco import checkpoint, presets
from paco.cli import main
from paco.config import replace
from paco.trainer import Trainer

TINY = ["--preset", "pointmass-mtsac", "--network.hidden", "16", "--sac.batch-per-task", "8",
        "--train.total-env-steps", "400", "--train.warmup-env-steps", "200", "--train.eval-episodes", "1",
        "--train.checkpoint-every-env-steps", "200", "--train.replay-capacity-per-task", "400",
        "--train.no-progress"]


def tree(root: Path) -> dict:
    """Every file under root with a hash of its content: what 'nothing changed' compares."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    """A tiny finished run (its config as `paco train TINY` would build it), trained in-process."""
    run_dir = tmp_path_factory.mktemp("finished")
    config = replace(presets.get("pointmass-mtsac"), out=str(run_dir), network={"hidden": (16,)},
                     sac={"batch_per_task": 8},
                     train={"total_env_steps": 400, "warmup_env_steps": 200, "eval_episodes": 1,
                            "checkpoint_every_env_steps": 200, "replay_capacity_per_task": 400, "progress": False})
    trainer = Trainer(config, run_dir)
    trainer.run()
    trainer.close()
    return run_dir


def fails_cleanly(args, capsys, watched: Path, message: str) -> None:
    before = tree(watched)
    assert main(["train", *map(str, args)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("paco: error: ") and message in err, err
    assert "Traceback" not in err
    assert tree(watched) == before


@pytest.mark.parametrize("args, message", [
    (["--preset", "nope"], "unknown preset 'nope'"),
    (["--network.method", "paco"], "Unrecognized options: --network.method"),  # the preset picks the method
    (["--env.suite", "MT11"], "unknown Meta-World task MT11"),
    (["--env.suite", "reach,fly"], "unknown Meta-World task fly-v3"),
    (["--train.total-env-steps", "0"], "train.total_env_steps must be positive, got 0"),
    (["--total-steps", "-5"], "train.total_env_steps must be positive, got -5"),
    (["--train.total-env-steps", "lots"], "--train.total-env-steps: invalid literal for int() with base 10: 'lots'"),
    (["--sac.batch-per-task", "0"], "sac.batch_per_task must be positive, got 0"),
    (["--sac.batch-per-task", "1.5"], "--sac.batch-per-task: invalid literal for int()"),
    (["--preset", "pointmass-paco", "--network.num-components", "0"], "network.num_components must be positive, got 0"),
    (["--preset", "pointmass-paco", "--network.num-components", "five"],
     "--network.num-components: invalid literal for int()"),
    (["--network.num-components", "2"], "Unrecognized options: --network.num-components"),  # MT-SAC has no K
    (["--stability.max-relaunches", "-1"], "stability.max_relaunches must not be negative, got -1"),
    (["--optim.surgery", "cagrad"], "invalid choice 'cagrad' for argument '--optim.surgery'"),
    (["--optim.gradnorm-lr", "0"], "optim.gradnorm_lr must be positive, got 0.0"),
    (["--optim.gradnorm-alpha", "-1"], "optim.gradnorm_alpha must not be negative, got -1.0"),
    (["--stability.loss-threshold", "-3"], "stability.loss_threshold must be positive, got -3.0"),
    (["--stability.loss-threshold", "nan"], "stability.loss_threshold must be positive, got nan"),
    (["--stability.loss-threshold", "big"], "--stability.loss-threshold: could not convert string to float"),
    (["--train.keep-checkpoints", "0"], "train.keep_checkpoints must be positive, got 0"),
    (["--preset", "pointmass-paco", "--network.w-init", "onehot", "--network.num-components", "3"],
     "network.w_init onehot gives every task its own component: it needs network.num_components = 4 "
     "(the number of tasks), got 3"),
    (["--no-such-flag", "1"], "Unrecognized options: --no-such-flag"),
])
def test_bad_settings(args, message, tmp_path, capsys):
    out = tmp_path / "run"
    fails_cleanly([*TINY, *args, "--out", out], capsys, tmp_path, message)
    assert not out.exists()


def test_output_directory_holding_another_run(finished_run, capsys):
    fails_cleanly([*TINY, "--out", finished_run], capsys, finished_run,
                  f"{finished_run} holds another run; continue with --resume {finished_run} or replace with --overwrite")


def test_resume_without_checkpoint(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "no-checkpoint"
    run_dir.mkdir()
    (run_dir / "config.json").write_bytes((finished_run / "config.json").read_bytes())
    fails_cleanly(["--resume", run_dir], capsys, tmp_path, f"cannot resume: no checkpoint in {run_dir}")
    fails_cleanly(["--resume", tmp_path / "missing"], capsys, tmp_path, "is not a run directory (no config.json)")


def test_resume_with_other_config(finished_run, capsys):
    fails_cleanly(["--resume", finished_run, "--seed", "7"], capsys, finished_run,
                  "its config differs from the one given (seed: 7 != 0)")
    fails_cleanly(["--resume", finished_run, "--preset", "pointmass-paco"], capsys, finished_run,
                  "network.method: 'paco' != 'mtsac'")


def test_resume_checkpoint_of_another_format(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "old-format"
    subprocess.run(["cp", "-r", finished_run, run_dir], check=True)
    for step in checkpoint.checkpoint_steps(run_dir):
        manifest = run_dir / "checkpoints" / checkpoint.step_name(step) / "manifest.json"
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "format": 0}))
    fails_cleanly(["--resume", run_dir], capsys, run_dir,
                  f"has format version 0; this paco reads version {checkpoint.FORMAT_VERSION}")


def test_overwrite_replaces_the_run(finished_run, tmp_path, capsys):
    run_dir = tmp_path / "replaced"
    subprocess.run(["cp", "-r", finished_run, run_dir], check=True)
    (run_dir / "checkpoints" / checkpoint.step_name(999)).mkdir()
    assert main(["train", *TINY, "--out", str(run_dir), "--overwrite", "--seed", "3"]) == 0
    assert json.loads((run_dir / "config.json").read_text())["seed"] == 3
    assert checkpoint.checkpoint_steps(run_dir) == [200, 400]
    assert (run_dir / "metrics.jsonl").read_bytes() != (finished_run / "metrics.jsonl").read_bytes()


def test_one_line_from_a_real_process(tmp_path):
    """No traceback or tyro box reaches the terminal of `python -m paco.cli`."""
    result = subprocess.run([sys.executable, "-m", "paco.cli", "train", *TINY, "--sac.batch-per-task", "x",
                             "--out", str(tmp_path / "run")], capture_output=True, text=True,
                            env={**os.environ, "COLUMNS": "60"})
    assert result.returncode == 2
    assert result.stderr.splitlines() == [
        "paco: error: Error parsing --sac.batch-per-task: invalid literal for int() with base 10: 'x'"]
    assert not (tmp_path / "run").exists()
