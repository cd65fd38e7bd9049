"""Networks of the image-feature ↔ caption pair (wyner-model.md §4.2, CUB `cub-imgft2sent`).

x is a 2048-d image feature, y a caption of L = 32 token ids over a vocabulary of V words.

* ``TokenEmbedding``: the V × 128 word-embedding table, N(0, 1) with the `<pad>` row at 0;
  a lookup leaves `<pad>` at 0 and sends it no gradient (PyTorch ``padding_idx``). The
  generator owns one table, shared by F_y, the sentence branch of F_xy and the decoder g_y's
  tied inverse embedding (logits = h·Eᵀ + b); the discriminator owns another.
* ``SentenceFeatureMap`` (`CUBSentFeatureMap`, conv2d variant): the embedded caption as a
  1-channel L × 128 image; Conv k4 s2 p1 ×3 (32×128 → 4×16), then Conv k(1,4) s(1,2) p(0,1)
  until the width equals the height (4×4), channels base·2^i, BN, LeakyReLU; flattened
  (16·base·16 for the reference's sizes).
* ``SentenceDecoder``: Dense(z+v → 16·base·16)[SN] → BN → LReLU, reshaped to 4×4, the
  transposed convolutions of the feature map in reverse down to 1 channel (L × 128
  embeddings), then the inverse embedding to logits [B, L, V].
* ``FeatureDecoder`` (x side): Dense(z+u → 256)[SN] → LReLU, then Dense 512 → LReLU →
  Dense 1024 → LReLU → Dense 2048, no BatchNorm, linear output.
* ``JointFeatureMap``: its own x MLP and sentence feature map on (x, y), concatenated, then
  an aggregate MLP (F_xy and the discriminator's D_F).

What a sentence network does with a *generated* caption [B, L, V] (logits) is
``discriminator_input``: 'argmax' (the reference, §7.6) embeds the argmax tokens, so no
adversarial gradient reaches the caption decoder — it learns only from the cross-entropy
reconstructions and through z; 'soft' embeds softmax(logits)·E, a differentiable path. A
[B, L, 128] float input is taken as embeddings already.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wyner_jax import nets
from wyner_jax.subpixel import ConvTranspose2x

PAD_ID = 1  # <pad> of wyner_jax.data.captions
DISCRIMINATOR_INPUTS = ("argmax", "soft")


def _pad_aware_normal(key, shape, dtype=jnp.float32):
    """N(0, 1) with the `<pad>` row at 0 (the reference's embedding init)."""
    return jax.random.normal(key, shape, dtype).at[PAD_ID].set(0.0)


class TokenEmbedding(nn.Module):
    """The [V, D] word-embedding table (see the module docstring)."""

    vocab_size: int
    features: int

    def setup(self):
        self.table = self.param("embedding", _pad_aware_normal, (self.vocab_size, self.features))

    def __call__(self, tokens):
        e = jnp.take(self.table, tokens, axis=0)
        # <pad> stays 0 and gets no gradient from lookups (PyTorch padding_idx).
        return jnp.where((tokens == PAD_ID)[..., None], 0.0, e)

    def weights(self):
        return self.table


def embed_caption(y, embedding: TokenEmbedding, mode: str):
    """[B, L] token ids, [B, L, V] logits or [B, L, D] embeddings → [B, L, D] embeddings."""
    if jnp.issubdtype(y.dtype, jnp.integer):
        return embedding(y)
    table = embedding.weights()
    if y.shape[-1] == table.shape[1] and y.shape[-1] != table.shape[0]:
        return y
    if mode == "argmax":  # the reference: non-differentiable (§7.6)
        return embedding(jnp.argmax(y, axis=-1))
    probs = jax.nn.softmax(y.astype(jnp.float32), axis=-1)
    return jnp.einsum("blv,vd->bld", probs, table)


def _conv_plan(length: int, width: int) -> list[tuple[tuple[int, int], tuple[int, int]]]:
    """(kernel, stride) of each layer taking an L × D map to (L/8) × (L/8)."""
    if length % 8 or width % length or (width // length) & (width // length - 1):
        raise ValueError(
            f"The sentence conv nets need a caption length divisible by 8 and an embedding "
            f"width that is the length times a power of two; got length {length}, width {width} "
            "(the reference: 32 and 128). Set config.data.max_length / "
            "config.model.sentence.embed_dim accordingly."
        )
    return [((4, 4), (2, 2))] * 3 + [((1, 4), (1, 2))] * int(math.log2(width // length))


def _torch_padding(kernel, transpose: bool):
    """Flax padding of PyTorch's p = 1 on sides with kernel 4 and p = 0 on kernel-1 sides."""
    if transpose:  # k − 1 − p on the dilated input
        return tuple((2, 2) if k == 4 else (0, 0) for k in kernel)
    return tuple((1, 1) if k == 4 else (0, 0) for k in kernel)


class SentenceFeatureMap(nn.Module):
    """`CUBSentFeatureMap`: embedded caption → conv stack → flat features.

    Attributes:
      base: channels of the first conv (32 generator, 64 discriminator).
      embedding: a shared ``TokenEmbedding``, or None for an own table.
      vocab_size, embed_dim: of the own table.
      batchnorm_first: BN after the first conv (generator yes, discriminator no).
      noise_scale: embedding instance noise σ = noise_scale · (per-dimension std of the
        table over the vocabulary), added to the embedded caption when ``noise`` (the
        discriminator's 0.25); 0 for none.
      discriminator_input: 'argmax' or 'soft' (module docstring).
    """

    base: int
    embedding: Any = None
    vocab_size: int = 0
    embed_dim: int = 128
    batchnorm_first: bool = True
    negative_slope: float = 0.2
    noise_scale: float = 0.0
    discriminator_input: str = "argmax"
    bn_momentum: float = nets.BN_MOMENTUM
    bn_epsilon: float = nets.BN_EPSILON

    @nn.compact
    def __call__(self, y, train: bool, noise: bool = False):
        table = self.embedding
        if table is None:
            table = TokenEmbedding(self.vocab_size, self.embed_dim, name="embedding")
        e = embed_caption(y, table, self.discriminator_input)
        if self.noise_scale > 0 and noise:
            sigma = self.noise_scale * jax.lax.stop_gradient(jnp.std(table.weights(), axis=0))
            e = e + sigma * jax.random.normal(self.make_rng("noise"), e.shape, e.dtype)
        h = e[..., None]  # [B, L, D, 1]: a one-channel image
        for i, (kernel, stride) in enumerate(_conv_plan(e.shape[1], e.shape[2])):
            bn = i > 0 or self.batchnorm_first
            h = nn.Conv(
                self.base * 2**i,
                kernel,
                strides=stride,
                padding=_torch_padding(kernel, False),
                kernel_init=nets.XAVIER,
                use_bias=not bn,
                dtype=nets.layer_dtype(),
            )(h)
            if bn:
                h = nets.batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
            h = nn.leaky_relu(h, self.negative_slope)
        return h.reshape(h.shape[0], -1)


class SentenceDecoder(nn.Module):
    """`CUBSentDecoder`: latent → [B, L, V] logits through the tied inverse embedding."""

    length: int
    vocab_size: int
    embed_dim: int = 128
    base: int = 32
    embedding: Any = None  # tied: logits = h·Eᵀ + b; None: an own Dense(V)
    spectral_norm: bool = True
    negative_slope: float = 0.2
    bn_momentum: float = nets.BN_MOMENTUM
    bn_epsilon: float = nets.BN_EPSILON

    @nn.compact
    def __call__(self, latent, train: bool):
        plan = _conv_plan(self.length, self.embed_dim)
        side = self.length // 8
        widths = [self.base * 2**i for i in range(len(plan))]
        h = nets.Linear(side * side * widths[-1], spectral_norm=self.spectral_norm, use_bias=False)(
            latent, train
        )
        h = nets.batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
        h = nn.leaky_relu(h, self.negative_slope)
        h = h.reshape(h.shape[0], side, side, widths[-1])
        for j, i in enumerate(reversed(range(len(plan)))):
            kernel, stride = plan[i]
            last = i == 0
            # nn.ConvTranspose's parameters, names and results, computed phase by phase:
            # XLA:CPU took ~8 s of a 8.3 s CUB step on these layers' dilated kernel gradients.
            h = ConvTranspose2x(
                1 if last else widths[i - 1],
                kernel,
                strides=stride,
                padding=_torch_padding(kernel, True),
                kernel_init=nets.XAVIER,
                use_bias=last,
                dtype=nets.layer_dtype(),
                name=f"ConvTranspose_{j}",
            )(h)
            if not last:
                h = nets.batch_norm(train, self.bn_momentum, self.bn_epsilon)(h)
                h = nn.leaky_relu(h, self.negative_slope)
        h = h[..., 0]  # [B, L, D] embeddings
        if self.embedding is None:
            return nn.Dense(self.vocab_size, kernel_init=nets.XAVIER, dtype=nets.layer_dtype())(h)
        table = self.embedding.weights()
        bias = self.param("inverse_bias", nn.initializers.zeros, (self.vocab_size,))
        dtype = nets.layer_dtype() or jnp.float32
        return jnp.einsum("bld,vd->blv", h.astype(dtype), table.astype(dtype)) + bias


class FeatureDecoder(nn.Module):
    """The CUB image-feature decoder: Dense[SN] → LReLU, then an MLP without BN, linear."""

    features: int
    first: int = 256
    hidden: Sequence[int] = (512, 1024)
    spectral_norm: bool = True
    negative_slope: float = 0.2

    @nn.compact
    def __call__(self, latent, train: bool):
        h = nets.MLP(
            hidden=(),
            features=self.first,
            last_act="lrelu",
            negative_slope=self.negative_slope,
            spectral_norm=self.spectral_norm,
        )(latent, train)
        return nets.MLP(
            hidden=tuple(self.hidden),
            features=self.features,
            act="lrelu",
            negative_slope=self.negative_slope,
        )(h, train)


class JointFeatureMap(nn.Module):
    """`JointFeatureMap`: [x MLP(x), sentence map(y)] → aggregate MLP, on ``pair`` = (x, y).

    ``discriminator`` picks the D_F widths (own embedding with instance noise, no BN on the
    first layers) instead of F_xy's (the shared generator ``embedding``)."""

    arch: "SentenceArch"
    discriminator: bool
    embedding: Any = None
    negative_slope: float = 0.2
    spectral_norm: bool = True
    bn_momentum: float = nets.BN_MOMENTUM
    bn_epsilon: float = nets.BN_EPSILON

    @nn.compact
    def __call__(self, pair, train: bool, noise: bool = False):
        a, d = self.arch, self.discriminator
        slope, sn = self.negative_slope, self.spectral_norm
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        x, y = pair
        if d:
            x_map = a._mlp(a.disc_x_hidden, a.disc_x_features, slope, sn, bn, "x", bn_first=False)
            y_map = a.sentence_map(
                a.disc_base, None, slope, bn, bn_first=False, noise=a.embedding_noise, name="y"
            )
            agg = a._mlp(a.disc_joint_hidden, a.disc_features, slope, sn, bn, "aggregate")
        else:
            x_map = a._mlp(a.gen_x_hidden, a.gen_x_features, slope, sn, bn, "x")
            y_map = a.sentence_map(
                a.gen_base, self.embedding, slope, bn, bn_first=True, noise=0.0, name="y"
            )
            agg = a._mlp(a.gen_joint_hidden, a.gen_joint_features, slope, sn, bn, "aggregate")
        h = jnp.concatenate([x_map(x, train), y_map(y, train, noise)], axis=-1)
        return agg(h, train)


# --------------------------------------------------------------------------- architecture


@dataclasses.dataclass(frozen=True)
class SentenceArch:
    """The §4.2 widths (``config.model.sentence``) and the vocabulary size (from the data)."""

    vocab_size: int
    length: int
    embed_dim: int = 128
    gen_base: int = 32
    disc_base: int = 64
    gen_x_hidden: tuple[int, ...] = (1024, 512)
    gen_x_features: int = 256
    gen_joint_hidden: tuple[int, ...] = (1024, 1024)
    gen_joint_features: int = 512
    dec_x_first: int = 256
    dec_x_hidden: tuple[int, ...] = (512, 1024)
    disc_x_hidden: tuple[int, ...] = (2048, 1024)
    disc_x_features: int = 512
    disc_joint_hidden: tuple[int, ...] = (2048, 2048)
    disc_features: int = 1024
    embedding_noise: float = 0.25
    discriminator_input: str = "argmax"
    tie_inverse_embedding: bool = True

    @classmethod
    def from_config(cls, s, vocab_size: int, length: int) -> "SentenceArch":
        if s.discriminator_input not in DISCRIMINATOR_INPUTS:
            raise ValueError(
                f"config.model.sentence.discriminator_input must be one of "
                f"{DISCRIMINATOR_INPUTS}, got {s.discriminator_input!r}."
            )
        if vocab_size < 4:
            raise ValueError(
                f"The caption vocabulary has {vocab_size} entries; family 'sentence' needs "
                "caption data (config.data.name='cub') with words seen more than "
                "config.data.min_count times."
            )
        _conv_plan(length, s.embed_dim)
        return cls(
            vocab_size=int(vocab_size),
            length=int(length),
            embed_dim=s.embed_dim,
            gen_base=s.gen_base,
            disc_base=s.disc_base,
            gen_x_hidden=tuple(s.gen_x_hidden),
            gen_x_features=s.gen_x_features,
            gen_joint_hidden=tuple(s.gen_joint_hidden),
            gen_joint_features=s.gen_joint_features,
            dec_x_first=s.dec_x_first,
            dec_x_hidden=tuple(s.dec_x_hidden),
            disc_x_hidden=tuple(s.disc_x_hidden),
            disc_x_features=s.disc_x_features,
            disc_joint_hidden=tuple(s.disc_joint_hidden),
            disc_features=s.disc_features,
            embedding_noise=s.embedding_noise,
            discriminator_input=s.discriminator_input,
            tie_inverse_embedding=s.tie_inverse_embedding,
        )

    def embedding(self, name: str) -> TokenEmbedding:
        return TokenEmbedding(self.vocab_size, self.embed_dim, name=name)

    def _mlp(self, hidden, features, slope, sn, bn, name=None, bn_first=None):
        return nets.MLP(
            hidden=hidden,
            features=features,
            last_act="lrelu",
            negative_slope=slope,
            batchnorm=True,
            batchnorm_first=bn_first,
            spectral_norm=sn,
            name=name,
            **bn,
        )

    def sentence_map(self, base, embedding, slope, bn, *, bn_first, noise, name=None):
        return SentenceFeatureMap(
            base=base,
            embedding=embedding,
            vocab_size=self.vocab_size,
            embed_dim=self.embed_dim,
            batchnorm_first=bn_first,
            negative_slope=slope,
            noise_scale=noise,
            discriminator_input=self.discriminator_input,
            name=name,
            **bn,
        )

    def encoder_feature_map(self, name, embedding, slope, sn, bn) -> nn.Module:
        """F_x (MLP 2048 → 1024 → 512 → 256), F_y (sentence map, base 32) or F_xy."""
        if name == "F_x":
            return self._mlp(self.gen_x_hidden, self.gen_x_features, slope, sn, bn, name)
        if name == "F_y":
            return self.sentence_map(
                self.gen_base, embedding, slope, bn, bn_first=True, noise=0.0, name=name
            )
        return JointFeatureMap(self, False, embedding, slope, sn, name=name, **bn)

    def decoder(self, side: str, out_shape, name, embedding, slope, sn, bn) -> nn.Module:
        if side == "x":
            return FeatureDecoder(
                features=math.prod(out_shape),
                first=self.dec_x_first,
                hidden=self.dec_x_hidden,
                spectral_norm=sn,
                negative_slope=slope,
                name=name,
            )
        return SentenceDecoder(
            length=self.length,
            vocab_size=self.vocab_size,
            embed_dim=self.embed_dim,
            base=self.gen_base,
            embedding=embedding if self.tie_inverse_embedding else None,
            spectral_norm=sn,
            negative_slope=slope,
            name=name,
            **bn,
        )

    def discriminator_feature_map(self, slope, sn, bn) -> nn.Module:
        """D_F: x MLP 2048 → 2048 → 1024 → 512 (no BN on the first layer), its own sentence
        map (base 64, no BN first, embedding noise), aggregate → 1024 (BN everywhere)."""
        return JointFeatureMap(self, True, None, slope, sn, name="D_F", **bn)
