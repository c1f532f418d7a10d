"""PaCo's Reset scheme (Algorithm 1): loss maskout and w-reset.

Maskout drops a task whose loss exceeds ε (or is not finite) from this update's total loss, so its
gradient never reaches the shared parameter set Φ. w-reset moves that task's compositional vector to a
random convex combination of the healthy tasks' vectors; Φ, the other w and the optimiser state are left
as they are.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def healthy_tasks(per_task_loss: jax.Array, threshold: float, mode: str) -> jax.Array:
    """Boolean (T,): tasks whose loss enters this update. 'vanilla' keeps every task."""
    if mode == "vanilla":
        return jnp.ones(per_task_loss.shape, bool)
    return jnp.isfinite(per_task_loss) & (per_task_loss <= threshold)


def simplex_weights(key: jax.Array, healthy: jax.Array, draw: str) -> jax.Array:
    """(T, T): row η is a point β on the simplex over the healthy tasks (zero elsewhere).

    'dirichlet': uniform on the simplex (normalised Exp(1) draws); 'uniform-normalized': U(0,1) draws
    normalised to sum 1, as the authors' code does.
    """
    n = healthy.shape[0]
    raw = jax.random.exponential(key, (n, n)) if draw == "dirichlet" else jax.random.uniform(key, (n, n))
    raw = jnp.where(healthy[None, :], raw, 0.0)
    return raw / jnp.maximum(raw.sum(-1, keepdims=True), 1e-12)


def reset_exploded_w(w: jax.Array, healthy: jax.Array, key: jax.Array, draw: str = "dirichlet") -> jax.Array:
    """w_η ← Σ_{j healthy} β_j w_j for every exploded task η; unchanged when no task (or every task) exploded."""
    if draw not in ("dirichlet", "uniform-normalized"):
        raise ValueError(f"unknown reset draw {draw!r}")
    mixed = simplex_weights(key, healthy, draw) @ w
    replace = ~healthy & jnp.any(healthy)
    return jnp.where(replace[:, None], mixed, w)
