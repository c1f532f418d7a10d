"""Environment construction by suite name."""

from __future__ import annotations

import dataclasses

import numpy as np

from paco.config import EnvConfig
from paco.envs.base import MultiTaskEnv, Transition
from paco.envs.pointmass import PointMass, task_angle

POINTMASS_TASKS = 4
METAWORLD_OBS_DIM, METAWORLD_ACTION_DIM = 39, 4  # every Meta-World 3 task (tests check the built envs)


def pointmass_tasks(suite: str) -> tuple[str, ...] | None:
    """The point-mass tasks a suite names ('pointmass': the four evenly spaced ones; 'pointmass:rot0,rot45': those),
    or None for a Meta-World suite."""
    name, _, listed = suite.partition(":")
    if name != "pointmass":
        return None
    if not listed:
        return PointMass.names(POINTMASS_TASKS)
    tasks = tuple(t.strip() for t in listed.split(","))
    for task in tasks:
        task_angle(task)
    if len(set(tasks)) != len(tasks):
        raise ValueError(f"task listed twice in {suite!r}")
    return tasks


def task_names(config: EnvConfig) -> tuple[str, ...]:
    """Task names of a suite without building it (validates the suite name)."""
    tasks = pointmass_tasks(config.suite)
    if tasks is not None:
        return tasks
    from paco.envs.metaworld import suite_task_names

    return suite_task_names(config.suite)


def env_dims(config: EnvConfig) -> tuple[int, int]:
    """Observation and action sizes of a suite without building it (what a saved agent is rebuilt with)."""
    if pointmass_tasks(config.suite) is not None:
        env = PointMass(POINTMASS_TASKS)
        return env.obs_dim, env.action_dim
    return METAWORLD_OBS_DIM, METAWORLD_ACTION_DIM


def make_env(config: EnvConfig, seed: int, stream: int = 0) -> MultiTaskEnv:
    """The suite's vector env; `stream` numbers the run's random stream (it changes at every stop-relaunch)."""
    tasks = pointmass_tasks(config.suite)
    if tasks is not None:
        env = PointMass(POINTMASS_TASKS, seed=seed, max_episode_steps=config.max_episode_steps,
                        random_goals=config.random_goals, tasks=tasks)
    else:
        from paco.envs.metaworld import MetaWorldMultiTask, suite_task_names

        env = MetaWorldMultiTask(suite_task_names(config.suite), seed=seed,
                                 max_episode_steps=config.max_episode_steps,
                                 random_goals=config.random_goals, reward_version=config.reward_version)
    if config.explode_task >= 0:
        env = ExplodingReward(env, config.explode_task, config.explode_after_env_steps, config.explode_scale,
                              config.explode_probability, (seed, stream))
    return env


class ExplodingReward:
    """Scales one task's reward from some env step on (every step, or each with a probability): the failure
    that Reset and stop-relaunch are meant to survive.

    Each draw is a function of the seed, the random stream and the env step alone, so resuming replays the
    same draws and a relaunched run (a new stream) draws anew.
    """

    def __init__(self, env: MultiTaskEnv, task: int, after_env_steps: int, scale: float, probability: float = 1.0,
                 stream: tuple[int, int] = (0, 0)):
        if not 0 <= task < env.num_tasks:
            raise ValueError(f"explode_task {task} is not a task index (0..{env.num_tasks - 1})")
        self.env, self.task, self.after, self.scale = env, task, after_env_steps, scale
        self.probability, self.stream = probability, stream
        self.env_steps = 0

    def __getattr__(self, name):
        return getattr(self.env, name)

    def step(self, actions: np.ndarray) -> Transition:
        out = self.env.step(actions)
        self.env_steps += self.env.num_tasks
        if self.env_steps <= self.after:
            return out
        if self.probability < 1 and np.random.default_rng((*self.stream, self.env_steps)).random() >= self.probability:
            return out
        reward = out.reward.copy()
        reward[self.task] *= self.scale
        return dataclasses.replace(out, reward=reward)

    def get_state(self) -> dict:
        return {"inner": self.env.get_state(), "env_steps": self.env_steps}

    def set_state(self, state: dict) -> None:
        self.env.set_state(state["inner"])
        self.env_steps = state["env_steps"]


__all__ = ["METAWORLD_ACTION_DIM", "METAWORLD_OBS_DIM", "MultiTaskEnv", "Transition", "env_dims", "make_env",
           "pointmass_tasks", "task_names"]
