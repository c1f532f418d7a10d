"""The unified perspective (paper section 4.3): each method is a choice of where the compositional layer
is used and how its compositional vectors w are made.

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

from paco.config import NetworkConfig
from paco.nets import ComposedMLP, forward, gaussian_head, network_input

Composed = Literal["all", "output", "none"]


@dataclass(frozen=True)
class NetSpec:
    composed: Composed
    onehot_input: bool


@dataclass(frozen=True)
class Architecture:
    num_components: int
    w_init: Literal["ones", "onehot", "normal"]
    w_trainable: bool
    w_unit_norm: bool
    actor: NetSpec
    critic: NetSpec


def mtsac(config: NetworkConfig, num_tasks: int) -> Architecture:
    return Architecture(1, "ones", False, False, NetSpec("none", True), NetSpec("none", True))


def multihead(config: NetworkConfig, num_tasks: int) -> Architecture:
    return Architecture(num_tasks, "onehot", False, False, NetSpec("output", False), NetSpec("output", False))


def single_task(config: NetworkConfig, num_tasks: int) -> Architecture:
    return Architecture(num_tasks, "onehot", False, False, NetSpec("all", False), NetSpec("all", False))


def paco(config: NetworkConfig, num_tasks: int) -> Architecture:
    if config.w_init == "onehot" and config.num_components != num_tasks:
        raise ValueError(f"network.w_init onehot gives every task its own component: it needs "
                         f"network.num_components = {num_tasks} (the number of tasks), got {config.num_components}")
    actor, critic = {
        "ac-shared": (NetSpec("all", False), NetSpec("all", False)),
        "actor-only": (NetSpec("all", False), NetSpec("none", True)),  # the critic is MT-SAC's
        "output-only": (NetSpec("output", False), NetSpec("output", False)),
    }[config.composition]
    return Architecture(config.num_components, config.w_init, True, config.w_unit_norm, actor, critic)


METHODS = {"mtsac": mtsac, "multihead": multihead, "single-task": single_task, "paco": paco}


def _layer_flags(spec: NetSpec, num_layers: int) -> tuple[bool, ...]:
    if spec.composed == "all":
        return (True,) * num_layers
    if spec.composed == "output":
        return (False,) * (num_layers - 1) + (True,)
    return (False,) * num_layers


@dataclass(frozen=True)
class Networks:
    """Actor, twin critics and compositional vectors of one method; pure functions over their params."""

    arch: Architecture
    num_tasks: int
    obs_dim: int
    action_dim: int
    actor: ComposedMLP
    critic: ComposedMLP
    log_std_min: float
    log_std_max: float

    @staticmethod
    def build(config: NetworkConfig, num_tasks: int, obs_dim: int, action_dim: int) -> "Networks":
        if config.method not in METHODS:
            raise ValueError(f"unknown method {config.method!r}; known: {', '.join(METHODS)}")
        arch = METHODS[config.method](config, num_tasks)
        layers = len(config.hidden) + 1

        def mlp(spec: NetSpec, extra_in: int, out: int) -> ComposedMLP:
            n_in = obs_dim + extra_in + (num_tasks if spec.onehot_input else 0)
            return ComposedMLP((n_in, *config.hidden, out), _layer_flags(spec, layers), arch.num_components)

        return Networks(arch, num_tasks, obs_dim, action_dim, mlp(arch.actor, 0, 2 * action_dim),
                        mlp(arch.critic, action_dim, 1), config.log_std_min, config.log_std_max)

    # -- parameters ---------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> dict:
        k_actor, k_critic, k_w = jax.random.split(key, 3)
        groups = jnp.zeros((self.num_tasks, 1, 1))
        w = self.initial_w(k_w)
        actor = self.actor.init(k_actor, jnp.zeros(groups.shape[:2] + (self.actor.sizes[0],)), w)
        critic_in = jnp.zeros(groups.shape[:2] + (self.critic.sizes[0],))
        critics = tuple(self.critic.init(k, critic_in, w) for k in jax.random.split(k_critic, 2))
        return {"actor": actor, "critic": critics, "w": w}

    def initial_w(self, key: jax.Array) -> jax.Array:
        shape = (self.num_tasks, self.arch.num_components)
        if self.arch.w_init == "onehot":
            return jnp.eye(*shape)
        if self.arch.w_init == "normal":
            return jax.random.normal(key, shape)
        return jnp.ones(shape)

    def task_vectors(self, w: jax.Array) -> jax.Array:
        """The w actually used: normalised onto the unit sphere if the method asks for it."""
        if self.arch.w_unit_norm:
            return w / jnp.linalg.norm(w, axis=-1, keepdims=True)
        return w

    def onehot(self, task_ids: jax.Array | None = None) -> jax.Array:
        """Task one-hots of the groups: all tasks in order, or the given task ids."""
        eye = jnp.eye(self.num_tasks)
        return eye if task_ids is None else eye[task_ids]

    # -- networks -------------------------------------------------------------------------------------
    def actor_distribution(self, actor_params, w, obs, onehot):
        out = self.actor.apply(actor_params, network_input(obs, onehot if self.arch.actor.onehot_input else None), w)
        return gaussian_head(out, self.log_std_min, self.log_std_max)

    def q_values(self, critic_params, w, obs, onehot, action) -> jax.Array:
        """Both critics' Q(s, a) for grouped samples: (2, G, B); `critic_params` is a pair of parameter trees."""
        x = network_input(obs, onehot if self.arch.critic.onehot_input else None, action)
        # Two trees and one call per critic, rather than one stacked tree and a vmap: vmapped, the composed
        # layers become dots with two batch dimensions (critic, task) that XLA on CPU runs far below its
        # matmul rate, and a stacked tree is sliced in every forward pass and its gradients padded back into
        # the stack. As separate calls, the two critics' matmuls can also run side by side on the CPU's cores.
        twins = [self.critic.apply(params, x, w) for params in critic_params]
        return jnp.stack(twins)[..., 0]

    def policy_weights(self, actor_params, w) -> tuple:
        """The actor's layers composed once for every task (shared layers as they are), for acting."""
        return self.actor.apply(actor_params, w, method=ComposedMLP.compose)

    def policy_distribution(self, policy_weights, obs, onehot):
        """Mean and log-std for grouped observations, from weights composed by `policy_weights`."""
        out = forward(policy_weights, network_input(obs, onehot if self.arch.actor.onehot_input else None))
        return gaussian_head(out, self.log_std_min, self.log_std_max)


def select_tasks(policy_weights: tuple, task_ids: jax.Array) -> tuple:
    """Per-sample weights for a mix of tasks: gather each composed layer's rows by task id."""
    return tuple((k[task_ids], b[task_ids]) if k.ndim == 3 else (k, b) for k, b in policy_weights)
