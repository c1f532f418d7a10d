"""GradNorm (Chen et al., ICML 2018) as an optax transformation over per-task gradients.

The network steps on Σ_i w_i L_i: the transformation returns Σ_i w_i g_i from the per-task gradients g_i. The task
weights w (one per task, starting at 1) live in its optimiser state and are trained so that every task's weighted
gradient norm G_i = w_i ‖g_i‖ on a chosen part of the network moves towards the common target
mean(G) · r_i^α, where r_i = (L_i / L_i(0)) / mean_j (L_j / L_j(0)) is task i's relative inverse training rate:

    L_grad = Σ_i |G_i − sg(mean(G) · r_i^α)|,     ∂L_grad/∂w_i = sign(G_i − target_i) · ‖g_i‖

Adam takes the step on w; after it w is kept positive and renormalised to sum to T, as Chen et al. do. α is the
asymmetry (Chen et al. use 0.5–3, metaworld-algorithms 0.12, MTRL 1.0); `layer` selects the parameters whose
gradient norms are balanced (a substring of their path; Chen et al.: the last shared layer; empty: all of them,
as metaworld-algorithms does). L_i(0) is each task's loss at the first update (MTRL overwrote it every step).

SAC's losses are not all positive (the actor loss α log π − Q usually is not), so the rates use |L_i|. In this
library the transformation runs separately per parameter group, each balancing its own loss (the critics' on
the critic loss, the actor's on the actor loss): the update passes the per-task losses as the extra argument
`task_losses` and each instance reads its own entry (a group without one, such as PaCo's w, reads "total").
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax

MIN_WEIGHT = 1e-3  # weights stay positive: below this a step is clipped before renormalising
TINY = 1e-12  # a zero loss (a task masked out) gives a zero rate, not a division by zero


class GradNormState(NamedTuple):
    weights: jax.Array  # (T,), positive, summing to T
    initial_losses: jax.Array  # (T,), |L_i| at the first update
    started: jax.Array  # bool: whether the initial losses are recorded
    adam: Any  # Adam's state for the weights


def gradient_norms(per_task_grads: Any, layer: str) -> jax.Array:
    """‖g_i‖ over the leaves whose path contains `layer` (every leaf for ''), one per task: (T,)."""
    leaves = [g for path, g in jax.tree_util.tree_leaves_with_path(per_task_grads)
              if layer in jax.tree_util.keystr(path)]
    squares = sum(jnp.sum(g.reshape(g.shape[0], -1) ** 2, axis=1) for g in leaves)
    return jnp.sqrt(squares)


def weight_gradient(weights: jax.Array, norms: jax.Array, losses: jax.Array, initial_losses: jax.Array,
                    alpha: float) -> jax.Array:
    """∂L_grad/∂w of Chen et al.'s L_grad, the target held constant."""
    ratios = losses / jnp.maximum(initial_losses, TINY)
    target = jnp.mean(weights * norms) * (ratios / jnp.maximum(jnp.mean(ratios), TINY)) ** alpha
    return jnp.sign(weights * norms - target) * norms


def renormalise(weights: jax.Array) -> jax.Array:
    weights = jnp.maximum(weights, MIN_WEIGHT)
    return weights * weights.shape[0] / jnp.sum(weights)


def gradnorm(num_tasks: int, alpha: float = 0.12, learning_rate: float = 1e-3, layer: str = "",
             loss: str = "total") -> optax.GradientTransformationExtraArgs:
    """GradNorm over per-task gradients (leaves with a leading task axis); `loss` names the entry of the
    `task_losses` extra argument ({name: (T,) losses}) that this instance balances."""
    adam = optax.adam(learning_rate)

    def init(params):
        weights = jnp.ones(num_tasks, jnp.float32)
        return GradNormState(weights, jnp.ones(num_tasks, jnp.float32), jnp.zeros((), bool), adam.init(weights))

    def update(per_task_grads, state, params=None, *, task_losses, **extra_args):
        del params, extra_args
        losses = jnp.abs(jax.lax.stop_gradient(task_losses.get(loss, task_losses["total"])))
        initial = jnp.where(state.started, state.initial_losses, losses)
        combined = jax.tree.map(lambda g: jnp.tensordot(state.weights, g, axes=1), per_task_grads)
        norms = gradient_norms(per_task_grads, layer)
        step, adam_state = adam.update(weight_gradient(state.weights, norms, losses, initial, alpha), state.adam)
        weights = renormalise(state.weights + step)
        return combined, GradNormState(weights, initial, jnp.ones((), bool), adam_state)

    return optax.GradientTransformationExtraArgs(init, update)
