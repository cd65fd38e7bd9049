"""Network building blocks shared by both models: MLPs and 32×32-style conv stacks.

The layer recipes follow the reference code (wyner-model.md §4.0):

* ``MLP`` is the reference's ``get_fc``: hidden ``Dense → [BN] → act`` blocks, a final
  ``Dense``, and, when a last activation is given, ``[BN] → act`` after it. The reference
  wraps that final ``Dense`` in spectral norm whenever a last activation is given (§7.1,
  probably unintended, but it is what produced the published numbers); ``spectral_norm``
  switches this on, and such layers keep PyTorch's default ``U(±1/√fan_in)`` init
  instead of Xavier, as in the reference.
* ``ConvEncoder`` is the reference ``ConvNet``: k5 s2 p2 convolutions halving the image
  down to 2×2, channels doubling from ``base``.
* ``ConvDecoder`` is the reference ``DeconvNet``: a (spectrally normalised) ``Dense`` to
  ``8·base`` channels at 4×4, then k5 s2 transposed convolutions doubling the size (computed
  as sub-pixel convolutions, ``wyner_jax/subpixel.py``: same parameters and results).

BatchNorm uses PyTorch's momentum 1e-3 (Flax momentum 0.999) and eps 1e-3 by default.
Every module takes ``train``: BatchNorm uses batch statistics when true, and spectral norm
refreshes its power-iteration vector.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wyner_jax.conv2x import Conv2x
from wyner_jax.spectral_norm import spectral_dense
from wyner_jax.subpixel import ConvTranspose2x

# Xavier-uniform weights and zero biases for ordinary layers (reference ``weights_init``).
XAVIER = nn.initializers.xavier_uniform()
# PyTorch's default Linear/Conv init, kept by the reference's spectrally normalised layers.
TORCH_DEFAULT = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")

BN_MOMENTUM = 0.999
BN_EPSILON = 1e-3

# Mixed precision: the dtype layers compute in (None: float32). Parameters, optimiser state,
# BatchNorm statistics and every loss stay float32; set with ``compute_dtype`` around a
# model's apply (``config.model.compute_dtype``).
_COMPUTE_DTYPE: contextvars.ContextVar = contextvars.ContextVar("compute_dtype", default=None)
COMPUTE_DTYPES = ("float32", "bfloat16")


def check_compute_dtype(name: str) -> str:
    if name not in COMPUTE_DTYPES:
        raise ValueError(
            f"Unknown compute dtype {name!r}; set --config.model.compute_dtype to one of "
            f"{', '.join(COMPUTE_DTYPES)}."
        )
    return name


@contextlib.contextmanager
def compute_dtype(name: str):
    """Layers built (traced) inside this block compute in ``name`` ('float32' or
    'bfloat16') while their parameters stay float32: bf16 matrix units on accelerators."""
    check_compute_dtype(name)
    token = _COMPUTE_DTYPE.set(None if name == "float32" else jnp.dtype(name))
    try:
        yield
    finally:
        _COMPUTE_DTYPE.reset(token)


def layer_dtype():
    """The computation dtype for a layer being built (None means float32)."""
    return _COMPUTE_DTYPE.get()


def float32(tree):
    """Casts every floating leaf to float32: losses are computed in full precision."""
    return jax.tree_util.tree_map(
        lambda a: a.astype(jnp.float32) if jnp.issubdtype(a.dtype, jnp.floating) else a, tree
    )


def activation(name: str | None, negative_slope: float = 0.2):
    """Returns the activation function called ``name`` (None means identity)."""
    if name is None or name == "none":
        return lambda h: h
    if name == "lrelu":
        return lambda h: nn.leaky_relu(h, negative_slope)
    if name == "relu":
        return nn.relu
    if name == "elu":
        return nn.elu
    if name == "tanh":
        return jnp.tanh
    raise ValueError(f"Unknown activation {name!r}; use one of lrelu, relu, elu, tanh, none.")


class Linear(nn.Module):
    """``nn.Dense`` that is optionally spectrally normalised (one power iteration per call)."""

    features: int
    spectral_norm: bool = False
    use_bias: bool = True

    @nn.compact
    def __call__(self, h, train: bool):
        if not self.spectral_norm:
            return nn.Dense(
                self.features,
                kernel_init=XAVIER,
                use_bias=self.use_bias,
                dtype=layer_dtype(),
                name="dense",
            )(h)
        return spectral_dense(
            h,
            self.features,
            update_stats=train,
            use_bias=self.use_bias,
            kernel_init=TORCH_DEFAULT,
            dtype=layer_dtype(),
        )


def batch_norm(train: bool, momentum: float = BN_MOMENTUM, epsilon: float = BN_EPSILON, name=None):
    return nn.BatchNorm(
        use_running_average=not train,
        momentum=momentum,
        epsilon=epsilon,
        dtype=layer_dtype(),
        name=name,
    )


class MLP(nn.Module):
    """The reference ``get_fc``: ``[Dense → BN? → act] × hidden``, ``Dense``, ``[BN? → last_act]``.

    Attributes:
      hidden: widths of the hidden layers.
      features: output width.
      act / last_act: activations after hidden layers / after the final layer (None: linear).
      batchnorm: BN after hidden layers 2.. (and the last activation when ≥ 1 hidden layer).
      batchnorm_first: BN after the first layer (the first hidden layer, or the final layer
        when there is none). Defaults to ``batchnorm``.
      spectral_norm: spectral norm on the final Dense; only applied when ``last_act`` is set,
        which is exactly the reference's quirk (§7.1).
    """

    hidden: Sequence[int]
    features: int
    act: str = "lrelu"
    last_act: str | None = None
    negative_slope: float = 0.2
    batchnorm: bool = False
    batchnorm_first: bool | None = None
    spectral_norm: bool = False
    bn_momentum: float = BN_MOMENTUM
    bn_epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, h, train: bool):
        bn_first = self.batchnorm if self.batchnorm_first is None else self.batchnorm_first
        act = activation(self.act, self.negative_slope)
        h = h.reshape(h.shape[0], -1)
        for i, width in enumerate(self.hidden):
            bn = (self.batchnorm and i > 0) or (bn_first and i == 0)
            # A bias right before BatchNorm is cancelled by it; leaving it out removes
            # parameters whose gradient is pure rounding noise (which Adam would amplify).
            h = nn.Dense(width, kernel_init=XAVIER, use_bias=not bn, dtype=layer_dtype())(h)
            if bn:
                h = batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
            h = act(h)
        with_last_act = self.last_act is not None and self.last_act != "none"
        bn_last = (
            with_last_act
            and self.last_act in ("lrelu", "elu")
            and ((self.batchnorm and len(self.hidden) >= 1) or (bn_first and not self.hidden))
        )
        h = Linear(
            self.features, spectral_norm=self.spectral_norm and with_last_act, use_bias=not bn_last
        )(h, train)
        if bn_last:
            h = batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
        if with_last_act:
            h = activation(self.last_act, self.negative_slope)(h)
        return h


def num_halvings(size: int) -> int:
    """Number of stride-2 layers taking a ``size``-pixel image to 2×2 (4 for 32×32)."""
    n = int(round(math.log2(size))) - 1
    if n < 1 or 2 ** (n + 1) != size:
        raise ValueError(
            f"The conv networks need a square power-of-two image side ≥ 4, got {size}; "
            "set config.data.image_size to 8, 16, 32, ..."
        )
    return n


class ConvEncoder(nn.Module):
    """The reference ``ConvNet``: k5 s2 p2 convs, channels base·2^i, down to 2×2, flattened.

    For 32×32 inputs this is Conv(c→b)→Conv(b→2b)→Conv(2b→4b)→Conv(4b→8b), output 2·2·8b.
    ``max_doublings`` ≥ 0 stops the doubling after that many layers (larger images: 3 keeps
    8b as the widest layer, as at 32×32, instead of 64b at 256×256).
    """

    base: int
    max_doublings: int = -1
    batchnorm: bool = True
    batchnorm_first: bool = True
    negative_slope: float = 0.2
    bn_momentum: float = BN_MOMENTUM
    bn_epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, h, train: bool):
        n = num_halvings(h.shape[1])
        for i in range(n):
            bn = self.batchnorm and (i > 0 or self.batchnorm_first)
            doublings = i if self.max_doublings < 0 else min(i, self.max_doublings)
            h = Conv2x(
                self.base * 2**doublings,
                (5, 5),
                padding=((2, 2), (2, 2)),
                kernel_init=XAVIER,
                use_bias=not bn,
                dtype=layer_dtype(),
            )(h)
            if bn:
                h = batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
            h = nn.leaky_relu(h, self.negative_slope)
        return h.reshape(h.shape[0], -1)


class ConvDecoder(nn.Module):
    """The reference ``DeconvNet``: Dense[SN] → (4, 4, 8·base) → BN → LReLU → ConvT ×k → tanh.

    Each k5 s2 transposed conv doubles the side (PyTorch p2 + output_padding 1 is Flax
    padding ((2, 3), (2, 3)) on the dilated input) and halves the channels; the last one
    maps to the image's channels, followed by tanh (images live in [−1, 1]).
    """

    out_shape: tuple[int, int, int]
    base: int
    spectral_norm: bool = True
    negative_slope: float = 0.2
    bn_momentum: float = BN_MOMENTUM
    bn_epsilon: float = BN_EPSILON

    @nn.compact
    def __call__(self, latent, train: bool):
        size, _, channels = self.out_shape
        n_up = num_halvings(size) - 1
        width = 8 * self.base
        h = Linear(4 * 4 * width, spectral_norm=self.spectral_norm, use_bias=False)(latent, train)
        h = h.reshape(h.shape[0], 4, 4, width)
        h = batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
        h = nn.leaky_relu(h, self.negative_slope)
        for i in range(n_up):
            last = i == n_up - 1
            width = channels if last else width // 2
            h = ConvTranspose2x(
                width,
                (5, 5),
                padding=((2, 3), (2, 3)),
                kernel_init=XAVIER,
                use_bias=last,
                dtype=layer_dtype(),
            )(h)
            if not last:
                h = batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
                h = nn.leaky_relu(h, self.negative_slope)
        if n_up == 0:  # 4×4 images: the Dense already produced the output grid
            h = nn.Dense(channels, kernel_init=XAVIER, dtype=layer_dtype())(h)
        return jnp.tanh(h)


class MLPDecoder(nn.Module):
    """Feature-vector decoder (reference Sketchy ``Decoder``, wyner-model.md §4.3).

    ``Dense(latent → hidden[-1])[SN] → BN → act`` (after optional extra hidden layers),
    then a linear ``Dense`` to the data width, reshaped to ``out_shape``; an optional output
    activation (tanh for data in [−1, 1]).
    """

    out_shape: tuple[int, ...]
    hidden: Sequence[int]
    act: str = "relu"
    negative_slope: float = 0.0
    batchnorm: bool = True
    spectral_norm: bool = True
    out_act: str | None = None

    @nn.compact
    def __call__(self, latent, train: bool):
        h = MLP(
            hidden=tuple(self.hidden[:-1]),
            features=self.hidden[-1],
            act=self.act,
            last_act=self.act,
            negative_slope=self.negative_slope,
            batchnorm=self.batchnorm,
            spectral_norm=self.spectral_norm,
        )(latent, train)
        out = nn.Dense(math.prod(self.out_shape), kernel_init=XAVIER, dtype=layer_dtype())(h)
        out = activation(self.out_act)(out)
        return out.reshape((latent.shape[0],) + tuple(self.out_shape))


def flat_dim(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def concat_pair(x, y):
    """Joins x and y for a joint network: channel concat for images, feature concat else."""
    if x.ndim == 4 and y.ndim == 4:
        return jnp.concatenate([x, y], axis=-1)
    return jnp.concatenate([x.reshape(x.shape[0], -1), y.reshape(y.shape[0], -1)], axis=-1)


def tree_size(tree) -> int:
    """Number of scalars in a pytree of arrays."""
    return sum(int(a.size) for a in jax.tree_util.tree_leaves(tree))
