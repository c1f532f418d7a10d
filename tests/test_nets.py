"""The compositional layer and its instantiations, checked against independent numpy computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paco.config.methods import BY_NAME, PaCoConfig
from paco.methods.compositional import Compositional
from paco.nets import CompositionalDense

T, K, B, D_IN, D_OUT = 3, 4, 5, 6, 7


def numpy_mlp(layers, x):
    for i, (kernel, bias) in enumerate(layers):
        x = x @ kernel + bias
        if i < len(layers) - 1:
            x = np.maximum(x, 0)
    return x


def test_composed_layer_equals_each_tasks_own_dense_layer():
    layer = CompositionalDense(D_IN, D_OUT, K)
    key_p, key_x, key_w, key_phi = jax.random.split(jax.random.PRNGKey(0), 4)
    params = layer.init(key_p, jnp.zeros((T, 1, D_IN)), jnp.ones((T, K)))
    # Distinct slices (the real init makes them identical, which would hide mistakes in the mixing).
    phi_w = np.asarray(jax.random.normal(key_phi, (K, D_IN, D_OUT)))
    phi_b = np.asarray(jax.random.normal(key_phi, (K, D_OUT))) + 1.0
    params = {"params": {"kernel": jnp.asarray(phi_w), "bias": jnp.asarray(phi_b)}}
    x = np.asarray(jax.random.normal(key_x, (T, B, D_IN)))
    w = np.asarray(jax.random.normal(key_w, (T, K)))
    got = np.asarray(layer.apply(params, jnp.asarray(x), jnp.asarray(w)))
    for task in range(T):
        kernel = sum(w[task, k] * phi_w[k] for k in range(K))
        bias = sum(w[task, k] * phi_b[k] for k in range(K))
        np.testing.assert_allclose(got[task], x[task] @ kernel + bias, rtol=1e-5, atol=1e-5)


def test_parameter_set_slices_start_identical():
    layer = CompositionalDense(D_IN, D_OUT, K)
    params = layer.init(jax.random.PRNGKey(1), jnp.zeros((T, 1, D_IN)), jnp.ones((T, K)))["params"]
    for k in range(1, K):
        np.testing.assert_array_equal(params["kernel"][k], params["kernel"][0])
    assert np.std(np.asarray(params["kernel"][0])) > 0


@pytest.mark.parametrize("n_in, n_out", [(50, 400), (400, 50)])
def test_kernel_init_is_pytorch_default_uniform_over_fan_in(n_in, n_out):
    """U(-1/sqrt(in), 1/sqrt(in)), the authors' (PyTorch's) init: the bound follows the input width."""
    layer = CompositionalDense(n_in, n_out, 2)
    kernel = np.asarray(layer.init(jax.random.PRNGKey(5), jnp.zeros((1, 1, n_in)), jnp.ones((1, 2)))["params"]["kernel"])
    assert kernel.shape == (2, n_in, n_out)
    bound = 1 / np.sqrt(n_in)
    assert np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.99 * bound
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.05)


def test_single_task_instantiation_is_t_independent_networks():
    """K = T with one-hot w: task τ's network is exactly slice τ of every layer's parameter set."""
    nets = Compositional.build(BY_NAME["single-task"](hidden=(8, 8)), T, D_IN, 2)
    params = nets.init(jax.random.PRNGKey(2))
    # Give every slice its own values so that tasks really differ.
    actor = jax.tree.map(lambda p: p + jax.random.normal(jax.random.PRNGKey(3), p.shape), params["actor"])
    obs = np.asarray(jax.random.normal(jax.random.PRNGKey(4), (T, B, D_IN)))
    mean, _ = nets.actor_distribution({**params, "actor": actor}, jnp.asarray(obs))
    layers = actor["params"]
    names = sorted(layers, key=lambda n: int(n.split("_")[-1]))
    for task in range(T):
        own = [(np.asarray(layers[n]["kernel"][task]), np.asarray(layers[n]["bias"][task])) for n in names]
        expected = numpy_mlp(own, obs[task])[:, :2]
        np.testing.assert_allclose(np.asarray(mean[task]), expected, rtol=1e-5, atol=1e-5)


def test_mtsac_instantiation_is_one_shared_network_with_task_onehot_input():
    nets = Compositional.build(BY_NAME["mtsac"](hidden=(8,)), T, D_IN, 2)
    params = nets.init(jax.random.PRNGKey(5))
    obs = np.asarray(jax.random.normal(jax.random.PRNGKey(6), (T, B, D_IN)))
    mean, _ = nets.actor_distribution(params, jnp.asarray(obs))
    layers = params["actor"]["params"]
    shared = [(np.asarray(layers[n]["kernel"][0]), np.asarray(layers[n]["bias"][0])) for n in ("layers_0", "layers_1")]
    for task in range(T):
        x = np.concatenate([obs[task], np.tile(np.eye(T)[task], (B, 1))], -1)
        np.testing.assert_allclose(np.asarray(mean[task]), numpy_mlp(shared, x)[:, :2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("method,composed", [("mtsac", [False, False, False]), ("multihead", [False, False, True]),
                                             ("single-task", [True, True, True]), ("paco", [True, True, True])])
def test_methods_are_instantiations_of_one_layer(method, composed):
    config = PaCoConfig(hidden=(8, 8), num_components=2) if method == "paco" else BY_NAME[method](hidden=(8, 8))
    nets = Compositional.build(config, T, D_IN, 2)
    params = nets.init(jax.random.PRNGKey(0))
    kernels = [params["actor"]["params"][f"layers_{i}"]["kernel"] for i in range(3)]
    k = {"mtsac": 1, "multihead": T, "single-task": T, "paco": 2}[method]
    assert [kern.shape[0] == k and k > 1 for kern in kernels] == composed
    assert params["w"].shape == (T, k)


def test_mixed_task_acting_matches_grouped_acting():
    nets = Compositional.build(PaCoConfig(hidden=(8, 8), num_components=K), T, D_IN, 2)
    params = nets.init(jax.random.PRNGKey(7))
    weights = nets.policy(params)
    obs = jax.random.normal(jax.random.PRNGKey(8), (T, 1, D_IN))
    grouped, _ = nets.policy_distribution(weights, obs)
    task_ids = jnp.array([2, 0, 1, 2])
    mixed, _ = nets.policy_distribution(weights, obs[task_ids], task_ids)
    np.testing.assert_allclose(np.asarray(mixed), np.asarray(grouped[task_ids]), rtol=1e-5, atol=1e-6)


def test_unit_norm_w_lies_on_the_sphere():
    nets = Compositional.build(PaCoConfig(num_components=2, w_unit_norm=True, hidden=(4,)), T, D_IN, 2)
    w = nets.task_vectors(nets.init(jax.random.PRNGKey(9))["w"])
    np.testing.assert_allclose(np.linalg.norm(np.asarray(w), axis=-1), 1.0, rtol=1e-6)


def test_onehot_w_needs_k_equal_to_tasks():
    with pytest.raises(ValueError, match=r"network.num_components = 10 \(the number of tasks\), got 3"):
        Compositional.build(PaCoConfig(num_components=3, w_init="onehot"), 10, D_IN, 2)
