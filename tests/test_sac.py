"""Multi-task SAC losses, gradients, maskout and w-reset, checked against independent computations."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from paco import stability
from paco.config import Config, SACConfig, StabilityConfig, replace
from paco.config.methods import BY_NAME, PaCoConfig
from paco.methods.compositional import Compositional
from paco.nets import tanh_gaussian_log_prob
from paco.sac import (Batch, init_state, make_losses, make_optimizer, make_task_losses, make_update,
                      per_task_gradient, td_target)

T, B, OBS, ACT = 3, 6, 5, 2
LOG_STD = (-10.0, 2.0)


def make_batch(seed=0, reward_scale=1.0):
    rng = np.random.default_rng(seed)
    return Batch(
        obs=jnp.asarray(rng.normal(size=(T, B, OBS)), jnp.float32),
        action=jnp.asarray(rng.uniform(-0.9, 0.9, size=(T, B, ACT)), jnp.float32),
        reward=jnp.asarray(reward_scale * rng.normal(size=(T, B)), jnp.float32),
        next_obs=jnp.asarray(rng.normal(size=(T, B, OBS)), jnp.float32),
        terminated=jnp.asarray(rng.uniform(size=(T, B)) < 0.3, jnp.float32),
    )


def build(method="paco", k=3, **stab):
    network = PaCoConfig(hidden=(16, 16), num_components=k) if method == "paco" else BY_NAME[method](hidden=(16, 16))
    config = Config(network=network, sac=SACConfig(), stability=StabilityConfig(**stab))
    nets = Compositional.build(network, T, OBS, ACT)
    state = init_state(nets, config, jax.random.PRNGKey(0))
    # Distinct parameter-set slices, w away from zero and temperatures that differ per task.
    params = dict(state.params)
    params["actor"] = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(1), p.shape), params["actor"])
    params["critic"] = jax.tree.map(lambda p: p + 0.3 * jax.random.normal(jax.random.PRNGKey(2), p.shape), params["critic"])
    params["log_alpha"] = jnp.array([-0.5, -1.0, -2.0])
    state = state.replace(params=params, target_critic=jax.tree.map(lambda p: 0.9 * p, params["critic"]),
                          opt_state=make_optimizer(config, nets).init(params))
    return config, nets, state


# -- independent numpy model -------------------------------------------------------------------------------
def with_onehot(x, extra=None):
    """[x, task one-hot, extra] per task, the input layout of MT-SAC's networks."""
    onehot = np.broadcast_to(np.eye(T)[:, None, :], x.shape[:2] + (T,))
    return np.concatenate([x, onehot] + ([] if extra is None else [extra]), -1)


def np_mlp(params, w, x):
    layers = params["params"]
    names = sorted(layers, key=lambda n: int(n.split("_")[-1]))
    out = []
    for task in range(T):
        h = x[task]
        for i, name in enumerate(names):
            kernel, bias = np.asarray(layers[name]["kernel"], np.float64), np.asarray(layers[name]["bias"], np.float64)
            if kernel.shape[0] > 1:
                kernel, bias = np.tensordot(w[task], kernel, 1), w[task] @ bias
            else:
                kernel, bias = kernel[0], bias[0]
            h = h @ kernel + bias
            if i < len(names) - 1:
                h = np.maximum(h, 0)
        out.append(h)
    return np.stack(out)


def np_policy(params, w, obs, noise, onehot_input):
    out = np_mlp(params, w, with_onehot(obs) if onehot_input else obs)
    mean, raw = out[..., :ACT], out[..., ACT:]
    log_std = LOG_STD[0] + 0.5 * (LOG_STD[1] - LOG_STD[0]) * (np.tanh(raw) + 1)
    u = mean + np.exp(log_std) * noise
    # log(1 - tanh(u)^2) = log(4 / (e^u + e^-u)^2), written so that it stays finite where tanh(u) rounds to 1.
    log_det = 2 * (np.log(2) - np.abs(u) - np.log1p(np.exp(-2 * np.abs(u))))
    log_prob = np.sum(-0.5 * noise**2 - log_std - 0.5 * np.log(2 * np.pi) - log_det, -1)
    return np.tanh(u), log_prob


def np_q(critics, w, obs, action, onehot_input):
    qs = []
    for single in critics:
        x = with_onehot(obs, action) if onehot_input else np.concatenate([obs, action], -1)
        qs.append(np_mlp(single, w, x)[..., 0])
    return np.stack(qs)


def np_losses(nets, state, batch, key, config):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), state.params)
    w = p["w"]
    k_next, k_pi = jax.random.split(key)
    noise_next = np.asarray(jax.random.normal(k_next, (T, B, ACT)), np.float64)
    noise_pi = np.asarray(jax.random.normal(k_pi, (T, B, ACT)), np.float64)
    b = {name: np.asarray(value, np.float64) for name, value in batch._asdict().items()}
    alpha = np.exp(p["log_alpha"])
    a_onehot, c_onehot = nets.arch.actor.onehot_input, nets.arch.critic.onehot_input
    next_a, next_logp = np_policy(p["actor"], w, b["next_obs"], noise_next, a_onehot)
    target = jax.tree.map(lambda a: np.asarray(a, np.float64), state.target_critic)
    next_q = np_q(target, w, b["next_obs"], next_a, c_onehot).min(0)
    y = b["reward"] + config.sac.gamma * (1 - b["terminated"]) * (next_q - alpha[:, None] * next_logp)
    q = np_q(p["critic"], w, b["obs"], b["action"], c_onehot)
    critic = ((q - y) ** 2).mean(-1).sum(0)
    a, logp = np_policy(p["actor"], w, b["obs"], noise_pi, a_onehot)
    actor = (alpha[:, None] * logp - np_q(p["critic"], w, b["obs"], a, c_onehot).min(0)).mean(-1)
    target_entropy = ACT * config.sac.target_entropy_per_action_dim
    alpha_loss = -p["log_alpha"] * (logp + target_entropy).mean(-1)
    return critic, actor, alpha_loss


# -- tests ---------------------------------------------------------------------------------------------------
def test_td_target_bootstraps_on_truncation_but_not_on_termination():
    reward = jnp.array([[1.0, 1.0]])
    next_q = jnp.array([[10.0, 10.0]])
    next_log_prob = jnp.array([[-2.0, -2.0]])
    alpha = jnp.array([0.5])
    # Sample 0 ended by the time limit (stored as not terminated), sample 1 by a true termination.
    terminated = jnp.array([[0.0, 1.0]])
    y = np.asarray(td_target(reward, terminated, next_q, next_log_prob, alpha, 0.99))
    np.testing.assert_allclose(y, [[1.0 + 0.99 * (10.0 + 0.5 * 2.0), 1.0]], rtol=1e-6)


def test_tanh_gaussian_log_prob_matches_change_of_variables():
    rng = np.random.default_rng(0)
    mean, log_std = rng.normal(size=(4, 3)), rng.uniform(-2, 1, size=(4, 3))
    u = mean + np.exp(log_std) * rng.normal(size=(4, 3))
    gauss = -0.5 * ((u - mean) / np.exp(log_std)) ** 2 - log_std - 0.5 * math.log(2 * math.pi)
    expected = np.sum(gauss - np.log(1 - np.tanh(u) ** 2), -1)
    got = tanh_gaussian_log_prob(jnp.asarray(u), jnp.asarray(mean), jnp.asarray(log_std))
    np.testing.assert_allclose(np.asarray(got), expected, rtol=1e-5)
    # Far in the tails the naive formula gives -inf; the stable form stays finite.
    assert np.isfinite(np.asarray(tanh_gaussian_log_prob(jnp.array([[30.0]]), jnp.array([[30.0]]), jnp.array([[0.0]]))))


@pytest.mark.parametrize("method", ["mtsac", "paco", "multihead"])
def test_per_task_losses_match_numpy(method):
    config, nets, state = build(method)
    batch = make_batch()
    key = jax.random.PRNGKey(42)
    losses = make_losses(nets, config.sac)(state.params, state.target_critic, batch, key)
    critic, actor, alpha = np_losses(nets, state, batch, key, config)
    assert losses.critic.shape == losses.actor.shape == losses.alpha.shape == (T,)
    np.testing.assert_allclose(np.asarray(losses.critic), critic, rtol=2e-4)
    # The actor loss is a difference of terms of size ~10 computed in float32: compare at 1e-4 of that.
    np.testing.assert_allclose(np.asarray(losses.actor), actor, rtol=2e-4, atol=1e-3)
    np.testing.assert_allclose(np.asarray(losses.alpha), alpha, rtol=2e-4, atol=1e-5)


def _per_task_grads(nets, config, state, batch, key):
    losses_fn = make_losses(nets, config.sac)

    def task_loss(params, task):
        losses = losses_fn(params, state.target_critic, batch, key)
        return (losses.critic + losses.actor + losses.alpha)[task]

    return [jax.grad(task_loss)(state.params, task) for task in range(T)]


def test_task_loss_reaches_only_its_own_w_and_parameter_set_gets_the_sum():
    config, nets, state = build("paco")
    batch, key = make_batch(), jax.random.PRNGKey(3)
    per_task = _per_task_grads(nets, config, state, batch, key)
    for task, grads in enumerate(per_task):
        w_grad = np.asarray(grads["w"])
        assert np.abs(w_grad[task]).sum() > 0
        np.testing.assert_array_equal(np.delete(w_grad, task, axis=0), 0.0)
    losses_fn = make_losses(nets, config.sac)

    def total(params):
        losses = losses_fn(params, state.target_critic, batch, key)
        return jnp.sum(losses.critic + losses.actor + losses.alpha)

    total_grads = jax.grad(total)(state.params)
    summed = jax.tree.map(lambda *g: sum(g), *per_task)
    for part in ("actor", "critic"):
        for got, want in zip(jax.tree.leaves(total_grads[part]), jax.tree.leaves(summed[part])):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-4, atol=1e-5)


def _update_from_tasks(nets, config, state, batch, tasks):
    """The update an optimiser makes from the given tasks' losses alone (independent of maskout)."""
    _, k_loss, _ = jax.random.split(state.key, 3)
    losses_fn = make_losses(nets, config.sac)

    def loss(params):
        losses = losses_fn(params, state.target_critic, batch, k_loss)
        return jnp.sum((losses.critic + losses.actor + losses.alpha)[jnp.array(tasks)])

    grads = jax.grad(loss)(state.params)
    updates, _ = make_optimizer(config, nets).update(grads, state.opt_state, state.params)
    return optax.apply_updates(state.params, updates)


@pytest.mark.parametrize("poison", [1e6, np.nan])
def test_maskout_update_equals_update_from_healthy_tasks(poison):
    config, nets, state = build("paco", mode="maskout")
    batch = make_batch()
    bad_reward = batch.reward.at[0].set(poison if np.isnan(poison) else batch.reward[0] * poison)
    batch = batch._replace(reward=bad_reward)
    new_state, _, metrics = make_update(nets, config)(state, batch)
    assert list(np.asarray(metrics["healthy"])) == [False, True, True]
    assert bool(metrics["finite_grad"])
    expected = _update_from_tasks(nets, config, state, make_batch()._replace(reward=bad_reward.at[0].set(0.0)), [1, 2])
    for part in ("actor", "critic", "w"):
        for got, want in zip(jax.tree.leaves(new_state.params[part]), jax.tree.leaves(expected[part])):
            np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)


def test_w_reset_moves_exploded_w_into_the_convex_hull_and_touches_nothing_else():
    config, nets, state = build("paco", mode="maskout")
    reset_config = replace(config, stability={"mode": "reset"})
    batch = make_batch()
    batch = batch._replace(reward=batch.reward.at[1].multiply(1e6))
    masked, _, _ = make_update(nets, config)(state, batch)
    reset, _, metrics = make_update(nets, reset_config)(state, batch)
    healthy = np.asarray(metrics["healthy"])
    assert list(healthy) == [True, False, True]
    for part in ("actor", "critic", "log_alpha"):
        for a, b in zip(jax.tree.leaves(masked.params[part]), jax.tree.leaves(reset.params[part])):
            np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    for a, b in zip(jax.tree.leaves(masked.opt_state), jax.tree.leaves(reset.opt_state)):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    w_before, w_after = np.asarray(masked.params["w"]), np.asarray(reset.params["w"])
    np.testing.assert_array_equal(w_after[[0, 2]], w_before[[0, 2]])
    # w_1 = β0 w_0 + β2 w_2 with β on the simplex: solve for β and check it.
    beta, *_ = np.linalg.lstsq(w_before[[0, 2]].T, w_after[1], rcond=None)
    np.testing.assert_allclose(w_before[[0, 2]].T @ beta, w_after[1], atol=1e-5)
    assert np.all(beta >= -1e-6) and abs(beta.sum() - 1) < 1e-5
    assert not np.allclose(w_after[1], w_before[1])


@pytest.mark.parametrize("draw", ["dirichlet", "uniform-normalized"])
def test_simplex_weights_put_mass_only_on_healthy_tasks(draw):
    healthy = jnp.array([True, False, True, True, False])
    beta = np.asarray(stability.simplex_weights(jax.random.PRNGKey(0), healthy, draw))
    np.testing.assert_allclose(beta.sum(-1), 1.0, rtol=1e-6)
    assert np.all(beta >= 0) and np.all(beta[:, [1, 4]] == 0)


def test_no_reset_when_every_task_exploded():
    w = jnp.arange(6.0).reshape(3, 2)
    out = stability.reset_exploded_w(w, jnp.zeros(3, bool), jax.random.PRNGKey(0))
    np.testing.assert_array_equal(np.asarray(out), np.asarray(w))


def test_vanilla_keeps_every_task_and_threshold_is_inclusive():
    losses = jnp.array([1.0, 3e3, 3e3 + 1, jnp.inf, jnp.nan])
    assert list(np.asarray(stability.healthy_tasks(losses, 3e3, "maskout"))) == [True, True, False, False, False]
    assert np.asarray(stability.healthy_tasks(losses, 3e3, "vanilla")).all()


def test_temperatures_are_per_task_and_clamped():
    config, nets, state = build("mtsac")
    update = make_update(nets, config)
    for _ in range(3):
        state, _, metrics = update(state, make_batch())
    log_alpha = np.asarray(state.params["log_alpha"])
    assert log_alpha.shape == (T,) and len(set(log_alpha.round(6))) == T
    assert np.all(log_alpha <= config.sac.log_alpha_max) and np.all(log_alpha >= config.sac.log_alpha_min)


def test_per_task_gradients_from_one_vmapped_call_equal_each_tasks_own_gradient():
    """What gradient surgery receives: row τ is the gradient of task τ's loss on its own samples, computed here
    task by task (with the key the vmapped call gives task τ); summed, they move what the plain gradient moves."""
    config, nets, state = build("paco", k=2)
    batch, key = make_batch(), jax.random.PRNGKey(5)
    task_losses = make_task_losses(nets, config)
    grads, (losses, _, healthy) = jax.jit(per_task_gradient(task_losses))(state.params, state.target_critic, batch,
                                                                           key)
    assert losses.critic.shape == healthy.shape == (T,)
    for task, task_key in enumerate(jax.random.split(key, T)):
        def loss(params):
            one = Batch(*(x[task:task + 1] for x in batch))
            return task_losses(params, state.target_critic, one, task_key, jnp.array([task]))[0][0]

        own = jax.grad(loss)(state.params)
        for got, want in zip(jax.tree.leaves(grads), jax.tree.leaves(own)):
            np.testing.assert_allclose(np.asarray(got[task]), np.asarray(want), rtol=1e-4, atol=1e-6)
        w_grad = np.asarray(grads["w"][task])
        np.testing.assert_array_equal(np.delete(w_grad, task, axis=0), 0.0)
