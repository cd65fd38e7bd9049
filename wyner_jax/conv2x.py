"""Stride-2 convolution on small images as one matrix product over extracted patches (im2col).

XLA:CPU's convolution is very slow on tiny images with many channels: measured on the dev
machine at batch 64 (forward / forward + both gradients), the Wyner encoders' k5 stride-2
layers take

=====================  ===============  ===============
layer                  lax.conv         im2col
=====================  ===============  ===============
32×32×3 → 64           2.2 / 31 ms      4.5 / 23 ms
16×16×64 → 128         16 / 68 ms       41 / 98 ms
8×8×128 → 256          24 / 475 ms      18 / 46 ms
4×4×256 → 512          1790 / 2607 ms   13 / 38 ms
=====================  ===============  ===============

so ``conv_2x`` gathers the K² strided windows of the padded input side by side
([N, H/2, W/2, K²·C_in]) and multiplies by the kernel reshaped to [K²·C_in, C_out] when the
output has at most ``IM2COL_MAX_PIXELS`` pixels or the input at most ``IM2COL_MAX_CHANNELS``
channels (the patches are then small), and calls ``lax.conv_general_dilated`` otherwise and
on accelerators (not measured there).
Both give the same numbers (up to float rounding); ``Conv2x`` has the parameters of
``flax.linen.Conv(features, kernel_size, strides=(2, 2), padding)``.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

IM2COL_MAX_PIXELS = 16  # output pixels (H/2 · W/2): 4×4 and smaller
IM2COL_MAX_CHANNELS = 4  # input channels (RGB / gray first layers)


def explicit_padding(padding, kernel_size: Sequence[int], size: Sequence[int]):
    """((lo, hi), (lo, hi)) of a stride-2 conv for 'SAME', 'VALID' or explicit pairs."""
    if padding == "VALID":
        return ((0, 0), (0, 0))
    if padding == "SAME":
        pads = []
        for k, n in zip(kernel_size, size):
            total = max((-(-n // 2) - 1) * 2 + k - n, 0)
            pads.append((total // 2, total - total // 2))
        return tuple(pads)
    return tuple(tuple(int(v) for v in p) for p in padding)


def conv_2x(x, kernel, padding, form: str = "auto", precision=None):
    """``lax.conv_general_dilated(x, kernel, (2, 2), padding)`` (NHWC, HWIO).

    Args:
      padding: 'SAME', 'VALID' or ((lo, hi), (lo, hi)).
      form: 'im2col', 'conv' or 'auto' (the rule in the module docstring).
    """
    k_h, k_w, c_in, c_out = kernel.shape
    (lo_h, hi_h), (lo_w, hi_w) = explicit_padding(padding, (k_h, k_w), x.shape[1:3])
    out_h = (x.shape[1] + lo_h + hi_h - k_h) // 2 + 1
    out_w = (x.shape[2] + lo_w + hi_w - k_w) // 2 + 1
    if form == "auto":
        small = out_h * out_w <= IM2COL_MAX_PIXELS or c_in <= IM2COL_MAX_CHANNELS
        # Tuned on XLA:CPU; accelerators keep their own convolutions (cuDNN etc.) until
        # measured there.
        form = "im2col" if small and jax.default_backend() == "cpu" else "conv"
    if form == "conv":
        return lax.conv_general_dilated(
            x,
            kernel,
            (2, 2),
            ((lo_h, hi_h), (lo_w, hi_w)),
            dimension_numbers=("NHWC", "HWIO", "NHWC"),
            precision=precision,
        )
    if form != "im2col":
        raise ValueError(f"form must be 'auto', 'im2col' or 'conv', got {form!r}.")
    # Negative padding (cropping) is what lax.pad does with negative amounts, as the conv.
    x = lax.pad(x, jnp.zeros((), x.dtype), [(0, 0, 0), (lo_h, hi_h, 0), (lo_w, hi_w, 0), (0, 0, 0)])
    windows = [
        x[:, a : a + 2 * (out_h - 1) + 1 : 2, b : b + 2 * (out_w - 1) + 1 : 2, :]
        for a in range(k_h)
        for b in range(k_w)
    ]
    patches = jnp.concatenate(windows, axis=-1)  # [N, out_h, out_w, K²·C_in], (a, b, c) order
    return jnp.einsum(
        "nhwk,kd->nhwd", patches, kernel.reshape(k_h * k_w * c_in, c_out), precision=precision
    )


class Conv2x(nn.Module):
    """``nn.Conv(features, kernel_size, strides=(2, 2), padding)`` computed by ``conv_2x``
    (same parameters, initialisation and results)."""

    features: int
    kernel_size: tuple[int, int]
    padding: Any = "SAME"
    use_bias: bool = True
    kernel_init: Callable = nn.initializers.lecun_normal()
    bias_init: Callable = nn.initializers.zeros
    dtype: Any = None

    @nn.compact
    def __call__(self, x):
        k_h, k_w = self.kernel_size
        kernel = self.param("kernel", self.kernel_init, (k_h, k_w, x.shape[-1], self.features))
        dtype = self.dtype or jnp.result_type(x, kernel)
        y = conv_2x(x.astype(dtype), kernel.astype(dtype), self.padding)
        if self.use_bias:
            y = y + self.param("bias", self.bias_init, (self.features,)).astype(dtype)
        return y
