"""The real benchmark: MT10 construction, goals, episode and success bookkeeping, a short training run."""

import json

import numpy as np
import pytest

from paco import presets
from paco.config import replace
from paco.envs.metaworld import MetaWorldMultiTask, suite_task_names
from paco.evaluation import evaluate
from paco.trainer import Trainer


@pytest.fixture(scope="module")
def mt10():
    env = MetaWorldMultiTask(suite_task_names("MT10"), seed=0, max_episode_steps=20)
    yield env
    env.close()


def test_suite_names():
    assert suite_task_names("MT10")[:3] == ("reach-v3", "push-v3", "pick-place-v3")
    assert len(suite_task_names("MT50")) == 50
    assert suite_task_names("reach, push,peg-insert-side-v3") == ("reach-v3", "push-v3", "peg-insert-side-v3")
    with pytest.raises(ValueError, match="unknown Meta-World task reachh-v3"):
        suite_task_names("reachh")


def test_mt10_random_goals_are_distinct_across_sub_envs_and_resets(mt10):
    assert mt10.num_tasks == 10 and mt10.obs_dim == 39 and mt10.action_dim == 4
    goals = []
    obs = mt10.reset()
    assert obs.shape == (10, 39) and obs.dtype == np.float32
    for _ in range(3):
        goals.append(mt10.goals())
        for _ in range(20):
            mt10.step(np.zeros((10, 4)))
    # Within one reset every sub-env has its own goal; across resets each sub-env's goal changes.
    for g in goals:
        assert len(np.unique(g.round(6), axis=0)) == 10
    changed = [not np.allclose(goals[0][i], goals[1][i]) or not np.allclose(goals[1][i], goals[2][i])
               for i in range(10)]
    assert all(changed)
    # Sub-envs are seeded independently: the goal indices are not all the same draw.
    again = MetaWorldMultiTask(suite_task_names("reach,reach-wall"), seed=5, max_episode_steps=20)
    other = MetaWorldMultiTask(suite_task_names("reach,reach-wall"), seed=6, max_episode_steps=20)
    again.reset(), other.reset()
    assert not np.allclose(again.goals()[0], other.goals()[0])
    again.close(), other.close()


def test_fixed_goals_stay_fixed():
    env = MetaWorldMultiTask(suite_task_names("reach,push"), seed=1, max_episode_steps=10, random_goals=False)
    env.reset()
    first = env.goals()
    for _ in range(25):
        env.step(np.zeros((2, 4)))
    np.testing.assert_allclose(env.goals(), first)
    env.close()


def test_episode_bookkeeping_truncation_and_final_observation(mt10):
    mt10.reset()
    rng = np.random.default_rng(0)
    for t in range(1, 21):
        step = mt10.step(rng.uniform(-1, 1, (10, 4)))
        assert not step.terminated.any()
        assert step.truncated.all() == (t == 20)
    # At the time limit the returned obs is already the next episode's first; final_obs is the true last one.
    assert np.abs(step.final_obs - step.obs).max() > 1e-3
    assert step.reward.shape == (10,) and np.isfinite(step.reward).all()


def test_success_is_counted_when_it_fires_at_any_step():
    """Meta-World's scripted reach policy succeeds; our step flags and the paper protocol must see it."""
    from metaworld.policies import SawyerReachV3Policy

    env = MetaWorldMultiTask(suite_task_names("reach"), seed=3, max_episode_steps=100)
    policy = SawyerReachV3Policy()
    result = evaluate(env, lambda obs: np.stack([policy.get_action(o) for o in obs]), episodes=3)
    assert result["success"] == {"reach-v3": 1.0}
    still = evaluate(env, lambda obs: np.zeros((1, 4)), episodes=3)
    assert still["success"] == {"reach-v3": 0.0}
    env.close()


def test_a_few_hundred_training_steps_on_mt10(tmp_path):
    config = replace(presets.get("mt10-rand-mtsac"),
                     env={"max_episode_steps": 50},
                     network={"hidden": (32, 32)},
                     sac={"batch_per_task": 16},
                     train={"total_env_steps": 4000, "warmup_env_steps": 2000, "eval_every_env_steps": 4000,
                            "log_every_env_steps": 1000, "eval_episodes": 1, "replay_capacity_per_task": 1000,
                            "progress": False})
    trainer = Trainer(config, tmp_path)
    [result] = trainer.run()
    # One update per vector step from the step that completes the 2000 warm-up transitions on.
    assert int(trainer.seed_state(0).updates) == (4000 - 2000) // 10 + 1
    lines = [json.loads(line) for line in open(tmp_path / "metrics.jsonl")]
    evals = [line for line in lines if "eval/success_rate" in line]
    assert len(evals) == 1 and evals[0]["env_steps"] == 4000
    assert {k.split("/")[-1] for k in evals[0] if k.startswith("eval/success/")} == set(suite_task_names("MT10"))
    assert result["success_rate"] == pytest.approx(np.mean(list(result["success"].values())))
    train_lines = [line for line in lines if "train/success_rate" in line]
    assert train_lines and all(0 <= line["train/success_rate"] <= 1 for line in train_lines)
    saved = json.load(open(tmp_path / "config.json"))
    assert saved["env"]["suite"] == "MT10" and saved["env"]["reward_version"] == "v2"
    assert list((tmp_path / "tb").iterdir())
    assert (tmp_path / "success.png").stat().st_size > 0
