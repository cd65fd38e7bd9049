"""Correlated Gaussian pairs: the toy problem whose Wyner common information is known.

Each coordinate pair (x_i, y_i) is jointly standard normal with correlation rho, and
coordinates are independent; the Wyner common information is dim * artanh(|rho|) nats
(see `wyner_jax.evaluation.gaussian`).
"""

from __future__ import annotations

import numpy as np

from wyner_jax.data.base import PairedArrays, PairedDataset, feature_std


def _sample(n: int, dim: int, rho: float, rng: np.random.Generator) -> PairedArrays:
    x = rng.standard_normal((n, dim))
    # y = rho x + sqrt(1 - rho^2) e gives unit variance and corr(x, y) = rho exactly in law.
    y = rho * x + np.sqrt(1.0 - rho**2) * rng.standard_normal((n, dim))
    no_label = np.full((n,), -1, np.int32)
    return PairedArrays(
        x=x.astype(np.float32), y=y.astype(np.float32), label_x=no_label, label_y=no_label
    )


def load_gaussian(
    dim: int = 1, rho: float = 0.7, n_train: int = 20000, n_test: int = 5000, seed: int = 0
) -> PairedDataset:
    """Jointly Gaussian pairs (x, y) in R^dim with per-coordinate correlation `rho`.

    Train and test are drawn from independent streams of `seed`. Unlabelled: labels are
    -1, num_classes and label_rule are None, and there are no evaluation domains.
    """
    if not -1.0 < rho < 1.0:
        raise ValueError(
            f"data.rho is the correlation of x and y and must lie strictly between -1 and 1 "
            f"(at ±1, y is a copy of ±x and the common information artanh|rho| is infinite), got "
            f"{rho}; set e.g. --config.data.rho=0.7."
        )
    if dim < 1 or n_train < 1 or n_test < 1:
        raise ValueError(
            f"dim, n_train and n_test must be positive, got {dim}, {n_train}, {n_test}."
        )
    train = _sample(n_train, dim, rho, np.random.default_rng([seed, 0]))
    test = _sample(n_test, dim, rho, np.random.default_rng([seed, 1]))
    return PairedDataset(
        name="gaussian",
        train=train,
        test=test,
        num_classes=None,
        label_rule=None,
        x_std=feature_std(train.x),
        y_std=feature_std(train.y),
        domains={},
    )
