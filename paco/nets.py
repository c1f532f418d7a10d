"""The compositional dense layer and the actor and critic networks built from it.

A layer holds a parameter set Φ: K copies of a kernel and a bias. A *group* of samples (all samples of
one task, or one sample when tasks are mixed) comes with its compositional vector w ∈ R^K; its layer is
W = Σ_k w_k W_k, b = Σ_k w_k b_k. The weights are composed once per group and applied with one batched
matmul (never K layer copies per sample). A layer used without w is an ordinary shared layer (K = 1,
w ≡ 1). Which layers are composed, and with which w, is what distinguishes MT-SAC, multi-head,
single-task and PaCo (see `paco.methods`).

Shapes: inputs are grouped, x: (G, B, features); w: (G, K).
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

# PyTorch's default dense initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), used by the authors' code.
default_kernel_init = nn.initializers.variance_scaling(1 / 3, "fan_in", "uniform")

LayerWeights = tuple[jax.Array, jax.Array]  # (kernel, bias): (in, out), (out,) or per group (G, in, out), (G, out)


def dense(weights: LayerWeights, x: jax.Array) -> jax.Array:
    """Apply a shared (2-D kernel) or per-group composed (3-D kernel) layer to grouped x (G, B, in)."""
    kernel, bias = weights
    if kernel.ndim == 2:
        return x @ kernel + bias
    return jnp.einsum("gbi,gio->gbo", x, kernel) + bias[:, None, :]


def forward(layers: Sequence[LayerWeights], x: jax.Array) -> jax.Array:
    """An MLP with ReLU between layers, from already composed weights."""
    for i, weights in enumerate(layers):
        x = dense(weights, x)
        if i < len(layers) - 1:
            x = nn.relu(x)
    return x


class CompositionalDense(nn.Module):
    """Parameter set Φ of `num_components` dense layers; all slices start identical (authors' init)."""

    in_features: int
    features: int
    num_components: int = 1

    def setup(self):
        def identical_slices(init):
            def make(key, shape):
                return jnp.broadcast_to(init(key, shape[1:]), shape)
            return make

        k = self.num_components
        self.kernel = self.param("kernel", identical_slices(default_kernel_init), (k, self.in_features, self.features))
        self.bias = self.param("bias", nn.initializers.zeros, (k, self.features))

    def compose(self, w: jax.Array | None) -> LayerWeights:
        """Weights of each group, Σ_k w_gk Φ_k; w=None: the shared layer (requires K = 1)."""
        if w is None:
            assert self.num_components == 1, "a layer with K > 1 slices needs compositional vectors"
            return self.kernel[0], self.bias[0]
        # A 2-D matmul over the flattened slices: as an einsum, XLA on CPU transposes the (in·out, G)
        # gradients of the backward pass, which costs more than the whole composed layer.
        k, n_in, n_out = self.kernel.shape
        kernel = (w @ self.kernel.reshape(k, n_in * n_out)).reshape(w.shape[0], n_in, n_out)
        return kernel, w @ self.bias

    def __call__(self, x: jax.Array, w: jax.Array | None) -> jax.Array:
        return dense(self.compose(w), x)


class ComposedMLP(nn.Module):
    """An MLP whose layers are each either composed (K slices, per-group w) or shared (K = 1)."""

    sizes: tuple[int, ...]  # (in, hidden..., out)
    composed: tuple[bool, ...]  # one flag per layer
    num_components: int

    def setup(self):
        assert len(self.composed) == len(self.sizes) - 1
        self.layers = [
            CompositionalDense(n_in, n_out, self.num_components if c else 1)
            for n_in, n_out, c in zip(self.sizes[:-1], self.sizes[1:], self.composed)
        ]

    def compose(self, w: jax.Array | None) -> tuple[LayerWeights, ...]:
        return tuple(layer.compose(w if c else None) for layer, c in zip(self.layers, self.composed))

    def __call__(self, x: jax.Array, w: jax.Array | None) -> jax.Array:
        return forward(self.compose(w), x)


def network_input(obs: jax.Array, onehot: jax.Array | None, action: jax.Array | None = None) -> jax.Array:
    """Concatenate grouped observations (G, B, D) with each group's task one-hot (G, T) and actions."""
    parts = [obs]
    if onehot is not None:
        parts.append(jnp.broadcast_to(onehot[:, None, :], obs.shape[:2] + onehot.shape[1:]))
    if action is not None:
        parts.append(action)
    return jnp.concatenate(parts, axis=-1)


def gaussian_head(out: jax.Array, log_std_min: float, log_std_max: float) -> tuple[jax.Array, jax.Array]:
    """Split actor output into mean and a log-std squashed smoothly into [min, max]."""
    mean, raw = jnp.split(out, 2, axis=-1)
    log_std = log_std_min + 0.5 * (log_std_max - log_std_min) * (jnp.tanh(raw) + 1.0)
    return mean, log_std


def sample_tanh_gaussian(key: jax.Array, mean: jax.Array, log_std: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Reparameterised action a = tanh(u), u ~ N(mean, std), and log π(a), summed over action dims."""
    noise = jax.random.normal(key, mean.shape, mean.dtype)
    u = mean + jnp.exp(log_std) * noise
    return jnp.tanh(u), tanh_gaussian_log_prob(u, mean, log_std)


def tanh_gaussian_log_prob(u: jax.Array, mean: jax.Array, log_std: jax.Array) -> jax.Array:
    """log density of a = tanh(u): Gaussian log-density of u minus log|d tanh/du| (in a stable form)."""
    gaussian = -0.5 * ((u - mean) / jnp.exp(log_std)) ** 2 - log_std - 0.5 * jnp.log(2 * jnp.pi)
    log_det = 2.0 * (jnp.log(2.0) - u - nn.softplus(-2.0 * u))  # log(1 - tanh(u)^2)
    return jnp.sum(gaussian - log_det, axis=-1)
