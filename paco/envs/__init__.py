"""Environment construction by suite name."""

from __future__ import annotations

import dataclasses

import numpy as np

from paco.config import EnvConfig
from paco.envs.base import MultiTaskEnv, Transition
from paco.envs.pointmass import PointMass

POINTMASS_TASKS = 4


def task_names(config: EnvConfig) -> tuple[str, ...]:
    """Task names of a suite without building it (validates the suite name)."""
    if config.suite == "pointmass":
        return PointMass(POINTMASS_TASKS).task_names
    from paco.envs.metaworld import suite_task_names

    return suite_task_names(config.suite)


def make_env(config: EnvConfig, seed: int) -> MultiTaskEnv:
    if config.suite == "pointmass":
        env = PointMass(POINTMASS_TASKS, seed=seed, max_episode_steps=config.max_episode_steps,
                        random_goals=config.random_goals)
    else:
        from paco.envs.metaworld import MetaWorldMultiTask, suite_task_names

        env = MetaWorldMultiTask(suite_task_names(config.suite), seed=seed,
                                 max_episode_steps=config.max_episode_steps,
                                 random_goals=config.random_goals, reward_version=config.reward_version)
    if config.explode_task >= 0:
        env = ExplodingReward(env, config.explode_task, config.explode_after_env_steps, config.explode_scale)
    return env


class ExplodingReward:
    """Scales one task's reward from some env step on: the failure Reset is meant to survive."""

    def __init__(self, env: MultiTaskEnv, task: int, after_env_steps: int, scale: float):
        if not 0 <= task < env.num_tasks:
            raise ValueError(f"explode_task {task} is not a task index (0..{env.num_tasks - 1})")
        self.env, self.task, self.after, self.scale = env, task, after_env_steps, scale
        self.env_steps = 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, actions: np.ndarray) -> Transition:
        out = self.env.step(actions)
        self.env_steps += self.env.num_tasks
        if self.env_steps <= self.after:
            return out
        reward = out.reward.copy()
        reward[self.task] *= self.scale
        return dataclasses.replace(out, reward=reward)

    def get_state(self) -> dict:
        return {"inner": self.env.get_state(), "env_steps": self.env_steps}

    def set_state(self, state: dict) -> None:
        self.env.set_state(state["inner"])
        self.env_steps = state["env_steps"]


__all__ = ["MultiTaskEnv", "Transition", "make_env", "task_names"]
