"""CARE (paco.methods.care): attention from the stored context, the forward pass, the detach rules, the
two Polyak rates and the prepared policy. Small widths, CPU."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paco.config.methods import CAREConfig
from paco.envs.task_embeddings import load_task_embeddings
from paco.methods.base import SHARED
from paco.methods.care import CARE, build

TASKS = ("reach-v3", "push-v3", "rot0", "rot90")
OBS, ACT, K, D = 7, 3, 3, 8
CONFIG = CAREConfig(hidden=(16, 12), num_experts=K, encoder_dim=D)


@pytest.fixture(scope="module")
def method() -> CARE:
    return build(CONFIG, TASKS, OBS, ACT)


@pytest.fixture(scope="module")
def params(method):
    return jax.jit(method.init)(jax.random.key(0))


def grouped_obs(seed: int, groups: int = len(TASKS), batch: int = 5) -> jnp.ndarray:
    return jax.random.normal(jax.random.key(seed), (groups, batch, OBS))


def leaves(tree) -> list[np.ndarray]:
    return [np.asarray(x) for x in jax.tree.leaves(tree)]


# -- 1. attention ------------------------------------------------------------------------------------------------
def test_attention_is_a_distribution_per_task_from_the_stored_embeddings(method, params):
    np.testing.assert_array_equal(method.context, load_task_embeddings(TASKS))
    alpha = np.asarray(method.attention(params, None))
    assert alpha.shape == (len(TASKS), K)
    np.testing.assert_allclose(alpha.sum(-1), 1.0, atol=1e-6)
    assert (alpha >= 0).all()
    for i in range(len(TASKS)):
        for j in range(i + 1, len(TASKS)):
            assert np.abs(alpha[i] - alpha[j]).max() > 1e-6, (TASKS[i], TASKS[j])
    # Mixed task ids gather the same rows.
    np.testing.assert_allclose(method.attention(params, jnp.array([2, 0, 2])), alpha[[2, 0, 2]], atol=1e-7)


def test_changing_one_tasks_context_row_changes_only_that_tasks_attention(method, params):
    table = np.array(method.context, copy=True)
    table[1] = load_task_embeddings(["drawer-open-v3"])[0]
    other = dataclasses.replace(method, context=table)
    before = np.asarray(method.attention(params, None))
    after = np.asarray(other.attention(params, None))
    assert np.abs(after[1] - before[1]).max() > 1e-6
    np.testing.assert_array_equal(np.delete(after, 1, 0), np.delete(before, 1, 0))
    # The changed context reaches the actor too, for that task only.
    obs = grouped_obs(1)
    out, out2 = np.asarray(method.actor_outputs(params, obs)), np.asarray(other.actor_outputs(params, obs))
    assert np.abs(out2[1] - out[1]).max() > 1e-6
    np.testing.assert_array_equal(np.delete(out2, 1, 0), np.delete(out, 1, 0))


# -- 2. the forward pass, in plain numpy -----------------------------------------------------------------------
def numpy_actor(params, context: np.ndarray, obs: np.ndarray, task_ids) -> np.ndarray:
    """The actor's output from the module docstring's description, in float64, one sample at a time."""
    relu = lambda x: np.maximum(x, 0.0)  # noqa: E731
    f64 = lambda tree: jax.tree.map(lambda x: np.asarray(x, np.float64), tree)  # noqa: E731
    enc, actor = f64(params["critic"]["encoder"]), f64(params["actor"])

    def mlp(layers, x):
        for n, (w, b) in enumerate(layers):
            x = x @ w + b
            if n < len(layers) - 1:
                x = relu(x)
        return x

    out = np.zeros(obs.shape[:2] + (2 * ACT,))
    for g, task in enumerate(task_ids):
        c = context[task].astype(np.float64)
        (p1w, p1b), (p2w, p2b) = enc["projection"]
        h = relu(relu(relu(c) @ p1w + p1b) @ p2w + p2b)
        z_ctx = mlp(enc["trunk"], h)
        logits = mlp(enc["attention"], z_ctx)
        alpha = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        (w1, b1), (w2, b2) = enc["experts"]
        for b in range(obs.shape[1]):
            s = obs[g, b].astype(np.float64)
            z_enc = sum(alpha[i] * (relu(s @ w1[i] + b1[i]) @ w2[i] + b2[i]) for i in range(K))
            out[g, b] = mlp(actor, np.concatenate([z_enc, z_ctx]))
    return out


def test_actor_outputs_match_an_independent_numpy_forward_pass(method, params):
    # Scale the parameters up so that the output is not near zero (a weak comparison).
    params = jax.tree.map(lambda x: 2.0 * x + 0.05, params)
    obs = np.asarray(grouped_obs(2))
    expected = numpy_actor(params, method.context, obs, range(len(TASKS)))
    got = np.asarray(method.actor_outputs(params, jnp.asarray(obs), None))
    assert np.abs(expected).max() > 0.1
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    ids = [3, 1, 3]
    got = np.asarray(method.actor_outputs(params, jnp.asarray(obs[:3]), jnp.array(ids)))
    np.testing.assert_allclose(got, numpy_actor(params, method.context, obs[:3], ids), rtol=0, atol=1e-5)


# -- 3. detach rules ---------------------------------------------------------------------------------------------
def test_actor_does_not_train_the_encoder_and_the_critic_does(method, params):
    obs = grouped_obs(3)
    action = jax.random.uniform(jax.random.key(4), obs.shape[:2] + (ACT,), minval=-1, maxval=1)
    actor_grad = jax.jit(jax.grad(lambda p: jnp.sum(method.actor_outputs(p, obs) ** 2)))(params)
    for leaf in leaves(actor_grad["critic"]["encoder"]):
        assert (leaf == 0).all()
    assert all(np.abs(x).max() > 0 for x in leaves(actor_grad["actor"]))

    critic_grad = jax.jit(jax.grad(lambda p: jnp.sum(method.q_values(p, p["critic"], obs, action) ** 2)))(params)
    for part, tree in critic_grad["critic"]["encoder"].items():
        assert max(np.abs(x).max() for x in leaves(tree)) > 0, part
    for q in critic_grad["critic"]["q"]:
        assert max(np.abs(x).max() for x in leaves(q)) > 0
    for leaf in leaves(critic_grad["actor"]):
        assert (leaf == 0).all()


def test_q_values_read_the_given_critic_and_both_share_its_encoder(method, params):
    obs = grouped_obs(5)
    action = jnp.zeros(obs.shape[:2] + (ACT,))
    q = method.q_values(params, params["critic"], obs, action)
    assert q.shape == (2, len(TASKS), obs.shape[1])
    assert np.abs(np.asarray(q[0] - q[1])).max() > 1e-6  # two critics, initialised apart
    other_encoder = jax.tree.map(lambda x: 0.5 * x + 0.02, params["critic"]["encoder"])
    mixed = {"encoder": other_encoder, "q": params["critic"]["q"]}
    assert np.abs(np.asarray(method.q_values(params, mixed, obs, action) - q)).max() > 1e-6


# -- 4. Polyak rates --------------------------------------------------------------------------------------------
def test_update_target_moves_the_encoder_at_encoder_tau_and_q_at_tau(method, params):
    online = params["critic"]
    target = jax.tree.map(lambda x: 0.5 * x - 0.03, online)
    new = method.update_target(online, target, 0.005)
    assert jax.tree.structure(new) == jax.tree.structure(target)
    for part, rate in (("encoder", CONFIG.encoder_tau), ("q", 0.005)):
        for o, t, n in zip(leaves(online[part]), leaves(target[part]), leaves(new[part])):
            np.testing.assert_allclose(n - t, rate * (o - t), rtol=1e-4, atol=1e-7)
    assert CONFIG.encoder_tau == 0.05


# -- 5. the prepared policy ------------------------------------------------------------------------------------
def test_roles_are_all_shared(method, params):
    roles = method.roles(params)
    assert jax.tree.structure(roles) == jax.tree.structure(params)
    assert set(jax.tree.leaves(roles)) == {SHARED}


def test_experts_are_xavier_uniform_per_expert(params):
    (w1, b1), (w2, b2) = params["critic"]["encoder"]["experts"]
    for w, (n_in, n_out) in ((w1, (OBS, D)), (w2, (D, D))):
        assert w.shape == (K, n_in, n_out)
        bound = np.sqrt(6.0 / (n_in + n_out))  # fan-in and fan-out of one expert, not of the stack
        top = np.abs(np.asarray(w)).max(axis=(1, 2))
        assert (top <= bound).all() and (top > 0.7 * bound).all()
        assert np.abs(np.asarray(w[0] - w[1])).max() > 0  # experts start different
    assert not np.asarray(b1).any() and not np.asarray(b2).any()


def test_build_reads_the_config_and_rejects_unknown_tasks():
    m = build(CAREConfig(), ("reach-v3",), 39, 4)
    p = jax.eval_shape(m.init, jax.random.key(0))
    (w1, _), _ = p["critic"]["encoder"]["experts"]
    assert w1.shape == (4, 39, 50)  # k = 4 experts, encoder_dim 50
    assert [k.shape for k, _ in p["critic"]["encoder"]["projection"]] == [(384, 100), (100, 50)]
    assert [k.shape for k, _ in p["critic"]["encoder"]["attention"]] == [(50, 50), (50, 50), (50, 4)]
    assert [k.shape for k, _ in p["actor"]] == [(100, 400), (400, 400), (400, 400), (400, 8)]
    assert [k.shape for k, _ in p["critic"]["q"][0]] == [(104, 400), (400, 400), (400, 400), (400, 1)]
    with pytest.raises(ValueError, match="no-such-task"):
        build(CAREConfig(), ("reach-v3", "no-such-task"), 39, 4)
    with pytest.raises(ValueError, match="encoder_tau"):
        build(CAREConfig(encoder_tau=1.5), ("reach-v3",), 39, 4)


def test_methods_for_different_tasks_are_not_equal():
    a, b = build(CONFIG, ("reach-v3", "push-v3"), OBS, ACT), build(CONFIG, ("reach-v3", "rot0"), OBS, ACT)
    assert a != b and a == build(CONFIG, ("reach-v3", "push-v3"), OBS, ACT)
