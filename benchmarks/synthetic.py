"""Random stand-ins for a config's data (`bench_step.py --data=shapes`): arrays of the x/y
shapes the config's loader would produce, built without reading any file. A training step's
cost depends on these shapes, not on the values."""

from __future__ import annotations

SHAPES_LABEL = "shapes (random arrays of the config's x/y shapes, not the dataset)"

# Captions (CUB): the vocabulary size the reference's networks hard-code (wyner-model.md §5.3);
# the real one comes from the training captions (words seen more than min_count times).
CAPTION_VOCAB_SIZE = 1590


def config_shapes(data_config) -> tuple[tuple[int, ...], tuple[int, ...], int | None]:
    """(x_shape, y_shape, num_classes) of a data config, without loading the data."""
    name = data_config.name
    if name == "digits_add1":
        s = int(data_config.image_size)
        shape = (s * s,) if data_config.flatten else (s, s, 1)
        return shape, shape, 10
    if name == "gaussian":
        return (int(data_config.dim),), (int(data_config.dim),), None
    if name == "sketchy":
        from wyner_jax.data.sketchy import FEATURE_DIM

        return (FEATURE_DIM,), (FEATURE_DIM,), 125
    if name in ("mnist_add1", "mnist_svhn"):
        from wyner_jax.data.mnist import IMAGE_SIZE, NUM_CLASSES

        x_shape = (IMAGE_SIZE, IMAGE_SIZE, 1)  # MNIST, resized to 32 px
        y_shape = x_shape if name == "mnist_add1" else (IMAGE_SIZE, IMAGE_SIZE, 3)  # SVHN
        return x_shape, y_shape, NUM_CLASSES
    if name == "cub":  # 2048-d image features, captions of max_length token ids
        from wyner_jax.data.cub import FEATURE_DIM

        return (FEATURE_DIM,), (int(data_config.max_length),), None
    if name in ("maps", "facades", "mnist_cdcb", "cars"):  # RGB image pairs, unlabelled
        s = int(data_config.image_size)
        return (s, s, 3), (s, s, 3), None
    raise ValueError(
        f"--data=shapes does not know the x/y shapes of dataset {name!r}; add it to "
        "benchmarks/synthetic.py:config_shapes, or use --data=real."
    )


def shapes_dataset(data_config, batch_size: int, seed: int = 0):
    """A `PairedDataset` of uniform [-1, 1] arrays with the config's x/y shapes and one
    batch's rows; unit per-feature std (the instance-noise scale)."""
    import numpy as np

    from wyner_jax.data import PairedArrays, PairedDataset
    from wyner_jax.data import captions as cap

    x_shape, y_shape, num_classes = config_shapes(data_config)
    rng = np.random.default_rng(seed)
    captions = data_config.name == "cub"

    def split(n):
        labels = rng.integers(0, num_classes, n) if num_classes else np.full(n, -1)
        labels = labels.astype(np.int32)
        if captions:  # token ids of ordinary words, after <exc>, <pad>, <eos>
            first = len(cap.SPECIAL_TOKENS)
            y = rng.integers(first, CAPTION_VOCAB_SIZE, (n, *y_shape)).astype(np.int32)
        else:
            y = rng.uniform(-1, 1, (n, *y_shape)).astype(np.float32)
        return PairedArrays(
            x=rng.uniform(-1, 1, (n, *x_shape)).astype(np.float32),
            y=y,
            label_x=labels,
            label_y=labels,
        )

    common = dict(
        name=f"{data_config.name}[shapes]",
        train=split(batch_size),
        test=split(batch_size),
        num_classes=num_classes,
        label_rule=None,
        x_std=np.ones(x_shape, np.float32),
    )
    if captions:
        from wyner_jax.data.cub import CaptionDataset

        # No instance noise on token ids (the discriminator perturbs their embeddings).
        words = range(len(cap.SPECIAL_TOKENS), CAPTION_VOCAB_SIZE)
        vocab = cap.SPECIAL_TOKENS + tuple(f"w{i}" for i in words)
        return CaptionDataset(
            **common,
            y_std=np.zeros((), np.float32),
            vocab=vocab,
            word_counts=np.ones(CAPTION_VOCAB_SIZE, np.int64),
        )
    return PairedDataset(**common, y_std=np.ones(y_shape, np.float32))
