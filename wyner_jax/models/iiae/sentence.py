"""IIAE on image features ↔ captions (CUB): the caption side of ``IIAENetworks`` (iiae.md §1).

IIAE was not published on CUB, so its caption networks are the Wyner model's (§4.2,
``wyner_jax.text_nets``), fitted into IIAE's structure; the image-feature side keeps IIAE's
ZS MLPs (``config.iiae.hidden``):

* q(z^y|y): the sentence conv feature map (base ``config.model.sentence.gen_base``) → an
  MLP head (``hidden[1:]``) → 2·exclusive_dim;
* the r(z^s|y) trunk (whose output also feeds q(z^s|x,y)): the sentence feature map →
  Dense(hidden[0]) → BN → LReLU; its head is IIAE's;
* Dec_y: the transposed sentence net, logits [B, L, V] through its own output layer
  (IIAE has no encoder embedding to tie it to: each caption network has its own table);
* the y reconstruction term is the token cross-entropy ignoring `<pad>`; inference returns
  argmax token ids.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax.numpy as jnp

from wyner_jax import nets, text_nets
from wyner_jax.models.iiae.common import LRELU_SLOPE
from wyner_jax.models.iiae.flat import Arch


class SentenceEncoder(nn.Module):
    """Sentence feature map, then an IIAE MLP (Dense → BN → LReLU blocks, final Dense, the
    optional last activation) on its flat features."""

    sentence: text_nets.SentenceArch
    head_hidden: tuple[int, ...]
    head_features: int
    head_last_act: str | None
    bn_momentum: float
    bn_epsilon: float

    @nn.compact
    def __call__(self, y, train: bool):
        bn = dict(bn_momentum=self.bn_momentum, bn_epsilon=self.bn_epsilon)
        h = text_nets.SentenceFeatureMap(
            base=self.sentence.gen_base,
            vocab_size=self.sentence.vocab_size,
            embed_dim=self.sentence.embed_dim,
            negative_slope=LRELU_SLOPE,
            **bn,
        )(y, train)
        return nets.MLP(
            hidden=tuple(self.head_hidden),
            features=self.head_features,
            act="lrelu",
            last_act=self.head_last_act,
            negative_slope=LRELU_SLOPE,
            batchnorm=True,
            **bn,
        )(h, train)


@dataclasses.dataclass(frozen=True)
class SentenceIIAEArch(Arch):
    """IIAE's ``Arch`` with caption networks on the y side (module docstring)."""

    sentence: text_nets.SentenceArch | None = None

    @classmethod
    def from_config(
        cls, family: str, c, x_shape, y_shape, out_acts, *, sentence_config, vocab_size: int
    ) -> "SentenceIIAEArch":
        """``Arch.from_config`` for captions: ``sentence_config`` (``config.model.sentence``)
        and the dataset's ``vocab_size`` give the caption networks' ``sentence`` field."""
        del family  # 'sentence': the x side is IIAE's 'mlp' family, the y side the captions'
        if len(x_shape) != 1 or len(y_shape) != 1:
            raise ValueError(
                f"config.model.family='sentence' needs feature vectors x and token-id "
                f"captions y, got x {tuple(x_shape)} and y {tuple(y_shape)}; use "
                "caption data (config.data.name='cub')."
            )
        base = Arch.from_config("mlp", c, x_shape, y_shape, out_acts)
        fields = {f.name: getattr(base, f.name) for f in dataclasses.fields(Arch)}
        fields["family"] = "sentence"
        sentence = text_nets.SentenceArch.from_config(sentence_config, vocab_size, y_shape[0])
        return cls(**fields, sentence=sentence)

    def _y(self, name: str) -> bool:
        return name.endswith("_y") or "_y_" in name

    def exclusive_encoder(self, name) -> nn.Module:
        if not self._y(name):
            return super().exclusive_encoder(name)
        return SentenceEncoder(
            self.sentence,
            tuple(self.hidden[1:]),
            2 * self.exclusive_dim,
            None,
            self.bn_momentum,
            self.bn_epsilon,
            name=name,
        )

    def shared_trunk(self, name) -> nn.Module:
        if not self._y(name):
            return super().shared_trunk(name)
        return SentenceEncoder(
            self.sentence, (), self.hidden[0], "lrelu", self.bn_momentum, self.bn_epsilon, name=name
        )

    def decoder(self, out_shape, out_act, name) -> nn.Module:
        if not self._y(name):
            return super().decoder(out_shape, out_act, name)
        return CaptionDecoder(self.sentence, self.bn_momentum, self.bn_epsilon, name=name)

    def y_output(self, y):
        """Generated captions as token ids (argmax of the logits)."""
        return jnp.argmax(y, axis=-1).astype(jnp.int32)


class CaptionDecoder(nn.Module):
    """``text_nets.SentenceDecoder`` with IIAE's decoder call signature (dropout unused)."""

    sentence: text_nets.SentenceArch
    bn_momentum: float
    bn_epsilon: float

    @nn.compact
    def __call__(self, latent, train: bool, dropout: bool = False):
        s = self.sentence
        return text_nets.SentenceDecoder(
            length=s.length,
            vocab_size=s.vocab_size,
            embed_dim=s.embed_dim,
            base=s.gen_base,
            embedding=None,
            spectral_norm=False,
            negative_slope=LRELU_SLOPE,
            bn_momentum=self.bn_momentum,
            bn_epsilon=self.bn_epsilon,
        )(latent, train)
