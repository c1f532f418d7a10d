"""Every method on the one interface: roles that hold (a task's loss reaches only shared parameters and its own),
frozen parameters that never move, FiLM against independent numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paco.config import Config, replace
from paco.config.methods import (CAREConfig, FiLMConfig, MOOREConfig, MTSACConfig, MultiHeadConfig, PaCoConfig,
                                 SingleTaskConfig, SoftModulesConfig)
from paco.envs import task_names
from paco.methods import FROZEN, METHODS, SHARED, TASK, build_method
from paco.presets import get
from paco.sac import Batch, init_state, make_losses, make_optimizer

NETWORKS = [MTSACConfig(hidden=(8, 8)), MultiHeadConfig(hidden=(8, 8)), SingleTaskConfig(hidden=(8, 8)),
            PaCoConfig(hidden=(8, 8), num_components=2), FiLMConfig(hidden=(8, 8), task_embedding_dim=4,
                                                                    generator_hidden=(8,)),
            SoftModulesConfig(trunk_width=8, gating_width=8, module_width=8, num_layers=3, num_modules=3),
            CAREConfig(hidden=(8, 8), num_experts=3, encoder_dim=6), MOOREConfig(hidden=(8, 8), num_experts=3),
            MultiHeadConfig(hidden=(8, 8), critic_hidden=(12, 12))]
TASKS = task_names(get("pointmass-mtsac").env)  # four tasks with description embeddings
T, B, OBS, ACT = len(TASKS), 5, 4, 2


def test_every_registered_method_is_tested_here():
    assert {n.name for n in NETWORKS} == set(METHODS)


def batch(seed=0):
    rng = np.random.default_rng(seed)
    f = lambda *shape: jnp.asarray(rng.normal(size=shape), jnp.float32)  # noqa: E731
    return Batch(f(T, B, OBS), jnp.tanh(f(T, B, ACT)), f(T, B), f(T, B, OBS), jnp.zeros((T, B)))


def perturbed(params, seed, roles=None):
    """Parameters moved off their init, so that zero-initialised layers (FiLM's generator) carry gradient;
    frozen ones (a one-hot w) stay as they are, as they do in training."""
    leaves, tree = jax.tree.flatten(params)
    frozen = [False] * len(leaves) if roles is None else [r == FROZEN for r in jax.tree.leaves(roles)]
    keys = jax.random.split(jax.random.PRNGKey(seed), len(leaves))
    return jax.tree.unflatten(tree, [p if f else p + 0.1 * jax.random.normal(k, p.shape)
                                     for p, k, f in zip(leaves, keys, frozen)])


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: n.name + ("-wide" * bool(getattr(n, "critic_hidden", ()))))
def test_a_tasks_loss_moves_only_shared_parameters_and_its_own(network):
    config = replace(Config(), network=network)
    method = build_method(network, TASKS, OBS, ACT)
    state = init_state(method, config, jax.random.PRNGKey(0))
    networks = {k: v for k, v in state.params.items() if k != "log_alpha"}
    roles = method.roles(networks)
    params = {**perturbed(networks, 1, roles), "log_alpha": state.params["log_alpha"]}
    losses_fn = make_losses(method, config.sac)
    roles = {**roles, "log_alpha": TASK}
    assert set(jax.tree.leaves(roles)) <= {SHARED, TASK, FROZEN}

    def task_loss(p, task):
        losses = losses_fn(p, state.target_critic, batch(), jax.random.PRNGKey(2))
        return (losses.critic + losses.actor + losses.alpha)[task]

    task_grad = jax.jit(jax.grad(task_loss))  # one compilation: the task is a traced index
    for task in range(T):
        grads = task_grad(params, jnp.int32(task))
        moved_shared = False
        for role, grad in zip(jax.tree.leaves(roles), jax.tree.leaves(grads)):
            grad = np.asarray(grad)
            if role == TASK:
                assert grad.shape[0] == T
                np.testing.assert_array_equal(np.delete(grad, task, axis=0), 0.0)
            moved_shared |= role == SHARED and bool(np.any(grad != 0))
        assert moved_shared or network.name == "single-task"

    # Frozen parameters never move, whatever their gradient.
    optimizer = make_optimizer(config, method)
    grads = task_grad(params, jnp.int32(0))
    updates, _ = jax.jit(optimizer.update)(grads, optimizer.init(params), params)
    for role, update in zip(jax.tree.leaves(roles), jax.tree.leaves(updates)):
        if role == FROZEN:
            np.testing.assert_array_equal(np.asarray(update), 0.0)


def test_roles_of_the_compositional_rows():
    """PaCo's Φ is shared and w its tasks'; a frozen one-hot w gives multi-head one output layer per task."""
    def roles(network):
        method = build_method(network, TASKS, OBS, ACT)
        return method.roles(method.init(jax.random.PRNGKey(0)))

    paco, multihead = roles(PaCoConfig(hidden=(8,), num_components=2)), roles(MultiHeadConfig(hidden=(8,)))
    assert paco["w"] == TASK and set(jax.tree.leaves(paco["actor"])) == {SHARED}
    assert multihead["w"] == FROZEN
    layers = multihead["actor"]["params"]
    assert layers["layers_0"]["kernel"] == SHARED and layers["layers_1"]["kernel"] == TASK


# -- FiLM against numpy ---------------------------------------------------------------------------------------------
def numpy_film(actor, obs, gamma=None, beta=None):
    """Actor MLP with FiLM on its hidden layers; gamma/beta None: the plain network."""
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), actor["params"])
    h, start = obs.astype(np.float64), 0
    names = sorted((n for n in p if n.startswith("layers_")), key=lambda n: int(n.split("_")[1]))
    for i, name in enumerate(names):
        h = h @ p[name]["kernel"] + p[name]["bias"]
        if i < len(names) - 1:
            width = h.shape[-1]
            if gamma is not None:
                h = gamma[:, None, start:start + width] * h + beta[:, None, start:start + width]
            h, start = np.maximum(h, 0), start + width
    return h


def numpy_modulation(actor, config):
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), actor["params"])
    h = p["task_embedding"]
    for i in range(len(config.generator_hidden)):
        h = np.maximum(h @ p[f"generator_{i}"]["kernel"] + p[f"generator_{i}"]["bias"], 0)
    out = h @ p["generator_out"]["kernel"] + p["generator_out"]["bias"]
    half = out.shape[-1] // 2
    return 1 + out[:, :half], out[:, half:]


def test_film_with_identity_modulation_equals_its_plain_network():
    config = FiLMConfig(hidden=(8, 6), task_embedding_dim=4, generator_hidden=(5,))
    method = build_method(config, TASKS, OBS, ACT)
    params = method.init(jax.random.PRNGKey(0))
    actor = params["actor"]
    generator_out = actor["params"]["generator_out"]
    assert not np.any(np.asarray(generator_out["kernel"])) and not np.any(np.asarray(generator_out["bias"]))
    # Every other layer moved off its init: the identity must come from γ = 1, β = 0 alone.
    moved = perturbed(actor, 3)
    moved["params"]["generator_out"] = generator_out
    obs = np.asarray(batch().obs)
    got = np.asarray(method.actor_outputs({"actor": moved}, jnp.asarray(obs)))
    np.testing.assert_allclose(got, numpy_film(moved, obs), rtol=1e-5, atol=1e-5)

    modulated = perturbed(moved, 4)
    gamma, beta = numpy_modulation(modulated, config)
    got = np.asarray(method.actor_outputs({"actor": modulated}, jnp.asarray(obs)))
    np.testing.assert_allclose(got, numpy_film(modulated, obs, gamma, beta), rtol=1e-5, atol=1e-5)
    assert not np.allclose(got, numpy_film(modulated, obs), atol=1e-3)
    # A mix of tasks: group g is task task_ids[g].
    task_ids = jnp.array([3, 0, 3])
    mixed = np.asarray(method.actor_outputs({"actor": modulated}, jnp.asarray(obs[[3, 0, 3]]), task_ids))
    np.testing.assert_allclose(mixed, got[[3, 0, 3]], rtol=1e-5, atol=1e-6)


def test_unknown_care_task_is_a_one_line_error():
    with pytest.raises(ValueError, match="no context embedding for task 'not-a-task'") as error:
        build_method(CAREConfig(), ("reach-v3", "not-a-task"), OBS, ACT)
    assert "\n" not in str(error.value)


@pytest.mark.parametrize("network", NETWORKS, ids=lambda n: n.name + ("-wide" * bool(getattr(n, "critic_hidden", ()))))
def test_groups_are_tasks_in_order_or_any_mix_of_tasks(network):
    """task_ids=None means group g is task g; a mix of tasks gives each group its own task's outputs; the twin
    critics differ; the policy prepared for acting gives the actor's distribution."""
    method = build_method(network, TASKS, OBS, ACT)
    params = perturbed(method.init(jax.random.PRNGKey(0)), 5, method.roles(method.init(jax.random.PRNGKey(0))))
    data, task_ids = batch(6), jnp.array([2, 0, 2])
    actor, q = jax.jit(method.actor_distribution), jax.jit(method.q_values)
    grouped = actor(params, data.obs)
    np.testing.assert_allclose(grouped[0], actor(params, data.obs, jnp.arange(T))[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(actor(params, data.obs[task_ids], task_ids)[0], grouped[0][task_ids],
                               rtol=1e-5, atol=1e-5)
    policy = jax.jit(method.policy_distribution)(method.policy(params), data.obs[task_ids], task_ids)
    np.testing.assert_allclose(policy[0], grouped[0][task_ids], rtol=1e-5, atol=1e-5)
    values = q(params, params["critic"], data.obs, data.action)
    assert values.shape == (2, T, B) and float(jnp.abs(values[0] - values[1]).max()) > 1e-4
    mixed = q(params, params["critic"], data.obs[task_ids], data.action[task_ids], task_ids)
    np.testing.assert_allclose(mixed, values[:, task_ids], rtol=1e-5, atol=1e-5)
