"""A trained agent as a plain Python object, built from a run directory alone.

`load_agent(run_dir)` rebuilds the run's method from its config, restores the parameters of a checkpoint,
prepares the policy once (PaCo: composes the actor for every task), and returns an `Agent` that acts on any
batch of observations with any mix of tasks in one jitted call. It satisfies Meta-World's `Agent` protocol
(`eval_action`, `reset`), so
`metaworld.evaluation.evaluation(load_agent(run_dir), envs)` scores a run directly.
"""

from __future__ import annotations

from pathlib import Path

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from paco.checkpoint import CheckpointError, restore_params
from paco.config import Config
from paco.envs import env_dims, task_names
from paco.methods import Method, build_method
from paco.nets import sample_tanh_gaussian


def _shapes(tree) -> dict:
    leaves = jax.tree_util.tree_leaves_with_path(tree)
    return {jax.tree_util.keystr(path): tuple(np.shape(leaf)) for path, leaf in leaves}


def _make_act(method: Method):
    @jax.jit
    def act(policy, obs, task_ids, key):
        mean, log_std = method.policy_distribution(policy, obs[:, None], task_ids)  # one group per sample
        action = jnp.tanh(mean) if key is None else sample_tanh_gaussian(key, mean, log_std)[0]
        return action[:, 0]

    return act


class Agent:
    """A saved policy: deterministic `eval_action` for Meta-World's scorer, `act` for explicit task ids.

    Only what acting needs is kept, prepared once here (PaCo: the actor composed for every task), so acting
    never touches the parameter set again.
    """

    def __init__(self, config: Config, params: dict, step: int = 0):
        self.config, self.step = config, step
        self.task_names = task_names(config.env)
        self.obs_dim, self.action_dim = env_dims(config.env)
        self.method = build_method(config.network, self.task_names, self.obs_dim, self.action_dim)
        expected = jax.eval_shape(self.method.init, jax.random.PRNGKey(0))
        params = flax.serialization.from_state_dict(expected, {k: v for k, v in params.items() if k != "log_alpha"})
        if _shapes(params) != _shapes(expected):
            raise ValueError(f"parameters do not fit the configured networks "
                             f"({config.network.name}, {self.num_tasks} tasks)")
        self.policy = self.method.policy(params)
        self._act = _make_act(self.method)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def act(self, observations: np.ndarray, task_ids: np.ndarray, key: jax.Array | None = None) -> np.ndarray:
        """Actions in [-1, 1] for observations (N, obs_dim) without one-hot and their task ids (N,).

        key=None gives the deterministic action tanh(mean), so an agent without a key is a pure function
        of its inputs; a PRNG key samples from the tanh-Gaussian policy (the trainer's exploration).
        """
        obs = np.asarray(observations, np.float32)
        ids = np.asarray(task_ids, np.int32).reshape(-1)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
            raise ValueError(f"expected observations of shape (N, {self.obs_dim}), got {obs.shape}")
        if len(ids) != len(obs):
            raise ValueError(f"{len(obs)} observations but {len(ids)} task ids")
        if ids.size and (ids.min() < 0 or ids.max() >= self.num_tasks):
            raise ValueError(f"task ids must lie in 0..{self.num_tasks - 1}, got {ids.min()}..{ids.max()}")
        return np.asarray(self._act(self.policy, obs, ids, key), np.float64)

    def eval_action(self, observations: np.ndarray) -> np.ndarray:
        """Deterministic actions for Meta-World observations with the task one-hot appended (use_one_hot=True)."""
        obs = np.asarray(observations)
        if obs.ndim != 2 or obs.shape[1] != self.obs_dim + self.num_tasks:
            raise ValueError(f"expected observations of shape (N, {self.obs_dim} + {self.num_tasks} one-hot), "
                             f"got {obs.shape}")
        onehot = obs[:, self.obs_dim:]
        task_ids = onehot.argmax(axis=1)
        if not np.array_equal(onehot, np.eye(self.num_tasks)[task_ids]):
            raise ValueError(f"the last {self.num_tasks} columns of each observation must be a task one-hot")
        return self.act(obs[:, :self.obs_dim], task_ids)

    def reset(self, env_mask: np.ndarray) -> None:
        """Part of Meta-World's protocol; the policy keeps no state between steps, so there is nothing to reset."""


def load_agent(run_dir: str | Path, checkpoint: int | None = None) -> Agent:
    """The agent of a run directory at a checkpoint step (default: the newest good checkpoint)."""
    config, params, step = restore_params(run_dir, checkpoint)
    try:
        return Agent(config, params, step)
    except (KeyError, ValueError) as error:
        raise CheckpointError(f"{run_dir}: checkpoint at step {step} does not hold this run's policy: {error}") \
            from error
