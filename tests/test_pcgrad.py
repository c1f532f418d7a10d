"""PCGrad against an independent plain-loop numpy reference, and as an optax transformation."""

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paco.optim.pcgrad import PCGradState, pcgrad, project_conflicting, task_orders


def reference_project(grads: np.ndarray, orders: np.ndarray) -> np.ndarray:
    """Yu et al.'s rule with plain loops in float64: project off conflicting ORIGINAL gradients."""
    grads = np.asarray(grads, dtype=np.float64)
    out = np.empty_like(grads)
    for i in range(grads.shape[0]):
        g = grads[i].copy()
        for j in np.asarray(orders)[i]:
            if j == i:
                continue
            other = grads[j]
            norm = float(other @ other)
            if norm == 0.0:
                continue
            dot = float(g @ other)
            if dot < 0.0:
                g = g - dot / norm * other
        out[i] = g
    return out


def _stack_tree(rows: np.ndarray) -> dict:
    """(T, 10) rows → a tree of two leaves of different shapes, each with the leading task axis."""
    t = rows.shape[0]
    return {"w": jnp.asarray(rows[:, :6].reshape(t, 2, 3)), "b": jnp.asarray(rows[:, 6:])}


def _flat_mean(tree: dict) -> np.ndarray:
    # Leaves flatten in key order: "b" then "w".
    return np.concatenate([np.asarray(tree["b"]).ravel(), np.asarray(tree["w"]).ravel()])


def test_two_dim_conflict_matches_closed_form_and_reference():
    grads = np.array([[1.0, 0.0], [-1.0, 1.0]], dtype=np.float32)
    orders = np.array([[0, 1], [1, 0]], dtype=np.int32)
    got = np.asarray(project_conflicting(jnp.asarray(grads), jnp.asarray(orders)))
    # g1·g2 = -1, ‖g2‖² = 2 → g1' = g1 + g2/2; ‖g1‖² = 1 → g2' = g2 + g1.
    np.testing.assert_allclose(got, [[0.5, 0.5], [0.0, 1.0]], atol=1e-6)
    np.testing.assert_allclose(got, reference_project(grads, orders), atol=1e-6)


def test_random_gradients_and_orders_match_reference():
    rng = np.random.default_rng(0)
    for _ in range(5):
        grads = rng.normal(size=(5, 7)).astype(np.float32)
        orders = np.stack([rng.permutation(5) for _ in range(5)]).astype(np.int32)
        got = np.asarray(project_conflicting(jnp.asarray(grads), jnp.asarray(orders)))
        np.testing.assert_allclose(got, reference_project(grads, orders), rtol=1e-5, atol=1e-5)
        # Sanity: the data does conflict, so the test would notice a no-op projection.
        assert not np.allclose(got, grads, atol=1e-3)


def test_non_conflicting_gradients_pass_through_as_plain_mean():
    rng = np.random.default_rng(1)
    tree = _stack_tree(rng.uniform(0.1, 1.0, size=(4, 10)).astype(np.float32))
    tx = pcgrad()
    out, _ = tx.update(tree, tx.init(None))
    assert jax.tree_util.tree_structure(out) == jax.tree_util.tree_structure(tree)
    for key in ("w", "b"):
        assert out[key].shape == tree[key].shape[1:]
        np.testing.assert_allclose(out[key], np.asarray(tree[key]).mean(axis=0), rtol=1e-6, atol=1e-7)


def test_two_tasks_projection_property():
    rng = np.random.default_rng(2)
    for _ in range(10):
        g1 = rng.normal(size=9).astype(np.float32)
        g2 = (-g1 + 0.5 * rng.normal(size=9)).astype(np.float32)  # strongly conflicting
        grads = np.stack([g1, g2])
        assert g1 @ g2 < 0
        got = np.asarray(project_conflicting(jnp.asarray(grads), jnp.asarray([[0, 1], [1, 0]])))
        assert got[0] @ g2 >= -1e-4 and got[1] @ g1 >= -1e-4
        np.testing.assert_allclose(got, reference_project(grads, [[0, 1], [1, 0]]), rtol=1e-5, atol=1e-5)


def test_transform_equals_reference_mean_with_its_orders():
    rng = np.random.default_rng(3)
    num_tasks = 4
    rows = rng.normal(size=(num_tasks, 10)).astype(np.float32)
    tree = _stack_tree(rows)
    tx = pcgrad(seed=7)
    state = tx.init(None)
    out, new_state = tx.update(tree, state)

    _, sub = jax.random.split(state.key)
    orders = np.asarray(task_orders(sub, num_tasks))
    assert all(sorted(row) == list(range(num_tasks)) for row in orders)
    # Rows of the tree in flattening order ("b" then "w"), to feed the reference the same vectors.
    flat = np.concatenate([rows[:, 6:], rows[:, :6]], axis=1)
    expected = reference_project(flat, orders).mean(axis=0)
    np.testing.assert_allclose(_flat_mean(out), expected, rtol=1e-5, atol=1e-5)
    # The orders matter for this data, so replaying the wrong key would fail the comparison above.
    other = np.asarray(task_orders(jax.random.PRNGKey(123), num_tasks))
    assert not np.allclose(reference_project(flat, other).mean(axis=0), expected, atol=1e-4)
    # The state's key advanced, so the next update draws new orders.
    assert not np.array_equal(np.asarray(new_state.key), np.asarray(state.key))


def test_zero_task_gradient_is_skipped_and_jit_and_state_round_trip():
    rng = np.random.default_rng(4)
    rows = rng.normal(size=(3, 10)).astype(np.float32)
    rows[0] = -rows[2] + 0.3 * rng.normal(size=10)  # tasks 0 and 2 conflict
    rows[1] = 0.0  # task 1 masked out
    tree = _stack_tree(rows)
    tx = pcgrad(seed=1)
    state = tx.init(None)
    out, new_state = jax.jit(tx.update)(tree, state)
    flat_out = _flat_mean(out)
    assert np.all(np.isfinite(flat_out))

    flat = np.concatenate([rows[:, 6:], rows[:, :6]], axis=1)
    pair = reference_project(flat[[0, 2]], [[0, 1], [1, 0]])
    expected = np.stack([pair[0], flat[1], pair[1]]).mean(axis=0)
    np.testing.assert_allclose(flat_out, expected, rtol=1e-5, atol=1e-5)

    # No NaN through the backward pass either (the 0/0 branch is guarded on both sides of jnp.where).
    orders = jnp.asarray([[0, 1, 2], [1, 2, 0], [2, 0, 1]])
    grad = jax.grad(lambda g: project_conflicting(g, orders).sum())(jnp.asarray(flat))
    assert np.all(np.isfinite(np.asarray(grad)))

    assert isinstance(new_state, PCGradState)
    assert new_state.key.dtype == jnp.uint32
    assert not np.array_equal(np.asarray(new_state.key), np.asarray(state.key))
    state_dict = flax.serialization.to_state_dict(new_state)
    restored = flax.serialization.from_state_dict(tx.init(None), state_dict)
    assert isinstance(restored, PCGradState)
    np.testing.assert_array_equal(np.asarray(restored.key), np.asarray(new_state.key))


def test_chains_into_adam():
    params = {"dense": {"kernel": jnp.zeros((3, 2)), "bias": jnp.zeros(2)}}
    num_tasks = 3
    rng = np.random.default_rng(5)
    per_task = jax.tree_util.tree_map(
        lambda p: jnp.asarray(rng.normal(size=(num_tasks,) + p.shape), dtype=p.dtype), params)
    tx = optax.chain(pcgrad(), optax.adam(1e-3))
    state = tx.init(params)
    updates, state = jax.jit(tx.update)(per_task, state, params)
    for got, p in zip(jax.tree_util.tree_leaves(updates), jax.tree_util.tree_leaves(params)):
        assert got.shape == p.shape
        assert np.all(np.isfinite(np.asarray(got)))
    new_params = optax.apply_updates(params, updates)
    assert jax.tree_util.tree_structure(new_params) == jax.tree_util.tree_structure(params)
