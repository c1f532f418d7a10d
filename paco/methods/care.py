"""CARE: Contextual Attention-based REpresentation learning (Sodhani, Zhang & Pineau, ICML 2021).

CARE encodes the state with a mixture of k state encoders and lets the task's *context* choose the mix:
a context encoder maps the task's context to z_ctx, an attention network turns z_ctx into weights α over
the k encoders, and the actor and the critics read z_s = [Σ_i α_i z_i(s), z_ctx]. The weights depend on the
context only (one α per task), never on the state. Built as facebookresearch/mtrl builds it
(agent/components/task_encoder.py, encoder.py, moe_layer.py, agent/sac.py):

    context   c_τ            a frozen sentence embedding of task τ's description (a constant, not a parameter)
    projection               ReLU(c) → Linear(2·d) → ReLU → Linear(d) → ReLU
    trunk     z_ctx          Linear(d→d) → ReLU → Linear(d→d) → ReLU → Linear(d→d)    (MTRL: num_layers 2)
    attention α              softmax(Linear(d→d) → ReLU → Linear(d→d) → ReLU → Linear(d→k)), temp. 1
    experts   z_i(s)         Linear(obs→d) → ReLU → Linear(d→d), i = 1..k: (k, in, out) weights, one einsum
    actor                    MLP over `hidden`: z_s → 2·action_dim (mean, unsquashed log-std)
    critics   Q_1, Q_2       MLP over `critic_hidden` (default `hidden`): [z_s, a] → 1

with d = encoder_dim and k = num_experts. The context here is our own one-sentence description of each task,
embedded offline with all-MiniLM-L6-v2 (384-d, unit norm; scripts/embed_task_descriptions.py writes
paco/envs/task_embeddings.json and `load_task_embeddings` reads it); MTRL embedded Meta-World's descriptions
with RoBERTa (768-d). As in MTRL, the embedding passes a ReLU before the projection. Encoder weights are
Xavier-uniform with zero biases (MTRL's weight_init, per expert for the mixture); the actor and critic MLPs
use this package's default initialisation, as every other method here does.

Parameters: {"actor": actor layers, "critic": {"encoder": {"projection", "trunk", "attention", "experts"},
"q": (Q_1 layers, Q_2 layers)}}, every layer a (kernel, bias) pair. All are SHARED: the context is a constant,
and every task trains the shared encoders through its own context row.

Detach rules (MTRL's): the encoder belongs to the critic. Q_1 and Q_2 share it and the critic loss trains all
of it (context encoder, attention and experts). The actor reads params["critic"]["encoder"] through
jax.lax.stop_gradient, so the actor loss never trains it. The target critic is the Polyak copy of
params["critic"]: its encoder moves at `encoder_tau` (0.05), its Q networks at sac.tau (`update_target`).

Where public code disagrees, or this module departs from it:
- MTRL's documented MT10 command uses k = 4 experts (CAREConfig's default); its encoder yaml defaults to 9.
- MTRL's task encoder trunk is build_mlp(num_layers=2): three linear layers (d→d→d→d), built so here.
- MTRL's attention config means to detach the task encoding (`should_detach_task_encoding`) but spells the
  key `should_detach_task-encoding`, so the flag reads as unset and the attention's gradient reaches the
  context encoder; here it does too (the critic loss trains the whole encoder).
- MTRL computes the context encoding outside the critic and the target critic reads the live one; here the
  context encoder is part of the critic's encoder, so the target critic reads its Polyak copy.
- MTRL's actor ties its experts to the critic's but builds its own attention network, which no optimiser
  holds (the actor's optimiser takes actor.model only), so it stays at its initialisation. Here the actor
  reads the critic's (trained) attention, detached.
- metaworld-algorithms' "CARE" maps the task one-hot to a learned embedding instead of a language context;
  that is a mixture of encoders with learned task embeddings, not CARE.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from paco.config.methods import CAREConfig
from paco.envs.task_embeddings import load_task_embeddings
from paco.methods.base import SHARED, Method, Params, rows
from paco.nets import default_kernel_init, forward

TEMPERATURE = 1.0  # of the attention softmax (MTRL: 1.0)
TRUNK_LAYERS = 3  # linear layers of the context encoder's trunk (MTRL: build_mlp with num_layers=2)
ATTENTION_LAYERS = 3  # linear layers of the attention MLP (MTRL: build_mlp with num_layers=2)

xavier_uniform = nn.initializers.xavier_uniform()
expert_init = nn.initializers.xavier_uniform(in_axis=-2, out_axis=-1, batch_axis=(0,))  # per expert


def init_layers(key: jax.Array, sizes: Sequence[int], kernel_init=default_kernel_init,
                num_experts: int | None = None) -> tuple:
    """(kernel, bias) pairs of an MLP with these sizes; with num_experts, (k, in, out) kernels and (k, out) biases."""
    lead = () if num_experts is None else (num_experts,)
    keys = jax.random.split(key, len(sizes) - 1)
    return tuple((kernel_init(k, lead + (n_in, n_out), jnp.float32), jnp.zeros(lead + (n_out,), jnp.float32))
                 for k, n_in, n_out in zip(keys, sizes[:-1], sizes[1:]))


def experts_forward(experts: Sequence, obs: jax.Array) -> jax.Array:
    """Every expert's encoding of grouped observations (G, B, D) → (G, B, k, d): one einsum per layer."""
    (w1, b1), (w2, b2) = experts
    h = nn.relu(jnp.einsum("gbi,kio->gbko", obs, w1) + b1)
    return jnp.einsum("gbki,kio->gbko", h, w2) + b2


@dataclass(frozen=True)
class CARE(Method):
    """CARE's actor and twin critics over a context-weighted mixture of state encoders (see the module doc)."""

    task_names: tuple[str, ...]
    hidden: tuple[int, ...]
    critic_hidden: tuple[int, ...]
    num_experts: int
    encoder_dim: int
    encoder_tau: float
    context: np.ndarray = field(compare=False, repr=False)
    """(num_tasks, embedding_dim) float32: row τ is task τ's frozen description embedding."""

    # -- parameters -----------------------------------------------------------------------------------------
    def init(self, key: jax.Array) -> Params:
        d, k = self.encoder_dim, self.num_experts
        z_dim = 2 * d
        keys = jax.random.split(key, 7)
        encoder = {
            "projection": init_layers(keys[0], (self.context.shape[1], 2 * d, d), xavier_uniform),
            "trunk": init_layers(keys[1], (d,) * (TRUNK_LAYERS + 1), xavier_uniform),
            "attention": init_layers(keys[2], (d,) * ATTENTION_LAYERS + (k,), xavier_uniform),
            "experts": init_layers(keys[3], (self.obs_dim, d, d), expert_init, num_experts=k),
        }
        actor = init_layers(keys[4], (z_dim, *self.hidden, 2 * self.action_dim))
        q = tuple(init_layers(kq, (z_dim + self.action_dim, *self.critic_hidden, 1)) for kq in keys[5:7])
        return {"actor": actor, "critic": {"encoder": encoder, "q": q}}

    def roles(self, params: Params) -> Any:
        return jax.tree.map(lambda _: SHARED, params)

    # -- the encoder ------------------------------------------------------------------------------------------
    def context_encoding(self, encoder: Params, task_ids: jax.Array | None = None) -> jax.Array:
        """z_ctx of each group's task, (G, encoder_dim)."""
        c = rows(jnp.asarray(self.context), task_ids)
        h = nn.relu(forward(encoder["projection"], nn.relu(c)))
        return forward(encoder["trunk"], h)

    def _attention(self, encoder: Params, z_ctx: jax.Array) -> jax.Array:
        return jax.nn.softmax(forward(encoder["attention"], z_ctx) / TEMPERATURE, axis=-1)

    def attention(self, params: Params, task_ids: jax.Array | None = None) -> jax.Array:
        """α, the weights of the k experts for each group's task, (G, k): the critic's (online) encoder's."""
        encoder = params["critic"]["encoder"]
        return self._attention(encoder, self.context_encoding(encoder, task_ids))

    def encode(self, encoder: Params, obs: jax.Array, task_ids: jax.Array | None = None) -> jax.Array:
        """z_s = [Σ_i α_i z_i(s), z_ctx] of grouped observations, (G, B, 2·encoder_dim)."""
        z_ctx = self.context_encoding(encoder, task_ids)
        alpha = self._attention(encoder, z_ctx)
        z_enc = jnp.einsum("gbkd,gk->gbd", experts_forward(encoder["experts"], obs), alpha)
        return jnp.concatenate([z_enc, jnp.broadcast_to(z_ctx[:, None, :], z_enc.shape)], axis=-1)

    # -- actor and critics --------------------------------------------------------------------------------------
    def _actor(self, actor: Any, encoder: Params, obs: jax.Array, task_ids: jax.Array | None) -> jax.Array:
        return forward(actor, self.encode(jax.lax.stop_gradient(encoder), obs, task_ids))

    def actor_outputs(self, params, obs, task_ids=None):
        return self._actor(params["actor"], params["critic"]["encoder"], obs, task_ids)

    def q_values(self, params, critic, obs, action, task_ids=None):
        x = jnp.concatenate([self.encode(critic["encoder"], obs, task_ids), action], axis=-1)
        return jnp.stack([forward(q, x) for q in critic["q"]])[..., 0]

    def policy(self, params):
        """The actor and the (online) encoder it reads; no Q networks."""
        return {"actor": params["actor"], "encoder": params["critic"]["encoder"]}

    def policy_distribution(self, policy, obs, task_ids=None):
        return self.head(self._actor(policy["actor"], policy["encoder"], obs, task_ids))

    def update_target(self, critic, target, tau):
        """Polyak: the target encoder at encoder_tau, the target Q networks at `tau` (sac.tau)."""
        return {"encoder": optax.incremental_update(critic["encoder"], target["encoder"], self.encoder_tau),
                "q": optax.incremental_update(critic["q"], target["q"], tau)}


def build(config: CAREConfig, task_names: tuple[str, ...], obs_dim: int, action_dim: int) -> CARE:
    """CARE for these tasks; raises ValueError where a task has no description embedding."""
    if not 0.0 < config.encoder_tau <= 1.0:
        raise ValueError(f"network.encoder_tau must lie in (0, 1], got {config.encoder_tau}")
    task_names = tuple(task_names)
    context = load_task_embeddings(task_names)
    return CARE(len(task_names), obs_dim, action_dim, config.log_std_min, config.log_std_max, task_names,
                tuple(config.hidden), tuple(config.critic_hidden or config.hidden), config.num_experts,
                config.encoder_dim, config.encoder_tau, context)
