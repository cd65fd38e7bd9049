"""What every IIAE network family shares (iiae.md §1.1, §1.3, §8): the reference's constants,
its 4×4 stride-2 convolution, the conv → BN → LReLU down-sampling block, and the Gaussian
head's split into mean and log-variance.
"""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wyner_jax import nets
from wyner_jax.conv2x import Conv2x
from wyner_jax.subpixel import ConvTranspose2x

LRELU_SLOPE = 0.2  # the reference's lrelu(x, 0.2)
CONV_INIT = nn.initializers.normal(stddev=0.02)
BN_SCALE_STDDEV = 0.02  # BatchNorm gamma ~ N(1, 0.02) (ops.batchnorm)


def conv4x4(features: int, transpose: bool = False, use_bias: bool = True) -> nn.Module:
    """The reference's 4×4 stride-2 "SAME" conv, or transposed conv, with N(0, 0.02) kernels,
    in the forms that are faster on CPU (same parameters and results as ``nn.Conv`` /
    ``nn.ConvTranspose``; ``conv2x.py``, ``subpixel.py``). Call it inside a compact method:
    the layer takes its auto-name (``Conv2x_<i>``, ``ConvTranspose2x_<i>``) from there."""
    kwargs = dict(padding="SAME", kernel_init=CONV_INIT, use_bias=use_bias)
    if transpose:
        return ConvTranspose2x(features, (4, 4), dtype=nets.layer_dtype(), **kwargs)
    return Conv2x(features, (4, 4), dtype=nets.layer_dtype(), **kwargs)


def down_blocks(
    h: jax.Array, widths: Sequence[int], train: bool, bn_momentum: float, bn_epsilon: float
) -> jax.Array:
    """One (4×4 stride-2 conv → BN → LReLU(0.2)) block per width: the reference's image
    encoder stack (§1.3). The conv has no bias, as BN right after it cancels one. Call it
    inside a compact method, which then owns the layers (``Conv2x_i``, ``BatchNorm_i``)."""
    for width in widths:
        h = conv4x4(width, use_bias=False)(h)
        h = nets.batch_norm(train, bn_momentum, bn_epsilon)(h)
        h = nn.leaky_relu(h, LRELU_SLOPE)
    return h


def widths(value) -> tuple[int, ...]:
    """A width or a sequence of widths from the config, as a tuple."""
    return (int(value),) if isinstance(value, (int, float)) else tuple(int(v) for v in value)


def split_moments(out: jax.Array, logvar_max: float) -> tuple[jax.Array, jax.Array]:
    """(mean, log-variance) of a Gaussian head: the two halves of the last axis, the
    log-variance clipped from above only (§1.1). The hard min has zero gradient above the
    cap, as the reference's."""
    mean, logvar = jnp.split(out, 2, axis=-1)
    return mean, jnp.minimum(logvar, logvar_max)


def join_codes(z_s: jax.Array, z_e: jax.Array) -> jax.Array:
    """The decoder input [z^s, z^e] (z^s first). A spatial z^s [N, h, w, C] takes the
    exclusive vector z^e tiled over its grid as extra channels (§1.3, 8×8×(128+8))."""
    if z_s.ndim > 2:
        grid = z_s.shape[1:-1]
        z_e = jnp.broadcast_to(z_e[:, None, None, :], (z_e.shape[0],) + grid + z_e.shape[-1:])
    return jnp.concatenate([z_s, z_e.astype(z_s.dtype)], axis=-1)
