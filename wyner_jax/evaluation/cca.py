"""CUB image ↔ caption correlation score (paper §6.5; wyner-model.md §6.5).

How well a caption matches an image feature, without a captioning model: embed the caption
(SIF sentence embedding), project both into the top-k canonical directions of a CCA fitted
on the training pairs, and take the cosine of the two projections. Averaged over pairs, it
is `cca/ground_truth` on real test pairs and `cca/x2y`, `cca/y2x`, `cca/joint` on pairs
with a generated side.

Sentence embedding (SIF; Arora, Liang & Ma, ICLR 2017), as the reference's `CUBSentHelper`:
  * word vectors trained on the training captions only;
  * word weight a / (a + p(w)), a = 1e-3, p(w) the word's frequency in the training token
    ids (`<exc>` pools the out-of-vocabulary words), weight 0 for `<pad>` and `<eos>`;
  * a caption is cut after its first `<eos>`; its embedding is Σ weight·vector / #tokens
    (`<eos>` counted);
  * the projection on the first principal direction v of the centred training embeddings is
    removed: e ← e − v vᵀe.

Word vectors: the reference trains a 300-d FastText (gensim) on the training captions. Here
they are **PPMI + truncated SVD** of the training captions' word–context co-occurrences
(window 3 each side as the reference's FastText, context-distribution smoothing α = 0.75,
vectors U_d·S_d^½; Levy, Goldberg & Dagan, TACL 2015). Why: skip-gram with negative sampling
is an implicit factorisation of the same shifted PMI matrix (Levy & Goldberg, NIPS 2014), so
the two give word spaces of the same kind; PPMI+SVD is deterministic, closed form, seconds on
CPU for a vocabulary of ~1,600 words, and needs no gensim. Subword n-grams, FastText's
addition, do not matter here: every word in the vocabulary occurs more than 3 times.

CCA (`fit_cca`): the reference's generalised eigenproblem A w = ρ B w with
A = [[0, C_xy], [C_yx, 0]], B = blockdiag(C_xx + ε_x I, C_yy + ε_y I) (ε_x, ε_y = 1e-12 times
each view's mean variance; the reference adds an absolute 1e-12 to A and B), the k = 40
largest eigenvalues (the canonical correlations) and their eigenvectors split into the
image projection P_x [2048, k] and the text projection P_y [d, k]. The score of a pair is
cos((x − μ_x) P_x, (e − μ_y) P_y). The per-direction scale of P matters for that cosine:
`normalization='unit_norm'` (default) scales each joint eigenvector [w_x; w_y] to unit
Euclidean norm as SciPy's `eig` returns it to the reference; 'unit_variance' gives every
canonical variate unit variance instead (the textbook CCA scaling). The reference's
committed projections and its ground truth 0.2746 only fit its own FastText embedding, so
the CCA is refitted here (spec §6.5) and the numbers are this implementation's own.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from wyner_jax.data import captions as cap

SIF_A = 1e-3
WINDOW = 3
CONTEXT_SMOOTHING = 0.75


# --------------------------------------------------------------------------- word vectors


def _content_mask(tokens: np.ndarray) -> np.ndarray:
    """True at the tokens before the first `<eos>` that are not `<pad>` (words and `<exc>`)."""
    tokens = np.asarray(tokens)
    before = np.arange(tokens.shape[1])[None, :] < cap.caption_lengths(tokens)[:, None]
    return before & (tokens != cap.PAD_ID) & (tokens != cap.EOS_ID)


def cooccurrence_counts(tokens: np.ndarray, vocab_size: int, window: int = WINDOW) -> np.ndarray:
    """[V, V] symmetric counts of (word, context) pairs at distance 1..window in a caption
    (content tokens only; `<pad>` / `<eos>` never count)."""
    tokens = np.asarray(tokens, np.int64)
    ok = _content_mask(tokens)
    flat = np.zeros(vocab_size * vocab_size, np.int64)
    for d in range(1, window + 1):
        left, right = tokens[:, :-d], tokens[:, d:]
        both = ok[:, :-d] & ok[:, d:]
        flat += np.bincount(left[both] * vocab_size + right[both], minlength=vocab_size**2)
        flat += np.bincount(right[both] * vocab_size + left[both], minlength=vocab_size**2)
    return flat.reshape(vocab_size, vocab_size)


def ppmi_matrix(counts: np.ndarray, alpha: float = CONTEXT_SMOOTHING) -> np.ndarray:
    """Positive PMI with context-distribution smoothing:
    max(0, log P(w, c) / (P(w) P_α(c))), P_α(c) = n_c^α / Σ n_c'^α; 0 where n_wc = 0."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    p_w = counts.sum(1) / total
    n_c = counts.sum(0) ** alpha
    p_c = n_c / n_c.sum()
    with np.errstate(divide="ignore", invalid="ignore"):
        pmi = np.log(counts / total) - np.log(p_w)[:, None] - np.log(p_c)[None, :]
    return np.where(counts > 0, np.maximum(pmi, 0.0), 0.0)


def ppmi_svd_word_vectors(
    tokens: np.ndarray, vocab_size: int, dim: int, window: int = WINDOW
) -> np.ndarray:
    """[V, min(dim, V)] word vectors U_d·S_d^½ of the PPMI matrix of `tokens` (training
    captions as ids). Column signs are fixed (largest |entry| positive) for determinism."""
    m = ppmi_matrix(cooccurrence_counts(tokens, vocab_size, window))
    u, s, _ = np.linalg.svd(m)
    d = min(int(dim), vocab_size)
    vectors = u[:, :d] * np.sqrt(s[:d])
    sign = np.sign(vectors[np.abs(vectors).argmax(0), np.arange(d)])
    return vectors * np.where(sign == 0, 1.0, sign)


# --------------------------------------------------------------------------- SIF


def sif_weights(word_counts: np.ndarray, a: float = SIF_A) -> np.ndarray:
    """a / (a + p(w)) with p(w) = count / Σ counts; 0 for `<pad>` and `<eos>`."""
    counts = np.asarray(word_counts, np.float64).copy()
    counts[[cap.PAD_ID, cap.EOS_ID]] = 0.0
    w = a / (a + counts / max(counts.sum(), 1.0))
    w[[cap.PAD_ID, cap.EOS_ID]] = 0.0
    return w


def weighted_average_embeddings(
    tokens: np.ndarray, vectors: np.ndarray, weights: np.ndarray
) -> np.ndarray:
    """Σ_{t ≤ first <eos>} weight(t)·vector(t) / #tokens up to and including `<eos>`."""
    tokens = np.asarray(tokens, np.int64)
    lengths = cap.caption_lengths(tokens)
    keep = np.arange(tokens.shape[1])[None, :] < lengths[:, None]
    w = np.where(keep, weights[tokens], 0.0)
    return np.einsum("nl,nld->nd", w, vectors[tokens]) / lengths[:, None]


def first_principal_direction(embeddings: np.ndarray) -> np.ndarray:
    """Unit vector of the first principal direction of the centred rows."""
    centred = embeddings - embeddings.mean(0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    return vt[0]


@dataclasses.dataclass(frozen=True)
class SentenceEmbedder:
    """SIF sentence embeddings with the first principal direction removed (see the module)."""

    vectors: np.ndarray  # [V, d]
    weights: np.ndarray  # [V]
    direction: np.ndarray  # [d], unit

    @classmethod
    def fit(cls, train_tokens, word_counts, dim: int = 300, a: float = SIF_A):
        vectors = ppmi_svd_word_vectors(train_tokens, len(word_counts), dim)
        weights = sif_weights(word_counts, a)
        raw = weighted_average_embeddings(train_tokens, vectors, weights)
        return cls(vectors, weights, first_principal_direction(raw))

    def __call__(self, tokens: np.ndarray) -> np.ndarray:
        e = weighted_average_embeddings(tokens, self.vectors, self.weights)
        return e - np.outer(e @ self.direction, self.direction)


# --------------------------------------------------------------------------- CCA


@dataclasses.dataclass(frozen=True)
class CCA:
    """A fitted CCA: means, projections [d_x, k] / [d_y, k], canonical correlations [k]."""

    mean_x: np.ndarray
    proj_x: np.ndarray
    mean_y: np.ndarray
    proj_y: np.ndarray
    correlations: np.ndarray

    def project(self, x, y) -> tuple[np.ndarray, np.ndarray]:
        x = np.asarray(x, np.float64)
        y = np.asarray(y, np.float64)
        return (x - self.mean_x) @ self.proj_x, (y - self.mean_y) @ self.proj_y

    def score(self, x, y) -> float:
        """mean over pairs of cos((x − μ_x) P_x, (y − μ_y) P_y)."""
        return float(np.mean(self.pair_cosines(x, y)))

    def pair_cosines(self, x, y) -> np.ndarray:
        px, py = self.project(x, y)
        norm = np.linalg.norm(px, axis=1) * np.linalg.norm(py, axis=1)
        return np.sum(px * py, axis=1) / np.maximum(norm, 1e-12)


def _whitening_basis(rows: np.ndarray, eps: float) -> tuple[np.ndarray, np.ndarray]:
    """For a covariance C = rowsᵀ·rows: an orthonormal basis Q [d, r] of its range and
    (σ² + eps)^−½ [r], so that (C + eps·I)^−½ acts as Q·diag(·)·Qᵀ on that range."""
    if rows.shape[0] >= rows.shape[1]:
        var, q = np.linalg.eigh(rows.T @ rows)
    else:  # fewer rows than dimensions: the thin SVD is cheaper and spans the same range
        _, sigma, qt = np.linalg.svd(rows, full_matrices=False)
        var, q = sigma**2, qt.T
    return q, 1.0 / np.sqrt(np.maximum(var, 0.0) + eps)


def fit_cca(
    x,
    y,
    k: int = 40,
    eps: float = 1e-12,
    normalization: str = "unit_norm",
    x_index: np.ndarray | None = None,
) -> CCA:
    """Fits a k-dimensional CCA of paired rows (x[i], y[i]) (see the module docstring).

    Solves the generalised eigenproblem [[0, C_xy], [C_yx, 0]] w = ρ
    blockdiag(C_xx + ε_x I, C_yy + ε_y I) w through its equivalent SVD: the singular values of
    K = (C_xx + ε_x I)^−½ C_xy (C_yy + ε_y I)^−½ are the eigenvalues ρ, and its singular
    vectors u, v give w = [(C_xx + ε_x I)^−½ u; (C_yy + ε_y I)^−½ v]. The ridge goes on B
    only: the reference also adds it to A's diagonal, which turns every null direction of
    C_xx into a spurious eigenvalue 1 (harmless only when C_xx has full rank).

    Args:
      x: [N, d_x], or the pool of distinct x rows when `x_index` is given (pair i is
        (x[x_index[i]], y[i]); the image features of caption pairs, without copying them).
      y: [N, d_y].
      k: number of canonical directions (at most min(d_x, d_y)).
      eps: ridge added to the within-view covariances, relative to each view's mean variance
        (the reference adds an absolute 1e-12; both are negligible on full-rank data).
      normalization: 'unit_norm' (the reference's) or 'unit_variance'.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    x_index = np.arange(len(x)) if x_index is None else np.asarray(x_index, np.int64)
    if len(x_index) != len(y):
        raise ValueError(f"fit_cca: {len(x_index)} x rows but {len(y)} y rows; pass pairs.")
    dx, dy = x.shape[1], y.shape[1]
    if not 1 <= k <= min(dx, dy):
        raise ValueError(
            f"CCA dimension k = {k} must be between 1 and min(d_x, d_y) = {min(dx, dy)}; "
            "lower config.eval.cca_dim (or raise config.eval.cca_word_dim)."
        )
    if normalization not in ("unit_norm", "unit_variance"):
        raise ValueError(
            f"config.eval.cca_normalization must be 'unit_norm' or 'unit_variance', got "
            f"{normalization!r}."
        )
    n = len(y)
    counts = np.bincount(x_index, minlength=len(x)).astype(np.float64)
    mean_x, mean_y = counts @ x / n, y.mean(0)
    xc, yc = x - mean_x, y - mean_y
    # The ridge is eps times each view's mean variance, so one eps means the same for image
    # features and (much smaller) sentence embeddings. m distinct rows span at most m − 1
    # dimensions: with fewer rows than dimensions a tiny ridge lets every direction correlate
    # perfectly in-sample.
    var_x = np.sum(counts @ xc**2) / n / dx
    var_y = np.sum(yc**2) / n / dy
    for side, m, d in (("image", np.count_nonzero(counts), dx), ("text", n, dy)):
        if m - 1 < d and eps < 1e-8:
            raise ValueError(
                f"CCA: the {side} covariance is singular ({m} distinct training rows for {d} "
                f"dimensions) and eps = {eps:g} is too small to regularise it. Raise "
                "config.eval.cca_eps (e.g. 1e-2 for small data)."
            )
    used = counts > 0
    qx, sx = _whitening_basis(np.sqrt(counts[used] / n)[:, None] * xc[used], eps * var_x)
    qy, sy = _whitening_basis(yc / np.sqrt(n), eps * var_y)
    summed = np.zeros((len(x), dy))
    np.add.at(summed, x_index, yc)  # Σ of the centred y over each x row's pairs
    c_xy = xc.T @ summed / n
    kernel = (sx[:, None] * (qx.T @ c_xy @ qy)) * sy[None, :]
    u, rho, vt = np.linalg.svd(kernel, full_matrices=False)
    if len(rho) < k:
        raise ValueError(
            f"CCA dimension k = {k} exceeds the rank {len(rho)} of the training data; lower "
            "config.eval.cca_dim."
        )
    w_x = qx @ (sx[:, None] * u[:, :k])
    w_y = qy @ (sy[:, None] * vt[:k].T)
    if normalization == "unit_norm":
        scale = np.sqrt(np.sum(w_x**2, 0) + np.sum(w_y**2, 0))
        w_x, w_y = w_x / scale, w_y / scale
    else:
        var_x = np.sum(counts[:, None] * (xc @ w_x) ** 2, 0) / n
        w_x, w_y = w_x / np.sqrt(var_x), w_y / np.sqrt(np.mean((yc @ w_y) ** 2, 0))
    # Each direction's sign is arbitrary (flipping w_x and w_y together changes no score).
    sign = np.sign(w_x[np.abs(w_x).argmax(0), np.arange(k)])
    sign = np.where(sign == 0, 1.0, sign)
    return CCA(mean_x, w_x * sign, mean_y, w_y * sign, rho[:k])


# --------------------------------------------------------------------------- the metric


@dataclasses.dataclass(frozen=True)
class CaptionCCA:
    """The fitted instrument: sentence embedder + CCA, scoring (image features, token ids)."""

    embedder: SentenceEmbedder
    cca: CCA

    @classmethod
    def fit(cls, dataset, k: int = 40, word_dim: int = 300, eps: float = 1e-12, **kw):
        """Fits on the training pairs of a `CaptionDataset` (word vectors, SIF and the
        principal direction from its training captions)."""
        emb = SentenceEmbedder.fit(dataset.train.y, dataset.word_counts, word_dim)
        cca = fit_cca(
            dataset.train_features,
            emb(dataset.train.y),
            k=k,
            eps=eps,
            x_index=dataset.train.x.index,
            **kw,
        )
        return cls(emb, cca)

    def score(self, features, tokens) -> float:
        return self.cca.score(features, self.embedder(tokens))


def cca_metrics(instrument: CaptionCCA, dataset, gen: dict) -> dict[str, float]:
    """`cca/ground_truth` on the real test pairs, and for the generated sets present in
    `gen`: `cca/x2y` (test images, one generated caption each), `cca/y2x` (generated image
    feature, test caption), `cca/joint` (joint samples (x, y) ~ p(x, y)); one value per test
    pair, averaged over all of them."""
    test = dataset.test
    out = {"cca/ground_truth": instrument.score(np.asarray(test.x), test.y)}
    if "x2y" in gen:
        out["cca/x2y"] = instrument.score(np.asarray(test.x), gen["x2y"])
    if "y2x" in gen:
        out["cca/y2x"] = instrument.score(gen["y2x"], test.y)
    if "joint" in gen:
        out["cca/joint"] = instrument.score(gen["joint"][0], gen["joint"][1])
    out["cca/top_correlation"] = float(instrument.cca.correlations[0])
    return out
