"""The paper's evaluation protocol: deterministic policy, N episodes per task, success if it fired at any step."""

from __future__ import annotations

from typing import Callable

import numpy as np

from paco.envs import MultiTaskEnv


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
