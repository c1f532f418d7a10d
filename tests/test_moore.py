"""MOORE: Gram–Schmidt (orthonormal, equal to numpy, safe for dependent and zero outputs), the whole actor and a
critic against an independent numpy forward pass, per-task isolation of the task weights and heads, the twin
critics' grouping, roles and initialisation."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paco.config.methods import MOOREConfig
from paco.methods import moore
from paco.methods.base import SHARED, TASK

TASKS = ("a", "b", "c")
T, OBS, ACT, B = 3, 4, 2, 5
HIDDEN, K = (8, 7, 6), 3
D = HIDDEN[-1]


class Jitted:
    """The method with its calls jitted (eager flax dispatches, and compiles, op by op: slow)."""

    def __init__(self, method):
        self.method = method
        for name in ("init", "actor_outputs", "q_values", "features"):
            setattr(self, name, jax.jit(getattr(method, name)))

    def __getattr__(self, name):
        return getattr(self.method, name)


@functools.cache
def built(hidden=HIDDEN, num_experts=K):
    return Jitted(moore.build(MOOREConfig(hidden=hidden, num_experts=num_experts), TASKS, OBS, ACT))


def make(seed=1, scale=0.5):
    """A method and random parameters of its structure, N(0, scale²): experts, task weights and heads all
    different. (Only the structure comes from init, by shape.)"""
    method = built()
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(method.init, jax.random.PRNGKey(0))
    return method, jax.tree_util.tree_map(
        lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype), shapes)


def observations(G, seed=2):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((G, B, OBS)), jnp.float32)


def actions(G, seed=3):
    return jnp.asarray(np.random.default_rng(seed).uniform(-1, 1, (G, B, ACT)), jnp.float32)


def max_gram_error(U) -> float:
    """max |U Uᵀ − I| over all samples."""
    U = np.asarray(U, np.float64)
    return float(np.max(np.abs(U @ np.swapaxes(U, -1, -2) - np.eye(U.shape[-2]))))


def numpy_gram_schmidt(H: np.ndarray) -> np.ndarray:
    """Classical Gram–Schmidt of the rows of one sample's H (k, d), float64, written with loops, no ε."""
    basis = []
    for i in range(H.shape[0]):
        w = H[i].copy()
        for u in basis:
            w = w - np.dot(H[i], u) * u
        basis.append(w / np.linalg.norm(w))
    return np.stack(basis)


# -- 1. Gram–Schmidt ---------------------------------------------------------------------------------------

def test_gram_schmidt_random_is_orthonormal_and_matches_numpy():
    h = np.random.default_rng(0).standard_normal((6, 7, K + 1, 16)).astype(np.float32)
    U = np.asarray(jax.jit(moore.gram_schmidt)(jnp.asarray(h)))
    assert U.shape == h.shape
    assert max_gram_error(U) < 1e-5
    for idx in np.ndindex(h.shape[:2]):
        np.testing.assert_allclose(U[idx], numpy_gram_schmidt(h[idx].astype(np.float64)), atol=1e-5)
    # in order: u_1 is h_1's direction; span(u_1, u_2) = span(h_1, h_2)
    np.testing.assert_allclose(U[..., 0, :], h[..., 0, :] / np.linalg.norm(h[..., 0, :], axis=-1, keepdims=True),
                               atol=1e-6)


NEAR_SCALE = 1e-4  # h_2 = h_1 + 1e-4·noise: ‖h_2 − proj‖ ≈ 4e-4 ≫ ε = 1e-8, so the ε plays no part
NEAR_DIRECTION_TOL = 1e-2  # u_2 is h_2 − proj, of norm ≈ 4e-4, from float32 inputs: known to ≈ 1e-7 / 4e-4
NEAR_TOL = 1e-5  # measured max |U Uᵀ − I| for this seed, 1024 samples: 3.6e-7 with the second projection
#                  (one pass, as the official layer: 3.3e-3, losing orthogonality ≈ 4e-7 / NEAR_SCALE).


def test_gram_schmidt_nearly_dependent():
    rng = np.random.default_rng(0)
    h1 = rng.standard_normal((1024, 1, 16))
    h = np.concatenate([h1, h1 + NEAR_SCALE * rng.standard_normal((1024, 1, 16)),
                        rng.standard_normal((1024, 2, 16))], axis=1).astype(np.float32)
    cos = np.sum(h[:, 0] * h[:, 1], -1) / np.linalg.norm(h[:, 0], axis=-1) / np.linalg.norm(h[:, 1], axis=-1)
    assert np.min(cos) > 1 - 1e-6  # the input really is nearly dependent (unorthogonalised error ≈ 1)
    U = np.asarray(jax.jit(moore.gram_schmidt)(jnp.asarray(h)))
    assert np.all(np.isfinite(U))
    error = max_gram_error(U)
    assert error < NEAR_TOL, error
    # and it is the right basis, not just any orthonormal one: close to the float64 computation
    for n in range(0, 1024, 97):
        np.testing.assert_allclose(U[n], numpy_gram_schmidt(h[n].astype(np.float64)), atol=NEAR_DIRECTION_TOL)


@pytest.mark.parametrize("case", ["scaled_copy", "exact_copy", "representable", "zeros", "first_zero"])
def test_gram_schmidt_dependent_or_zero_is_finite(case):
    rng = np.random.default_rng(1)
    h = rng.standard_normal((4, K + 1, 16)).astype(np.float32)
    if case == "scaled_copy":
        h[:, 1] = 2.5 * h[:, 0]
    elif case == "exact_copy":
        h[:, 2] = h[:, 0]
        h[:, 3] = h[:, 1]
    elif case == "representable":  # the projection cancels exactly: h_2 − proj = 0
        h[:] = 0.0
        h[:, 0, 0], h[:, 1, 0], h[:, 2, 1], h[:, 3, 1] = 1.0, 2.0, 3.0, -1.0
    elif case == "zeros":
        h[:] = 0.0
    elif case == "first_zero":
        h[:, 0] = 0.0
    h = jnp.asarray(h)
    U = jax.jit(moore.gram_schmidt)(h)
    assert bool(jnp.all(jnp.isfinite(U)))
    assert bool(jnp.all(jnp.linalg.norm(U, axis=-1) <= 1 + 1e-5))
    weights = jnp.asarray(rng.standard_normal(U.shape), jnp.float32)
    grad = jax.jit(jax.grad(lambda x: jnp.sum(moore.gram_schmidt(x))))(h)
    grad_weighted = jax.jit(jax.grad(lambda x: jnp.sum(weights * moore.gram_schmidt(x))))(h)
    assert bool(jnp.all(jnp.isfinite(grad))) and bool(jnp.all(jnp.isfinite(grad_weighted)))
    if case == "zeros":
        np.testing.assert_array_equal(U, 0.0)
    if case == "representable":
        np.testing.assert_array_equal(U[:, 1], 0.0)  # no direction left: a zero vector, not NaN
        np.testing.assert_allclose(U[:, 0, 0], 1.0)
        np.testing.assert_allclose(U[:, 2, 1], 1.0)
    if case == "scaled_copy":  # u_1 is still h_1's direction (u_2 is rounding noise, normalised: no
        #                          orthogonality is claimed past an exactly dependent row)
        np.testing.assert_allclose(U[:, 0], h[:, 0] / jnp.linalg.norm(h[:, 0], axis=-1, keepdims=True), atol=1e-6)


# -- 2. the whole network against numpy --------------------------------------------------------------------

def numpy_network(P, x, tau):
    """One sample through one MOORE network, from the description with plain numpy and loops."""
    relu = lambda v: np.maximum(v, 0.0)
    layers = len(HIDDEN)
    outputs = []
    for i in range(K):
        h = x
        for l in range(layers):
            h = h @ P[f"experts_{l}"]["kernel"][i] + P[f"experts_{l}"]["bias"][i]
            if l < layers - 1:
                h = relu(h)
        outputs.append(h)
    U = numpy_gram_schmidt(np.stack(outputs))
    f = np.tanh(sum(P["task_weights"][tau, i] * U[i] for i in range(K)))
    return f @ P["heads"]["kernel"][tau] + P["heads"]["bias"][tau], U


def as_numpy(network_params):
    return jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), network_params["params"])


def test_actor_matches_numpy():
    method, params = make(seed=5)
    task_ids = jnp.array([2, 0, 1, 2])
    obs = observations(len(task_ids), seed=6)
    out = np.asarray(method.actor_outputs(params, obs, task_ids))
    basis = np.asarray(method.features(params["actor"], obs))
    assert out.shape == (len(task_ids), B, 2 * ACT)
    assert basis.shape == (len(task_ids), B, K, D)

    P = as_numpy(params["actor"])
    for g, tau in enumerate(np.asarray(task_ids)):
        for b in range(B):
            expected, U = numpy_network(P, np.asarray(obs[g, b], np.float64), tau)
            np.testing.assert_allclose(out[g, b], expected, rtol=1e-5, atol=1e-5)
            np.testing.assert_allclose(basis[g, b], U, atol=1e-5)
    assert max_gram_error(basis) < 1e-5
    # the same observations read as different tasks give different outputs (the task matters)
    as_task_0 = np.asarray(method.actor_outputs(params, obs, jnp.array([0, 0, 1, 2])))
    assert float(np.max(np.abs(out[0] - as_task_0[0]))) > 1e-3


def test_critic_matches_numpy():
    method, params = make(seed=7)
    task_ids = jnp.array([1, 1, 0])
    obs, action = observations(3, seed=8), actions(3, seed=9)
    q = np.asarray(method.q_values(params, params["critic"], obs, action, task_ids))
    for c in range(2):
        P = as_numpy(params["critic"][c])
        basis = np.asarray(method.features(params["critic"][c], obs, action))
        for g, tau in enumerate(np.asarray(task_ids)):
            for b in range(B):
                x = np.concatenate([np.asarray(obs[g, b]), np.asarray(action[g, b])]).astype(np.float64)
                expected, U = numpy_network(P, x, tau)
                np.testing.assert_allclose(q[c, g, b], expected[0], rtol=1e-5, atol=1e-5)
                np.testing.assert_allclose(basis[g, b], U, atol=1e-5)


# -- 3. per-task isolation of the task weights and heads ---------------------------------------------------

@pytest.mark.parametrize("network", ["actor", "critic"])
def test_task_parameters_get_gradient_only_from_their_task(network):
    method, params = make(seed=11)
    task_ids = jnp.array([2, 0, 2, 1])
    obs, action = observations(4, seed=12), actions(4, seed=13)

    def group_sum(net_params, g):
        if network == "actor":
            out = method.method.actor_outputs({"actor": net_params}, obs, task_ids)
        else:
            out = method.method.q_values({}, (net_params, params["critic"][1]), obs, action, task_ids)[0]
        return jnp.sum(out[g])

    net = params["actor"] if network == "actor" else params["critic"][0]
    grad_fn = jax.jit(jax.grad(group_sum), static_argnums=1)
    for g, tau in enumerate(np.asarray(task_ids)):
        grads = grad_fn(net, g)["params"]
        for name, leaf in (("task_weights", grads["task_weights"]), ("heads.kernel", grads["heads"]["kernel"]),
                           ("heads.bias", grads["heads"]["bias"])):
            leaf = np.asarray(leaf)
            others = np.delete(leaf, tau, axis=0)
            np.testing.assert_array_equal(others, 0.0, err_msg=f"{name}: group {g} (task {tau}) reaches other rows")
            assert np.max(np.abs(leaf[tau])) > 1e-6, f"{name}: group {g} does not train its own row {tau}"
        assert np.max(np.abs(np.asarray(grads["experts_0"]["kernel"]))) > 1e-6  # the experts are shared


# -- 4. critics, grouping, roles ---------------------------------------------------------------------------

def test_roles_and_structure():
    method, params = make()
    roles = method.roles(params)
    for net, role in [(params["actor"], roles["actor"]), *zip(params["critic"], roles["critic"])]:
        P, R = net["params"], role["params"]
        assert set(P) == {"experts_0", "experts_1", "experts_2", "task_weights", "heads"}
        assert R["task_weights"] == TASK and P["task_weights"].shape == (T, K)
        assert R["heads"] == {"kernel": TASK, "bias": TASK}
        assert P["heads"]["kernel"].shape[:2] == (T, D) and P["heads"]["bias"].shape[0] == T
        for l, (n_in, n_out) in enumerate(zip((None,) + HIDDEN[:-1], HIDDEN)):
            assert R[f"experts_{l}"] == {"kernel": SHARED, "bias": SHARED}
            assert P[f"experts_{l}"]["kernel"].shape[0] == K and P[f"experts_{l}"]["kernel"].shape[2] == n_out
            if n_in is not None:
                assert P[f"experts_{l}"]["kernel"].shape[1] == n_in
    assert params["actor"]["params"]["experts_0"]["kernel"].shape[1] == OBS
    assert params["critic"][0]["params"]["experts_0"]["kernel"].shape[1] == OBS + ACT
    assert params["actor"]["params"]["heads"]["kernel"].shape[2] == 2 * ACT
    assert params["critic"][0]["params"]["heads"]["kernel"].shape[2] == 1


def test_initialisation():
    hidden, k = (64, 48), 4
    method = built(hidden, k)
    params = method.init(jax.random.PRNGKey(0))
    P = params["actor"]["params"]

    def within(leaf, bound):
        top = float(jnp.max(jnp.abs(leaf)))
        assert 0.8 * bound < top <= bound, (top, bound)
        assert float(jnp.min(leaf)) < 0

    for name, fan_in in (("experts_0", OBS), ("experts_1", 64)):  # PyTorch default, per expert
        within(P[name]["kernel"], 1 / np.sqrt(fan_in))
        within(P[name]["bias"], 1 / np.sqrt(fan_in))
        assert float(jnp.max(jnp.abs(P[name]["kernel"][0] - P[name]["kernel"][1]))) > 0  # experts start different
    within(P["task_weights"], np.sqrt(6 / (T + k)))
    within(P["heads"]["kernel"], np.sqrt(6 / (48 + 2 * ACT)))
    within(P["heads"]["bias"], 1 / np.sqrt(48))
    a, c0, c1 = params["actor"], *params["critic"]
    assert float(jnp.max(jnp.abs(c0["params"]["task_weights"] - c1["params"]["task_weights"]))) > 0
    obs = observations(T)
    assert max_gram_error(method.features(a, obs)) < 1e-5
    assert bool(jnp.all(jnp.isfinite(method.actor_outputs(params, obs, None))))


def test_build_rejects_bad_sizes():
    with pytest.raises(ValueError, match="num_experts"):
        moore.build(MOOREConfig(hidden=(8, 3), num_experts=4), TASKS, OBS, ACT)
    with pytest.raises(ValueError, match="hidden"):
        moore.build(MOOREConfig(hidden=(), num_experts=2), TASKS, OBS, ACT)
