"""Soft-Modularization (Yang et al., "Multi-Task Reinforcement Learning with Soft Modularization", NeurIPS 2020).

Every network (the actor and each of the two critics) is a base network of L layers of n modules whose
outputs are mixed, per sample, by soft routing weights that a routing network computes from the
observation and the task. This follows the authors' official code, RchalYang/Soft-Module,
`torchrl/networks/nets.py::ModularGatedCascadeCondNet` (add_bn=False, pre_softmax=False, cond_ob=True):

    f(s)  = Linear(ReLU(Linear(s)))                    observation trunk, trunk_width, no final activation
    z     = Linear(onehot(τ))                          task embedding, trunk_width, no activation
    e     = z ⊙ f(s)                                   routing input;   h₀ = ReLU(f(s))   module input
    g     = fc₂(ReLU(fc₁(ReLU(e))))                    gating trunk, gating_width
    p¹    = row-softmax(W_d¹ ReLU(g))                  (n, n)
    p^l   = row-softmax(W_d^l ReLU((W_u^l [p¹;…;p^{l−1}]) ⊙ g))      l = 2 … L−1,  (n, n)
    p^L   = softmax(W_last ReLU((W_u^L [p¹;…;p^{L−1}]) ⊙ g))          (n,)
    o¹_j  = Linear_j(h₀)
    o^l_j = Linear_j(ReLU(Σ_i p^{l−1}[j, i] o^{l−1}_i))               l = 2 … L
    out   = Linear(ReLU(Σ_j p^L_j o^L_j))

[p¹;…;p^{l−1}] is every earlier (softmaxed) routing matrix flattened and concatenated. The n modules of a
layer are one batched weight (n, in, out), applied with one einsum.

Departures of the official code from the paper, kept here because the official code is what produced the
paper's numbers: a gating trunk of two extra layers between e and the routing layers; the observation
embedding is activated (ReLU) before it enters the modules; each routing layer is conditioned on *all*
earlier routing weights concatenated, not only the previous one; a ReLU after each weighted sum of module
outputs; and the extra routing vector p^L that mixes the last layer's modules before the output layer.

Initialisation as the official code: hidden layers have fan-in uniform kernels (`nets.default_kernel_init`,
U(±1/√fan_in)) and bias 0.1; the routing-logit layers (W_d, W_last) and the output layer have kernel and bias
U(±3e-3). (As we read it, the official `_fanin_init` takes its bound from the first axis of PyTorch's (out, in)
weight, i.e. 1/√(output width); we use the true fan-in.)

Actor: input the observation alone (the task enters through z), output 2·action_dim (mean, raw log-std).
Critics: two independent networks on concat(obs, action), output 1.

Not applied: the official SAC extras of this method, the per-task loss reweighting by softmax(−log α_τ) and
the per-network gradient-norm clip of 1. This library trains every method with the same SAC update, so that
differences between methods come from the network alone.

Roles: the task-embedding kernel (T, trunk_width) is TASK (row τ is reached only by task τ's one-hot, so
only task τ's loss trains it); everything else, the embedding's bias included, is SHARED.
"""

from __future__ import annotations

from dataclasses import dataclass

import flax.linen as nn
import jax
import jax.numpy as jnp

from paco.config.methods import SoftModulesConfig
from paco.methods.base import SHARED, TASK, ModuleNetworks, Params, roles_by_rule
from paco.nets import default_kernel_init, network_input

HIDDEN_BIAS = 0.1
LAST_INIT_SCALE = 3e-3


def symmetric_uniform(scale: float):
    """U(−scale, scale), the official `uniform_init` (flax's `uniform` draws from [0, scale))."""
    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -scale, scale)
    return init


def hidden_dense(features: int) -> nn.Dense:
    return nn.Dense(features, kernel_init=default_kernel_init, bias_init=nn.initializers.constant(HIDDEN_BIAS))


def last_dense(features: int) -> nn.Dense:
    return nn.Dense(features, kernel_init=symmetric_uniform(LAST_INIT_SCALE),
                    bias_init=symmetric_uniform(LAST_INIT_SCALE))


class ModuleLayer(nn.Module):
    """n modules (dense layers) of one layer as one batched weight: kernel (n, in, out), bias (n, out)."""

    num_modules: int
    in_features: int
    features: int

    def setup(self):
        # batch_axis: each module's slice gets its own fan-in bound, 1/√in (not 1/√(n·in)).
        kernel_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform", batch_axis=(0,))
        self.kernel = self.param("kernel", kernel_init, (self.num_modules, self.in_features, self.features))
        self.bias = self.param("bias", nn.initializers.constant(HIDDEN_BIAS), (self.num_modules, self.features))

    def __call__(self, x: jax.Array, per_module: bool) -> jax.Array:
        """x: one input for all modules (G, B, in), or with `per_module` one per module (G, B, n, in);
        out (G, B, n, features)."""
        if per_module:
            return jnp.einsum("gbni,nio->gbno", x, self.kernel) + self.bias
        return jnp.einsum("gbi,nio->gbno", x, self.kernel) + self.bias


class SoftModularNet(nn.Module):
    """ModularGatedCascadeCondNet: a routed base network of L × n modules. Inputs grouped: x (G, B, in),
    onehot (G, T)."""

    trunk_width: int
    gating_width: int
    num_layers: int  # L ≥ 2
    num_modules: int  # n
    module_width: int
    out_features: int

    def setup(self):
        L, n, gw = self.num_layers, self.num_modules, self.gating_width
        self.trunk = [hidden_dense(self.trunk_width), hidden_dense(self.trunk_width)]
        self.task_embedding = hidden_dense(self.trunk_width)
        self.gating = [hidden_dense(gw), hidden_dense(gw)]
        # routing_cond[k] is W_u^{k+2}: (k+1)·n² → gating_width (the last one is W_u^L);
        # routing_logits[k] is W_d^{k+1} (n²) for k < L−1, and W_last (n) for k = L−1.
        self.routing_cond = [hidden_dense(gw) for _ in range(L - 1)]
        self.routing_logits = [last_dense(n * n) for _ in range(L - 1)] + [last_dense(n)]
        widths = (self.trunk_width,) + (self.module_width,) * L
        self.module_layers = [ModuleLayer(n, widths[l], widths[l + 1]) for l in range(L)]
        self.output = last_dense(self.out_features)

    def _embed(self, x: jax.Array, onehot: jax.Array) -> tuple[jax.Array, jax.Array]:
        """Module input h₀ = ReLU(f(s)) and gating trunk output g."""
        f = self.trunk[1](nn.relu(self.trunk[0](x)))
        z = self.task_embedding(onehot)[:, None, :]  # (G, 1, W): one embedding per group, broadcast over B
        g = self.gating[1](nn.relu(self.gating[0](nn.relu(z * f))))
        return nn.relu(f), g

    def _route(self, g: jax.Array) -> list[jax.Array]:
        n = self.num_modules
        weights = [jax.nn.softmax(self.routing_logits[0](nn.relu(g)).reshape(g.shape[:-1] + (n, n)), axis=-1)]
        for k in range(self.num_layers - 1):  # p² … p^L
            flat = jnp.concatenate([p.reshape(g.shape[:-1] + (n * n,)) for p in weights], axis=-1)
            logits = self.routing_logits[k + 1](nn.relu(self.routing_cond[k](flat) * g))
            last = k == self.num_layers - 2
            weights.append(jax.nn.softmax(logits if last else logits.reshape(g.shape[:-1] + (n, n)), axis=-1))
        return weights

    def routing(self, x: jax.Array, onehot: jax.Array) -> list[jax.Array]:
        """[p¹, …, p^{L−1}] each (G, B, n, n), then p^L (G, B, n)."""
        return self._route(self._embed(x, onehot)[1])

    def __call__(self, x: jax.Array, onehot: jax.Array) -> jax.Array:
        h, g = self._embed(x, onehot)
        weights = self._route(g)
        o = self.module_layers[0](h, per_module=False)  # (G, B, n, module_width)
        for l in range(1, self.num_layers):
            mixed = nn.relu(jnp.einsum("gbji,gbio->gbjo", weights[l - 1], o))  # module j's input
            o = self.module_layers[l](mixed, per_module=True)
        return self.output(nn.relu(jnp.einsum("gbj,gbjo->gbo", weights[-1], o)))


@dataclass(frozen=True)
class SoftModules(ModuleNetworks):
    """Soft-Modularization: params {"actor": net, "critic": (net, net)}; every network routes by task."""

    def task_input(self, task_ids):
        """The networks read each group's task as its one-hot (z = Linear(onehot))."""
        return self.onehot(task_ids)

    def routing(self, network_params: Params, obs: jax.Array, task_ids: jax.Array | None = None,
                action: jax.Array | None = None) -> list[jax.Array]:
        """Routing weights [p¹, …, p^{L−1}] (G, B, n, n) and p^L (G, B, n) of one network: the actor's
        (`network_params` = params["actor"]), or with `action` a critic's (one of params["critic"])."""
        net, x = (self.actor, obs) if action is None else (self.critic, network_input(obs, None, action))
        return net.apply(network_params, x, self.onehot(task_ids), method=SoftModularNet.routing)

    def roles(self, params):
        def rule(path: str, leaf) -> str:
            if "['task_embedding']['kernel']" in path:
                assert leaf.shape[0] == self.num_tasks, path
                return TASK
            return SHARED

        return roles_by_rule(params, rule)


def build(config: SoftModulesConfig, task_names: tuple[str, ...], obs_dim: int, action_dim: int) -> SoftModules:
    """The method for these tasks (only their number matters: the task enters as a one-hot)."""
    if config.num_layers < 2:
        raise ValueError(f"network.num_layers: Soft-Modularization routes between layers of modules and needs "
                         f"at least 2, got {config.num_layers}")
    if config.num_modules < 1:
        raise ValueError(f"network.num_modules must be at least 1, got {config.num_modules}")

    def net(out: int) -> SoftModularNet:
        return SoftModularNet(config.trunk_width, config.gating_width, config.num_layers, config.num_modules,
                              config.module_width, out)

    return SoftModules(len(task_names), obs_dim, action_dim, config.log_std_min, config.log_std_max,
                       net(2 * action_dim), net(1))
