"""MOORE: Mixture Of ORthogonal Experts (Hendawy, Peters & D'Eramo, "Multi-Task Reinforcement Learning with
Mixture of Orthogonal Experts", ICLR 2024).

MOORE represents every state with k shared experts whose outputs are made orthonormal, per sample, by
Gram–Schmidt, so that the experts span a k-dimensional subspace instead of collapsing onto one direction;
each task reads its own linear combination of that basis. Built as the official code builds it,
AhmedMagdyHendawy/MOORE (moore/utils/networks_sac.py, `MetaworldSACMixtureMHActorNetwork` /
`MetaworldSACMixtureMHCriticNetwork`; moore/utils/mixture_layers.py, `OrthogonalLayer1D`), with the flags of
its Meta-World scripts (run/metaworld/run_metaworld_mt{10,50}_mhsac_mt_moore.sh: `--orthogonal
--activation Linear --agg_activation Linear Tanh --shared_mu_sigma`, n_features 400 400 400):

    experts   h_i = MLP_i(x),  i = 1..k    over `hidden`, ReLU between layers, last layer linear, width d
    basis     u_1..u_k = GramSchmidt(h_1..h_k)                   per sample, in expert order
    weights   w_τ = W onehot(τ)                                   a (T, k) table; Linear T→k, no bias
    feature   f = tanh(Σ_i w_τ,i u_i)                             (no activation before the mix)
    output    head_τ(f)                                           one linear head per task (multi-head)

with k = num_experts and d = hidden[-1]. The actor's experts read the observation, each critic's read
concat(obs, action); the task enters only through w_τ and the head, never as a one-hot input. The actor
has one head per task giving 2·action_dim (mean, raw log-std: the official `shared_mu_sigma`), each critic
one head per task giving Q. The actor and the two critics each own their experts, task weights and heads.
The k experts of a layer are one batched weight (k, in, out), applied with one einsum.

Gram–Schmidt: u_1 = h_1/‖h_1‖, u_i = normalise(h_i − Σ_{j<i} (h_i·u_j) u_j) (classical, as the official
layer). The official layer divides by ‖·‖ with no guard, which gives NaN for a zero or dependent expert
output. Here normalise(v) = v / sqrt(‖v‖² + ε²) with ε = 1e-8, the ε of metaworld-algorithms' JAX port
(which adds it to the norm, v / (‖v‖ + ε)); inside the square root it also keeps the gradient finite at
v = 0. A zero or exactly dependent expert output then yields a zero (or rounding-noise) basis vector rather
than NaN; for outputs with ‖v‖ ≫ ε the result equals the unguarded one to float precision. One pass of
classical Gram–Schmidt in float32 loses orthogonality as the outputs approach dependence (measured:
max |U Uᵀ − I| ≈ 3e-3 when h_2 = h_1 + 1e-4·noise); this one projects each output twice, which gives the
same basis in exact arithmetic and keeps it orthonormal to float precision (≈ 3e-7 in that case).

Initialisation as the official code: the experts' Xavier init in the network constructor is overwritten by
`ParallelLayer`, which calls `reset_parameters()` before copying each expert, so the experts have PyTorch's
default dense init, kernel and bias U(±1/√fan_in) (each expert its own fan-in). The task-weight table is
Xavier-uniform (gain 1; bound √(6/(T+k))). Each head's kernel is Xavier-uniform (gain 1) and its bias
PyTorch's default, U(±1/√d).

Not applied: the official SAC's hard clamp of the log-std (this library squashes it smoothly into
[log_std_min, log_std_max] for every method) and its other training details; every method here trains with
the same SAC update, so that differences between methods come from the networks alone.

MOORE's published Meta-World results (MT10 88.7% success, MT50-rand 72.9 ± 3.3%) used 4 experts for MT10 and
6 for MT50 (MOOREConfig.num_experts: 4 by default). The heads are per task (multi-head, the official
"MH" networks) on top of the shared orthogonal representation; only the task weights and the heads are
task-specific.

Parameters: {"actor": net, "critic": (net, net)}, each net {"params": {"experts_0" … "experts_{L-1}":
{"kernel" (k, in, out), "bias" (k, out)}, "task_weights" (T, k), "heads": {"kernel" (T, d, out),
"bias" (T, out)}}}. Roles: "task_weights" and "heads" are TASK (row τ is read only by task τ's groups);
the experts are SHARED.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from paco.config.methods import MOOREConfig
from paco.methods.base import SHARED, TASK, ModuleNetworks, Params, roles_by_rule, rows
from paco.nets import network_input

EPS = 1e-8  # Gram–Schmidt normalisation guard (metaworld-algorithms' ε; MOORE has none)


def normalise(v: jax.Array) -> jax.Array:
    """v / sqrt(‖v‖² + ε²) over the last axis: unit length for ‖v‖ ≫ ε, and finite, value and gradient,
    at v = 0."""
    return v / jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True) + EPS ** 2)


def gram_schmidt(h: jax.Array) -> jax.Array:
    """Orthonormalise the k rows of h (..., k, d), in order (classical Gram–Schmidt, as MOORE's
    `OrthogonalLayer1D`): u_1 = h_1/‖h_1‖, u_i = normalise(h_i − Σ_{j<i} (h_i·u_j) u_j).
    Returns (..., k, d)."""
    return jnp.moveaxis(orthonormalise([h[..., i, :] for i in range(h.shape[-2])]), 0, -2)


def orthonormalise(vectors: list[jax.Array]) -> jax.Array:
    """Gram–Schmidt of k arrays (..., d), in order, stacked on a new leading axis: (k, ..., d)."""
    def project_out(v: jax.Array, basis: list[jax.Array]) -> jax.Array:
        return v - sum(jnp.sum(v * u, axis=-1, keepdims=True) * u for u in basis)  # the sum of none is 0

    basis: list[jax.Array] = []
    for v in vectors:  # k is small and static
        # Projected twice ("twice is enough"): the same basis in exact arithmetic, and orthonormal to float
        # precision in float32 even for nearly dependent outputs, where one pass is not (it costs 7% of
        # MOORE's update at MT10's shapes).
        basis.append(normalise(project_out(project_out(v, basis), basis)))
    return jnp.stack(basis)


def torch_default_uniform(fan_in: int):
    """U(±1/√fan_in), PyTorch's default dense bias (and, for a kernel, its default kernel) initialisation."""
    bound = 1.0 / fan_in ** 0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)
    return init


# Per expert / per task slices (axis 0), each with its own fan-in / fan-out.
expert_kernel_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform", batch_axis=(0,))
head_kernel_init = nn.initializers.xavier_uniform(batch_axis=(0,))
task_weights_init = nn.initializers.xavier_uniform()  # (T, k): fan_in T, fan_out k, as torch's (k, T) weight


class ExpertLayer(nn.Module):
    """One layer of all k experts as one batched weight: kernel (k, in, out), bias (k, out)."""

    num_experts: int
    in_features: int
    features: int

    def setup(self):
        k = self.num_experts
        self.kernel = self.param("kernel", expert_kernel_init, (k, self.in_features, self.features))
        self.bias = self.param("bias", torch_default_uniform(self.in_features), (k, self.features))

    def __call__(self, x: jax.Array, per_expert: bool) -> jax.Array:
        """x: one input for all experts (N, in), or with `per_expert` one per expert (k, N, in); out
        (k, N, features). Expert-major, so that every layer is one matmul with at most one batch axis (the
        experts): 8% faster MOORE updates at MT10's shapes on a CPU than the sample-major layout."""
        if per_expert:
            return jnp.einsum("kni,kio->kno", x, self.kernel) + self.bias[:, None, :]
        return jnp.einsum("ni,kio->kno", x, self.kernel) + self.bias[:, None, :]


class TaskHeads(nn.Module):
    """One linear output layer per task: kernel (T, in, out), bias (T, out); group g uses row task_ids[g]."""

    num_tasks: int
    in_features: int
    features: int

    def setup(self):
        self.kernel = self.param("kernel", head_kernel_init, (self.num_tasks, self.in_features, self.features))
        self.bias = self.param("bias", torch_default_uniform(self.in_features), (self.num_tasks, self.features))

    def __call__(self, f: jax.Array, task_ids: jax.Array | None) -> jax.Array:
        kernel, bias = rows(self.kernel, task_ids), rows(self.bias, task_ids)  # (G, in, out), (G, out)
        return jnp.einsum("gbi,gio->gbo", f, kernel) + bias[:, None, :]


class MOORENet(nn.Module):
    """k orthonormalised experts mixed by per-task weights, then a per-task head. x (G, B, in) -> (G, B, out)."""

    sizes: tuple[int, ...]  # (in, hidden...): the experts' layer widths; d = sizes[-1]
    num_experts: int
    num_tasks: int
    out_features: int

    def setup(self):
        k = self.num_experts
        self.experts = [ExpertLayer(k, n_in, n_out)
                        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:])]
        self.task_weights = self.param("task_weights", task_weights_init, (self.num_tasks, k))
        self.heads = TaskHeads(self.num_tasks, self.sizes[-1], self.out_features)

    def expert_basis(self, x: jax.Array) -> jax.Array:
        """The orthonormal basis u (k, G, B, d) of each sample, expert-major (it does not depend on the task):
        every expert's output (ReLU between layers, the last layer linear), then Gram–Schmidt."""
        h = self.experts[0](x.reshape(-1, x.shape[-1]), per_expert=False)
        for layer in self.experts[1:]:
            h = layer(nn.relu(h), per_expert=True)
        h = h.reshape(h.shape[:1] + x.shape[:-1] + h.shape[-1:])
        return orthonormalise([h[i] for i in range(h.shape[0])])

    def basis(self, x: jax.Array) -> jax.Array:
        """The orthonormal basis as (G, B, k, d)."""
        return jnp.moveaxis(self.expert_basis(x), 0, -2)

    def __call__(self, x: jax.Array, task_ids: jax.Array | None) -> jax.Array:
        w = rows(self.task_weights, task_ids)  # (G, k)
        f = jnp.tanh(jnp.einsum("kgbd,gk->gbd", self.expert_basis(x), w))
        return self.heads(f, task_ids)


@dataclass(frozen=True)
class MOORE(ModuleNetworks):
    """MOORE: params {"actor": net, "critic": (net, net)}; each net has its own experts, task weights, heads."""

    def features(self, network_params: Params, obs: jax.Array, action: jax.Array | None = None) -> jax.Array:
        """The orthonormal basis u (G, B, k, d) of one network: the actor's (`network_params` = params["actor"]),
        or with `action` a critic's (one of params["critic"])."""
        net, x = (self.actor, obs) if action is None else (self.critic, network_input(obs, None, action))
        return net.apply(network_params, x, method=MOORENet.basis)

    def roles(self, params):
        def rule(path: str, leaf) -> str:
            if "['task_weights']" in path or "['heads']" in path:
                assert leaf.shape[0] == self.num_tasks, path
                return TASK
            return SHARED

        return roles_by_rule(params, rule)


def build(config: MOOREConfig, task_names: tuple[str, ...], obs_dim: int, action_dim: int) -> MOORE:
    """The method for these tasks (only their number matters: the task enters through its weights and head)."""
    if config.num_experts < 1:
        raise ValueError(f"network.num_experts must be at least 1, got {config.num_experts}")
    if not config.hidden:
        raise ValueError("network.hidden: MOORE's experts need at least one layer")
    critic_hidden = config.critic_hidden or config.hidden
    if config.num_experts > min(config.hidden[-1], critic_hidden[-1]):
        raise ValueError(f"network.num_experts ({config.num_experts}) exceeds the experts' output width "
                         f"({min(config.hidden[-1], critic_hidden[-1])}): that many outputs cannot be orthonormal")
    num_tasks = len(task_names)

    def net(n_in: int, out: int, hidden: tuple[int, ...]) -> MOORENet:
        return MOORENet((n_in, *hidden), config.num_experts, num_tasks, out)

    return MOORE(num_tasks, obs_dim, action_dim, config.log_std_min, config.log_std_max,
                 net(obs_dim, 2 * action_dim, config.hidden), net(obs_dim + action_dim, 1, critic_hidden))
