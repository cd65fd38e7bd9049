"""The Wyner model's generator (wyner-model.md §1.1–§1.3, §2.4): encoders, local heads and
decoders, and the four sample sets (variational, joint, x→y, y→x) with the reconstruction
pairs that the objective reads.

Networks are deterministic maps; randomness enters through the priors (the ``prior`` dict)
and, when configured, through the encoders' noise columns (the 'encoder_noise' RNG stream).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from wyner_jax import nets
from wyner_jax.models.wyner.arch import Arch
from wyner_jax.models.wyner.terms import Terms


class LatentHead(nn.Module):
    """A latent head (f_x, f_xy, l_x, ...): Linear, with tanh for the uniform prior."""

    features: int
    uniform: bool
    sn: bool

    @nn.compact
    def __call__(self, h, train: bool):
        if self.uniform:  # reference: get_fc with last_act tanh, hence also the SN quirk
            return jnp.tanh(nets.Linear(self.features, spectral_norm=self.sn)(h, train))
        return nn.Dense(self.features, kernel_init=nets.XAVIER, dtype=nets.layer_dtype())(h)


class WynerGenerator(nn.Module):
    """Encoders f_xy, f_x, f_y, local heads l_x, l_y and decoders g_x, g_y (§1.1, §4)."""

    arch: Arch
    terms: Terms

    def setup(self):
        a = self.arch
        head = lambda d, name: LatentHead(d, a.prior == "uniform", a.sn, name=name)  # noqa: E731
        self.F_x = a.encoder_feature_map("F_x")
        # Captions: one token embedding shared by F_y, F_xy and g_y's tied inverse (§4.2).
        self.E_y = a.token_embedding("E_y")
        self.F_y = a.encoder_feature_map("F_y", self.E_y)
        self.F_xy = a.encoder_feature_map("F_xy", self.E_y)
        self.f_xy = head(a.dz, "f_xy")
        self.f_x = head(a.dz, "f_x")
        self.f_y = head(a.dz, "f_y")
        self.l_x = head(a.du, "l_x")
        self.l_y = head(a.dv, "l_y")
        self.g_x = a.decoder(a.x_shape, "g_x")
        self.g_y = a.decoder(a.y_shape, "g_y", self.E_y)

    # Building blocks -------------------------------------------------------------
    # Stochastic encoders (the reference's ``append_noise_and_concat``, wyner-model.md §1.2):
    # with noise_dim > 0, fresh N(0, 1) columns are appended to the input of every encoder
    # network on every call: to x and y before F_xy, to x before F_x, to F_xy(x, y) before
    # f_xy, to F_x(x) before f_x and to [z, F_x(x)] before l_x. Each append is its own draw,
    # so z and u of one x are not functions of one shared noise. The joint encoder uses
    # joint_noise_dim, the marginal encoders and local heads marginal_noise_dim. Off (dim 0)
    # by default, as in the reference: every encoder is then a deterministic map.
    def with_noise(self, h, dim: int):
        """[h, ε] with ``dim`` fresh N(0, 1) columns ε (h flattened to [B, -1]); h if dim = 0."""
        if dim == 0:
            return h
        h = h.reshape(h.shape[0], -1)
        eps = jax.random.normal(self.make_rng("encoder_noise"), (h.shape[0], dim), h.dtype)
        return jnp.concatenate([h, eps], axis=-1)

    @property
    def stochastic_marginal(self) -> bool:
        return self.arch.marginal_noise_dim > 0

    def features_x(self, x, train):
        """F_x(x) (with noise columns on x when the marginal encoders are stochastic)."""
        return self.F_x(self.with_noise(x, self.arch.marginal_noise_dim), train)

    def features_y(self, y, train):
        return self.F_y(self.with_noise(y, self.arch.marginal_noise_dim), train)

    def common_x(self, hx, train):
        """z = f_x(F_x(x)): q(z|x), from the features hx = F_x(x)."""
        return self.f_x(self.with_noise(hx, self.arch.marginal_noise_dim), train)

    def common_y(self, hy, train):
        return self.f_y(self.with_noise(hy, self.arch.marginal_noise_dim), train)

    def joint_encode(self, x, y, train):
        """z = f_xy(F_xy(x, y)): q(z|x,y)."""
        d = self.arch.joint_noise_dim
        if d:
            x, y = self.with_noise(x, d), self.with_noise(y, d)
        h = self.F_xy(self.arch.pair(x, y), train)
        return self.f_xy(self.with_noise(h, d), train)

    def local_x(self, z, hx, train):
        """u = l_x([z, F_x(x)]): q(u|z,x), shared by the variational and marginal paths."""
        zh = jnp.concatenate([z, hx], axis=-1)
        return self.l_x(self.with_noise(zh, self.arch.marginal_noise_dim), train)

    def local_y(self, z, hy, train):
        zh = jnp.concatenate([z, hy], axis=-1)
        return self.l_y(self.with_noise(zh, self.arch.marginal_noise_dim), train)

    def decode_x(self, z, u, train):
        return self.g_x(jnp.concatenate([z, u], axis=-1), train)

    def decode_y(self, z, v, train):
        return self.g_y(jnp.concatenate([z, v], axis=-1), train)

    def variational(self, x, y, train):
        """q(z|x,y) q(u|z,x) q(v|z,y); returns z, u, v and the marginal features F_x, F_y."""
        hx, hy = self.features_x(x, train), self.features_y(y, train)
        z = self.joint_encode(x, y, train)
        return z, self.local_x(z, hx, train), self.local_y(z, hy, train), hx, hy

    # The four sampling paths and the reconstructions (§1.3, §2.4) ------------------
    def __call__(self, x, y, prior, *, train: bool, recon: bool):
        t = self.terms
        z_qxy, u_qxy, v_qxy, hx, hy = self.variational(x, y, train)
        s: dict[str, Any] = {
            "var": dict(x=x, y=y, z=z_qxy, u=u_qxy, v=v_qxy),
            "latents": dict(z_qxy=z_qxy, z_p=prior["z"]),
        }
        if t.need_joint:
            z_p, u_p, v_p = prior["z"], prior["u"], prior["v"]
            s["j"] = dict(
                x=self.decode_x(z_p, u_p, train),
                y=self.decode_y(z_p, v_p, train),
                z=z_p,
                u=u_p,
                v=v_p,
            )
        if t.need_zqx:
            # The conditional path encodes x afresh (the reference's encode_x_zu): with
            # stochastic encoders its F_x(x) is another draw; deterministic, it is hx again.
            hx_c = self.features_x(x, train) if self.stochastic_marginal else hx
            z_qx = self.common_x(hx_c, train)
            s["latents"]["z_qx"] = z_qx
            u_qxm = self.local_x(z_qx, hx_c, train)
            if t.need_cx2y:
                s["cx2y"] = dict(
                    x=x, y=self.decode_y(z_qx, prior["v_c"], train), z=z_qx, u=u_qxm, v=prior["v_c"]
                )
        if t.need_zqy:
            hy_c = self.features_y(y, train) if self.stochastic_marginal else hy
            z_qy = self.common_y(hy_c, train)
            s["latents"]["z_qy"] = z_qy
            v_qym = self.local_y(z_qy, hy_c, train)
            if t.need_cy2x:
                s["cy2x"] = dict(
                    x=self.decode_x(z_qy, prior["u_c"], train), y=y, z=z_qy, u=prior["u_c"], v=v_qym
                )
        if recon:
            rec = {}
            if "j_rec_x" in t.rec:
                rec["j_rec_x"] = (x, self.decode_x(z_qxy, u_qxy, train))
            if "j_rec_y" in t.rec:
                rec["j_rec_y"] = (y, self.decode_y(z_qxy, v_qxy, train))
            if "cx2y_rec_y" in t.rec:  # common part from x, local part inferred from y given it
                rec["cx2y_rec_y"] = (y, self.decode_y(z_qx, self.local_y(z_qx, hy, train), train))
            if "cy2x_rec_x" in t.rec:
                rec["cy2x_rec_x"] = (x, self.decode_x(z_qy, self.local_x(z_qy, hx, train), train))
            if "mx_rec_x" in t.rec:
                rec["mx_rec_x"] = (x, self.decode_x(z_qx, u_qxm, train))
            if "my_rec_y" in t.rec:
                rec["my_rec_y"] = (y, self.decode_y(z_qy, v_qym, train))
            if "j_rec_zuv" in t.rec:  # re-encode the joint samples; gradients reach both sides
                jz, ju, jv, _, _ = self.variational(s["j"]["x"], s["j"]["y"], train)
                # Three latents, three losses summed (§2.4), not one mean over [z, u, v],
                # which would weight them by their widths.
                rec["j_rec_zuv"] = ((s["j"]["z"], s["j"]["u"], s["j"]["v"]), (jz, ju, jv))
            s["rec"] = rec
        return s

    # Inference (evaluation) ------------------------------------------------------
    def embed(self, x, y, train):
        out = {"z_xy": self.joint_encode(x, y, train)}
        if self.terms.need_zqx:
            out["z_x"] = self.common_x(self.features_x(x, train), train)
        if self.terms.need_zqy:
            out["z_y"] = self.common_y(self.features_y(y, train), train)
        return out

    def x2y(self, x, v, train):
        """y ~ p(y|x): z = f_x(x), v ~ p(v), y = g_y(z, v)."""
        y = self.decode_y(self.common_x(self.features_x(x, train), train), v, train)
        return self.arch.y_output(y)

    def y2x(self, y, u, train):
        return self.decode_x(self.common_y(self.features_y(y, train), train), u, train)

    def joint(self, z, u, v, train):
        return self.decode_x(z, u, train), self.arch.y_output(self.decode_y(z, v, train))

    def reconstruct(self, x, y, train):
        z, u, v, _, _ = self.variational(x, y, train)
        return self.decode_x(z, u, train), self.arch.y_output(self.decode_y(z, v, train))
