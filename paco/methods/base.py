"""The interface every method implements, compositional or not; the update, trainer, agent and bench use only it.

Parameters are a dict: "actor", "critic" (whatever the twin Q-values read; its Polyak copy is the target
critic), and any task-level parameters the actor and critics share (PaCo's "w"). The SAC update adds
"log_alpha". Observations come grouped, (G, B, obs_dim), with `task_ids` (G,) naming each group's task;
`task_ids=None` means G is the number of tasks and group g is task g, the layout of every training batch.

Roles say how the optimiser and the tests treat each parameter: "shared" (every task's loss trains it),
"task" (a leading axis of one row per task; row τ is trained by task τ's loss alone), "frozen" (never moves).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import optax

from paco.nets import gaussian_head

SHARED, TASK, FROZEN = "shared", "task", "frozen"
Params = dict[str, Any]


def rows(table: jax.Array, task_ids: jax.Array | None) -> jax.Array:
    """One row of a per-task table for each group: the whole table when the groups are all tasks in order."""
    return table if task_ids is None else table[task_ids]


@dataclass(frozen=True)
class Method(abc.ABC):
    num_tasks: int
    obs_dim: int
    action_dim: int
    log_std_min: float
    log_std_max: float

    @abc.abstractmethod
    def init(self, key: jax.Array) -> Params:
        """Fresh parameters: {"actor", "critic", **shared task-level parameters}."""

    @abc.abstractmethod
    def actor_outputs(self, params: Params, obs: jax.Array, task_ids: jax.Array | None) -> jax.Array:
        """The actor's raw output (G, B, 2 * action_dim): mean and unsquashed log-std."""

    @abc.abstractmethod
    def q_values(self, params: Params, critic: Any, obs: jax.Array, action: jax.Array,
                 task_ids: jax.Array | None = None) -> jax.Array:
        """Both critics' Q(s, a), (2, G, B). `critic` is params["critic"] or its target copy; `params` gives
        everything else the critics read."""

    @abc.abstractmethod
    def roles(self, params: Params) -> Any:
        """The role (SHARED, TASK or FROZEN) of every leaf of `params`, as a tree of the same structure."""

    # -- defaults that most methods keep ---------------------------------------------------------------
    def actor_distribution(self, params: Params, obs: jax.Array, task_ids: jax.Array | None = None):
        """Mean and log-std of the tanh-Gaussian policy for grouped observations."""
        return self.head(self.actor_outputs(params, obs, task_ids))

    def head(self, out: jax.Array) -> tuple[jax.Array, jax.Array]:
        return gaussian_head(out, self.log_std_min, self.log_std_max)

    def policy(self, params: Params) -> Any:
        """What acting needs, prepared once per update (compositional methods compose the actor here)."""
        return {k: v for k, v in params.items() if k not in ("critic", "log_alpha")}

    def policy_distribution(self, policy: Any, obs: jax.Array, task_ids: jax.Array | None = None):
        """Mean and log-std from a prepared `policy`; `task_ids` may mix tasks freely (one group per sample)."""
        return self.actor_distribution(policy, obs, task_ids)

    def learning_rates(self) -> dict[str, float]:
        """Adam learning rates of the shared task-level parameters, by key (actor and critic use sac's)."""
        return {}

    def update_target(self, critic: Any, target: Any, tau: float) -> Any:
        """Polyak averaging of the target critic."""
        return optax.incremental_update(critic, target, tau)

    @property
    def resets_task_vectors(self) -> bool:
        """Whether Reset can move an exploded task to a mix of the healthy tasks (PaCo's w-reset)."""
        return False

    def reset_task_vectors(self, params: Params, healthy: jax.Array, key: jax.Array, draw: str) -> Params:
        """w-reset of the exploded tasks; methods without compositional vectors have none to reset."""
        return params

    def onehot(self, task_ids: jax.Array | None = None) -> jax.Array:
        """Task one-hots of the groups, (G, num_tasks)."""
        return rows(jnp.eye(self.num_tasks), task_ids)


@dataclass(frozen=True)
class ModuleNetworks(Method):
    """A method whose actor and each of its twin critics is one flax module called as `net(x, task_input)`:
    x the observation (critics: observation and action), task_input what `task_input(task_ids)` makes of the
    groups' tasks (the task ids themselves, or their one-hots)."""

    actor: Any
    critic: Any

    def task_input(self, task_ids: jax.Array | None) -> Any:
        return task_ids

    def init(self, key: jax.Array) -> Params:
        obs = jnp.zeros((self.num_tasks, 1, self.obs_dim))
        critic_in = jnp.zeros((self.num_tasks, 1, self.obs_dim + self.action_dim))
        task = self.task_input(None)
        k_actor, k_critic = jax.random.split(key)
        return {"actor": self.actor.init(k_actor, obs, task),
                "critic": tuple(self.critic.init(k, critic_in, task) for k in jax.random.split(k_critic, 2))}

    def actor_outputs(self, params, obs, task_ids=None):
        return self.actor.apply(params["actor"], obs, self.task_input(task_ids))

    def q_values(self, params, critic, obs, action, task_ids=None):
        x, task = jnp.concatenate([obs, action], -1), self.task_input(task_ids)
        return jnp.stack([self.critic.apply(p, x, task) for p in critic])[..., 0]


def roles_by_rule(tree: Any, rule) -> Any:
    """A roles tree from `rule(path, leaf) -> role`, for methods whose roles follow from names and shapes."""
    return jax.tree_util.tree_map_with_path(lambda path, leaf: rule(jax.tree_util.keystr(path), leaf), tree)
