"""Per-task replay: one ring buffer per task; every batch draws the same number of samples from each task.

Each observation is stored once, about half the memory of storing obs and next_obs: the next observation of slot i
is the observation of slot i + 1, except

* in the newest slot, whose next observation is not stored yet: the last `add`'s next_obs is kept aside;
* where an episode ended by truncation (time limit), where slot i + 1 holds the first observation of the next
  episode: the true final observation, which the TD target bootstraps from, is kept in a small per-task ring of
  final observations, found through `final_index` (-1 where there is none).

Where an episode ended by termination, next_obs is that reset observation too, and that is harmless: the TD target
multiplies the next state's value by 1 - terminated, so it never uses it. A transition both terminated and
truncated is stored as truncated (its true final observation is kept).
"""

from __future__ import annotations

import numpy as np

from paco.sac import Batch


class MultiTaskReplay:
    def __init__(self, num_tasks: int, capacity_per_task: int, obs_dim: int, action_dim: int, seed: int,
                 max_episode_steps: int):
        if capacity_per_task < 1:
            raise ValueError(f"replay capacity must be positive, got {capacity_per_task}")
        if max_episode_steps < 1:
            raise ValueError(f"max_episode_steps must be positive, got {max_episode_steps}")
        t, c = num_tasks, capacity_per_task
        # Truncations of one task are at least max_episode_steps (L) apart: an episode ended earlier by termination
        # starts a new one, which needs L more steps to reach the time limit. Ring entry e is written again only R
        # truncations later, at least R * L > C vector steps later (R = C // L + 1): by then the slot that pointed
        # to it has been overwritten, so no slot in the buffer ever points to a rewritten entry.
        final_entries = c // max_episode_steps + 1
        self.capacity = c
        # (T, C, ...): one entry per slot, written once by `add`; a checkpoint writes only the slots added since
        # the previous one.
        self.slots = {
            "obs": np.zeros((t, c, obs_dim), np.float32),
            "action": np.zeros((t, c, action_dim), np.float32),
            "reward": np.zeros((t, c), np.float32),
            "terminated": np.zeros((t, c), bool),
            "final_index": np.full((t, c), -1, np.int32),
        }
        # Small (about 1/L of the slots) and rewritten in place: a checkpoint writes them whole.
        self.extras = {
            "next_obs": np.zeros((t, obs_dim), np.float32),  # the next observation of the newest slot
            "final_obs": np.zeros((t, final_entries, obs_dim), np.float32),
            "final_count": np.zeros(t, np.int64),  # truncations stored so far; the next entry is count % R
        }
        self.position = 0  # every task receives one transition per vector step, so one cursor serves all
        self.size = 0
        self.added = 0
        self.rng = np.random.default_rng(seed)

    def add(self, obs, action, reward, next_obs, terminated, truncated) -> None:
        """One transition per task (row τ = task τ); `next_obs` is the true next observation (the final one
        where an episode ended)."""
        p, s, e = self.position, self.slots, self.extras
        s["obs"][:, p] = obs
        s["action"][:, p] = action
        s["reward"][:, p] = reward
        s["terminated"][:, p] = terminated
        s["final_index"][:, p] = -1
        tasks = np.flatnonzero(truncated)
        entries = e["final_count"][tasks] % e["final_obs"].shape[1]
        e["final_obs"][tasks, entries] = np.asarray(next_obs)[tasks]
        s["final_index"][tasks, p] = entries
        e["final_count"][tasks] += 1
        e["next_obs"][:] = next_obs
        self.position = (p + 1) % self.capacity
        self.size = min(self.size + 1, self.capacity)
        self.added += 1

    def sample(self, batch_per_task: int) -> Batch:
        """`batch_per_task` transitions from every task, uniformly from what each has stored."""
        return self._gather(self._draw(batch_per_task))

    def sample_block(self, n: int, batch_per_task: int) -> Batch:
        """n batches on a leading axis (n, T, B, ...), the very ones n calls of `sample` would return."""
        return self._gather(np.stack([self._draw(batch_per_task) for _ in range(n)]))

    def _draw(self, batch_per_task: int) -> np.ndarray:
        if self.size == 0:
            raise RuntimeError("cannot sample from an empty replay buffer")
        t = self.slots["reward"].shape[0]
        return self.rng.integers(self.size, size=(t, batch_per_task))

    def _gather(self, index: np.ndarray) -> Batch:
        """The transitions in slots `index` (..., T, B) of every task."""
        s, e = self.slots, self.extras
        task = np.broadcast_to(np.arange(index.shape[-2])[:, None], index.shape)
        next_obs = s["obs"][task, (index + 1) % self.capacity]
        newest = index == (self.position - 1) % self.capacity
        next_obs[newest] = e["next_obs"][task[newest]]
        final = s["final_index"][task, index]
        truncated = final >= 0
        next_obs[truncated] = e["final_obs"][task[truncated], final[truncated]]
        return Batch(s["obs"][task, index], s["action"][task, index], s["reward"][task, index], next_obs,
                     s["terminated"][task, index].astype(np.float32))

    def nbytes(self) -> int:
        """Bytes the buffer holds."""
        return sum(a.nbytes for a in (*self.slots.values(), *self.extras.values()))

    def state(self) -> dict:
        """The small JSON-able part of the state; the arrays are in `slots` and `extras`."""
        return {"position": self.position, "size": self.size, "added": self.added,
                "rng": self.rng.bit_generator.state}

    def load_state(self, state: dict) -> None:
        self.position, self.size, self.added = int(state["position"]), int(state["size"]), int(state["added"])
        self.rng.bit_generator.state = state["rng"]
