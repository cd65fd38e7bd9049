"""The Wyner model's training state (one pytree: both networks, their optimisers and the EMA
generator, wyner-model.md §3.2) and the EMA rule of the reference's torch_ema.

The field names are the checkpoint layout: renaming one makes older checkpoints unreadable.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct


@struct.dataclass
class WynerState:
    """Everything a Wyner training run changes; ``ema_params`` (the EMA of ``gen_params``)
    with ``gen_stats`` are the evaluation weights."""

    step: jax.Array
    rng: jax.Array  # raw uint32 key; per-step keys are fold_in(rng, step)
    gen_params: Any
    gen_stats: Any  # BatchNorm running averages and spectral-norm vectors
    disc_params: Any
    disc_stats: Any
    gen_opt: Any
    disc_opt: Any
    ema_params: Any


def ema_decay(decay: float, num_updates, warmup: bool):
    """torch_ema's decay with ``use_num_updates``: min(d, (1+n)/(10+n)) after n updates."""
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    n = jnp.asarray(num_updates, jnp.float32)
    return jnp.minimum(decay, (1.0 + n) / (10.0 + n))


def ema_update(ema, params, decay):
    """Shadow update s ← s − (1 − d)(s − θ)."""
    return jax.tree_util.tree_map(lambda s, p: s - (1.0 - decay) * (s - p), ema, params)
