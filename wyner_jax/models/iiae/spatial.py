"""IIAE's image networks with a *spatial* shared code (iiae.md §1.3, the conv variant of
MNIST-CDCB, Facades and Maps), selected by ``config.iiae.shared_code = 'spatial'``.

At the reference's 256×256 inputs, with ``trunk_layers`` = 4, ``conv_base`` = 32 (neef = nsef)
and decoder base 2·conv_base = 64 (ndf):

* exclusive encoders q(z^x|x), q(z^y|y): four 4×4 stride-2 "SAME" convs, 32, 64, 128, 256
  channels (128² → 16²), each → BN → LReLU(0.2), flattened (65,536) → Dense(2·8): an 8-d
  mean and an 8-d log-variance;
* auxiliary shared encoders r(z^s|x), r(z^s|y): the same conv stack (its own weights) to
  R = 16×16×256, the trunk whose output also feeds q(z^s|x,y), then the head: one 4×4
  stride-2 conv to 8×8×2C, split along channels into an 8×8×C mean and log-variance
  (C = ``shared_dim`` = 128 channels, so z^s has 8·8·128 = 8192 dimensions);
* joint shared encoder q(z^s|x,y): concat(R_x, R_y) along channels (16×16×512) → one 4×4
  stride-2 conv to 8×8×2C, split; no BatchNorm;
* decoders: z^x (8-d) tiled over the 8×8 grid and concatenated after z^s (8×8×136), four 4×4
  stride-2 transposed convs, 512, 256, 128, 64 channels (16² → 128²), each → BN → dropout
  (first two, training only) → ReLU, then a transposed conv to the image's channels at 256²
  and the output activation (tanh). No skip connections.

Other image sizes keep the same depth, so the code grid scales with the image: side/32 (2×2×C
at 64 px, the CPU smoke setting). Initialisation as the rest of IIAE (§8): N(0, 0.02) conv
kernels, Glorot-uniform Dense kernels, zero biases; a bias right before BatchNorm is left out.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import flax.linen as nn

from wyner_jax import nets
from wyner_jax.models.iiae.common import conv4x4, down_blocks
from wyner_jax.models.iiae.flat import Arch


class ConvStack(nn.Module):
    """``layers`` × (4×4 stride-2 conv, channels base·2^i → BN → LReLU(0.2)), not flattened:
    the reference's image encoder trunk (R at 16×16×256 for 256 px)."""

    base: int
    layers: int
    bn_momentum: float
    bn_epsilon: float

    @nn.compact
    def __call__(self, h, train: bool):
        widths = [self.base * 2**i for i in range(self.layers)]
        return down_blocks(h, widths, train, self.bn_momentum, self.bn_epsilon)


class ExclusiveEncoder(nn.Module):
    """q(z^x|x): the conv stack, flattened, → Dense(features) (mean and log-variance)."""

    base: int
    layers: int
    features: int
    bn_momentum: float
    bn_epsilon: float

    @nn.compact
    def __call__(self, x, train: bool):
        h = ConvStack(self.base, self.layers, self.bn_momentum, self.bn_epsilon)(x, train)
        h = h.reshape(h.shape[0], -1)
        return nn.Dense(self.features, kernel_init=nets.XAVIER, dtype=nets.layer_dtype())(h)


class SpatialGaussianHead(nn.Module):
    """One 4×4 stride-2 conv to 2·channels (no BN): the r-heads on R and q(z^s|x,y) on
    concat(R_x, R_y); the model splits its output along channels into mean and log-variance."""

    channels: int

    @nn.compact
    def __call__(self, h, train: bool):
        del train  # no BatchNorm in the reference's heads
        return conv4x4(2 * self.channels)(h)


class SpatialDecoder(nn.Module):
    """p(x|z^x, z^s) on concat(z^s, tiled z^x): ``layers`` transposed convs with channels
    base·2^(layers−1−i) → BN → dropout (first two) → ReLU, then a transposed conv to the
    image's channels and the output activation. Dropout only with ``dropout=True`` (training)."""

    out_shape: tuple[int, int, int]
    base: int
    layers: int
    dropout: float
    out_act: str
    bn_momentum: float
    bn_epsilon: float

    @nn.compact
    def __call__(self, latent, train: bool, dropout: bool = False):
        h = latent
        for i in range(self.layers):
            h = conv4x4(self.base * 2 ** (self.layers - 1 - i), transpose=True, use_bias=False)(h)
            h = nets.batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
            if self.dropout > 0 and i < 2:
                h = nn.Dropout(self.dropout, deterministic=not dropout)(h)
            h = nn.relu(h)
        h = conv4x4(self.out_shape[-1], transpose=True)(h)
        return nets.activation(self.out_act)(h)


@dataclasses.dataclass(frozen=True)
class SpatialArch(Arch):
    """``Arch`` for the spatial shared code: ``shared_dim`` counts the channels of z^s and
    ``trunk_layers`` the stride-2 convs before R (4 in the reference)."""

    trunk_layers: int = 4
    # The decoder network (``flat_fc.FlatArch`` puts a Dense block in front of this one).
    decoder_module: ClassVar[type[nn.Module]] = SpatialDecoder

    @classmethod
    def from_config(cls, family: str, c, x_shape, y_shape, out_acts) -> "SpatialArch":
        if family != "conv":
            raise ValueError(
                "config.iiae.shared_code='spatial' is the conv image networks' code (iiae.md "
                f"§1.3); set config.model.family='conv' (got {family!r}) or shared_code='flat'."
            )
        base = Arch.from_config(family, c, x_shape, y_shape, out_acts)
        layers = int(c.get("trunk_layers", 4))
        for side, shape in (("x", x_shape), ("y", y_shape)):
            size = shape[0]
            if layers < 1 or shape[0] != shape[1] or size % 2 ** (layers + 1):
                raise ValueError(
                    f"The IIAE image networks halve the {side} images {layers} + 1 times "
                    f"(config.iiae.trunk_layers = {layers}), so the image side must be a "
                    f"multiple of {2 ** (layers + 1)}, got {tuple(shape)}; use image_size 256 "
                    "(reference), 128 or 64, or fewer trunk_layers."
                )
        if x_shape[:2] != y_shape[:2]:
            raise ValueError(
                f"q(z^s|x,y) concatenates the x and y trunks, so both images need one size; got "
                f"x {tuple(x_shape)} and y {tuple(y_shape)}."
            )
        return cls(**dataclasses.asdict(base), trunk_layers=layers)

    @property
    def shared_shape(self) -> tuple[int, ...]:
        side = self.x_shape[0] // 2 ** (self.trunk_layers + 1)
        return (side, side, self.shared_dim)

    def exclusive_encoder(self, name) -> nn.Module:
        return ExclusiveEncoder(
            base=self.conv_base,
            layers=self.trunk_layers,
            features=2 * self.exclusive_dim,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            name=name,
        )

    def shared_trunk(self, name) -> nn.Module:
        return ConvStack(
            base=self.conv_base,
            layers=self.trunk_layers,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            name=name,
        )

    def shared_head(self, name) -> nn.Module:
        return SpatialGaussianHead(self.shared_dim, name=name)

    def joint_encoder(self, name) -> nn.Module:
        return SpatialGaussianHead(self.shared_dim, name=name)

    def decoder(self, out_shape, out_act, name) -> nn.Module:
        return self.decoder_module(
            out_shape=tuple(out_shape),
            base=2 * self.conv_base,
            layers=self.trunk_layers,
            dropout=self.decoder_dropout,
            out_act=out_act,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            name=name,
        )
