"""Evaluation classifiers that label generated images (paper §6.2 sample classification).

The reference uses pretrained MMVAE MNIST/SVHN classifiers; here a small CNN is trained on
the dataset's own unpaired `Domain` images, so any image size >= 8 and any number of
channels works (8×8 digits, 1×32×32 MNIST, 3×32×32 SVHN) and no weights need to be
downloaded. The classifier is only a measuring instrument: it must be accurate on real data
(>= 0.95 on the digits) so that errors on generated data reflect the model.

Fixed with respect to the reference (§6.2): its MNIST classifier was trained on 28×28 MNIST
and generated 32×32 images are center-cropped to [2:30] before it, although the training
images were resized, not padded; here the classifier is trained on the same 32×32 resized
images the model sees, so no crop is needed.

Its penultimate activations (the ReLU of the hidden dense layer) are the features of the
Fréchet distances (`ClassifierResult.features`, paper §6.4 with 'mnist'/'svhn' features).
With `cache_dir`, the trained parameters are stored in
`<cache_dir>/classifier-<cache_key>-<hash of every training setting>.msgpack` and reused;
the test accuracy is recomputed on load, and an unreadable file is retrained.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import warnings
from typing import Callable, Sequence

import flax.linen as nn
import jax
import numpy as np
import optax
from etils import epath
from flax import serialization

from wyner_jax import paths
from wyner_jax.data.base import Domain

# Bump when the network or the training procedure changes: old cache files are then ignored.
CACHE_FORMAT = 1


class SmallCNN(nn.Module):
    """conv3x3 -> ReLU -> (pool to <= 8 px) -> conv3x3 -> ReLU -> max-pool -> dense -> dense."""

    num_classes: int
    features: tuple[int, int] = (16, 32)
    hidden: int = 64

    @nn.compact
    def __call__(self, x, penultimate: bool = False):
        """Logits [N, num_classes], or with `penultimate` the hidden ReLU features [N, hidden]."""
        x = nn.relu(nn.Conv(self.features[0], (3, 3))(x))
        # Large images are pooled to at most 8 px first so the dense layer stays small
        # whatever the input size (8 px digits: no pooling here; 32 px: two poolings).
        while x.shape[1] > 8 or x.shape[2] > 8:
            x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = nn.relu(nn.Conv(self.features[1], (3, 3))(x))
        x = nn.max_pool(x, (2, 2), strides=(2, 2))
        x = x.reshape(x.shape[0], -1)
        x = nn.relu(nn.Dense(self.hidden)(x))
        if penultimate:
            return x
        return nn.Dense(self.num_classes)(x)


@dataclasses.dataclass(frozen=True)
class ClassifierResult:
    """A trained evaluation classifier.

    Attributes:
      apply: images (HWC batch, or flat vectors if trained with `image_shape`) -> logits
        [N, num_classes] as a NumPy array; jitted, run in fixed-size chunks.
      test_accuracy: accuracy on the domain's test images.
      features: images -> penultimate features [N, hidden] (float32 NumPy), for Fréchet
        distances; None for classifiers built without it.
    """

    apply: Callable[[np.ndarray], np.ndarray]
    test_accuracy: float
    features: Callable[[np.ndarray], np.ndarray] | None = None


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


@functools.partial(jax.jit, static_argnames=("model", "penultimate"))
def _logits(params, images, model: nn.Module, penultimate: bool = False):
    return model.apply(params, images, penultimate=penultimate)


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


def _cache_file(cache_dir: str, cache_key: str, meta: dict) -> epath.Path:
    digest = hashlib.sha1(json.dumps(meta, sort_keys=True).encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in cache_key)
    return paths.path(cache_dir) / f"classifier-{safe}-{digest}.msgpack"


def _load_params(path: epath.Path, template, meta: dict):
    """The parameters stored in `path` for `meta`, or None (with a warning if unreadable)."""
    if not path.exists():
        return None
    try:
        stored = serialization.msgpack_restore(path.read_bytes())
        if json.loads(stored["meta"]) != meta:
            raise ValueError("written for other settings")
        return serialization.from_state_dict(template, stored["params"])
    except Exception as e:  # noqa: BLE001 - any unreadable cache file is retrained
        warnings.warn(f"Ignoring classifier cache {path} ({type(e).__name__}: {e}); retraining.")
        return None


def _save_params(path: epath.Path, params, meta: dict, accuracy: float) -> None:
    blob = serialization.msgpack_serialize(
        {
            "meta": json.dumps(meta, sort_keys=True),
            "params": serialization.to_state_dict(jax.device_get(params)),
            "test_accuracy": accuracy,
        }
    )
    try:
        paths.write_atomic(path, blob)
    except OSError as e:
        warnings.warn(f"Could not write the classifier cache {path} ({e}); continuing.")


def train_image_classifier(
    domain: Domain,
    num_classes: int,
    seed: int = 0,
    steps: int = 400,
    batch_size: int = 64,
    learning_rate: float = 2e-3,
    image_shape: Sequence[int] | None = None,
    eval_chunk: int = 512,
    features: tuple[int, int] = (16, 32),
    hidden: int = 64,
    cache_dir: str | None = None,
    cache_key: str = "",
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
      features, hidden: SmallCNN conv widths and hidden (penultimate) width.
      cache_dir: if given, reuse / store the trained parameters there (module docstring).
      cache_key: names the domain's images in the cache file name (e.g. 'mnist-3.0.1-32px');
        needed with `cache_dir`, since the file must not be reused for other images.
    """
    sample = _as_images(domain.train_images[:1], image_shape)
    if min(sample.shape[1:3]) < 8:
        raise ValueError(
            f"Images must be at least 8x8, got {sample.shape[1:3]}; upsample them first."
        )
    train_y = np.asarray(domain.train_labels, np.int32)
    if train_y.min() < 0 or train_y.max() >= num_classes:
        raise ValueError(
            f"Labels must lie in [0, {num_classes}), got [{train_y.min()}, {train_y.max()}]."
        )
    batch_size = min(batch_size, len(train_y))
    model = SmallCNN(num_classes, features=tuple(int(f) for f in features), hidden=int(hidden))
    params = _init_params(model, sample, seed)

    path, meta = None, None
    if cache_dir:
        if not cache_key:
            raise ValueError("train_image_classifier: cache_dir needs a cache_key naming the data.")
        meta = dict(
            key=cache_key,
            format=CACHE_FORMAT,
            num_classes=int(num_classes),
            seed=int(seed),
            steps=int(steps),
            batch_size=int(batch_size),
            learning_rate=float(learning_rate),
            features=list(model.features),
            hidden=model.hidden,
            image_shape=list(sample.shape[1:]),
            num_train=len(train_y),
        )
        path = _cache_file(cache_dir, cache_key, meta)
    cached = _load_params(path, params, meta) if path else None
    if cached is not None:
        params = cached
    else:
        params = _fit(
            model, params, domain, train_y, image_shape, seed, steps, batch_size, learning_rate
        )

    def run(images: np.ndarray, penultimate: bool) -> np.ndarray:
        x = _as_images(images, image_shape)
        n = len(x)
        pad = (-n) % eval_chunk
        if pad:  # pad with copies of the first row so every call reuses one compiled shape
            x = np.concatenate([x, np.repeat(x[:1], pad, axis=0)])
        out = [
            np.asarray(_logits(params, x[i : i + eval_chunk], model=model, penultimate=penultimate))
            for i in range(0, len(x), eval_chunk)
        ]
        width = model.hidden if penultimate else num_classes
        return np.concatenate(out)[:n] if out else np.zeros((0, width), np.float32)

    def apply(images: np.ndarray) -> np.ndarray:
        return run(images, False)

    def penultimate_features(images: np.ndarray) -> np.ndarray:
        return run(images, True)

    test_pred = apply(domain.test_images).argmax(-1)
    accuracy = float(np.mean(test_pred == np.asarray(domain.test_labels)))
    if path and cached is None:
        _save_params(path, params, meta, accuracy)
    return ClassifierResult(apply=apply, test_accuracy=accuracy, features=penultimate_features)


def _fit(model, params, domain, train_y, image_shape, seed, steps, batch_size, learning_rate):
    """`steps` Adam steps on minibatches of the domain's training images."""
    train_x = _as_images(domain.train_images, image_shape)
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
    return params
