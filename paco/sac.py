"""Multi-task SAC: per-task losses (one value per task) and the whole update as one jitted function.

Batches are grouped by task: every array is (T, B, ...), row τ holding task τ's samples, so the task id
is the group index and never has to be sliced off an observation.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import optax

from paco import stability
from paco.config import Config, SACConfig
from paco.methods import FROZEN, SHARED, Method
from paco.methods.base import rows
from paco.nets import sample_tanh_gaussian
from paco.optim import SURGERIES


class Batch(NamedTuple):
    obs: jax.Array  # (T, B, obs_dim)
    action: jax.Array  # (T, B, action_dim)
    reward: jax.Array  # (T, B)
    next_obs: jax.Array  # (T, B, obs_dim)
    terminated: jax.Array  # (T, B): true terminations only; time-limit truncations bootstrap


class TaskLosses(NamedTuple):
    """Each field is a vector of T: one value per task."""

    critic: jax.Array
    actor: jax.Array
    alpha: jax.Array
    entropy: jax.Array
    q: jax.Array


class TrainState(flax.struct.PyTreeNode):
    params: dict  # the method's (actor, critic, shared task params such as PaCo's w) and log_alpha (T,)
    target_critic: Any
    opt_state: Any
    key: jax.Array
    updates: jax.Array


def td_target(reward, terminated, next_q, next_log_prob, alpha, gamma):
    """r + γ (1 - terminated) (min_i Q'_i(s', a') - α log π(a'|s')); alpha is per task (T,)."""
    soft_value = next_q - alpha[:, None] * next_log_prob
    return reward + gamma * (1.0 - terminated) * soft_value


def make_losses(method: Method, config: SACConfig) -> Callable[..., TaskLosses]:
    target_entropy = method.action_dim * config.target_entropy_per_action_dim

    def losses(params: dict, target_critic: Any, batch: Batch, key: jax.Array,
               task_ids: jax.Array | None = None) -> TaskLosses:
        """Losses of the batch's groups: every task in order, or the tasks `task_ids` names."""
        k_next, k_pi = jax.random.split(key)
        log_alpha = rows(params["log_alpha"], task_ids)
        alpha = jax.lax.stop_gradient(jnp.exp(log_alpha))
        frozen = jax.lax.stop_gradient(params)

        # Critics: regress both onto the soft TD target of the target critics (which read the live task params).
        next_mean, next_log_std = method.actor_distribution(frozen, batch.next_obs, task_ids)
        next_action, next_log_prob = sample_tanh_gaussian(k_next, next_mean, next_log_std)
        next_q = method.q_values(frozen, target_critic, batch.next_obs, next_action, task_ids).min(0)
        target = jax.lax.stop_gradient(
            td_target(batch.reward, batch.terminated, next_q, next_log_prob, alpha, config.gamma))
        q = method.q_values(params, params["critic"], batch.obs, batch.action, task_ids)
        critic_loss = jnp.mean((q - target) ** 2, axis=-1).sum(0)

        # Actor: trains the actor's parameters (and shared task params such as PaCo's w); critics held fixed.
        mean, log_std = method.actor_distribution(params, batch.obs, task_ids)
        action, log_prob = sample_tanh_gaussian(k_pi, mean, log_std)
        q_pi = method.q_values(frozen, frozen["critic"], batch.obs, action, task_ids).min(0)
        actor_loss = jnp.mean(alpha[:, None] * log_prob - q_pi, axis=-1)

        # Temperatures: one per task, towards the target entropy.
        alpha_loss = -log_alpha * jnp.mean(jax.lax.stop_gradient(log_prob) + target_entropy, axis=-1)
        return TaskLosses(critic_loss, actor_loss, alpha_loss, -jnp.mean(log_prob, -1), jnp.mean(q, (0, 2)))

    return losses


def parameter_labels(method: Method, params: dict, freeze_shared: bool = False) -> dict:
    """The optimiser group of every leaf: its top-level key (actor, critic, w, log_alpha, ...) or 'frozen'.

    optax calls it with the parameters and with each update's gradients, which with gradient surgery carry a
    leading task axis; only the roles matter here, and every method decides them by a leaf's path. A transfer
    run (`freeze_shared`) freezes the shared parameters too, so that only the task-level ones learn."""
    frozen = {FROZEN, SHARED} if freeze_shared else {FROZEN}
    roles = method.roles({k: v for k, v in params.items() if k != "log_alpha"})
    labels = {key: jax.tree.map(lambda role, key=key: "frozen" if role in frozen else key, tree)
              for key, tree in roles.items()}
    return {**labels, "log_alpha": "log_alpha"}


def make_optimizer(config: Config, method: Method) -> optax.GradientTransformation:
    """Adam per parameter group, frozen parameters never move; with gradient surgery, each group's per-task
    gradients are combined by it first (so PCGrad projects the actor's and the critics' gradients apart)."""
    sac = config.sac
    rates = {"actor": sac.actor_lr, "critic": sac.critic_lr, "log_alpha": sac.alpha_lr, **method.learning_rates()}
    groups = {name: optax.adam(lr) for name, lr in rates.items()}
    groups["frozen"] = optax.set_to_zero()
    if config.optim.surgery != "none":
        surgery = SURGERIES[config.optim.surgery]
        groups = {name: optax.chain(surgery(config.optim, name, i, method.num_tasks), inner)
                  for i, (name, inner) in enumerate(groups.items())}
    freeze_shared = bool(config.transfer.source)
    return optax.multi_transform(groups, functools.partial(parameter_labels, method, freeze_shared=freeze_shared))


def init_state(method: Method, config: Config, key: jax.Array, start: Callable[[dict], dict] | None = None
               ) -> TrainState:
    """Fresh parameters, optimiser state and key; `start` may replace some of the fresh parameters (transfer)."""
    k_init, k_state = jax.random.split(key)
    params = method.init(k_init)
    if start is not None:
        params = start(params)
    # float32, not weakly typed: otherwise the first updates change the state's types and recompile.
    params["log_alpha"] = jnp.full((method.num_tasks,), config.sac.log_alpha_init, jnp.float32)
    optimizer = make_optimizer(config, method)
    return TrainState(params, params["critic"], optimizer.init(params), k_state, jnp.zeros((), jnp.int32))


def make_task_losses(method: Method, config: Config) -> Callable:
    """`task_losses(params, target_critic, batch, key, task_ids=None) -> (masked, (losses, per_task, healthy))`:
    each group's total loss (critic + actor + temperature), zero where maskout drops the task."""
    losses_fn, stab = make_losses(method, config.sac), config.stability

    def task_losses(params, target_critic, batch, key, task_ids=None):
        # A task whose samples hold NaN/Inf is evaluated on zeros instead, so that the zero weight maskout
        # gives it cannot turn into 0 * NaN in the backward pass; its reported loss stays non-finite.
        finite_data = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x.reshape(x.shape[0], -1)), -1) for x in batch]), 0)
        safe = Batch(*(jnp.where(finite_data.reshape((-1,) + (1,) * (x.ndim - 1)), x, 0) for x in batch))
        losses = losses_fn(params, target_critic, safe, key, task_ids)
        per_task = jnp.where(finite_data, losses.critic + losses.actor + losses.alpha, jnp.nan)
        healthy = stability.healthy_tasks(jax.lax.stop_gradient(per_task), stab.loss_threshold, stab.mode)
        return jnp.where(healthy, per_task, 0.0), (losses, per_task, healthy)

    return task_losses


def summed_gradient(task_losses: Callable) -> Callable:
    """The gradient of the sum of the task losses, and their aux."""
    def total_loss(params, target_critic, batch, key):
        masked, aux = task_losses(params, target_critic, batch, key)
        return jnp.sum(masked), aux

    return jax.grad(total_loss, has_aux=True)


def per_task_gradient(task_losses: Callable) -> Callable:
    """One gradient per task (a leading task axis on every leaf) from one call vmapped over the tasks: a task's
    losses read only its own samples, so each backward pass runs over its B samples, where a jacobian of the
    task losses would run T passes over the whole batch. Task τ draws its noise from the key's τ-th split."""
    def gradient(params, target_critic, batch, key):
        def one_task(task_batch, task_key, task):
            def loss(p):
                masked, aux = task_losses(p, target_critic, task_batch, task_key, task[None])
                return masked[0], aux
            return jax.grad(loss, has_aux=True)(params)

        tasks = batch.reward.shape[0]
        grads, aux = jax.vmap(one_task)(Batch(*(x[:, None] for x in batch)), jax.random.split(key, tasks),
                                        jnp.arange(tasks))
        return grads, jax.tree.map(lambda x: x[:, 0], aux)

    return gradient


def make_update_step(method: Method, config: Config) -> Callable:
    """One update as a pure function: losses of all tasks, maskout, one Adam step on everything, Polyak, w-reset.

    Returns `step(state, batch) -> (state, metrics)`. With gradient surgery (`optim.surgery`) the optimiser
    receives one gradient per task.
    """
    sac, stab = config.sac, config.stability
    optimizer = make_optimizer(config, method)
    reset_w = stab.mode == "reset" and method.resets_task_vectors
    per_task_gradients = config.optim.surgery != "none"
    gradients = (per_task_gradient if per_task_gradients else summed_gradient)(make_task_losses(method, config))

    def step(state: TrainState, batch: Batch):
        key, k_loss, k_reset = jax.random.split(state.key, 3)
        grads, (losses, per_task, healthy) = gradients(state.params, state.target_critic, batch, k_loss)
        # A non-finite gradient never reaches the parameters: the step is skipped and reported. The global
        # norm is non-finite iff some gradient is (or the norm itself overflows, above ~1e19), and it is one
        # reduction per leaf where an elementwise isfinite mask would first be written out in full.
        grad_norm = optax.tree.norm(grads)
        finite = jnp.isfinite(grad_norm)
        if per_task_gradients:  # each group's surgery may weigh its own loss (GradNorm)
            by_group = {"actor": losses.actor, "critic": losses.critic, "log_alpha": losses.alpha, "total": per_task}
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params, task_losses=by_group)
        else:
            updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        params["log_alpha"] = jnp.clip(params["log_alpha"], sac.log_alpha_min, sac.log_alpha_max)
        target_critic = method.update_target(params["critic"], state.target_critic, sac.tau)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        params, opt_state = keep(params, state.params), keep(opt_state, state.opt_state)
        target_critic = keep(target_critic, state.target_critic)
        if reset_w:
            params = method.reset_task_vectors(params, healthy, k_reset, stab.reset_weights)
        new_state = TrainState(params, target_critic, opt_state, key, state.updates + 1)
        metrics = {"loss/critic": losses.critic, "loss/actor": losses.actor, "loss/alpha": losses.alpha,
                   "loss/task": per_task, "alpha": jnp.exp(params["log_alpha"]), "entropy": losses.entropy,
                   "q": losses.q, "healthy": healthy, "finite_grad": finite, "grad_norm": grad_norm}
        return new_state, metrics

    return step


def make_update(method: Method, config: Config) -> Callable:
    """One jitted update of one run: `update(state, batch) -> (state, policy, metrics)`; `policy` is the method's
    policy prepared from the new parameters (PaCo: the actor composed for every task), all acting needs."""
    step = make_update_step(method, config)

    @jax.jit
    def update(state: TrainState, batch: Batch):
        state, metrics = step(state, batch)
        return state, method.policy(state.params), metrics

    return update


def make_update_block(method: Method, config: Config) -> Callable:
    """n updates of S runs (seeds) as one jitted call: a scan over the updates of an update vmapped over seeds.

    `block(state, batches) -> (state, policy, metrics)`: every leaf of `state` has a leading seed axis, `batches`
    is a Batch of (n, S, T, B, ...) arrays, each metric comes back as (n, S, ...) and `policy` (S, ...) is
    prepared once, from the parameters after the n-th update. One Python dispatch per block, whatever n and S.
    """
    step = jax.vmap(make_update_step(method, config))

    @jax.jit
    def block(state: TrainState, batches: Batch):
        state, metrics = jax.lax.scan(step, state, batches)
        return state, jax.vmap(method.policy)(state.params), metrics

    return block
