"""The unified perspective (paper section 4.3): four methods as one compositional layer, used in different places
with different compositional vectors w.

    method        K   w                      composed layers          task one-hot input
    MT-SAC        1   ≡ 1                    none                     yes
    multi-head    T   one-hot, frozen        output layers            no
    single-task   T   one-hot, frozen        all layers               no
    PaCo          K   learned, N(0,1) init   all (or a variant)       no

One w is shared by the actor and both critics (and the target critics read the live w).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import jax
import jax.numpy as jnp

from paco import stability
from paco.config.methods import CompositionalConfig, MultiHeadConfig, PaCoConfig, SingleTaskConfig
from paco.methods.base import FROZEN, SHARED, TASK, Method, Params, roles_by_rule, rows
from paco.nets import ComposedMLP, forward, network_input

Composed = Literal["all", "output", "none"]


@dataclass(frozen=True)
class NetSpec:
    composed: Composed
    onehot_input: bool


@dataclass(frozen=True)
class Architecture:
    """One row of the table above."""

    num_components: int
    w_init: Literal["ones", "onehot", "normal"]
    w_trainable: bool
    w_unit_norm: bool
    actor: NetSpec
    critic: NetSpec


def architecture(config: CompositionalConfig, num_tasks: int) -> Architecture:
    if isinstance(config, PaCoConfig):
        if config.w_init == "onehot" and config.num_components != num_tasks:
            raise ValueError(f"network.w_init onehot gives every task its own component: it needs "
                             f"network.num_components = {num_tasks} (the number of tasks), got {config.num_components}")
        actor, critic = {
            "ac-shared": (NetSpec("all", False), NetSpec("all", False)),
            "actor-only": (NetSpec("all", False), NetSpec("none", True)),  # the critic is MT-SAC's
            "output-only": (NetSpec("output", False), NetSpec("output", False)),
        }[config.composition]
        return Architecture(config.num_components, config.w_init, True, config.w_unit_norm, actor, critic)
    if isinstance(config, MultiHeadConfig):
        return Architecture(num_tasks, "onehot", False, False, NetSpec("output", False), NetSpec("output", False))
    if isinstance(config, SingleTaskConfig):
        return Architecture(num_tasks, "onehot", False, False, NetSpec("all", False), NetSpec("all", False))
    return Architecture(1, "ones", False, False, NetSpec("none", True), NetSpec("none", True))  # MT-SAC


def _layer_flags(spec: NetSpec, num_layers: int) -> tuple[bool, ...]:
    if spec.composed == "all":
        return (True,) * num_layers
    if spec.composed == "output":
        return (False,) * (num_layers - 1) + (True,)
    return (False,) * num_layers


def select_tasks(policy_weights: tuple, task_ids: jax.Array | None) -> tuple:
    """Per-group weights for the given tasks: gather each composed layer's rows by task id."""
    return tuple((rows(k, task_ids), rows(b, task_ids)) if k.ndim == 3 else (k, b) for k, b in policy_weights)


@dataclass(frozen=True)
class Compositional(Method):
    """Actor and twin critics built from compositional layers; params: actor, critic (a pair), w (T, K)."""

    arch: Architecture
    actor: ComposedMLP
    critic: ComposedMLP
    w_lr: float

    @staticmethod
    def build(config: CompositionalConfig, num_tasks: int, obs_dim: int, action_dim: int) -> "Compositional":
        arch = architecture(config, num_tasks)
        def mlp(spec: NetSpec, extra_in: int, out: int, hidden: tuple[int, ...]) -> ComposedMLP:
            n_in = obs_dim + extra_in + (num_tasks if spec.onehot_input else 0)
            return ComposedMLP((n_in, *hidden, out), _layer_flags(spec, len(hidden) + 1), arch.num_components)

        return Compositional(num_tasks, obs_dim, action_dim, config.log_std_min, config.log_std_max, arch,
                             mlp(arch.actor, 0, 2 * action_dim, config.hidden),
                             mlp(arch.critic, action_dim, 1, config.critic_hidden or config.hidden),
                             getattr(config, "w_lr", 0.0))

    def init(self, key: jax.Array) -> Params:
        k_actor, k_critic, k_w = jax.random.split(key, 3)
        w = self.initial_w(k_w)
        actor = self.actor.init(k_actor, jnp.zeros((self.num_tasks, 1, self.actor.sizes[0])), w)
        critic_in = jnp.zeros((self.num_tasks, 1, self.critic.sizes[0]))
        critics = tuple(self.critic.init(k, critic_in, w) for k in jax.random.split(k_critic, 2))
        return {"actor": actor, "critic": critics, "w": w}

    def initial_w(self, key: jax.Array) -> jax.Array:
        shape = (self.num_tasks, self.arch.num_components)
        if self.arch.w_init == "onehot":
            return jnp.eye(*shape)
        if self.arch.w_init == "normal":
            return jax.random.normal(key, shape)
        return jnp.ones(shape)

    def task_vectors(self, w: jax.Array, task_ids: jax.Array | None = None) -> jax.Array:
        """The w actually used, one row per group: normalised onto the unit sphere if the method asks for it."""
        w = rows(w, task_ids)
        return w / jnp.linalg.norm(w, axis=-1, keepdims=True) if self.arch.w_unit_norm else w

    def _input(self, spec: NetSpec, obs, task_ids, action=None):
        return network_input(obs, self.onehot(task_ids) if spec.onehot_input else None, action)

    def actor_outputs(self, params, obs, task_ids=None):
        x = self._input(self.arch.actor, obs, task_ids)
        return self.actor.apply(params["actor"], x, self.task_vectors(params["w"], task_ids))

    def q_values(self, params, critic, obs, action, task_ids=None):
        x = self._input(self.arch.critic, obs, task_ids, action)
        w = self.task_vectors(params["w"], task_ids)
        # Two trees and one call per critic, rather than one stacked tree and a vmap: vmapped, the composed
        # layers become dots with two batch dimensions (critic, task) that XLA on CPU runs far below its
        # matmul rate, and a stacked tree is sliced in every forward pass and its gradients padded back into
        # the stack. As separate calls, the two critics' matmuls can also run side by side on the CPU's cores.
        return jnp.stack([self.critic.apply(p, x, w) for p in critic])[..., 0]

    def policy(self, params):
        """The actor's layers composed once for every task (shared layers as they are)."""
        return self.actor.apply(params["actor"], self.task_vectors(params["w"]), method=ComposedMLP.compose)

    def policy_distribution(self, policy, obs, task_ids=None):
        return self.head(forward(select_tasks(policy, task_ids), self._input(self.arch.actor, obs, task_ids)))

    def roles(self, params):
        # A composed layer whose w is a frozen one-hot (multi-head heads, single-task) belongs slice by slice
        # to one task; PaCo's Φ is shared by all.
        per_task_slices = not self.arch.w_trainable and self.arch.num_components == self.num_tasks > 1

        def rule(path: str, leaf) -> str:
            if path.startswith("['w']"):
                return TASK if self.arch.w_trainable else FROZEN
            composed = leaf.ndim >= 1 and leaf.shape[0] == self.arch.num_components > 1
            return TASK if per_task_slices and composed else SHARED

        return roles_by_rule(params, rule)

    def learning_rates(self):
        return {"w": self.w_lr} if self.arch.w_trainable else {}

    @property
    def resets_task_vectors(self) -> bool:
        return self.arch.w_trainable

    def reset_task_vectors(self, params, healthy, key, draw):
        if not self.arch.w_trainable:
            return params
        return {**params, "w": stability.reset_exploded_w(params["w"], healthy, key, draw)}
