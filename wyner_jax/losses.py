"""Loss functions of the Variational Wyner model and of the IIAE baseline.

Everything here is a pure function of `jnp` arrays: no Flax, no state, no randomness except
the explicit key of `shuffle_latent`. All of it can be called under `jax.jit`, on global
(unsharded-semantics) arrays.

Conventions for the adversarial parts (`wyner-model.md` §2.3-§2.5):

* `t_p` are the logits T of a density-ratio estimator (discriminator) on samples of P and
  `t_q` on samples of Q, where T is trained towards log P/Q. P is always the first argument.
* "mean" is over every element of the array, and P and Q are averaged separately, so the two
  batches may differ in size.
* Density-ratio objectives return the value J that the discriminator *maximises*; the trainer
  minimises -J. Generator plug-in losses are *minimised* by the generator.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

__all__ = [
    "js_objective",
    "dv_objective",
    "njw_objective",
    "lc_objective",
    "DENSITY_RATIO_OBJECTIVES",
    "symmetric_kl_plugin",
    "forward_kl_plugin",
    "reverse_kl_plugin",
    "js_plugin",
    "GENERATOR_PLUGINS",
    "ci_penalty",
    "shuffle_latent",
    "l1_loss",
    "l2_loss",
    "token_cross_entropy",
    "caption_cross_entropy",
    "cosine_loss",
    "RECONSTRUCTION_LOSSES",
    "gaussian_kl_standard_normal",
    "gaussian_kl",
]


def _binary_entropy(p: float) -> float:
    """H_b(p) = -p ln p - (1-p) ln(1-p) in nats, for a Python float p in (0, 1)."""
    return -p * math.log(p) - (1.0 - p) * math.log1p(-p)


def _log_mean_exp(x: jax.Array) -> jax.Array:
    """log mean e^x over all elements, computed as logsumexp(x) - log n."""
    return jax.nn.logsumexp(x) - math.log(x.size)


# ---------------------------------------------------------------------------------------------
# Density-ratio (discriminator) objectives: the discriminator maximises J.
# ---------------------------------------------------------------------------------------------


def js_objective(t_p: jax.Array, t_q: jax.Array, label_smoothing: float = 1.0) -> jax.Array:
    """Jensen-Shannon (logistic) density-ratio objective, `js_var` of the reference (§2.3).

    With a = `label_smoothing` = 1 (the default, and the paper's setting):

        J = mean log σ(T_P) + mean log σ(-T_Q) + 2 H_b(1/2),   H_b(1/2) = ln 2.

    J is maximised at σ(T) = p/(p+q), i.e. T = log P/Q, where it equals
    KL(P‖M) + KL(Q‖M) = 2·JSD(P, Q) with M = (P+Q)/2. It is zero when P = Q.

    With positive label smoothing 0 < a < 1 (the P-samples get label a instead of 1):

        J = mean[a log(a σ(T_P)) + (1-a) log(1 - a σ(T_P))] + mean log(1 - a σ(T_Q))
            + 2 H_b(a/2).

    Setting the derivative in s = σ(T) to zero gives p(1 - a s) = s(p(1-a) + q), so the
    maximiser is still s = p/(p+q), i.e. T = log P/Q. The constant 2 H_b(a/2) makes J = 0 when
    P = Q; at the optimum J is no longer exactly 2·JSD for a < 1.

    Logarithms are natural. `label_smoothing` must be a Python float in (0, 1] (it selects
    the formula, so it is static under jit). The a = 1 path uses `jax.nn.log_sigmoid`.
    """
    a = float(label_smoothing)
    if not 0.0 < a <= 1.0:
        raise ValueError(
            f"js_objective: label_smoothing must lie in (0, 1], got {label_smoothing!r}; "
            "use 1.0 for no smoothing."
        )
    const = 2.0 * _binary_entropy(a / 2.0)
    if a == 1.0:
        return jnp.mean(jax.nn.log_sigmoid(t_p)) + jnp.mean(jax.nn.log_sigmoid(-t_q)) + const
    # log(a σ(T)) = log a + log σ(T); 1 - a σ(T) >= 1 - a > 0, so log1p is safe.
    p_term = a * (math.log(a) + jax.nn.log_sigmoid(t_p)) + (1.0 - a) * jnp.log1p(
        -a * jax.nn.sigmoid(t_p)
    )
    q_term = jnp.log1p(-a * jax.nn.sigmoid(t_q))
    return jnp.mean(p_term) + jnp.mean(q_term) + const


def dv_objective(t_p: jax.Array, t_q: jax.Array) -> jax.Array:
    """Donsker-Varadhan symmetric-KL objective, `symmetric_kl_var_dv` of the reference (§2.3).

        J = mean(T_P) - mean(T_Q) - log mean e^{-T_P} - log mean e^{T_Q}.

    It is the sum of the DV lower bounds KL(P‖Q) >= E_P T - log E_Q e^T and
    KL(Q‖P) >= E_Q[-T] - log E_P e^{-T}. It is maximised at T = log P/Q + c for any constant
    c (J is shift-invariant), where it equals the symmetric KL KL(P‖Q) + KL(Q‖P).
    The log-means are computed as logsumexp - log n.
    """
    return jnp.mean(t_p) - jnp.mean(t_q) - _log_mean_exp(-t_p) - _log_mean_exp(t_q)


def njw_objective(t_p: jax.Array, t_q: jax.Array) -> jax.Array:
    """Nguyen-Wainwright-Jordan symmetric-KL objective, `symmetric_kl_var_njw` (§2.3).

        J = mean(T_P) - mean(T_Q) - mean e^{-T_P} - mean e^{T_Q} + 2.

    It is the sum of the NWJ (f-divergence) lower bounds KL(P‖Q) >= E_P T + 1 - E_Q e^T and
    KL(Q‖P) >= -E_Q T + 1 - E_P e^{-T}. Pointwise the integrand p(T - e^{-T}) - q(T + e^T) is
    strictly concave in T with derivative p(1 + e^{-T}) - q(1 + e^T), zero at e^T = p/q, so J
    is maximised exactly at T = log P/Q (no free constant), where it equals the symmetric KL
    KL(P‖Q) + KL(Q‖P) (E_P e^{-T} = E_Q e^T = 1 there).
    Means over P and Q are taken separately, so unequal batch sizes are handled.
    """
    return jnp.mean(t_p) - jnp.mean(t_q) - jnp.mean(jnp.exp(-t_p)) - jnp.mean(jnp.exp(t_q)) + 2.0


def lc_objective(t_p: jax.Array, t_q: jax.Array) -> jax.Array:
    """Le Cam (least-squares) density-ratio objective, `lc_var` of the reference (§2.3).

        J = 1 - 2 mean σ(-T_P)² - 2 mean σ(T_Q)².

    Pointwise, -2p(1-s)² - 2q s² with s = σ(T) is maximised at s = p/(p+q), i.e. at
    T = log P/Q, where J = 1 - 2∫pq/(p+q) = ½∫(p-q)²/(p+q), the Le Cam divergence LC(P, Q)
    (zero when P = Q).

    Deviation from the reference: the reference writes J = 1 - 2 mean(σ(T_P)² + σ(-T_Q)²),
    whose maximiser is s = q/(p+q), i.e. T = log Q/P, the opposite sign of every other
    objective; training a discriminator with it and feeding the generator's plug-ins would
    make the generator *increase* the divergence. We use the sign-consistent form above (the
    reference formula evaluated at -T), so that all four objectives share the optimum
    T = log P/Q. The optimal value is the same.
    """
    return (
        1.0
        - 2.0 * jnp.mean(jnp.square(jax.nn.sigmoid(-t_p)))
        - 2.0 * jnp.mean(jnp.square(jax.nn.sigmoid(t_q)))
    )


DENSITY_RATIO_OBJECTIVES = {
    "js": js_objective,
    "dv": dv_objective,
    "njw": njw_objective,
    "lc": lc_objective,
}


# ---------------------------------------------------------------------------------------------
# Generator plug-in losses: the generator minimises them.
# ---------------------------------------------------------------------------------------------


def symmetric_kl_plugin(t_p: jax.Array, t_q: jax.Array) -> jax.Array:
    """Symmetric-KL plug-in S = mean T_P - mean T_Q (`symmetric_kl_plugin`, §2.4, the default).

    If T = log P/Q this estimates KL(P‖Q) + KL(Q‖P). It is the distribution-matching term
    λ_k S_k of every pair (j, cx2y, cy2x, c, mx, my) and of the latent "agg" terms.
    """
    return jnp.mean(t_p) - jnp.mean(t_q)


def forward_kl_plugin(t_p: jax.Array, t_q: jax.Array) -> jax.Array:
    """Forward-KL plug-in mean T_P (`forward_kl_plugin`, §2.4); ≈ KL(P‖Q) if T = log P/Q.

    `t_q` is accepted for a uniform signature and ignored.
    """
    del t_q
    return jnp.mean(t_p)


def reverse_kl_plugin(t_p: jax.Array, t_q: jax.Array) -> jax.Array:
    """Reverse-KL plug-in -mean T_Q (`reverse_kl_plugin`, §2.4); ≈ KL(Q‖P) if T = log P/Q.

    `t_p` is accepted for a uniform signature and ignored.
    """
    del t_p
    return -jnp.mean(t_q)


def js_plugin(t_p: jax.Array, t_q: jax.Array) -> jax.Array:
    """Jensen-Shannon plug-in (`js_plugin`, §2.4): the generator minimises the JS objective.

    Equals `js_objective(t_p, t_q)` with no label smoothing; ≈ 2·JSD(P, Q) at T = log P/Q.
    """
    return js_objective(t_p, t_q)


GENERATOR_PLUGINS = {
    "symmetric_kl": symmetric_kl_plugin,
    "forward_kl": forward_kl_plugin,
    "reverse_kl": reverse_kl_plugin,
    "js": js_plugin,
}


# ---------------------------------------------------------------------------------------------
# Common-information penalty.
# ---------------------------------------------------------------------------------------------


def ci_penalty(t_joint: jax.Array) -> jax.Array:
    """Wyner common-information penalty λ_CI · I(X,Y;Z), without λ (§2.4 "CI regularisation").

    `t_joint` are the logits of the CI discriminator on unshuffled (x, y, z) samples; that
    discriminator is trained (e.g. with `js_objective`) to separate q(x,y,z) from the product
    q(x,y)q(z), realised as (x, y, z[π]) with `shuffle_latent`. With T = log q(x,y,z)/q(x,y)q(z),
    the forward-KL plug-in mean T over joint samples estimates KL(q(x,y,z)‖q(x,y)q(z)) =
    I(X,Y;Z). Only the joint logits enter the generator loss.
    """
    return jnp.mean(t_joint)


def shuffle_latent(z: jax.Array, key: jax.Array) -> jax.Array:
    """Product-of-marginals samples for the CI discriminator: z[π], π = permutation(key, B).

    Rows (axis 0) are permuted with a uniformly random permutation, which may have fixed
    points, as with the reference's `torch.randperm`. Pairing the permuted z with the
    unpermuted (x, y) turns samples of q(x,y,z) into (approximate) samples of q(x,y)q(z).
    """
    perm = jax.random.permutation(key, z.shape[0])
    return jnp.take(z, perm, axis=0)


# ---------------------------------------------------------------------------------------------
# Reconstruction losses.
# ---------------------------------------------------------------------------------------------


def l1_loss(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean absolute error mean |a - b| over all elements (‖·‖₁ of §2.4, used for x and y)."""
    return jnp.mean(jnp.abs(a - b))


def l2_loss(a: jax.Array, b: jax.Array) -> jax.Array:
    """Mean squared error mean (a - b)² over all elements (‖·‖² of §2.4, used for latents)."""
    return jnp.mean(jnp.square(a - b))


def token_cross_entropy(logits: jax.Array, tokens: jax.Array, ignore_index: int) -> jax.Array:
    """Token cross-entropy for caption reconstruction (CUB, §2.4 and §7.6).

        CE = Σ_{b,l: tokens[b,l] != ignore_index} -log softmax(logits[b,l])[tokens[b,l]]
             / #{non-ignored tokens}.

    `logits` is [B, L, V] and `tokens` is [B, L] integer (the reference ignores pad index 1).
    If every token is ignored the loss is 0 (not NaN) and its gradient is 0. The softmax is
    computed in at least float32.
    """
    logits = logits.astype(jnp.promote_types(logits.dtype, jnp.float32))
    mask = tokens != ignore_index
    # Ignored positions may hold an out-of-vocabulary id (e.g. -100); gather a valid one there.
    safe_tokens = jnp.where(mask, tokens, 0)
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.take_along_axis(log_probs, safe_tokens[..., None], axis=-1)[..., 0]
    total = jnp.sum(jnp.where(mask, nll, 0.0))
    count = jnp.sum(mask)
    return total / jnp.maximum(count, 1).astype(total.dtype)


def cosine_loss(a: jax.Array, b: jax.Array, eps: float = 1e-8) -> jax.Array:
    """Cosine reconstruction loss mean_i [1 - cos(a_i, b_i)], rows flattened over trailing dims.

        cos(a_i, b_i) = <a_i, b_i> / max(‖a_i‖ ‖b_i‖, eps).

    The clamp is applied to the squared norms product (inside the square root), so a zero row
    gives cos = 0 and finite gradients.
    """
    a = jnp.reshape(a, (a.shape[0], -1))
    b = jnp.reshape(b, (b.shape[0], -1))
    dot = jnp.sum(a * b, axis=-1)
    norm_sq = jnp.sum(jnp.square(a), axis=-1) * jnp.sum(jnp.square(b), axis=-1)
    cos = dot / jnp.sqrt(jnp.maximum(norm_sq, eps * eps))
    return jnp.mean(1.0 - cos)


def caption_cross_entropy(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """`token_cross_entropy` ignoring the caption vocabulary's `<pad>` (id 1, §7.6)."""
    return token_cross_entropy(logits, tokens, ignore_index=CAPTION_PAD_ID)


CAPTION_PAD_ID = 1  # <pad> of wyner_jax.data.captions

RECONSTRUCTION_LOSSES = {
    "l1": l1_loss,
    "l2": l2_loss,
    "cosine": cosine_loss,
    "token_ce": caption_cross_entropy,  # (logits [B, L, V], token ids [B, L])
}


# ---------------------------------------------------------------------------------------------
# Closed-form Gaussian KLs (IIAE baseline, `iiae.md` §2).
# ---------------------------------------------------------------------------------------------


def _sum_trailing_mean_batch(per_dim: jax.Array) -> jax.Array:
    """Sum over every axis but the first (the batch), then average over the batch."""
    return jnp.mean(jnp.sum(per_dim, axis=tuple(range(1, per_dim.ndim))))


def gaussian_kl_standard_normal(mean: jax.Array, logvar: jax.Array) -> jax.Array:
    """KL(N(μ, diag e^ℓ) ‖ N(0, I)): the IIAE prior KLs KL_x, KL_y, KL_s (`iiae.md` §2 item 2).

    Each dimension contributes 0.5(-1 - ℓ + μ² + e^ℓ); the sum is over all trailing dims
    (an image-shaped latent is thus flattened per example) and the mean over the batch axis 0.
    """
    per_dim = 0.5 * (-1.0 - logvar + jnp.square(mean) + jnp.exp(logvar))
    return _sum_trailing_mean_batch(per_dim)


def gaussian_kl(
    mean_q: jax.Array, logvar_q: jax.Array, mean_r: jax.Array, logvar_r: jax.Array
) -> jax.Array:
    """KL(N(μ_q, diag e^{ℓ_q}) ‖ N(μ_r, diag e^{ℓ_r})): IIAE's KL_rx, KL_ry (`iiae.md` §2 item 3).

    Each dimension contributes 0.5(-1 - ℓ_q + ℓ_r + ((μ_q - μ_r)² + e^{ℓ_q}) / e^{ℓ_r}); the sum
    is over all trailing dims and the mean over the batch axis 0. Gradients flow into both
    arguments. `gaussian_kl(μ, ℓ, 0, 0)` equals `gaussian_kl_standard_normal(μ, ℓ)`.
    """
    per_dim = 0.5 * (
        -1.0
        - logvar_q
        + logvar_r
        + (jnp.square(mean_q - mean_r) + jnp.exp(logvar_q)) * jnp.exp(-logvar_r)
    )
    return _sum_trailing_mean_batch(per_dim)
