"""GradNorm as an optax transformation: its weight update against an independent computation, its invariants, and
a run with it that is killed and resumed."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest

from paco import presets
from paco.checkpoint import checkpoint_steps
from paco.config import replace
from paco.optim.gradnorm import MIN_WEIGHT, GradNormState, gradnorm
from paco.trainer import Trainer, train


def numpy_gradnorm(grads, losses, alpha, lr, steps_before=()):
    """Chen et al.'s weight update with Adam on w, written out for per-task gradient matrices (T, P)."""
    t = grads[0].shape[0]
    w, m, v = np.ones(t), np.zeros(t), np.zeros(t)
    initial = np.abs(losses[0])
    combined = []
    for step, (g, loss) in enumerate(zip(grads, losses), start=1):
        combined.append(w @ g)
        norms = np.linalg.norm(g, axis=1)
        ratios = np.abs(loss) / initial
        target = np.mean(w * norms) * (ratios / ratios.mean()) ** alpha
        dw = np.sign(w * norms - target) * norms
        m = 0.9 * m + 0.1 * dw
        v = 0.999 * v + 0.001 * dw**2
        w = w - lr * (m / (1 - 0.9**step)) / (np.sqrt(v / (1 - 0.999**step)) + 1e-8)
        w = np.maximum(w, MIN_WEIGHT)
        w = w * t / w.sum()
    return w, combined


def run_transform(transform, grads, losses):
    state = transform.init(None)
    outputs = []
    for g, loss in zip(grads, losses):
        out, state = transform.update({"kernel": jnp.asarray(g)}, state, task_losses={"total": jnp.asarray(loss)})
        outputs.append(np.asarray(out["kernel"]))
    return state, outputs


def test_two_task_weight_update_equals_an_independent_computation():
    # Step 1 by hand: G = (1, 3), mean 2, equal rates; task 0 is below the target and gains weight.
    grads = [np.array([[1.0, 0.0], [0.0, 3.0]])]
    state, outputs = run_transform(gradnorm(2, alpha=1.0, learning_rate=0.01), grads, [np.array([2.0, 1.0])])
    np.testing.assert_allclose(np.asarray(state.weights), [1.01, 0.99], rtol=1e-6)
    np.testing.assert_allclose(outputs[0], [1.0, 3.0])  # Σ w_i g_i with the weights before the step
    # Five steps of random gradients and losses (one task's loss falling faster) against numpy.
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=(2, 6)) * [[1.0], [4.0]] for _ in range(5)]
    losses = [np.array([3.0 * 0.9**k, -2.0 * 0.5**k]) for k in range(5)]
    state, outputs = run_transform(gradnorm(2, alpha=0.5, learning_rate=0.05), grads, losses)
    weights, combined = numpy_gradnorm(grads, losses, 0.5, 0.05)
    np.testing.assert_allclose(np.asarray(state.weights), weights, rtol=1e-5)
    for got, want in zip(outputs, combined):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_weights_stay_positive_and_sum_to_the_number_of_tasks():
    rng = np.random.default_rng(1)
    transform = gradnorm(4, alpha=2.0, learning_rate=0.5)  # large steps: some weights hit the floor
    state = transform.init(None)
    update = jax.jit(transform.update)
    for k in range(50):
        g = rng.normal(size=(4, 5)) * np.array([[0.01], [1.0], [10.0], [100.0]])
        state = update({"x": jnp.asarray(g)}, state, task_losses={"total": jnp.asarray(rng.uniform(0.1, 5, 4))})[1]
        weights = np.asarray(state.weights)
        assert np.all(weights > 0) and abs(weights.sum() - 4) < 1e-4, weights
    assert weights.max() / weights.min() > 10  # the weights really moved


def test_layer_selects_the_norms_it_balances():
    transform = gradnorm(2, alpha=1.0, learning_rate=0.1, layer="layers_1")
    grads = {"layers_0": jnp.array([[100.0], [0.0]]), "layers_1": jnp.array([[1.0], [3.0]])}
    state = transform.update(grads, transform.init(None), task_losses={"total": jnp.ones(2)})[1]
    assert state.weights[0] > state.weights[1]  # by layers_1 alone task 0's norm is the smaller one


@pytest.fixture(scope="module")
def gradnorm_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gradnorm")
    config = replace(presets.get("pointmass-gradnorm"), out=str(out), network={"hidden": (32, 32)},
                     train={"total_env_steps": 3200, "warmup_env_steps": 800, "eval_every_env_steps": 1600,
                            "log_every_env_steps": 400, "checkpoint_every_env_steps": 1600, "eval_episodes": 2,
                            "keep_checkpoints": 3, "replay_capacity_per_task": 1000, "progress": False})
    train(config, out)
    return config, out


def test_a_killed_gradnorm_run_resumes_with_identical_metrics(gradnorm_run, resumes_identically):
    config, out = gradnorm_run
    assert checkpoint_steps(out) == [1600, 3200]
    trainer = Trainer(config, out, resume=True)  # the final state: GradNorm's weights moved off 1
    states = [s for s in jax.tree.leaves(trainer.seed_state(0).opt_state, is_leaf=lambda s: isinstance(s, GradNormState))
              if isinstance(s, GradNormState)]
    trainer.close()
    assert len(states) == 4  # actor, critic, temperatures, frozen w
    assert max(np.abs(np.asarray(s.weights) - 1).max() for s in states) > 1e-3
    resumes_identically(config, out, 3200)
