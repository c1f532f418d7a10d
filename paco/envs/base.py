"""The interface the trainer sees: one environment per task, stepped together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np


@dataclass(frozen=True)
class Transition:
    """What one vector step returns. Row i always belongs to task i.

    `obs` already holds the first observation of a new episode where one ended (autoreset);
    `final_obs` holds the true last observation there, which is what the replay must store.
    """

    obs: np.ndarray
    reward: np.ndarray
    terminated: np.ndarray
    truncated: np.ndarray
    success: np.ndarray
    final_obs: np.ndarray


class MultiTaskEnv(Protocol):
    task_names: tuple[str, ...]
    obs_dim: int
    action_dim: int
    max_episode_steps: int

    @property
    def num_tasks(self) -> int: ...

    def reset(self) -> np.ndarray: ...

    def step(self, actions: np.ndarray) -> Transition: ...

    def checkpointable(self) -> bool:
        """Whether `get_state` now captures the env exactly (Meta-World: only at episode starts)."""

    def get_state(self) -> dict:
        """Everything needed to continue bit for bit, as JSON-able values and numpy arrays."""

    def set_state(self, state: dict) -> None: ...

    def close(self) -> None: ...
