"""Soft-Modularization: routing weights, the whole actor against an independent numpy forward pass, the twin
critics' grouping, and the per-task role of the task embedding."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paco.config.methods import SoftModulesConfig
from paco.methods import soft_modules
from paco.methods.base import SHARED, TASK

TASKS = ("a", "b", "c")
T, OBS, ACT, B = 3, 4, 2, 5
SMALL = dict(trunk_width=8, gating_width=6, module_width=5)


class Jitted:
    """The method with its calls jitted (eager flax dispatches, and compiles, op by op: slow)."""

    def __init__(self, method):
        self.method = method
        for name in ("init", "actor_outputs", "q_values", "routing", "policy_distribution",
                     "actor_distribution"):
            setattr(self, name, jax.jit(getattr(method, name)))

    def __getattr__(self, name):
        return getattr(self.method, name)


@functools.cache
def built(num_layers=3, num_modules=3, widths=tuple(SMALL.items())):
    config = SoftModulesConfig(num_layers=num_layers, num_modules=num_modules, **dict(widths))
    return Jitted(soft_modules.build(config, TASKS, OBS, ACT))


def make(num_layers=3, num_modules=3, seed=1, scale=0.5):
    """A method and random parameters of its structure, N(0, scale²): routing far from uniform, modules
    different. (Only the structure comes from init, by shape: compiling init is slow on CPU.)"""
    method = built(num_layers, num_modules)
    rng = np.random.default_rng(seed)
    shapes = jax.eval_shape(method.init, jax.random.PRNGKey(0))
    return method, jax.tree_util.tree_map(
        lambda x: jnp.asarray(scale * rng.standard_normal(x.shape), x.dtype), shapes)


def observations(G, seed=2):
    return jnp.asarray(np.random.default_rng(seed).standard_normal((G, B, OBS)), jnp.float32)


@pytest.fixture(scope="module")
def setup():
    method, params = make()
    obs = observations(T)
    action = jnp.asarray(np.random.default_rng(3).uniform(-1, 1, (T, B, ACT)), jnp.float32)
    return method, params, obs, action


# -- 1. routing weights ------------------------------------------------------------------------------------

@pytest.mark.parametrize("num_layers,num_modules", [(2, 2), (3, 3), (4, 2)])
def test_routing_weights_are_distributions(num_layers, num_modules):
    method, params = make(num_layers, num_modules)
    obs = observations(T)
    action = jnp.zeros((T, B, ACT))
    for net, act in ((params["actor"], None), (params["critic"][0], action), (params["critic"][1], action)):
        weights = method.routing(net, obs, None, act)
        assert len(weights) == num_layers
        for p in weights[:-1]:
            assert p.shape == (T, B, num_modules, num_modules)
        assert weights[-1].shape == (T, B, num_modules)
        for p in weights:
            assert bool(jnp.all(p >= 0))
            np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)


def test_routing_depends_on_task(setup):
    method, params, obs, _ = setup
    same = jnp.broadcast_to(obs[:1], (2, B, OBS))  # one observation batch, seen as task 0 and as task 1
    weights = method.routing(params["actor"], same, jnp.array([0, 1]))
    for p in weights:
        assert float(jnp.max(jnp.abs(p[0] - p[1]))) > 1e-3
    # and on the observation, for one task
    weights = method.routing(params["actor"], obs[:2], jnp.array([0, 0]))
    assert float(jnp.max(jnp.abs(weights[0][0] - weights[0][1]))) > 1e-3


# -- 2. the whole actor against numpy ----------------------------------------------------------------------

def numpy_forward(P, x, onehot, num_layers, n):
    """One sample through the network, written from the description with plain numpy and loops."""
    relu = lambda v: np.maximum(v, 0.0)

    def lin(name, v):
        return v @ P[name]["kernel"] + P[name]["bias"]

    def softmax(v):
        e = np.exp(v - v.max(axis=-1, keepdims=True))
        return e / e.sum(axis=-1, keepdims=True)

    f = lin("trunk_1", relu(lin("trunk_0", x)))
    z = lin("task_embedding", onehot)
    h0 = relu(f)
    g = lin("gating_1", relu(lin("gating_0", relu(z * f))))

    ps = [softmax(lin("routing_logits_0", relu(g)).reshape(n, n))]
    for l in range(2, num_layers + 1):
        cond = np.concatenate([p.reshape(-1) for p in ps])
        c = relu(lin(f"routing_cond_{l - 2}", cond) * g)
        logits = lin(f"routing_logits_{l - 1}", c)
        ps.append(softmax(logits.reshape(n, n)) if l < num_layers else softmax(logits))

    def module(layer, j, v):
        m = P[f"module_layers_{layer}"]
        return v @ m["kernel"][j] + m["bias"][j]

    o = [module(0, j, h0) for j in range(n)]
    for l in range(2, num_layers + 1):
        p = ps[l - 2]
        o = [module(l - 1, j, relu(sum(p[j, i] * o[i] for i in range(n)))) for j in range(n)]
    mixed = relu(sum(ps[-1][j] * o[j] for j in range(n)))
    return lin("output", mixed), ps


@pytest.mark.parametrize("num_layers,num_modules", [(3, 3), (2, 2)])
def test_actor_matches_numpy(num_layers, num_modules):
    method, params = make(num_layers, num_modules, seed=5)
    task_ids = jnp.array([2, 0, 1, 2])
    obs = observations(len(task_ids), seed=6)
    out = np.asarray(method.actor_outputs(params, obs, task_ids))
    weights = [np.asarray(p) for p in method.routing(params["actor"], obs, task_ids)]
    assert out.shape == (len(task_ids), B, 2 * ACT)

    P = jax.tree_util.tree_map(lambda a: np.asarray(a, np.float64), params["actor"]["params"])
    for g, tau in enumerate(np.asarray(task_ids)):
        for b in range(B):
            expected, ps = numpy_forward(P, np.asarray(obs[g, b], np.float64), np.eye(T)[tau],
                                         num_layers, num_modules)
            np.testing.assert_allclose(out[g, b], expected, rtol=1e-5, atol=1e-5)
            for p, q in zip(weights, ps):
                np.testing.assert_allclose(p[g, b], q, rtol=1e-5, atol=1e-6)


def test_modules_are_batched_weights(setup):
    method, params, _, _ = setup
    P = params["actor"]["params"]
    assert P["module_layers_0"]["kernel"].shape == (3, SMALL["trunk_width"], SMALL["module_width"])
    assert P["module_layers_2"]["kernel"].shape == (3, SMALL["module_width"], SMALL["module_width"])
    assert P["task_embedding"]["kernel"].shape == (T, SMALL["trunk_width"])
    assert P["routing_cond_1"]["kernel"].shape == (2 * 9, SMALL["gating_width"])  # W_u^L reads p¹ and p²
    assert P["routing_logits_2"]["kernel"].shape == (SMALL["gating_width"], 3)
    assert P["output"]["kernel"].shape == (SMALL["module_width"], 2 * ACT)


def test_initialisation():
    widths = dict(trunk_width=64, gating_width=32, module_width=48)
    params = built(3, 3, tuple(widths.items())).init(jax.random.PRNGKey(0))
    P = params["actor"]["params"]
    for name in ("routing_logits_0", "routing_logits_1", "routing_logits_2", "output"):
        for leaf in P[name].values():
            assert float(jnp.max(jnp.abs(leaf))) <= 3e-3
            assert float(jnp.max(jnp.abs(leaf))) > 1e-3
            assert float(jnp.min(leaf)) < 0  # symmetric, U(±3e-3)
    for name, fan_in in (("trunk_0", OBS), ("trunk_1", 64), ("task_embedding", T), ("gating_0", 64),
                         ("routing_cond_0", 9), ("module_layers_0", 64), ("module_layers_1", 48)):
        bound = 1 / np.sqrt(fan_in)
        kernel = P[name]["kernel"]
        assert float(jnp.max(jnp.abs(kernel))) <= bound
        assert float(jnp.max(jnp.abs(kernel))) > 0.8 * bound  # each module its own fan-in, not n·in
        np.testing.assert_array_equal(P[name]["bias"], np.float32(0.1))
    modules = P["module_layers_1"]["kernel"]
    assert float(jnp.max(jnp.abs(modules[0] - modules[1]))) > 0  # modules start different


def test_build_rejects_a_single_layer():
    with pytest.raises(ValueError, match="num_layers"):
        soft_modules.build(SoftModulesConfig(num_layers=1), TASKS, OBS, ACT)


# -- 3. roles (tests/test_methods.py checks every method's gradients and grouping) ---------------------------

def test_roles(setup):
    method, params, _, _ = setup
    roles = method.roles(params)
    flat = jax.tree_util.tree_flatten_with_path(roles)[0]
    task = [jax.tree_util.keystr(path) for path, role in flat if role == TASK]
    assert sorted(task) == sorted([
        "['actor']['params']['task_embedding']['kernel']",
        "['critic'][0]['params']['task_embedding']['kernel']",
        "['critic'][1]['params']['task_embedding']['kernel']",
    ])
    assert all(role in (SHARED, TASK) for _, role in flat)
    for leaf, role in zip(jax.tree_util.tree_leaves(params), jax.tree_util.tree_leaves(roles)):
        if role == TASK:
            assert leaf.shape[0] == T
