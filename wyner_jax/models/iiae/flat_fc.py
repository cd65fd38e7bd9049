"""IIAE's "flat" conv + fully-connected image networks (iiae.md §1.3, the Cars experiment's
``*_flat`` encoders and FC decoder branch), selected by ``config.iiae.shared_code = 'flat_fc'``.

The shared code z^s is a vector (``shared_dim`` = 128 for Cars, the reference's shdim), not
the 8×8×128 grid of the other image experiments (``spatial.py``). At the
reference's 256×256 inputs, with ``trunk_layers`` = 4, ``conv_base`` = 32 (neef = nsef) and
decoder base 2·conv_base = 64 (ndf):

* exclusive encoders q(z^x|x), q(z^y|y): four 4×4 stride-2 "SAME" convs, 32, 64, 128, 256
  channels (to 16×16), each → BN → LReLU(0.2), flattened (65,536) → Dense(2·8): an 8-d mean
  and log-variance. (iiae.md: "uses nsef for every width"; nsef = neef = 32 by default, so
  the widths are those of the conv variant.)
* auxiliary shared encoders r(z^s|x), r(z^s|y): the trunk is one more stride-2 conv, to
  8×8×256 (32, 64, 128, 256, 256 channels: the width stops doubling at base·2^(layers−1)),
  → BN → LReLU, flattened (16,384; this vector also feeds q(z^s|x,y)); the head is
  Dense(256) → BN → LReLU → Dense(2·128);
* joint shared encoder q(z^s|x,y): concat of the two flattened trunks (32,768) → Dense(256)
  → BN → LReLU → Dense(2·128);
* decoders: concat(z^s, z^x) (136) → Dense(8·8·512) → BN → dropout → ReLU → 8×8×512, then
  the conv variant's transposed-conv stack: 512, 256, 128, 64 channels (16² → 128²), each
  → BN → dropout (first two, training only) → ReLU, and a transposed conv to 3 channels at
  256² with tanh. Dropout 0.5, training only (the reference keys it on the run mode).

Other image sides keep the depth, so the code grids scale with the image: the trunk ends at
side/32 (2×2 at 64 px, 1×1 at 32 px), the exclusive stack at side/16. The side must be a
multiple of 2^(trunk_layers+1). About 47 M parameters at 256 px (my arithmetic; a test
counts them).
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn

from wyner_jax import nets
from wyner_jax.models.iiae.common import down_blocks
from wyner_jax.models.iiae.flat import Arch
from wyner_jax.models.iiae.spatial import SpatialArch, SpatialDecoder


class FlatTrunk(nn.Module):
    """r(z^s|x)'s trunk: ``layers`` 4×4 stride-2 convs with channels base·2^min(i, cap) →
    BN → LReLU(0.2), flattened (the reference's 8×8×256 → 16,384 at 256 px)."""

    base: int
    layers: int
    cap: int
    bn_momentum: float
    bn_epsilon: float

    @nn.compact
    def __call__(self, h, train: bool):
        widths = [self.base * 2 ** min(i, self.cap) for i in range(self.layers)]
        h = down_blocks(h, widths, train, self.bn_momentum, self.bn_epsilon)
        return h.reshape(h.shape[0], -1)


class FlatDecoder(SpatialDecoder):
    """p(x|z^x, z^s) on the vector [z^s, z^x]: Dense to grid×grid×width → BN → dropout →
    ReLU, then a ``SpatialDecoder`` of the same settings (its transposed convs, the first two
    also with dropout), as a submodule."""

    @nn.compact
    def __call__(self, latent, train: bool, dropout: bool = False):
        grid = self.out_shape[0] // 2 ** (self.layers + 1)
        width = self.base * 2 ** (self.layers - 1)
        h = nn.Dense(
            grid * grid * width, kernel_init=nets.XAVIER, use_bias=False, dtype=nets.layer_dtype()
        )(latent)
        h = nets.batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
        if self.dropout > 0:
            h = nn.Dropout(self.dropout, deterministic=not dropout)(h)
        h = nn.relu(h).reshape(h.shape[0], grid, grid, width)
        spatial = SpatialDecoder(
            self.out_shape,
            self.base,
            self.layers,
            self.dropout,
            self.out_act,
            self.bn_momentum,
            self.bn_epsilon,
        )
        return spatial(h, train, dropout)


@dataclasses.dataclass(frozen=True)
class FlatArch(SpatialArch):
    """``Arch`` for the flat conv + FC networks: ``shared_dim`` is the length of z^s,
    ``trunk_layers`` the exclusive encoders' stride-2 convs (the shared trunk has one more),
    ``conv_hidden`` the r-heads' and ``joint_hidden`` q(z^s|x,y)'s hidden widths (256).
    The exclusive encoders are the spatial variant's."""

    @classmethod
    def from_config(cls, family: str, c, x_shape, y_shape, out_acts) -> "FlatArch":
        if family != "conv":
            raise ValueError(
                "config.iiae.shared_code='flat_fc' is the Cars conv + FC image networks "
                f"(iiae.md §1.3); set config.model.family='conv' (got {family!r})."
            )
        return cls(
            **dataclasses.asdict(SpatialArch.from_config(family, c, x_shape, y_shape, out_acts))
        )

    # z^s is a vector, and the r-heads and q(z^s|x,y) are the flat family's MLPs on the
    # flattened trunks: Arch's, not the spatial variant's conv heads.
    shared_shape = Arch.shared_shape
    shared_head = Arch.shared_head
    joint_encoder = Arch.joint_encoder
    decoder_module = FlatDecoder

    def shared_trunk(self, name) -> nn.Module:
        return FlatTrunk(
            base=self.conv_base,
            layers=self.trunk_layers + 1,
            cap=self.trunk_layers - 1,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
            name=name,
        )
