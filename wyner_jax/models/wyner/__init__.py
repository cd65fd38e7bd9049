"""The Variational Wyner model (Ryu et al., arXiv 1905.10945): networks, sampling paths, losses
and the fused discriminator/generator/EMA update, one concern a module.

Paired data (x, y); common latent z, local latents u (x) and v (y), all with N(0, I) priors.
Networks are deterministic maps; randomness enters through the priors only (§1.2).

* decoders x = g_x(z, u), y = g_y(z, v);
* joint encoder z = f_xy(x, y); marginal encoders z = f_x(x), z = f_y(y);
* local heads u = l_x(z, F_x(x)), v = l_y(z, F_y(y)), shared by the variational and the
  marginal paths whichever encoder produced z.

Four joint distributions are induced (wyner-model.md §1.3) and matched pairwise by
density-ratio estimators (discriminators) that share one feature map D_F(x, y) (§2.1–2.2).
The generator minimises the plug-in divergence estimates, the CI penalty λ_CI·I(X,Y;Z),
latent matching and reconstruction consistency terms (§2.4); every term has a λ in
``config.loss.lambdas`` and the reference's guard.

Modules, in import order (each imports only those above it):

* ``terms``: the term table (PAIRS, CI, AGG, RECONSTRUCTIONS) and the active ``Terms``;
* ``arch``: ``config.model`` → the networks of each role (``Arch``);
* ``generator``: ``WynerGenerator``, the encoders, decoders and four sample sets;
* ``discriminator``: ``WynerDiscriminator``, every density-ratio estimator;
* ``objective``: L_D and L_G as pure functions (``discriminator_loss``, ``generator_loss``);
* ``state``: ``WynerState`` and the EMA rule;
* ``model``: ``WynerModel``, the update and the inference methods.
"""

from wyner_jax.models.wyner.arch import Arch
from wyner_jax.models.wyner.discriminator import RatioHead, WynerDiscriminator, xavier_block
from wyner_jax.models.wyner.generator import LatentHead, WynerGenerator
from wyner_jax.models.wyner.model import WynerModel
from wyner_jax.models.wyner.objective import (
    LossConfig,
    discriminator_loss,
    generator_loss,
    generator_terms,
)
from wyner_jax.models.wyner.state import WynerState, ema_decay, ema_update
from wyner_jax.models.wyner.terms import AGG, CI, PAIRS, RECONSTRUCTIONS, Terms

__all__ = [
    "AGG",
    "CI",
    "PAIRS",
    "RECONSTRUCTIONS",
    "Arch",
    "LatentHead",
    "LossConfig",
    "RatioHead",
    "Terms",
    "WynerDiscriminator",
    "WynerGenerator",
    "WynerModel",
    "WynerState",
    "discriminator_loss",
    "ema_decay",
    "ema_update",
    "generator_loss",
    "generator_terms",
    "xavier_block",
]
