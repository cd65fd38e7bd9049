"""Linear probe on representations (paper §6.3 latent classification, `_classify_from_representation`).

The reference trains `Linear(dz -> 10)` with Adam for 10 epochs and feeds *softmax
probabilities* into CrossEntropyLoss (a double softmax). Here the probe gets proper logits
and is solved to convergence, so the number measures linear separability of the
representation rather than the optimiser budget.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax


def _standardise(train: np.ndarray, test: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    train = np.asarray(train, np.float64).reshape(len(train), -1)
    test = np.asarray(test, np.float64).reshape(len(test), -1)
    mean, std = train.mean(0), train.std(0)
    # A constant feature carries no information; dividing by 1 keeps it at 0 instead of NaN.
    std = np.where(std < 1e-8, 1.0, std)
    return ((train - mean) / std).astype(np.float32), ((test - mean) / std).astype(np.float32)


def _check_labels(labels: np.ndarray, num_classes: int, what: str) -> np.ndarray:
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise ValueError(f"{what} must be a 1-D array of class ids, got shape {labels.shape}.")
    if len(labels) and (labels.min() < 0 or labels.max() >= num_classes):
        raise ValueError(
            f"{what} must lie in [0, {num_classes}), got [{labels.min()}, {labels.max()}]; "
            "drop unlabelled (-1) rows or pass the right num_classes."
        )
    return labels.astype(np.int32)


@functools.partial(jax.jit, static_argnames=("num_classes", "max_iter"))
def _fit(x, y, l2, tol, num_classes: int, max_iter: int):
    def objective(params):
        logits = x @ params["w"] + params["b"]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce + 0.5 * l2 * jnp.sum(params["w"] ** 2)

    # Backtracking (Armijo) line search: converges as well as the default zoom search on
    # this smooth convex problem and compiles about twice as fast.
    opt = optax.lbfgs(
        linesearch=optax.scale_by_backtracking_linesearch(
            max_backtracking_steps=20, store_grad=True
        )
    )
    value_and_grad = optax.value_and_grad_from_state(objective)

    def body(carry):
        params, state = carry
        value, grad = value_and_grad(params, state=state)
        updates, state = opt.update(grad, state, params, value=value, grad=grad, value_fn=objective)
        return optax.apply_updates(params, updates), state

    def not_done(carry):
        _, state = carry
        count = optax.tree.get(state, "count")
        grad_norm = optax.tree.norm(optax.tree.get(state, "grad"))
        return (count == 0) | ((count < max_iter) & (grad_norm >= tol))

    params = {"w": jnp.zeros((x.shape[1], num_classes)), "b": jnp.zeros((num_classes,))}
    params, state = jax.lax.while_loop(not_done, body, (params, opt.init(params)))
    return params, optax.tree.get(state, "count")


def fit_linear_probe(
    features: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    l2: float = 1e-4,
    max_iter: int = 500,
    tol: float = 1e-4,
):
    """Fit W, b minimising mean softmax cross-entropy(x W + b, label) + l2/2 ||W||² by L-BFGS.

    Full batch, from zero: the objective is strictly convex for l2 > 0, so the solution is
    unique and needs no seed. Stops when the gradient norm drops below `tol` or after
    `max_iter` iterations. Returns ({'w': [D, C], 'b': [C]}, number of iterations).
    """
    x = jnp.asarray(features, jnp.float32)
    y = jnp.asarray(labels, jnp.int32)
    params, count = _fit(
        x, y, jnp.float32(l2), jnp.float32(tol), num_classes=num_classes, max_iter=max_iter
    )
    return params, int(count)


def linear_probe_accuracy(
    train_features: np.ndarray,
    train_labels: np.ndarray,
    test_features: np.ndarray,
    test_labels: np.ndarray,
    num_classes: int,
    seed: int = 0,
    l2: float = 1e-4,
    max_iter: int = 500,
) -> float:
    """Test accuracy of a linear softmax probe on representations (paper §6.3, xy2z/x2z/y2z).

    Features are flattened and standardised with the train mean/std; the probe is fitted to
    convergence by `fit_linear_probe` (logits into softmax cross-entropy, fixing the
    reference's double softmax). `seed` is accepted for API symmetry with the other
    evaluators; the convex, zero-initialised fit does not depend on it. Returns accuracy
    in [0, 1] (the paper reports the error 1 - accuracy).
    """
    del seed  # unique optimum: nothing random to seed
    train_labels = _check_labels(train_labels, num_classes, "train_labels")
    test_labels = _check_labels(test_labels, num_classes, "test_labels")
    if len(train_features) != len(train_labels) or len(test_features) != len(test_labels):
        raise ValueError(
            f"features and labels differ in length: train {len(train_features)} vs "
            f"{len(train_labels)}, test {len(test_features)} vs {len(test_labels)}."
        )
    xtr, xte = _standardise(train_features, test_features)
    params, _ = fit_linear_probe(xtr, train_labels, num_classes, l2=l2, max_iter=max_iter)
    pred = np.asarray(jnp.argmax(jnp.asarray(xte) @ params["w"] + params["b"], axis=-1))
    return float(np.mean(pred == test_labels))
