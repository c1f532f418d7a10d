"""A tiny multi-task environment in plain numpy: a point mass that must reach a goal.

Tasks differ in where their goals lie and in how actions move the mass: task i rotates the commanded
velocity by its own angle, so tasks whose angles are 180 degrees apart want opposite actions in the same
state (conflicting gradients for a shared network). SAC learns it within a couple of CPU minutes, which
makes it the environment the tests learn on.
"""

from __future__ import annotations

import re

import numpy as np

from paco.envs.base import Transition

SUCCESS_RADIUS = 0.1
STEP_SIZE = 0.1
NUM_GOALS = 50


def task_angle(name: str) -> int:
    """The rotation of task 'rot<degrees>' (0 <= degrees < 360); anything else is a ValueError."""
    match = re.fullmatch(r"rot(\d+)", name)
    if not match or int(match.group(1)) >= 360:
        raise ValueError(f"unknown point-mass task {name!r}: tasks are rot<degrees>, 0 <= degrees < 360 (e.g. rot45)")
    return int(match.group(1))


class PointMass:
    """`num_tasks` point masses in the square [-1, 1]^2, one per task, stepped together.

    Observation: position (2), goal (2). Action: a velocity command in [-1, 1]^2.
    Reward: minus the distance to the goal (dense). Success: within SUCCESS_RADIUS of the goal.
    """

    def __init__(self, num_tasks: int = 4, seed: int = 0, max_episode_steps: int = 50,
                 random_goals: bool = True, tasks: tuple[str, ...] | None = None):
        """`num_tasks` evenly spaced directions, or the named `tasks` (rot<degrees>, any whole angle)."""
        if num_tasks < 1:
            raise ValueError(f"pointmass needs at least one task, got {num_tasks}")
        evenly_spaced = self.names(num_tasks)
        self.task_names = evenly_spaced if tasks is None else tuple(tasks)
        self.num_tasks_ = len(self.task_names)
        self.obs_dim, self.action_dim = 4, 2
        self.max_episode_steps = max_episode_steps
        self.random_goals = random_goals
        self.rng = np.random.default_rng(seed)
        # Each task's goals lie in a disc in its own direction, pre-sampled as in Meta-World. The evenly spaced
        # tasks draw theirs first, so that each of them keeps its goals in any suite it is part of.
        others = [name for name in self.task_names if name not in evenly_spaced]
        discs = dict(zip(evenly_spaced, self._goal_discs(evenly_spaced)))
        discs.update(zip(others, self._goal_discs(others)))
        self.goal_sets = np.stack([discs[name] for name in self.task_names])
        angles = np.deg2rad([task_angle(name) for name in self.task_names])
        cos, sin = np.cos(angles), np.sin(angles)
        self.rotations = np.stack([np.stack([cos, -sin], -1), np.stack([sin, cos], -1)], -2)
        self.goal_index = np.zeros(self.num_tasks, dtype=np.int64)
        self.pos = np.zeros((self.num_tasks, 2))
        self.elapsed = np.zeros(self.num_tasks, dtype=np.int64)

    def _goal_discs(self, names) -> np.ndarray:
        """NUM_GOALS goals per task, uniform in a disc of radius 0.3 centred 0.5 away in the task's direction."""
        angles = np.deg2rad([task_angle(name) for name in names])
        centres = 0.5 * np.stack([np.cos(angles), np.sin(angles)], -1).reshape(-1, 2)
        radius = 0.3 * np.sqrt(self.rng.uniform(size=(len(names), NUM_GOALS, 1)))
        phase = self.rng.uniform(0, 2 * np.pi, size=(len(names), NUM_GOALS))
        return centres[:, None] + radius * np.stack([np.cos(phase), np.sin(phase)], -1)

    @staticmethod
    def _angles_deg(num_tasks: int) -> np.ndarray:
        return np.arange(num_tasks) * 360.0 / num_tasks

    @classmethod
    def names(cls, num_tasks: int) -> tuple[str, ...]:
        """Names of `num_tasks` evenly spaced tasks: rot<angle in degrees>."""
        return tuple(f"rot{int(round(a))}" for a in cls._angles_deg(num_tasks))

    @property
    def num_tasks(self) -> int:
        return self.num_tasks_

    @property
    def goals(self) -> np.ndarray:
        return self.goal_sets[np.arange(self.num_tasks), self.goal_index]

    def _observe(self) -> np.ndarray:
        return np.concatenate([self.pos, self.goals], -1).astype(np.float32)

    def _reset_tasks(self, which: np.ndarray) -> None:
        n = int(which.sum())
        if self.random_goals:
            self.goal_index[which] = self.rng.integers(NUM_GOALS, size=n)
        self.pos[which] = self.rng.uniform(-0.2, 0.2, size=(n, 2))
        self.elapsed[which] = 0

    def reset(self) -> np.ndarray:
        self._reset_tasks(np.ones(self.num_tasks, bool))
        return self._observe()

    def step(self, actions: np.ndarray) -> Transition:
        actions = np.clip(np.asarray(actions, float), -1.0, 1.0)
        velocity = np.einsum("tij,tj->ti", self.rotations, actions)
        self.pos = np.clip(self.pos + STEP_SIZE * velocity, -1.0, 1.0)
        self.elapsed += 1
        distance = np.linalg.norm(self.pos - self.goals, axis=-1)
        reward = -distance
        success = distance < SUCCESS_RADIUS
        terminated = np.zeros(self.num_tasks, bool)
        truncated = self.elapsed >= self.max_episode_steps
        final_obs = self._observe()
        if truncated.any():
            self._reset_tasks(truncated)
        return Transition(self._observe(), reward.astype(np.float32), terminated, truncated, success, final_obs)

    def checkpointable(self) -> bool:
        """`get_state` captures everything at any step."""
        return True

    def get_state(self) -> dict:
        return {"rng": self.rng.bit_generator.state, "goal_index": self.goal_index.copy(),
                "pos": self.pos.copy(), "elapsed": self.elapsed.copy()}

    def set_state(self, state: dict) -> None:
        self.rng.bit_generator.state = state["rng"]
        self.goal_index, self.pos = state["goal_index"].copy(), state["pos"].copy()
        self.elapsed = state["elapsed"].copy()

    def close(self) -> None:
        pass
