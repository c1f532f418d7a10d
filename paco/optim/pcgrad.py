"""PCGrad (Yu et al., NeurIPS 2020, "Gradient Surgery for Multi-Task Learning") as an optax transformation.

Yu et al.'s rule: for each task i, start from g_i' = g_i and visit the other tasks j in a random order;
whenever g_i' conflicts with g_j (g_i'·g_j < 0), remove that component:
g_i' ← g_i' − (g_i'·g_j / ‖g_j‖²) g_j. Each task draws its OWN random order, and the projection always
uses the ORIGINAL (unprojected) gradients g_j of the others, as in the paper's Algorithm 1. A task
whose gradient is all zero (its loss masked out) projects nothing.

The output is the MEAN over tasks of the projected gradients, as facebookresearch/mtrl's agent does;
Yu et al. sum them. The two differ only by the factor T, which Adam's normalisation ignores.

The transform sees one gradient vector per task over whatever tree it is given. In this library it runs
separately per parameter group (actor, critic, ...), the way MTRL projects the actor loss's and the
critic loss's gradients separately: the caller wraps one `pcgrad()` per group.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax


class PCGradState(NamedTuple):
    key: jax.Array  # uint32 PRNG key (jax.random.PRNGKey), so it checkpoints with flax.serialization


def task_orders(key: jax.Array, num_tasks: int) -> jax.Array:
    """(T, T) int: row i is task i's own random visiting order, a pure function of `key` (tests replay it)."""
    keys = jax.random.split(key, num_tasks)
    return jax.vmap(lambda k: jax.random.permutation(k, num_tasks))(keys)


def project_conflicting(grads: jax.Array, orders: jax.Array) -> jax.Array:
    """Project each task's gradient (row of `grads`, (T, P)) off the others' conflicting originals.

    `orders[i]` is the order in which task i visits the tasks; entry i itself is skipped. Zero-norm
    gradients are skipped with `jnp.where` on both the value and the denominator, so neither the
    forward pass nor its derivative produces NaN.
    """
    num_tasks = grads.shape[0]
    sq_norms = jnp.sum(grads * grads, axis=1)
    tiny = jnp.finfo(grads.dtype).tiny

    def project_one(i: jax.Array, g_i: jax.Array, order: jax.Array) -> jax.Array:
        def step(g: jax.Array, j: jax.Array) -> tuple[jax.Array, None]:
            g_j, norm = grads[j], sq_norms[j]
            active = (j != i) & (norm > tiny)
            coef = jnp.where(active, jnp.minimum(g @ g_j, 0.0) / jnp.where(active, norm, 1.0), 0.0)
            return g - coef * g_j, None

        projected, _ = jax.lax.scan(step, g_i, order)
        return projected

    return jax.vmap(project_one)(jnp.arange(num_tasks), grads, orders)


def pcgrad(seed: int = 0) -> optax.GradientTransformation:
    """Per-task gradients (every leaf with a leading task axis T) → mean of PCGrad-projected gradients.

    The output drops the task axis (leaf shapes = param shapes), so it chains into any optax optimiser,
    e.g. `optax.chain(pcgrad(), optax.adam(lr))`. Each update splits a fresh key off the state for the
    task orders: `_, sub = jax.random.split(state.key)`; orders = `task_orders(sub, T)`.
    """

    def init(params: Any) -> PCGradState:
        del params
        return PCGradState(key=jax.random.PRNGKey(seed))

    def update(per_task_grads: Any, state: PCGradState, params: Any = None) -> tuple[Any, PCGradState]:
        del params
        leaves, treedef = jax.tree_util.tree_flatten(per_task_grads)
        if not leaves:
            return per_task_grads, state
        num_tasks = leaves[0].shape[0]
        if any(leaf.ndim == 0 or leaf.shape[0] != num_tasks for leaf in leaves):
            raise ValueError(f"every leaf needs the same leading task axis; got shapes "
                             f"{[tuple(leaf.shape) for leaf in leaves]}")
        dtype = jnp.result_type(*leaves)
        flat = jnp.concatenate([leaf.reshape(num_tasks, -1).astype(dtype) for leaf in leaves], axis=1)

        key, sub = jax.random.split(state.key)
        mean = project_conflicting(flat, task_orders(sub, num_tasks)).mean(axis=0)

        out, start = [], 0
        for leaf in leaves:
            size = leaf[0].size
            out.append(mean[start:start + size].reshape(leaf.shape[1:]).astype(leaf.dtype))
            start += size
        return jax.tree_util.tree_unflatten(treedef, out), PCGradState(key=key)

    return optax.GradientTransformation(init, update)
