"""All IIAE networks in one Linen module (iiae.md §1): q(z^x|x), q(z^y|y), r(z^s|x),
r(z^s|y), q(z^s|x,y) and the decoders, built by an ``Arch`` of any family (``flat``,
``spatial``, ``flat_fc``, ``sentence``), with the training pass and the inference methods.

The r-encoders are a trunk then a head; q(z^s|x,y) reads concat(h_x, h_y) of the two trunks,
so it shares their lower layers and reconstruction gradients reach them through q(z^s|x,y).
Decoders take [z^s, z^e] (z^s first, ``common.join_codes``).
"""

from __future__ import annotations

import flax.linen as nn
import jax.numpy as jnp

from wyner_jax.models.iiae.common import join_codes, split_moments
from wyner_jax.models.iiae.flat import Arch

# The posteriors sampled (reparameterised) in the training pass.
SAMPLED = ("q_x", "q_y", "q_s")


class IIAENetworks(nn.Module):
    """q(z^x|x), q(z^y|y), r(z^s|x), r(z^s|y), q(z^s|x,y) and the decoders (§1)."""

    arch: Arch  # of any family: flat.Arch or one of its subclasses
    logvar_max: float

    def setup(self):
        a = self.arch
        self.q_x = a.exclusive_encoder("q_x")
        self.q_y = a.exclusive_encoder("q_y")
        self.r_x_trunk = a.shared_trunk("r_x_trunk")
        self.r_y_trunk = a.shared_trunk("r_y_trunk")
        self.r_x_head = a.shared_head("r_x_head")
        self.r_y_head = a.shared_head("r_y_head")
        self.q_s = a.joint_encoder("q_s")
        self.dec_x = a.decoder(a.x_shape, a.out_act_x, "dec_x")
        self.dec_y = a.decoder(a.y_shape, a.out_act_y, "dec_y")

    def moments(self, out):
        return split_moments(out, self.logvar_max)

    def encode(self, x, y, train):
        """(mean, clipped log-variance) of every posterior; the r-trunks run once and feed
        both their heads and q(z^s|x,y)."""
        h_x, h_y = self.r_x_trunk(x, train), self.r_y_trunk(y, train)
        return {
            "q_x": self.moments(self.q_x(x, train)),
            "q_y": self.moments(self.q_y(y, train)),
            "q_s": self.moments(self.q_s(jnp.concatenate([h_x, h_y], axis=-1), train)),
            "r_x": self.moments(self.r_x_head(h_x, train)),
            "r_y": self.moments(self.r_y_head(h_y, train)),
        }

    def decode_x(self, z_s, z_x, train, dropout=False):
        return self.dec_x(join_codes(z_s, z_x), train, dropout)

    def decode_y(self, z_s, z_y, train, dropout=False):
        return self.dec_y(join_codes(z_s, z_y), train, dropout)

    def __call__(self, x, y, eps, *, train: bool, dropout: bool):
        """The training pass: every posterior, and x̂ = Dec_x(z^s, z^x), ŷ = Dec_y(z^s, z^y)
        from one reparameterised sample z = μ + e^{ℓ/2}·ε of q(z^s|x,y), q(z^x|x), q(z^y|y)
        (``eps`` holds the standard-normal ε for each)."""
        out = self.encode(x, y, train)
        z = {k: out[k][0] + jnp.exp(0.5 * out[k][1]) * eps[k] for k in SAMPLED}
        out["x_hat"] = self.decode_x(z["q_s"], z["q_x"], train, dropout)
        out["y_hat"] = self.decode_y(z["q_s"], z["q_y"], train, dropout)
        return out

    # Inference (evaluation, §3.4 and §5.4) ------------------------------------------
    def embed(self, x, y, train):
        """Retrieval/probe codes: the means of r(z^s|x), r(z^s|y) and q(z^s|x,y)."""
        m = self.encode(x, y, train)
        return {"z_x": m["r_x"][0], "z_y": m["r_y"][0], "z_xy": m["q_s"][0]}

    def x2y(self, x, z_y, train):
        """y = Dec_y(mean of r(z^s|x), z^y) (the reference's translation with a drawn z^y)."""
        z_s = self.moments(self.r_x_head(self.r_x_trunk(x, train), train))[0]
        return self.decode_y(z_s, z_y, train)

    def y2x(self, y, z_x, train):
        z_s = self.moments(self.r_y_head(self.r_y_trunk(y, train), train))[0]
        return self.decode_x(z_s, z_x, train)

    def joint(self, z_s, z_x, z_y, train):
        return self.decode_x(z_s, z_x, train), self.decode_y(z_s, z_y, train)

    def exclusive(self, x, y, train):
        """Exclusive codes: the means of q(z^x|x) and q(z^y|y) (the reference's eR_X2Y,
        eR_Y2X, whose cross-domain retrieval should sit at chance, §5.3)."""
        return {
            "e_x": self.moments(self.q_x(x, train))[0],
            "e_y": self.moments(self.q_y(y, train))[0],
        }

    def x2y_style(self, x, y_style, train):
        """Dec_y(mean of r(z^s|x), mean of q(z^y|y_style)): x's content in another y's
        exclusive factor (§5.4; with y_style = x's partner this is ``outputsY_fromX``)."""
        return self.x2y(x, self.moments(self.q_y(y_style, train))[0], train)

    def y2x_style(self, y, x_style, train):
        return self.y2x(y, self.moments(self.q_x(x_style, train))[0], train)

    def reconstruct(self, x, y, train):
        """Decoders on the posterior means of q(z^s|x,y), q(z^x|x), q(z^y|y)."""
        m = self.encode(x, y, train)
        return (
            self.decode_x(m["q_s"][0], m["q_x"][0], train),
            self.decode_y(m["q_s"][0], m["q_y"][0], train),
        )
