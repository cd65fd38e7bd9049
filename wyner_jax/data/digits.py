"""Digits-Add1: a small, download-free stand-in for the paper's MNIST-Add1 (spec §5.1).

Uses scikit-learn's bundled 8x8 handwritten digits (1,797 real images, 0..16). Domain x
is a digit l, domain y a different image of digit (l + 1) mod 10, paired at random within
each split exactly as the reference's `rand_match_on_idx`.
"""

from __future__ import annotations

import numpy as np

from wyner_jax.data.base import Domain, PairedArrays, PairedDataset, feature_std, pair_by_label

NUM_CLASSES = 10


def _add1(label: int) -> int:
    return (label + 1) % NUM_CLASSES


def _stratified_split(labels: np.ndarray, test_fraction: float, seed: int):
    """Image-level split, per class, so class proportions match and no image is in both."""
    rng = np.random.default_rng(seed)
    train, test = [], []
    for c in range(NUM_CLASSES):
        idx = rng.permutation(np.flatnonzero(labels == c))
        n_test = int(round(test_fraction * len(idx)))
        if n_test == 0 or n_test == len(idx):
            raise ValueError(
                f"test_fraction={test_fraction} leaves class {c} ({len(idx)} images) with an "
                "empty split; use a test_fraction strictly between 0 and 1 (e.g. 0.25)."
            )
        test.append(idx[:n_test])
        train.append(idx[n_test:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(test))


def _resize(images: np.ndarray, size: int) -> np.ndarray:
    # Bilinear resize like the reference's torchvision Resize (MNIST 28 -> 32). Imported
    # lazily so plain data use does not initialise JAX.
    import jax
    import jax.numpy as jnp

    n, _, _, ch = images.shape
    out = jax.image.resize(jnp.asarray(images), (n, size, size, ch), method="linear")
    # Bilinear upsampling is a convex combination, but clip so rounding can never leave [-1, 1].
    return np.clip(np.asarray(out, np.float32), -1.0, 1.0)


def _paired_split(images: np.ndarray, labels: np.ndarray, multiplier: int, rng) -> PairedArrays:
    ix, iy = pair_by_label(labels, labels, NUM_CLASSES, _add1, multiplier, rng)
    return PairedArrays(
        x=images[ix],
        y=images[iy],
        label_x=labels[ix].astype(np.int32),
        label_y=labels[iy].astype(np.int32),
    )


def load_digits_add1(
    image_size: int = 8,
    flatten: bool = False,
    test_fraction: float = 0.25,
    multiplier: int = 10,
    split_seed: int = 0,
    pair_seed: int = 1,
) -> PairedDataset:
    """Digits-Add1 paired dataset (the paper's MNIST-Add1 protocol on sklearn digits).

    Args:
      image_size: side of the square images; 8 is native, larger sizes are bilinear
        upsamplings (e.g. 32 to match the paper's MNIST architecture).
      flatten: return vectors [H*W] instead of HWC images [H, W, 1].
      test_fraction: share of each class's images put in the test split.
      multiplier: number of random re-pairings per split (the reference's `dm`).
      split_seed: seed of the train/test split.
      pair_seed: seed of the pairing; train and test use independent streams of it.

    Returns:
      A PairedDataset with label_y = label_x + 1 mod 10, pixels in [-1, 1], and domains
      'x' and 'y' both holding the digit images of each split (one digit classifier
      serves both sides).
    """
    if image_size < 8:
        raise ValueError(f"image_size must be >= 8 (the native digits size), got {image_size}.")
    from sklearn.datasets import load_digits  # bundled with scikit-learn, no download

    raw = load_digits()
    images = (raw.images.astype(np.float32) / 8.0 - 1.0)[..., None]  # 0..16 -> [-1, 1], HWC
    labels = raw.target.astype(np.int32)
    if image_size > 8:
        images = _resize(images, image_size)
    if flatten:
        images = images.reshape(len(images), -1)

    train_idx, test_idx = _stratified_split(labels, test_fraction, split_seed)
    train = _paired_split(
        images[train_idx], labels[train_idx], multiplier, np.random.default_rng([pair_seed, 0])
    )
    test = _paired_split(
        images[test_idx], labels[test_idx], multiplier, np.random.default_rng([pair_seed, 1])
    )
    domain = Domain(
        train_images=images[train_idx],
        train_labels=labels[train_idx],
        test_images=images[test_idx],
        test_labels=labels[test_idx],
    )
    return PairedDataset(
        name="digits_add1",
        train=train,
        test=test,
        num_classes=NUM_CLASSES,
        label_rule="add1",
        x_std=feature_std(train.x),
        y_std=feature_std(train.y),
        domains={"x": domain, "y": domain},
        x_image_shape=(image_size, image_size, 1) if flatten else None,
        y_image_shape=(image_size, image_size, 1) if flatten else None,
    )
