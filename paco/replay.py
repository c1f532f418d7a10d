"""Per-task replay: one ring buffer per task; every batch draws the same number of samples from each task."""

from __future__ import annotations

import numpy as np

from paco.sac import Batch

FIELDS = ("obs", "action", "reward", "next_obs", "terminated")


class MultiTaskReplay:
    def __init__(self, num_tasks: int, capacity_per_task: int, obs_dim: int, action_dim: int, seed: int):
        if capacity_per_task < 1:
            raise ValueError(f"replay capacity must be positive, got {capacity_per_task}")
        t, c = num_tasks, capacity_per_task
        self.capacity = c
        self.data = {
            "obs": np.zeros((t, c, obs_dim), np.float32),
            "action": np.zeros((t, c, action_dim), np.float32),
            "reward": np.zeros((t, c), np.float32),
            "next_obs": np.zeros((t, c, obs_dim), np.float32),
            "terminated": np.zeros((t, c), np.float32),
        }
        self.position = 0  # every task receives one transition per vector step, so one cursor serves all
        self.size = 0
        self.rng = np.random.default_rng(seed)

    def add(self, obs, action, reward, next_obs, terminated) -> None:
        """One transition per task (row τ = task τ)."""
        for name, value in zip(FIELDS, (obs, action, reward, next_obs, terminated)):
            self.data[name][:, self.position] = value
        self.position = (self.position + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)

    def sample(self, batch_per_task: int) -> Batch:
        """`batch_per_task` transitions from every task, uniformly from what each has stored."""
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        t = self.data["reward"].shape[0]
        index = self.rng.integers(self.size, size=(t, batch_per_task))
        rows = np.arange(t)[:, None]
        return Batch(*(self.data[name][rows, index] for name in FIELDS))

    def state(self) -> dict:
        return {"position": self.position, "size": self.size, "rng": self.rng.bit_generator.state,
                **{name: self.data[name][:, : self.size] for name in FIELDS}}

    def load_state(self, state: dict) -> None:
        self.position, self.size = int(state["position"]), int(state["size"])
        self.rng.bit_generator.state = state["rng"]
        for name in FIELDS:
            self.data[name][:, : self.size] = state[name]
