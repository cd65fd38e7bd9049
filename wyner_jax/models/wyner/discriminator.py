"""The Wyner model's density-ratio estimators (wyner-model.md §2.1–§2.2): one shared feature
map D_F(x, y), a latent embedder E_k and a head H_k per estimator (T_k ≈ log P/Q on the
sample sets of ``terms.PAIRS`` and ``terms.CI``), and latent-only MLPs A_k for the
``terms.AGG`` terms. Their training objectives are ``objective.discriminator_loss``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from wyner_jax import losses, nets
from wyner_jax.instance_noise import Noisy, perturb
from wyner_jax.models.wyner.arch import Arch
from wyner_jax.models.wyner.terms import AGG, CI, PAIRS, Terms


def xavier_block(fan_in: int):
    """Xavier-uniform init for a block of rows of an [fan_in, width] kernel: the bound
    √(6/(fan_in + width)) of the whole kernel, so a kernel kept in blocks is drawn from the
    same distribution as the reference's single one."""

    def init(key, shape, dtype=jnp.float32):
        bound = np.sqrt(6.0 / (fan_in + shape[-1]))
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class RatioHead(nn.Module):
    """H_k: the density-ratio head on [D_F(x, y), E_k(latent)] (§2.1), the reference's
    ``get_fc`` with ``layers`` hidden layers and a scalar output.

    The first layer's kernel is kept in two blocks, W_h for the D_F features and W_e for the
    latent embedding, [h, e]·W = h·W_h + e·W_e: one call takes several embeddings that share
    h (the CI estimators' P = (h, z) and Q = (h, shuffled z), §2.2) and computes h·W_h once for
    all of them, and once its cotangent in the backward pass. The head has no BatchNorm, so
    each output is exactly that of a separate call. (Slicing one [d_h + d_e, width] kernel
    instead costs XLA:CPU a copy of each block per call and a padded gradient: as much time as
    the product saved.)
    """

    width: int
    layers: int
    negative_slope: float

    @nn.compact
    def __call__(self, h, es: tuple, train: bool) -> tuple:
        """T_k on the rows [h, e] for each e in ``es``: a tuple of [batch] logits."""
        width = self.width if self.layers else 1
        init = xavier_block(h.shape[-1] + es[0].shape[-1])
        w_h = self.param("kernel_h", init, (h.shape[-1], width))
        w_e = self.param("kernel_e", init, (es[0].shape[-1], width))
        bias = self.param("bias", nn.initializers.zeros, (width,))
        h, w_h, w_e, bias = nn.dtypes.promote_dtype(h, w_h, w_e, bias, dtype=nets.layer_dtype())
        common = h @ w_h + bias
        rest = None
        if self.layers:
            rest = nets.MLP(
                hidden=(self.width,) * (self.layers - 1),
                features=1,
                negative_slope=self.negative_slope,
                name="rest",
            )
        out = []
        for e in es:
            t = common + e.astype(w_e.dtype) @ w_e
            if rest is not None:
                t = rest(nn.leaky_relu(t, self.negative_slope), train)
            out.append(t[:, 0])
        return tuple(out)


class WynerDiscriminator(nn.Module):
    """Every density-ratio estimator: shared D_F(x, y), per-key latent embedder E_k and head H_k
    on [D_F, E_k(latent)], and latent-only MLPs for the agg terms (§2.1).

    Instance noise (§1.2) is added to everything the discriminator sees: x and y (scaled per
    feature when configured), z, and u/v, each input of each call with its own draw (all of a
    call's drawn at once from the 'noise' RNG stream, ``instance_noise.perturb``); the CI
    product samples use the 'permute' stream.
    """

    arch: Arch
    terms: Terms
    sigma_z: float
    sigma_uv: float

    def setup(self):
        a = self.arch
        self.D_F = a.discriminator_feature_map()
        keys = self.terms.pairs + self.terms.ci
        self.E = {k: nets.Linear(a.head_hidden, spectral_norm=a.sn, name=f"E_{k}") for k in keys}
        self.H = {
            k: RatioHead(a.head_hidden, a.head_layers, a.disc_slope, name=f"H_{k}") for k in keys
        }
        self.A = {
            k: nets.MLP(
                hidden=(a.head_hidden,), features=1, negative_slope=a.disc_slope, name=f"A_{k}"
            )
            for k in self.terms.agg
        }

    def embed_latent(self, key, latent, train):
        return nn.leaky_relu(self.E[key](latent, train), self.arch.disc_slope)

    def ratio(self, key, h, latent, train):
        return self.H[key](h, (self.embed_latent(key, latent, train),), train)[0]

    def __call__(
        self, samples, sigma_x, sigma_y, *, train: bool, noise: bool, detach_ci_features: bool
    ):
        """Returns {key: (T_k on P-samples, T_k on Q-samples)} for every active estimator."""
        t = self.terms
        sets = sorted({s for k in t.pairs for s, _ in PAIRS[k]} | {CI[k] for k in t.ci})
        sigma = dict(x=sigma_x, y=sigma_y, z=self.sigma_z, u=self.sigma_uv, v=self.sigma_uv)

        def latent(sample, which: str):
            return tuple(Noisy(sample[c], sigma[c]) for c in which)

        z_shuffled = {
            k: losses.shuffle_latent(samples[CI[k]]["z"], self.make_rng("permute")) for k in t.ci
        }
        # Every input of this call, each perturbed with its own draw (one normal draw for all).
        inputs = perturb(
            self.make_rng("noise") if noise else None,
            {
                "xy": {n: latent(samples[n], "xy") for n in sets},
                "pairs": {k: tuple(latent(samples[s], c) for s, c in PAIRS[k]) for k in t.pairs},
                "ci": {
                    k: (
                        Noisy(samples[CI[k]]["z"], self.sigma_z),
                        Noisy(z_shuffled[k], self.sigma_z),
                    )
                    for k in t.ci
                },
                "agg": {
                    k: tuple(Noisy(samples["latents"][c], self.sigma_z) for c in AGG[k])
                    for k in t.agg
                },
            },
        )
        # D_F is applied separately to each sample set, so BatchNorm statistics are per set.
        h = {}
        for name in sets:
            # The caption D_F also perturbs its word embeddings when noise is on (§4.2).
            extra = {"noise": noise} if self.arch.sentence else {}
            h[name] = self.D_F(self.arch.pair(*inputs["xy"][name]), train, **extra)
        logits = {}
        for k in t.pairs:
            logits[k] = tuple(
                self.ratio(k, h[s], jnp.concatenate(lat, -1), train)
                for (s, _), lat in zip(PAIRS[k], inputs["pairs"][k])
            )
        for k in t.ci:
            # The CI heads train on detached shared features in the D step (§2.2).
            hk = h[CI[k]]
            hk = jax.lax.stop_gradient(hk) if detach_ci_features else hk
            # P = (h, z) and Q = (h, shuffled z) share h: one H_k call computes h·W_h once.
            z, zs = inputs["ci"][k]
            logits[k] = self.H[k](
                hk, (self.embed_latent(k, z, train), self.embed_latent(k, zs, train)), train
            )
        for k in t.agg:
            p, q = inputs["agg"][k]
            logits[k] = (self.A[k](p, train)[:, 0], self.A[k](q, train)[:, 0])
        return logits
