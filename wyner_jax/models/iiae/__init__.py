"""The Interaction Information Auto-Encoder, IIAE (Hwang et al., NeurIPS 2020), as the
authors' TensorFlow code computes it (iiae.md §1–§2): the baseline next to the Variational
Wyner model, behind the same ``PairedModel`` interface.

Paired data (x, y); three latents with N(0, I) priors: z^x exclusive to x, z^y exclusive to
y and z^s shared. Every distribution is a diagonal Gaussian whose network emits one tensor
split in half along the last axis: the mean, then a *linear* log-variance clipped from above
at ``logvar_max`` = ln 1e4 (no lower clip, §1.1).

* exclusive encoders q(z^x|x), q(z^y|y): separate networks;
* auxiliary shared encoders r(z^s|x), r(z^s|y): a trunk, whose features h_x / h_y are also
  returned, then a head;
* joint shared encoder q(z^s|x,y) on concat(h_x, h_y), so it shares the r-trunks' lower
  layers and reconstruction gradients reach them through q(z^s|x,y);
* decoders p(x|z^x,z^s) = Dec_x([z^s, z^x]) and p(y|z^y,z^s) = Dec_y([z^s, z^y]) (z^s first).

Training decodes one reparameterised sample per example of q(z^s|x,y), q(z^x|x), q(z^y|y)
and minimises (§2)

    L = (β+λ)(R_x + R_y) + c_t(β+λ)(KL_x + KL_y) + c_t·β·KL_s + λ(KL_rx + KL_ry),

i.e. β·(joint VAE bound) + λ·(the bound with r(z^s|x), r(z^s|y) as the z^s prior) once
c_t = 1 − exp(−t/ar) has reached 1. See ``objective.iiae_loss``.

Modules, in import order (each imports only those above it):

* ``common``: the reference's constants, its 4×4 stride-2 conv and down-sampling block, the
  Gaussian heads' moments;
* ``objective``: the loss as a pure function (``iiae_loss``, ``LossConfig``);
* ``flat``: ``Arch`` and the flat-code networks ('mlp' ZS vectors, 'conv' small images);
* ``spatial``: the 256-px image networks' spatial z^s (``shared_code='spatial'``);
* ``flat_fc``: the Cars conv + FC networks (``shared_code='flat_fc'``);
* ``sentence``: image features ↔ captions (``family='sentence'``);
* ``networks``: ``IIAENetworks``, every network of one model, any family;
* ``model``: ``IIAEModel``, its state, update and inference.

Initialisation as §8: Glorot-uniform Dense kernels, N(0, 0.02) conv kernels, zero biases,
BatchNorm scale ~ N(1, 0.02); BatchNorm momentum 0.9, eps 1e-5, batch statistics in
training and running averages at evaluation (the reference's test mode), unless
``config.iiae.bn_batch_stats_at_eval``. A bias right before BatchNorm is left out (BN
cancels it).
"""

from wyner_jax.models.iiae.common import (
    BN_SCALE_STDDEV,
    CONV_INIT,
    LRELU_SLOPE,
    conv4x4,
    down_blocks,
    join_codes,
    split_moments,
)
from wyner_jax.models.iiae.flat import Arch
from wyner_jax.models.iiae.flat_fc import FlatArch
from wyner_jax.models.iiae.model import (
    SHARED_CODES,
    IIAEModel,
    IIAEState,
    build_arch,
    resample_bn_scales,
    resolve_output_activations,
)
from wyner_jax.models.iiae.networks import SAMPLED, IIAENetworks
from wyner_jax.models.iiae.objective import (
    GAUSSIANS,
    RECONSTRUCTIONS,
    LossConfig,
    anneal_factor,
    iiae_loss,
    resolve_reconstruction,
)
from wyner_jax.models.iiae.sentence import SentenceIIAEArch
from wyner_jax.models.iiae.spatial import SpatialArch

__all__ = [
    "BN_SCALE_STDDEV",
    "CONV_INIT",
    "GAUSSIANS",
    "LRELU_SLOPE",
    "RECONSTRUCTIONS",
    "SAMPLED",
    "SHARED_CODES",
    "Arch",
    "FlatArch",
    "IIAEModel",
    "IIAENetworks",
    "IIAEState",
    "LossConfig",
    "SentenceIIAEArch",
    "SpatialArch",
    "anneal_factor",
    "build_arch",
    "conv4x4",
    "down_blocks",
    "iiae_loss",
    "join_codes",
    "resample_bn_scales",
    "resolve_output_activations",
    "resolve_reconstruction",
    "split_moments",
]
