"""SAC+FiLM (Perez et al. 2017, a baseline of the paper's Table 1): the task modulates every hidden layer.

Each network (the actor and each critic) is an MLP over the observation (critics: observation and action)
whose hidden features are scaled and shifted per task, h_l = ReLU(γ_τ,l ⊙ (W_l h_{l-1} + b_l) + β_τ,l). The
γ and β of every layer come from a generator MLP reading a learned per-task embedding; its last layer starts
at zero and γ = 1 + its output, so training starts from the plain network.

Per-feature γ, β as in Perez et al.; the public multi-task codebases (MTRL's `FiLM` encoder,
metaworld-algorithms' `film.py`) use one scalar γ and β per layer instead.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from paco.config.methods import FiLMConfig
from paco.methods.base import SHARED, TASK, ModuleNetworks, roles_by_rule, rows
from paco.nets import default_kernel_init


class FiLMMLP(nn.Module):
    """An MLP whose hidden layers are FiLM-modulated by the group's task. x: (G, B, in) -> (G, B, out)."""

    sizes: tuple[int, ...]  # (in, hidden..., out)
    num_tasks: int
    embedding_dim: int
    generator_hidden: tuple[int, ...]

    def modulation(self, task_ids: jax.Array | None) -> tuple[jax.Array, jax.Array]:
        """γ and β of every hidden feature, (G, Σ hidden) each."""
        embedding = self.param("task_embedding", nn.initializers.normal(1.0), (self.num_tasks, self.embedding_dim))
        h = rows(embedding, task_ids)
        for i, width in enumerate(self.generator_hidden):
            h = nn.relu(nn.Dense(width, kernel_init=default_kernel_init, name=f"generator_{i}")(h))
        out = nn.Dense(2 * sum(self.sizes[1:-1]), kernel_init=nn.initializers.zeros, name="generator_out")(h)
        delta_gamma, beta = jnp.split(out, 2, axis=-1)
        return 1.0 + delta_gamma, beta

    @nn.compact
    def __call__(self, x: jax.Array, task_ids: jax.Array | None) -> jax.Array:
        gamma, beta = self.modulation(task_ids)
        start = 0
        for i, width in enumerate(self.sizes[1:-1]):
            x = nn.Dense(width, kernel_init=default_kernel_init, name=f"layers_{i}")(x)
            g, b = gamma[:, start:start + width], beta[:, start:start + width]
            x = nn.relu(g[:, None, :] * x + b[:, None, :])
            start += width
        return nn.Dense(self.sizes[-1], kernel_init=default_kernel_init, name=f"layers_{len(self.sizes) - 2}")(x)


@dataclass(frozen=True)
class FiLM(ModuleNetworks):
    """Actor and twin critics, each a `FiLMMLP` reading the groups' task ids."""

    def roles(self, params):
        return roles_by_rule(params, lambda path, leaf: TASK if "task_embedding" in path else SHARED)


def build(config: FiLMConfig, task_names: tuple[str, ...], obs_dim: int, action_dim: int) -> FiLM:
    def mlp(n_in: int, n_out: int, hidden: tuple[int, ...]) -> FiLMMLP:
        return FiLMMLP((n_in, *hidden, n_out), len(task_names), config.task_embedding_dim, config.generator_hidden)

    return FiLM(len(task_names), obs_dim, action_dim, config.log_std_min, config.log_std_max,
                mlp(obs_dim, 2 * action_dim, config.hidden),
                mlp(obs_dim + action_dim, 1, config.critic_hidden or config.hidden))
