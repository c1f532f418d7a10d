"""A saved agent: the trainer's actions from the run directory alone, Meta-World's scorer against the paper
protocol on a trained policy, and clear errors for run directories it cannot load."""

import json
import math
import shutil

import jax
import metaworld.evaluation
import numpy as np
import pytest

import paco
from paco import config as config_lib
from paco import presets
from paco.checkpoint import PARAMS, CheckpointError, checkpoint_steps, directory, step_name
from paco.cli import main
from paco.config import replace
from paco.config.methods import (CAREConfig, FiLMConfig, MOOREConfig, MultiHeadConfig, PaCoConfig, SingleTaskConfig,
                                 SoftModulesConfig)
from paco.envs import make_env
from paco.envs.metaworld import make_scoring_vector_env
from paco.evaluation import SCORE_SEED_OFFSET, evaluate
from paco.trainer import Trainer, unstack


def quiet(config, total, warmup, updates=1):
    return replace(config, train={"total_env_steps": total, "warmup_env_steps": warmup, "progress": False,
                                  "updates_per_vector_step": updates,
                                  "eval_every_env_steps": 0, "log_every_env_steps": 0, "eval_episodes": 1,
                                  "replay_capacity_per_task": total})


def trained(config, run_dir):
    trainer = Trainer(config, run_dir)
    trainer.run()
    trainer.close()
    return trainer


@pytest.fixture(scope="module")
def two_tasks(tmp_path_factory):
    """PaCo (K=2, composed layers) on reach and push, a few hundred updates."""
    config = replace(quiet(presets.get("cpu-quick"), 3000, 1000), env={"suite": "reach,push"},
                     network=PaCoConfig(num_components=2, hidden=(32, 32)), sac={"batch_per_task": 16})
    run_dir = tmp_path_factory.mktemp("reach-push")
    return trained(config, run_dir), run_dir


@pytest.fixture(scope="module")
def pointmass(tmp_path_factory):
    """MT-SAC (task one-hot as network input) on the built-in point mass."""
    run_dir = tmp_path_factory.mktemp("pointmass")
    return trained(quiet(presets.get("pointmass-mtsac"), 2000, 1000), run_dir), run_dir


def observations(env, steps, seed=0):
    """(steps, T, obs_dim) observations of every task under random actions."""
    rng = np.random.default_rng(seed)
    obs, out = env.reset(), []
    for _ in range(steps):
        out.append(obs)
        obs = env.step(rng.uniform(-1, 1, (env.num_tasks, env.action_dim))).obs
    return np.stack(out)


def check_matches_trainer(trainer, agent, steps=15):
    env = make_env(trainer.config.env, seed=7)
    obs = observations(env, steps)
    env.close()
    reference = np.stack([np.asarray(trainer.exploit(unstack(trainer.policy, 0), o)) for o in obs])  # (steps, T, A)
    t = trainer.num_tasks
    # One mixed batch: every (observation, task) pair in shuffled order.
    order = np.random.default_rng(1).permutation(steps * t)
    flat_obs, flat_ids = obs.reshape(steps * t, -1)[order], np.tile(np.arange(t), steps)[order]
    expected = reference.reshape(steps * t, -1)[order]
    np.testing.assert_allclose(agent.act(flat_obs, flat_ids), expected, atol=1e-5)
    actions = agent.eval_action(np.concatenate([flat_obs, np.eye(t)[flat_ids]], axis=1))
    np.testing.assert_allclose(actions, expected, atol=1e-5)
    assert actions.shape == (steps * t, trainer.method.action_dim) and np.abs(actions).max() <= 1.0
    sampled = agent.act(flat_obs, flat_ids, jax.random.PRNGKey(0))
    assert np.abs(sampled).max() <= 1.0 and not np.allclose(sampled, expected)


def test_agent_acts_as_the_trainer_on_mixed_metaworld_tasks(two_tasks):
    trainer, run_dir = two_tasks
    agent = paco.load_agent(run_dir)
    assert agent.step == trainer.env_steps and agent.task_names == ("reach-v3", "push-v3")
    assert (agent.obs_dim, agent.action_dim) == (39, 4)
    check_matches_trainer(trainer, agent)


def test_agent_acts_as_the_trainer_on_pointmass(pointmass):
    trainer, run_dir = pointmass
    agent = paco.load_agent(run_dir)
    assert (agent.obs_dim, agent.action_dim, agent.num_tasks) == (4, 2, 4)
    check_matches_trainer(trainer, agent)


def test_metaworld_scorer_runs_the_agent_on_one_hot_observations(two_tasks):
    _, run_dir = two_tasks
    agent = paco.load_agent(run_dir)
    envs = make_scoring_vector_env(agent.task_names, seed=3, max_episode_steps=150)
    assert envs.observation_space.shape == (2, 39 + 2)
    mean, _, per_task, returns = metaworld.evaluation.evaluation(agent, envs, num_episodes=2)
    envs.close()
    assert set(per_task) == {"reach-v3", "push-v3"} and all(len(r) == 2 for r in returns.values())
    assert 0.0 <= mean <= 1.0


def test_evaluate_command_writes_both_protocols(two_tasks, capsys):
    trainer, run_dir = two_tasks
    for protocol in ("paco", "metaworld"):
        assert main(["evaluate", str(run_dir), "--episodes", "2", "--protocol", protocol]) == 0
        result = json.loads((run_dir / f"eval-{protocol}-{trainer.env_steps}.json").read_text())
        assert result["protocol"] == protocol and result["episodes"] == 2
        assert result["seed"] not in (trainer.config.seed, trainer.config.seed + 10_000)
        assert list(result["success"]) == ["reach-v3", "push-v3"]
        assert "reach-v3" in capsys.readouterr().out


@pytest.mark.parametrize("network", [
    MultiHeadConfig(hidden=(16, 16)), SingleTaskConfig(hidden=(16, 16)), FiLMConfig(hidden=(16, 16)),
    SoftModulesConfig(trunk_width=16, gating_width=16, module_width=16), CAREConfig(hidden=(16, 16)),
    MOOREConfig(hidden=(16, 16))],
    ids=lambda network: network.name)
def test_every_method_loads_as_an_agent_that_metaworld_scores(network, tmp_path):
    config = replace(quiet(presets.get("cpu-quick"), 600, 300), env={"suite": "reach,push"}, network=network,
                     sac={"batch_per_task": 8})
    trainer = trained(config, tmp_path)
    agent = paco.load_agent(tmp_path)
    assert agent.config.network == network
    check_matches_trainer(trainer, agent, steps=3)
    envs = make_scoring_vector_env(agent.task_names, seed=3, max_episode_steps=150)
    mean, _, per_task, returns = metaworld.evaluation.evaluation(agent, envs, num_episodes=1)
    envs.close()
    assert set(per_task) == {"reach-v3", "push-v3"} and all(len(r) == 1 for r in returns.values())


def test_metaworld_protocol_on_pointmass_is_a_usage_error(pointmass, capsys):
    _, run_dir = pointmass
    assert main(["evaluate", str(run_dir), "--protocol", "metaworld"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "needs a Meta-World suite" in err


# -- Meta-World's scorer against the paper's protocol, on a policy that has learned reach ----------------------
EPISODES = 50
RANDOM_SUCCESS = 0.0  # random actions on reach-v3: 0 successes in 100 full-length episodes


@pytest.fixture(scope="module")
def reach(tmp_path_factory):
    """MT-SAC on reach with random goals: about half the episodes succeed after 20k env steps."""
    config = replace(quiet(presets.get("cpu-quick"), 20_000, 1000, updates=2), env={"suite": "reach"},
                     network={"hidden": (128, 128)}, sac={"batch_per_task": 128, "alpha_lr": 1e-3})
    run_dir = tmp_path_factory.mktemp("reach")
    trained(config, run_dir)
    return paco.load_agent(run_dir)


def paper_success(agent, seed):
    env = make_env(agent.config.env, seed)
    result = evaluate(env, lambda obs: agent.act(obs, np.arange(env.num_tasks)), EPISODES)
    env.close()
    return result["success"]["reach-v3"]


def metaworld_success(agent, seed):
    envs = make_scoring_vector_env(agent.task_names, seed, agent.config.env.max_episode_steps)
    success = metaworld.evaluation.evaluation(agent, envs, num_episodes=EPISODES)[2]["reach-v3"]
    envs.close()
    return success


@pytest.mark.slow  # about 3 CPU minutes of training
def test_metaworld_scorer_agrees_with_the_paper_protocol(reach):
    seed = reach.config.seed + SCORE_SEED_OFFSET
    paper, metaworld_same_goals, metaworld_other_goals = (
        paper_success(reach, seed), metaworld_success(reach, seed), metaworld_success(reach, seed + 1))
    assert min(paper, metaworld_other_goals) > RANDOM_SUCCESS + 0.2
    # Same seed: episode k has the same goal under both protocols (one goal draw per reset), the policy and
    # the physics are deterministic, and both count success at the first successful step; so episode by
    # episode the outcomes are the same, and the rates equal.
    assert metaworld_same_goals == paper
    # Other goals: two independent binomial estimates from N episodes each. Under a common rate p,
    # Var(p1 - p2) = 2 p (1 - p) / N; with p estimated by the pooled rate, 3 standard deviations.
    p = (paper + metaworld_other_goals) / 2
    assert abs(paper - metaworld_other_goals) <= 3 * math.sqrt(2 * p * (1 - p) / EPISODES)


# -- errors -------------------------------------------------------------------------------------------------------
def test_run_directory_without_checkpoint(tmp_path, capsys):
    config_lib.save(presets.get("pointmass-mtsac"), tmp_path / "config.json")
    with pytest.raises(CheckpointError, match="no checkpoint"):
        paco.load_agent(tmp_path)
    assert main(["evaluate", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no checkpoint" in err


def test_corrupt_checkpoint(pointmass, tmp_path, capsys):
    _, source = pointmass
    run_dir = tmp_path / "run"
    shutil.copytree(source, run_dir)
    (step,) = checkpoint_steps(run_dir)
    assert paco.load_agent(run_dir, checkpoint=step).step == step
    params = directory(run_dir) / step_name(step) / PARAMS
    params.write_bytes(params.read_bytes()[:-10])
    with pytest.raises(CheckpointError, match="corrupt"):
        paco.load_agent(run_dir)
    assert main(["evaluate", str(run_dir), "--checkpoint", str(step)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "corrupt" in err
