"""Fréchet distances between feature sets (paper §6.4: fd_mx, fd_my, fd_cx2y, fd_cy2x).

The Fréchet distance between the Gaussians fitted to two feature sets,

    FD(a, b) = ||μa − μb||² + Tr(Σa + Σb − 2 (Σa Σb)^{1/2}),

with μ the mean and Σ the unbiased covariance (as pytorch-fid, which the reference uses).

Which features: our evaluation classifiers' penultimate features (``wyner_jax.evaluation
.classifier``), not InceptionV3 pool features. The numbers are therefore on a different scale
from Inception FID and from the reference's tables, and not comparable with either; they are
comparable only between runs that use the same classifier features.

The matrix square root: the reference runs 100 Newton–Schulz iterations on Σa Σb, a
non-symmetric product. We use that Σa Σb is similar to the symmetric positive semi-definite
Σa^{1/2} Σb Σa^{1/2} (same eigenvalues), so Tr (Σa Σb)^{1/2} is the sum of the square roots of
that matrix's eigenvalues, from two symmetric eigendecompositions in float64. This needs no
iteration count, stays real, and is exact for singular covariances (fewer samples than
feature dimensions, or constant features), where eigenvalues that rounding pushed slightly
below zero are set to zero.
"""

from __future__ import annotations

import numpy as np


def gaussian_statistics(
    features: np.ndarray, name: str = "features"
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of ``features`` [N, D]; needs N >= 2."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(
            f"{name} must be a 2-D array [N, D] of feature vectors, got shape {x.shape}."
        )
    if x.shape[0] < 2:
        raise ValueError(
            f"{name} has {x.shape[0]} sample(s); a covariance needs at least 2. Pass more "
            "samples (the Fréchet distance is biased for small N: use thousands where possible)."
        )
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{name} contains NaN or Inf; check the feature extractor's inputs.")
    return x.mean(axis=0), np.atleast_2d(np.cov(x, rowvar=False))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; rounding-level negative eigenvalues -> 0."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray) -> float:
    """Tr (Σa Σb)^{1/2} for symmetric PSD Σa, Σb, via the eigenvalues of Σa^{1/2} Σb Σa^{1/2}."""
    root_a = _psd_sqrt(sigma_a)
    m = root_a @ sigma_b @ root_a
    w = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sum(np.sqrt(np.clip(w, 0.0, None))))


def frechet_distance_from_statistics(
    mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray
) -> float:
    """FD = ||μa − μb||² + Tr Σa + Tr Σb − 2 Tr (Σa Σb)^{1/2} from precomputed statistics
    (so a reference set's statistics can be computed once and reused)."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    if mu_a.shape != mu_b.shape or sigma_a.shape != sigma_b.shape:
        raise ValueError(
            f"Feature dimensions differ: means {mu_a.shape} vs {mu_b.shape}, covariances "
            f"{sigma_a.shape} vs {sigma_b.shape}; both sets must come from the same extractor."
        )
    diff = mu_a - mu_b
    fd = (
        diff @ diff
        + np.trace(sigma_a)
        + np.trace(sigma_b)
        - 2.0 * trace_sqrt_product(sigma_a, sigma_b)
    )
    # A distance is >= 0; identical statistics give a rounding-level negative value.
    return max(float(fd), 0.0)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between the Gaussians fitted to feature sets ``a`` [Na, D] and
    ``b`` [Nb, D] (paper §6.4, fd_mx / fd_my when ``a`` are generated and ``b`` real samples).

    Features are our evaluation classifiers' penultimate activations: not comparable with
    Inception FID (see the module docstring). Symmetric in (a, b); needs Na, Nb >= 2; Na or
    Nb below D gives a singular covariance, which is handled exactly but makes the estimate
    noisy.
    """
    mu_a, sigma_a = gaussian_statistics(a, "a")
    mu_b, sigma_b = gaussian_statistics(b, "b")
    return frechet_distance_from_statistics(mu_a, sigma_a, mu_b, sigma_b)


def conditional_frechet_distance(
    real: np.ndarray,
    real_labels: np.ndarray,
    gen: np.ndarray,
    gen_labels: np.ndarray,
    num_classes: int,
    gen_groups: np.ndarray | None = None,
) -> float:
    """Class-conditional Fréchet distance (paper §6.4, fd_cx2y / fd_cy2x).

    For each target class c, the generated samples that *should* be of class c are compared
    with the real samples of class c of the same modality; the result is the mean over the
    ``num_classes`` classes (each class weighs the same).

    Arguments:
      real, real_labels: features [N, D] of real samples of the target modality and their
        class labels (the reference statistics per class).
      gen, gen_labels: features [M, D] of conditionally generated samples and their *target*
        class, i.e. the class the generated sample should have: for x→y on Add1 the label
        (d + 1) mod 10 of the condition's digit d (``coherence.add_one``), for y→x the
        label d of the paired x.
      gen_groups: optional id of the conditioning input (the "reference") that produced each
        generated sample. The reference draws 2048 samples from each of 32 conditions per
        class and averages the 10×32 per-condition FDs; passing the condition index here
        does the same (FD per condition against its class's real statistics, mean over the
        conditions of a class, then mean over classes, which equals the reference's mean of
        the 10×32 matrix when every class has as many conditions). Without it, all generated
        samples of a class form one set, which suits one sample per condition (as our
        runner's conditional generation draws) and measures the pooled conditional
        distribution rather than each p(y | x).

    Fixed with respect to the reference (§7 item 2): the reference computes z from a batch
    of one image with BatchNorm in train mode, so the encoder normalises with the statistics
    of that single image (per channel over the 2×2 or 4×4 positions of its last conv
    layers), not with batch statistics like those it was trained with. That bug sits in the
    generation, not in this function: callers should encode conditions in ordinary
    evaluation batches (as our runner does) and pass group ids if they want the
    per-condition average. The FD arithmetic itself has no §7 bug; the only change is the
    exact eigendecomposition square root instead of Newton–Schulz (module docstring).

    Raises ValueError when a class has fewer than 2 real or generated samples (or a group
    fewer than 2 samples), or labels fall outside [0, num_classes).
    """
    real_labels = np.asarray(real_labels).reshape(-1)
    gen_labels = np.asarray(gen_labels).reshape(-1)
    real, gen = np.asarray(real), np.asarray(gen)
    if real.ndim != 2 or gen.ndim != 2:
        raise ValueError(f"real and gen must be 2-D [N, D], got {real.shape} and {gen.shape}.")
    if len(real_labels) != len(real) or len(gen_labels) != len(gen):
        raise ValueError(
            f"Labels must give one class per sample: real {real.shape[0]} samples vs "
            f"{len(real_labels)} labels, gen {gen.shape[0]} vs {len(gen_labels)}."
        )
    for name, labels in (("real_labels", real_labels), ("gen_labels", gen_labels)):
        if labels.size and (labels.min() < 0 or labels.max() >= num_classes):
            raise ValueError(
                f"{name} must lie in [0, {num_classes}), got {labels.min()}..{labels.max()}."
            )
    if gen_groups is not None:
        gen_groups = np.asarray(gen_groups).reshape(-1)
        if len(gen_groups) != len(gen):
            raise ValueError(f"gen_groups has {len(gen_groups)} ids for {len(gen)} samples.")

    per_class = []
    for c in range(num_classes):
        mu_r, sigma_r = gaussian_statistics(real[real_labels == c], f"real samples of class {c}")
        in_class = gen_labels == c
        if gen_groups is None:
            sets = [gen[in_class]]
        else:
            sets = [gen[in_class & (gen_groups == g)] for g in np.unique(gen_groups[in_class])]
        if not sets or sum(len(s) for s in sets) == 0:
            sets = [gen[in_class]]  # empty: gaussian_statistics names the class in its error
        fds = []
        for s in sets:
            mu_g, sigma_g = gaussian_statistics(s, f"generated samples of class {c}")
            fds.append(frechet_distance_from_statistics(mu_g, sigma_g, mu_r, sigma_r))
        per_class.append(np.mean(fds))
    return float(np.mean(per_class))
