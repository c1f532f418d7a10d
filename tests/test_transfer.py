"""Transfer (`paco transfer`): a trained run's Φ kept frozen bit for bit, only a new task's w and temperature learn."""

import dataclasses

import jax
import numpy as np
import pytest

from paco import presets
from paco.analysis.transfer import transfer_config
from paco.checkpoint import restore_params
from paco.config import EnvConfig, replace
from paco.envs import make_env
from paco.evaluation import evaluate
from paco.trainer import train

QUIET = {"progress": False}


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    """PaCo (K = 2) trained on the four evenly spaced point-mass tasks: rot0, rot90, rot180, rot270."""
    out = tmp_path_factory.mktemp("transfer") / "source"
    config = replace(presets.get("pointmass-paco"), out=str(out),
                     train={"total_env_steps": 24_000, "eval_every_env_steps": 24_000, "eval_episodes": 20, **QUIET})
    train(config, out)
    return out


def test_a_new_task_learns_on_the_frozen_parameter_set(source, tmp_path):
    config = transfer_config(source, "rot45", out=str(tmp_path / "rot45"))
    assert config.env.suite == "pointmass:rot45" and config.transfer.source == str(source.resolve())
    assert config.train.total_env_steps == 6_000  # the source's budget per task
    result = train(replace(config, train={"eval_episodes": 20, **QUIET}), tmp_path / "rot45")

    _, before, _ = restore_params(source)
    _, after, _ = restore_params(tmp_path / "rot45")
    for part in ("actor", "critic"):
        for old, new in zip(jax.tree.leaves(before[part]), jax.tree.leaves(after[part]), strict=True):
            assert np.array_equal(old, new)  # bit for bit
    assert after["w"].shape == (1, 2) and not np.allclose(after["w"][0], before["w"].mean(0))  # w learned
    assert after["log_alpha"][0] != 0.0  # and its temperature

    # A random policy on the same task, same protocol (20 episodes of 50 steps), for comparison.
    rng = np.random.default_rng(0)
    env = make_env(EnvConfig(suite="pointmass:rot45", max_episode_steps=50), seed=123)
    random_policy = evaluate(env, lambda obs: rng.uniform(-1, 1, (1, 2)), 20)["success_rate"]
    assert result["success_rate"] >= max(0.6, random_policy + 0.3), (result, random_policy)


def test_from_scratch_is_the_same_run_with_nothing_transferred(source):
    transfer = transfer_config(source, "rot45")
    scratch = transfer_config(source, "rot45", from_scratch=True)
    assert scratch.transfer.source == "" and scratch.preset == "pointmass-paco-scratch-rot45"
    assert transfer.preset == "pointmass-paco-transfer-rot45"
    assert dataclasses.replace(scratch, transfer=transfer.transfer, preset=transfer.preset, out=transfer.out) \
        == transfer


def test_what_cannot_transfer_is_refused_before_anything_runs(source, tmp_path):
    with pytest.raises(ValueError, match="unknown point-mass task 'push'"):
        transfer_config(source, "push")
    with pytest.raises(ValueError, match="no checkpoint at step 7"):
        transfer_config(source, "rot45", source_step=7)
    mtsac = tmp_path / "mtsac"
    train(replace(presets.get("pointmass-mtsac"), out=str(mtsac), network={"hidden": (8,)},
                  train={"total_env_steps": 200, "warmup_env_steps": 100, "eval_episodes": 1, **QUIET}), mtsac)
    with pytest.raises(ValueError, match="method 'mtsac' has no task-level parameters"):
        transfer_config(mtsac, "rot45")
