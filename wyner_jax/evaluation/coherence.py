"""Label coherence of generated samples (paper §6.2: err_j, err_cx2y, err_cy2x = 1 - coherence)."""

from __future__ import annotations

import numpy as np


def coherence(predicted_labels: np.ndarray, target_labels: np.ndarray) -> float:
    """Share of samples whose classifier label equals the target label.

    For joint generation (err_j) the target is `add_one(label of x_p)` on MNIST-Add1; for
    conditional generation (err_cx2y) it is the true label of the paired y.
    """
    predicted, target = np.asarray(predicted_labels), np.asarray(target_labels)
    if predicted.shape != target.shape:
        raise ValueError(f"label arrays differ in shape: {predicted.shape} vs {target.shape}.")
    if predicted.size == 0:
        raise ValueError("coherence of an empty set is undefined; pass at least one sample.")
    return float(np.mean(predicted == target))


def add_one(labels: np.ndarray, num_classes: int = 10) -> np.ndarray:
    """The Add1 pairing rule: label (l + 1) mod num_classes."""
    return (np.asarray(labels) + 1) % num_classes
