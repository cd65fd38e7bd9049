"""MNIST-Add1 / MNIST–SVHN: resize, add-1 pairing, TFDS reading, caches, the conv32 networks,
the disk-cached evaluation classifiers and the Fréchet wiring of the runner.

TFDS data: `tfds.testing.mock_data` cannot stand in here without TensorFlow (its data sources
report the dataset unprepared, have no split sizes, their `__getitems__` raises a TypeError in
tfds 4.9.10, and `SkipDecoding` re-encodes images with TensorFlow). So the tests write a real
prepared data_dir in the catalog's format with TFDS's own writer (scripts/make_mnist_fixture.py,
PNG bytes from Pillow) and read it through the catalog builders, as the loaders do with the
real data.
"""

import os
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from configs import mnist_svhn
from tests.tolerances import assert_close
from wyner_jax import data
from wyner_jax.data import mnist
from wyner_jax.data.base import Domain
from wyner_jax.evaluation import runner
from wyner_jax.evaluation.classifier import train_image_classifier

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "scripts"))
from make_mnist_fixture import make_fixture, make_split  # noqa: E402


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("tfds")
    arrays = make_fixture(str(out))
    return str(out), arrays


def _per_class_counts(labels):
    return np.bincount(np.asarray(labels), minlength=10)


# --------------------------------------------------------------------------- resize


def test_resize_matches_pil_and_jax():
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (6, 28, 28, 1)).astype(np.uint8)
    images[0] = make_split("mnist", "test")[0][0]  # one digit-like image
    ours = mnist.resize_bilinear(images, 32)
    ref = jax.image.resize(jnp.asarray(images, jnp.float32), (6, 32, 32, 1), method="linear")
    # float32 on 0..255: two separable passes, each rounding two interpolation weights, two
    # products and a sum, in either implementation (ours: products with 28-column matrices
    # whose other entries are 0, adding exactly): depth 2·4
    assert_close(ours, np.asarray(ref), depth=2 * 4, scale=255.0)
    # torchvision's Resize(32) on a PIL image = PIL bilinear in 8-bit fixed point.
    pil = np.stack(
        [np.asarray(Image.fromarray(im[..., 0]).resize((32, 32), Image.BILINEAR)) for im in images]
    )[..., None]
    rounded = mnist.resize_mnist(images)
    assert rounded.dtype == np.uint8 and rounded.shape == (6, 32, 32, 1)
    np.testing.assert_array_equal(rounded, pil)  # bit-exact (PIL rounds after each pass)
    # Each output pixel is a convex combination of at most two inputs, per axis.
    m = mnist.bilinear_matrix(28, 32)
    assert_close(m.sum(1), 1.0, dtype=np.float64, depth=2)  # two float64 weights per row
    assert ((m > 0).sum(1) <= 2).all()


# --------------------------------------------------------------------------- pairing


def test_add1_pairs_rule_counts_pools_and_permutations():
    rng = np.random.default_rng(3)
    counts_x = np.array([5, 9, 7, 3, 8, 6, 9, 4, 7, 5])
    counts_y = np.array([6, 4, 9, 9, 2, 7, 5, 8, 3, 9])
    lx = rng.permutation(np.repeat(np.arange(10), counts_x))
    ly = rng.permutation(np.repeat(np.arange(10), counts_y))
    max_per_class, mult = 6, 3
    ix, iy = mnist.add1_pairs(lx, ly, max_per_class, mult, np.random.default_rng(7))
    np.testing.assert_array_equal(ly[iy], (lx[ix] + 1) % 10)
    n = np.minimum(np.minimum(counts_x, np.roll(counts_y, -1)), max_per_class)
    np.testing.assert_array_equal(_per_class_counts(lx[ix]), n * mult)
    for l in range(10):
        rows = lx[ix] == l
        # The pools are the *first* n_l items of each class, each used once per repetition.
        first_x = np.flatnonzero(lx == l)[: n[l]]
        first_y = np.flatnonzero(ly == (l + 1) % 10)[: n[l]]
        np.testing.assert_array_equal(np.sort(np.unique(ix[rows])), first_x)
        np.testing.assert_array_equal(np.sort(np.unique(iy[rows])), first_y)
        assert (np.bincount(ix[rows])[first_x] == mult).all()
        assert (np.bincount(iy[rows])[first_y] == mult).all()
    again = mnist.add1_pairs(lx, ly, max_per_class, mult, np.random.default_rng(7))
    other = mnist.add1_pairs(lx, ly, max_per_class, mult, np.random.default_rng(8))
    np.testing.assert_array_equal(again[0], ix)
    np.testing.assert_array_equal(again[1], iy)
    assert not np.array_equal(other[1], iy)


def test_image_rows_behave_like_the_float_array():
    rng = np.random.default_rng(0)
    pool = rng.integers(0, 256, (7, 4, 4, 3)).astype(np.uint8)
    index = np.array([3, 0, 3, 6, 1])
    rows = mnist.ImageRows(pool, index)
    full = pool[index].astype(np.float32) / 127.5 - 1.0
    assert rows.shape == full.shape and len(rows) == 5 and rows.ndim == 4
    # v/127.5 − 1 in float32: two roundings of values in [−1, 1]
    assert_close(np.asarray(rows), full, depth=2)
    assert_close(rows[[4, 0]], full[[4, 0]], depth=2)
    assert_close(rows[2], full[2], depth=2)
    assert_close(rows[1:3, 0], full[1:3, 0], depth=2)
    # float64 std over the rows, then float32, against the float64 std of the decoded rows:
    # their two decoding roundings and the final one (scale 1: the pixel values)
    assert_close(rows.pixel_std(), full.astype(np.float64).std(0), depth=3, scale=1.0)
    assert np.asarray(rows).min() >= -1.0 and np.asarray(rows).max() <= 1.0


# --------------------------------------------------------------------------- TFDS loaders


def _expected_counts(labels_x, labels_y, max_per_class, mult):
    cx, cy = _per_class_counts(labels_x), _per_class_counts(labels_y)
    return np.minimum(np.minimum(cx, np.roll(cy, -1)), max_per_class) * mult


def test_mnist_svhn_reads_the_prepared_tfds_data(tfds_dir, tmp_path):
    out, arrays = tfds_dir
    cfg = {"name": "mnist_svhn", "tfds_dir": out, "cache_dir": str(tmp_path), "max_per_class": 30}
    cfg.update(test_max_per_class=12, multiplier=2, pair_seed=1)
    ds = data.build(cfg)
    assert ds.x_shape == (32, 32, 1) and ds.y_shape == (32, 32, 3)
    for split in (ds.train, ds.test):
        np.testing.assert_array_equal(split.label_y, (split.label_x + 1) % 10)
        for a in (split.x[:50], split.y[:50]):
            assert a.dtype == np.float32 and a.min() >= -1.0 and a.max() <= 1.0
    m_train, m_test = arrays["mnist", "train"], arrays["mnist", "test"]
    s_extra, s_test = arrays["svhn_cropped", "extra"], arrays["svhn_cropped", "test"]
    np.testing.assert_array_equal(
        _per_class_counts(ds.train.label_x), _expected_counts(m_train[1], s_extra[1], 30, 2)
    )
    np.testing.assert_array_equal(
        _per_class_counts(ds.test.label_x), _expected_counts(m_test[1], s_test[1], 12, 2)
    )
    # Records come back in source order (MNIST: from TFDS's key hash; SVHN: from its ids),
    # MNIST resized 28 -> 32.
    dom_x, dom_y = ds.domains["x"], ds.domains["y"]
    np.testing.assert_array_equal(dom_x.train_labels, m_train[1])
    # uint8 → float32 v/127.5 − 1: two roundings of values in [−1, 1]
    want = mnist.resize_mnist(m_test[0]) / 127.5 - 1.0
    assert_close(np.asarray(dom_x.test_images), want, depth=2, scale=1.0)
    s_train = arrays["svhn_cropped", "train"]
    np.testing.assert_array_equal(dom_y.train_labels, s_train[1])
    assert_close(np.asarray(dom_y.test_images), s_test[0] / 127.5 - 1.0, depth=2, scale=1.0)
    # The training y images are the first 30 per class of SVHN *extra*, in source order.
    keep = mnist.class_prefix(s_extra[1], 30)
    np.testing.assert_array_equal(ds.train.y.pool, s_extra[0][keep])
    # The pairs' x images are the MNIST images their labels say.
    i = np.arange(0, len(ds.train), 37)
    rows_x = ds.train.x.index[i]
    np.testing.assert_array_equal(m_train[1][rows_x], ds.train.label_x[i])
    batch = ds.train_batch(3, 16, seed=0)
    assert batch["x"].shape == (16, 32, 32, 1) and batch["y"].shape == (16, 32, 32, 3)


def test_mnist_add1_and_the_pair_cache(tfds_dir, tmp_path, monkeypatch):
    out, arrays = tfds_dir
    cache = str(tmp_path)
    cfg = {"name": "mnist_add1", "tfds_dir": out, "cache_dir": cache, "test_max_per_class": 9}
    ds = data.build(cfg)
    m_train, m_test = arrays["mnist", "train"], arrays["mnist", "test"]
    np.testing.assert_array_equal(ds.train.label_y, (ds.train.label_x + 1) % 10)
    np.testing.assert_array_equal(
        _per_class_counts(ds.train.label_x), _expected_counts(m_train[1], m_train[1], 10000, 1)
    )
    np.testing.assert_array_equal(
        _per_class_counts(ds.test.label_x), _expected_counts(m_test[1], m_test[1], 9, 1)
    )
    assert ds.domains["x"] is ds.domains["y"]
    pair_files = sorted(f for f in os.listdir(cache) if f.startswith("pairs-"))
    assert len(pair_files) == 2  # train and test

    # A cache hit returns identical pairs without pairing again.
    def no_pairing(*args, **kwargs):
        raise AssertionError("pairs were rebuilt instead of read from the cache")

    with monkeypatch.context() as m:
        m.setattr(mnist, "add1_pairs", no_pairing)
        again = data.build(cfg)
    np.testing.assert_array_equal(again.train.x.index, ds.train.x.index)
    np.testing.assert_array_equal(again.train.y.index, ds.train.y.index)
    np.testing.assert_array_equal(again.test.y.index, ds.test.y.index)

    # Other parameters: another cache file (and other pairs).
    other = data.build(dict(cfg, pair_seed=2))
    files = sorted(f for f in os.listdir(cache) if f.startswith("pairs-"))
    assert len(files) == 4 and set(pair_files) < set(files)
    assert not np.array_equal(other.train.y.index, ds.train.y.index)

    # A corrupt cache file is rebuilt, with a warning, to the same pairs.
    train_file = [f for f in pair_files if "-train-" in f][0]
    with open(os.path.join(cache, train_file), "wb") as f:
        f.write(b"not an npz file")
    with pytest.warns(UserWarning, match="rebuilding"):
        rebuilt = data.build(cfg)
    np.testing.assert_array_equal(rebuilt.train.y.index, ds.train.y.index)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # ...and read back cleanly the next time
        data.build(cfg)


def test_missing_dataset_says_how_to_prepare_it(tmp_path):
    empty = str(tmp_path / "empty")
    with pytest.raises(FileNotFoundError) as err:
        data.build({"name": "mnist_svhn", "tfds_dir": empty, "cache_dir": str(tmp_path / "c")})
    msg = str(err.value)
    assert "tfds build mnist svhn_cropped" in msg and "--file_format=array_record" in msg
    assert empty in msg and "tfds-prepare" in msg
    assert not os.path.exists(empty) and not os.path.exists(tmp_path / "c")  # nothing written


def test_tfrecord_preparation_is_refused_with_the_fix(tfds_dir, tmp_path):
    import shutil

    out, _ = tfds_dir
    shutil.copytree(os.path.join(out, "mnist"), tmp_path / "mnist")
    info = tmp_path / "mnist" / "3.0.1" / "dataset_info.json"
    info.write_text(info.read_text().replace('"array_record"', '"tfrecord"'))
    with pytest.raises(ValueError, match="--file_format=array_record"):
        data.build({"name": "mnist_add1", "tfds_dir": str(tmp_path)})


def test_unwritable_cache_dir_is_skipped(tfds_dir, tmp_path):
    out, _ = tfds_dir
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.warns(UserWarning, match="not writable"):
        ds = data.build({"name": "mnist_add1", "tfds_dir": out, "cache_dir": str(blocker)})
    assert len(ds.train) > 0 and ds.cache_dir == ""


# --------------------------------------------------------------------------- networks


def test_conv32_networks_are_the_reference_family(tfds_dir, tmp_path):
    """wyner-model.md §4.1, layer by layer, for x 1×32×32 and y 3×32×32 (shapes only)."""
    from wyner_jax.models.base import build_model

    out, _ = tfds_dir
    config = mnist_svhn.get_config()
    config.data.tfds_dir, config.data.cache_dir = out, str(tmp_path)
    config.data.max_per_class, config.data.test_max_per_class = 30, 12
    ds = data.build(config.data)
    model = build_model(config, ds)
    batch = {
        k: jax.ShapeDtypeStruct((64,) + v.shape[1:], v.dtype)
        for k, v in ds.train_batch(0, 64, 0).items()
    }
    state = jax.eval_shape(model.init, jax.random.PRNGKey(0), batch)
    g, d = state.gen_params, state.disc_params

    def kernels(tree):
        return [
            tuple(leaf.shape)
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
            if getattr(path[-1], "key", "") == "kernel"
        ]

    enc = lambda c: [(5, 5, c, 32), (5, 5, 32, 64), (5, 5, 64, 128), (5, 5, 128, 256)]  # noqa
    assert kernels(g["F_x"]) == enc(1)
    assert kernels(g["F_y"]) == enc(3)
    assert kernels(g["F_xy"]) == enc(4)  # channel concat [x; y]
    assert kernels(g["f_x"]) == [(1024, 16)] and kernels(g["f_xy"]) == [(1024, 16)]
    assert kernels(g["l_x"]) == [(16 + 1024, 8)] and kernels(g["l_y"]) == [(16 + 1024, 8)]
    dec = lambda c: [(24, 8192), (5, 5, 512, 256), (5, 5, 256, 128), (5, 5, 128, c)]  # noqa
    assert sorted(kernels(g["g_x"])) == sorted(dec(1))  # (the tree is sorted by name)
    assert sorted(kernels(g["g_y"])) == sorted(dec(3))
    assert g["g_x"]["ConvTranspose2x_2"]["kernel"].shape == (5, 5, 128, 1)  # the last layer
    assert kernels(d["D_F"]) == [(5, 5, 4, 64), (5, 5, 64, 128), (5, 5, 128, 256), (5, 5, 256, 512)]
    # D_F: no BN on the first layer (which keeps its bias), BN on the other three.
    assert "BatchNorm_2" in d["D_F"] and "BatchNorm_3" not in d["D_F"]
    assert "bias" in d["D_F"]["Conv2x_0"] and "bias" not in d["D_F"]["Conv2x_1"]
    assert "BatchNorm_3" in g["F_x"]  # the encoders have BN on all four
    assert kernels(d["E_j"]) == [(32, 512)] and kernels(d["E_cx2y"]) == [(24, 512)]
    assert kernels(d["E_var_ci"]) == [(16, 512)]
    # H_j's first kernel, [2048 + 512, 512] in the reference, is kept as its two blocks.
    assert d["H_j"]["kernel_h"].shape == (2048, 512) and d["H_j"]["kernel_e"].shape == (512, 512)
    assert kernels(d["H_j"]) == [(512, 1)]


# --------------------------------------------------------------------------- evaluation


def _blob_domain(channels, n_train=400, n_test=200, seed=0):
    """Labelled 16×16 images whose class is the position of a bright square."""
    rng = np.random.default_rng(seed)

    def make(n):
        labels = rng.integers(0, 4, n)
        images = rng.uniform(-1, -0.6, (n, 16, 16, channels)).astype(np.float32)
        for i, c in enumerate(labels):
            r, col = divmod(int(c), 2)
            images[i, 8 * r : 8 * r + 8, 8 * col : 8 * col + 8] = 0.8
        return images, labels.astype(np.int32)

    (tr, ltr), (te, lte) = make(n_train), make(n_test)
    return Domain(train_images=tr, train_labels=ltr, test_images=te, test_labels=lte)


def test_classifier_features_and_disk_cache(tmp_path):
    domain = _blob_domain(channels=3)
    kw = dict(steps=60, features=(8, 8), hidden=16, cache_dir=str(tmp_path), cache_key="blobs")
    first = train_image_classifier(domain, 4, **kw)
    assert first.test_accuracy > 0.95
    feats = first.features(domain.test_images[:10])
    assert feats.shape == (10, 16) and (feats >= 0).all()  # ReLU activations
    files = os.listdir(tmp_path)
    assert len(files) == 1 and files[0].startswith("classifier-blobs-")
    loaded = train_image_classifier(domain, 4, **dict(kw, steps=60))
    np.testing.assert_array_equal(loaded.apply(domain.test_images), first.apply(domain.test_images))
    assert loaded.test_accuracy == first.test_accuracy
    # Other settings: another file. A damaged file: retrained, with a warning.
    train_image_classifier(domain, 4, **dict(kw, hidden=8))
    assert len(os.listdir(tmp_path)) == 2
    with open(os.path.join(tmp_path, files[0]), "wb") as f:
        f.write(b"\x00garbage")
    with pytest.warns(UserWarning, match="retraining"):
        again = train_image_classifier(domain, 4, **kw)
    np.testing.assert_array_equal(again.apply(domain.test_images), first.apply(domain.test_images))


def test_frechet_metrics_rank_real_above_noise():
    """fd/*: generated = real images (held-out copies) scores far below noise images."""
    dom = _blob_domain(channels=1, n_train=400, n_test=400, seed=1)
    clf = train_image_classifier(dom, 4, steps=60, features=(8, 8), hidden=16)
    fresh = _blob_domain(channels=1, n_train=4, n_test=400, seed=2)
    noise = np.random.default_rng(0).uniform(-1, 1, fresh.test_images.shape).astype(np.float32)

    class Split:  # test pairs: x of class l, y of the same class ('same' rule)
        label_x = label_y = fresh.test_labels

    class Dataset:
        domains = {"x": dom, "y": dom}
        num_classes = 4

    good = {"joint": (fresh.test_images, fresh.test_images), "x2y": fresh.test_images}
    bad = {"joint": (noise, noise), "x2y": noise, "y2x": noise}
    fd_good = runner.frechet_metrics(Dataset, {"x": clf, "y": clf}, good, Split)
    fd_bad = runner.frechet_metrics(Dataset, {"x": clf, "y": clf}, bad, Split)
    assert set(fd_good) == {"fd/x", "fd/y", "fd/x2y"}
    assert set(fd_bad) == {"fd/x", "fd/y", "fd/x2y", "fd/y2x"}
    for k in fd_good:
        assert 0.0 <= fd_good[k] < 0.1 * fd_bad[k], k
    # Conditional FD is per target class: right images under shuffled class labels score worse.
    Split.label_y = np.roll(fresh.test_labels, 1)
    shuffled = runner.frechet_metrics(
        Dataset, {"x": clf, "y": clf}, {"x2y": fresh.test_images}, Split
    )
    assert shuffled["fd/x2y"] > 5 * fd_good["fd/x2y"]
