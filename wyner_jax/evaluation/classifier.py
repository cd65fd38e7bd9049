"""Evaluation classifiers that label generated images (paper §6.2 sample classification).

The reference uses pretrained MMVAE MNIST/SVHN classifiers; here a small CNN is trained on
the dataset's own unpaired `Domain` images, so any image size >= 8 works and no weights
need to be downloaded. The classifier is only a measuring instrument: it must be accurate
on real data (>= 0.95 on the digits) so that errors on generated data reflect the model.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import flax.linen as nn
import jax
import numpy as np
import optax

from wyner_jax.data.base import Domain


class SmallCNN(nn.Module):
    """conv3x3 -> ReLU -> (pool to <= 8 px) -> conv3x3 -> ReLU -> max-pool -> dense -> dense."""

    num_classes: int
    features: tuple[int, int] = (16, 32)
    hidden: int = 64

    @nn.compact
    def __call__(self, x):
        x = nn.relu(nn.Conv(self.features[0], (3, 3))(x))
        # Large images are pooled to at most 8 px first so the dense layer stays small
        # whatever the input size (8 px digits: no pooling here; 32 px: two poolings).
        while x.shape[1] > 8 or x.shape[2] > 8:
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(self.features[1], (3, 3))(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden)(x))
        return nn.Dense(self.num_classes)(x)


@dataclasses.dataclass(frozen=True)
class ClassifierResult:
    """A trained evaluation classifier.

    Attributes:
      apply: images (HWC batch, or flat vectors if trained with `image_shape`) -> logits
        [N, num_classes] as a NumPy array; jitted, run in fixed-size chunks.
      test_accuracy: accuracy on the domain's test images.
    """

    apply: Callable[[np.ndarray], np.ndarray]
    test_accuracy: float


def _as_images(a: np.ndarray, image_shape: Sequence[int] | None) -> np.ndarray:
    a = np.asarray(a, np.float32)
    if image_shape is not None:
        shape = tuple(image_shape)
        if len(shape) == 2:  # grayscale given as (H, W): add the channel axis
            shape = shape + (1,)
        return a.reshape((len(a),) + shape)
    if a.ndim != 4:
        raise ValueError(
            f"Expected HWC images [N, H, W, C], got shape {a.shape}; for flattened vectors "
            "pass image_shape=(H, W[, C])."
        )
    return a


# Module-level jitted functions keyed on the (hashable) model and learning rate, so repeated
# classifier trainings with the same shapes compile once per process.
@functools.partial(jax.jit, static_argnames=("learning_rate",))
def _adam_init(params, learning_rate: float):
    return optax.adam(learning_rate).init(params)


@functools.partial(jax.jit, static_argnames=("model", "learning_rate"))
def _train_step(params, opt_state, xb, yb, model: nn.Module, learning_rate: float):
    def loss_fn(p):
        logits = model.apply(p, xb)
        return optax.softmax_cross_entropy_with_integer_labels(logits, yb).mean()

    tx = optax.adam(learning_rate)
    updates, opt_state = tx.update(jax.grad(loss_fn)(params), opt_state, params)
    return optax.apply_updates(params, updates), opt_state


@functools.partial(jax.jit, static_argnames=("model",))
def _logits(params, images, model: nn.Module):
    return model.apply(params, images)


def _init_params(model: nn.Module, sample: np.ndarray, seed: int):
    """LeCun-normal kernels and zero biases drawn in NumPy from `seed`.

    Only the parameter shapes come from Flax (`eval_shape`, no compilation): compiling
    `model.init` costs several seconds of XLA time on a busy CPU, far more than training.
    """
    shapes = jax.eval_shape(model.init, jax.random.key(0), sample)
    rng = np.random.default_rng([seed, 1])

    def leaf(path, s):
        if getattr(path[-1], "key", None) == "kernel":
            fan_in = int(np.prod(s.shape[:-1]))
            return rng.normal(0.0, 1.0 / np.sqrt(fan_in), s.shape).astype(np.float32)
        return np.zeros(s.shape, np.float32)

    return jax.tree_util.tree_map_with_path(leaf, shapes)


def train_image_classifier(
    domain: Domain,
    num_classes: int,
    seed: int = 0,
    steps: int = 400,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    image_shape: Sequence[int] | None = None,
    eval_chunk: int = 512,
) -> ClassifierResult:
    """Train the evaluation classifier of one domain (paper §6.2: labels generated samples).

    A SmallCNN is trained with Adam on `domain.train_images` for `steps` minibatch steps
    and evaluated on `domain.test_images`. Deterministic given `seed`.

    Args:
      domain: labelled images of the domain (HWC, or flat vectors with `image_shape`).
      num_classes: number of classes.
      seed: seeds both the initialisation and the minibatch order.
      steps, batch_size, learning_rate: optimisation settings.
      image_shape: (H, W) or (H, W, C) to reshape flattened vectors into images.
      eval_chunk: batch size of `apply`; inputs are padded to a multiple of it so the
        jitted function compiles once.
    """
    train_x = _as_images(domain.train_images, image_shape)
    train_y = np.asarray(domain.train_labels, np.int32)
    if min(train_x.shape[1:3]) < 8:
        raise ValueError(
            f"Images must be at least 8x8, got {train_x.shape[1:3]}; upsample them first."
        )
    if train_y.min() < 0 or train_y.max() >= num_classes:
        raise ValueError(
            f"Labels must lie in [0, {num_classes}), got [{train_y.min()}, {train_y.max()}]."
        )
    batch_size = min(batch_size, len(train_x))

    model = SmallCNN(num_classes)
    params = _init_params(model, train_x[:1], seed)
    opt_state = _adam_init(params, learning_rate=learning_rate)
    # Epoch-wise shuffles drawn up front in NumPy: the whole schedule is a pure function of seed.
    rng = np.random.default_rng(seed)
    per_epoch = len(train_x) // batch_size
    n_epochs = -(-steps // per_epoch)
    order = np.concatenate(
        [rng.permutation(len(train_x))[: per_epoch * batch_size] for _ in range(n_epochs)]
    )
    batch_idx = order[: steps * batch_size].reshape(steps, batch_size)

    # A Python loop over a jitted step, not one `lax.scan`: XLA:CPU runs convolutions
    # inside a while loop roughly 30x slower than at top level.
    for idx in batch_idx:
        params, opt_state = _train_step(
            params, opt_state, train_x[idx], train_y[idx], model=model, learning_rate=learning_rate
        )

    def apply(images: np.ndarray) -> np.ndarray:
        x = _as_images(images, image_shape)
        n = len(x)
        pad = (-n) % eval_chunk
        if pad:  # pad with copies of the first row so every call reuses one compiled shape
            x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])
        out = [
            np.asarray(_logits(params, x[i : i + eval_chunk], model=model))
            for i in range(0, len(x), eval_chunk)
        ]
        return np.concatenate(out)[:n] if out else np.zeros((0, num_classes), np.float32)

    test_pred = apply(domain.test_images).argmax(-1)
    accuracy = float(np.mean(test_pred == np.asarray(domain.test_labels)))
    return ClassifierResult(apply=apply, test_accuracy=accuracy)
