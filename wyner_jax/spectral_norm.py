"""Spectrally normalised dense layer: y = x·W / σ(W) + b (Miyato et al., 2018).

The reference wraps its ``nn.Linear`` layers in ``torch.nn.utils.spectral_norm`` (one
power-iteration step per forward call in training, the vector ``u`` carried between calls;
wyner-model.md §4.0). ``flax.linen.SpectralNorm`` computes the same thing by rescaling the
kernel, W/σ, before the product. ``spectral_dense`` applies the scalar 1/σ to the product
instead, (x·W)/σ, which is the same function, and cheaper:

* the rescaled [in, out] kernel is not written out at every call (for the 1024×1024 first
  layer of the Sketchy discriminator, 4 MB per call, one call per sample set), and
* the gradient's σ term is the reduction ⟨∂L/∂y, x·W⟩ over the [batch, out] product, where
  differentiating W/σ reduces the [in, out] kernel gradient against the kernel, ⟨xᵀ·∂L/∂y, W⟩,
  once per call.

Variables and their paths are those of ``nn.SpectralNorm(nn.Dense(..., name="dense"),
name="sn")``: params ``dense/{kernel,bias}``, batch stats ``sn/{dense/kernel/u,
dense/kernel/sigma}``, so checkpoints of either are interchangeable, and
``tests/test_spectral_norm.py`` checks values, statistics and gradients against Flax's.
"""

from __future__ import annotations

from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp

EPSILON = 1e-12  # of the power iteration's L2 normalisation (torch and Flax use 1e-12 too)


def l2_normalize(v):
    return v * jax.lax.rsqrt(jnp.sum(v * v) + EPSILON)


class _PowerIteration(nn.Module):
    """Holds ``u`` and the last σ; one power-iteration step per call (σ = v·W·uᵀ with u, v
    constant for the gradient, as in torch's and Flax's spectral norm)."""

    @nn.compact
    def __call__(self, kernel, update_stats: bool):
        u_var = self.variable(
            "batch_stats",
            "dense/kernel/u",
            lambda: jax.random.normal(self.make_rng("params"), (1, kernel.shape[-1])),
        )
        sigma_var = self.variable("batch_stats", "dense/kernel/sigma", jnp.ones, ())
        v = l2_normalize(u_var.value @ kernel.T)
        u = l2_normalize(v @ kernel)
        u, v = jax.lax.stop_gradient(u), jax.lax.stop_gradient(v)
        sigma = (v @ kernel @ u.T)[0, 0]
        if update_stats:
            u_var.value, sigma_var.value = u, sigma
        return sigma


class _DenseParams(nn.Module):
    """The kernel and bias of ``nn.Dense`` (same names, shapes and init order)."""

    features: int
    use_bias: bool
    kernel_init: Callable
    bias_init: Callable

    @nn.compact
    def __call__(self, in_features: int):
        kernel = self.param("kernel", self.kernel_init, (in_features, self.features))
        bias = self.param("bias", self.bias_init, (self.features,)) if self.use_bias else None
        return kernel, bias


def spectral_dense(
    h,
    features: int,
    *,
    update_stats: bool,
    use_bias: bool = True,
    kernel_init: Callable = nn.initializers.lecun_normal(),
    bias_init: Callable = nn.initializers.zeros,
    dtype=None,
):
    """(h·W)/σ(W) + b, to be called inside a compact module: it adds that module's children
    ``dense`` (kernel, bias) and ``sn`` (u, σ). ``dtype`` is the computation dtype (None:
    that of ``h`` and the float32 parameters); the power iteration is float32."""
    kernel, bias = _DenseParams(features, use_bias, kernel_init, bias_init, name="dense")(
        h.shape[-1]
    )
    sigma = _PowerIteration(name="sn")(kernel, update_stats)
    h, kernel, bias = nn.dtypes.promote_dtype(h, kernel, bias, dtype=dtype)
    y = jnp.matmul(h, kernel)
    y = y * (1.0 / jnp.where(sigma != 0, sigma, 1.0)).astype(y.dtype)
    return y if bias is None else y + bias
