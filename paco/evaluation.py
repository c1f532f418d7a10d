"""Evaluation of a policy on its suite.

Two protocols: the paper's (`evaluate`: deterministic policy, N full-length episodes per task, success if it
fired at any step) and Meta-World's own scorer (`metaworld.evaluation.evaluation`: terminate-on-success
switched on, success read from `final_info` at the end of each episode). `score_run` applies either to a
saved agent.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal

import numpy as np

from paco.envs import MultiTaskEnv, make_env, pointmass_tasks

if TYPE_CHECKING:
    from paco.agent import Agent

PROTOCOLS = ("paco", "metaworld")
SCORE_SEED_OFFSET = 20_000  # scoring envs differ from the training (seed) and in-training eval (seed + 10k) ones


def evaluate(env: MultiTaskEnv, act: Callable[[np.ndarray], np.ndarray], episodes: int) -> dict:
    """Run every task's env until it has `episodes` episodes; returns per-task success rates and returns."""
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    t = env.num_tasks
    successes = [[] for _ in range(t)]
    returns = [[] for _ in range(t)]
    episode_success = np.zeros(t, bool)
    episode_return = np.zeros(t)
    obs = env.reset()
    while min(len(s) for s in successes) < episodes:
        step = env.step(act(obs))
        episode_success |= step.success
        episode_return += step.reward
        for i in np.flatnonzero(step.terminated | step.truncated):
            successes[i].append(bool(episode_success[i]))
            returns[i].append(float(episode_return[i]))
            episode_success[i], episode_return[i] = False, 0.0
        obs = step.obs
    success = {name: float(np.mean(s[:episodes])) for name, s in zip(env.task_names, successes)}
    mean_return = {name: float(np.mean(r[:episodes])) for name, r in zip(env.task_names, returns)}
    return {"success": success, "return": mean_return, "success_rate": float(np.mean(list(success.values())))}


def success_table(success: dict[str, float]) -> str:
    """A per-task success table for the terminal."""
    width = max(len("task"), *(len(n) for n in success))
    lines = [f"{'task':<{width}}  success", f"{'-' * width}  -------"]
    lines += [f"{name:<{width}}  {100 * rate:6.1f}%" for name, rate in success.items()]
    lines.append(f"{'mean':<{width}}  {100 * np.mean(list(success.values())):6.1f}%")
    return "\n".join(lines)


def score(agent: Agent, protocol: Literal["paco", "metaworld"], episodes: int, seed: int) -> dict:
    """Deterministic success per task of a saved agent on its own suite (same tasks, goals, episode length)."""
    env_config = dataclasses.replace(agent.config.env, explode_task=-1)  # score the task, not the perturbation
    if protocol == "paco":
        env = make_env(env_config, seed)
        try:
            return evaluate(env, lambda obs: agent.act(obs, np.arange(env.num_tasks)), episodes)
        finally:
            env.close()
    if protocol != "metaworld":
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    if pointmass_tasks(env_config.suite) is not None:
        raise ValueError("the metaworld protocol needs a Meta-World suite; this run trained on pointmass")
    if episodes < 1:
        raise ValueError(f"episodes must be positive, got {episodes}")
    import metaworld.evaluation

    from paco.envs.metaworld import make_scoring_vector_env

    envs = make_scoring_vector_env(agent.task_names, seed, env_config.max_episode_steps, env_config.random_goals,
                                   env_config.reward_version)
    try:
        _, _, success, returns = metaworld.evaluation.evaluation(agent, envs, num_episodes=episodes)
    finally:
        envs.close()
    success = {name: float(success[name]) for name in agent.task_names}
    mean_return = {name: float(np.mean(returns[name])) for name in agent.task_names}
    return {"success": success, "return": mean_return, "success_rate": float(np.mean(list(success.values())))}


def score_run(run_dir: str | Path, episodes: int | None = None, protocol: Literal["paco", "metaworld"] = "paco",
              checkpoint: int | None = None) -> tuple[dict, Path]:
    """Score a run's saved agent and write `eval-<protocol>-<step>.json` into the run directory."""
    from paco.agent import load_agent

    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; known: {', '.join(PROTOCOLS)}")
    agent = load_agent(run_dir, checkpoint)
    episodes = agent.config.train.eval_episodes if episodes is None else episodes
    seed = agent.config.seed + SCORE_SEED_OFFSET
    result = {"protocol": protocol, "step": agent.step, "episodes": episodes, "seed": seed,
              **score(agent, protocol, episodes, seed)}
    path = Path(run_dir) / f"eval-{protocol}-{agent.step}.json"
    with open(path, "w") as f:
        json.dump(result, f, indent=2)
    return result, path
