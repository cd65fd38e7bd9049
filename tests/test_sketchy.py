"""Sketchy Extended: loader, split checks, malformed inputs, class-matched pairing, the
retrieval additions (vs brute force), the fixture's learnability (a ridge map) and short
end-to-end runs on the synthetic fixture that must retrieve the unseen classes."""

import os
import sys

import jax
import numpy as np
import pytest
from PIL import Image

from configs import iiae_sketchy, sketchy
from wyner_jax import data, parallel, trainer
from wyner_jax.data.sketchy import (
    SPLIT1_TEST_CLASSES,
    SPLIT2_TEST_CLASSES,
    load_sketchy,
    tfds_builder_class,
)
from wyner_jax.evaluation.retrieval import (
    average_precision,
    average_precision_at_k,
    per_class_average_precision,
    retrieval_metrics,
    retrieval_per_query,
)

from tests.tolerances import approx, assert_close, sampling_tolerance, tolerance

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from make_sketchy_fixture import CLASS_DIM, LEARNABLE_TRAIN_CLASSES, make_fixture  # noqa: E402

# The shared fixture: more training classes (32) than the fixture's class space has
# dimensions (16), so a map learnt on the training classes transfers to the unseen ones.
NUM_TRAIN_CLASSES = LEARNABLE_TRAIN_CLASSES
PER_CLASS = 6


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("sketchy")
    make_fixture(str(out), split=1, num_train_classes=NUM_TRAIN_CLASSES, per_class=PER_CLASS)
    return str(out)


def fresh(tmp_path, split=1, **kw):
    folder = make_fixture(str(tmp_path), split=split, **kw)
    return str(tmp_path), folder


# ----------------------------------------------------------------------------- loader


def test_loader_reads_the_released_layout(fixture_dir):
    ds = data.build({"name": "sketchy", "dir": fixture_dir, "split": 1})
    assert ds.x_shape == (512,) and ds.y_shape == (512,)
    names = ds.class_names
    test_names = {names[c] for c in ds.test_classes}
    assert test_names == set(SPLIT1_TEST_CLASSES)
    assert NUM_TRAIN_CLASSES > CLASS_DIM
    assert len(ds.train_classes) == NUM_TRAIN_CLASSES and ds.num_classes == NUM_TRAIN_CLASSES + 25
    assert len(ds.train_x_pool) == len(ds.train_y_pool) == NUM_TRAIN_CLASSES * PER_CLASS
    assert ds.retrieval_x.shape == ds.retrieval_y.shape == (25 * PER_CLASS, 512)
    assert set(ds.retrieval_label_x) == set(ds.test_classes)
    # class-matched fixed pairings in train / test
    np.testing.assert_array_equal(ds.train.label_x, ds.train.label_y)
    np.testing.assert_array_equal(ds.test.label_x, ds.test.label_y)
    # float64 references: the only rounding allowed is the cast of the std to float32
    assert_close(ds.x_std, ds.train_x_pool.astype(np.float64).std(0))
    assert_close(ds.y_std, ds.train_y_pool.astype(np.float64).std(0))


def test_photo_names_and_split2(tmp_path):
    make_fixture(str(tmp_path), split=2, photo_name="photo", num_train_classes=4, per_class=2)
    ds = load_sketchy(str(tmp_path), split=2)
    assert {ds.class_names[c] for c in ds.test_classes} == set(SPLIT2_TEST_CLASSES)


def test_duplicated_test_items_are_dropped_with_a_warning(tmp_path):
    root, folder = fresh(tmp_path, per_class=2)
    for what in ("features", "paths"):
        f = os.path.join(folder, f"test_sketch_{what}.npy")
        a = np.load(f)
        np.save(f, np.concatenate([a, a[:3]]))
    with pytest.warns(UserWarning, match="dropped 3 duplicated"):
        ds = load_sketchy(root, split=1)
    assert len(ds.retrieval_x) == 25 * 2


def test_object_array_paths_are_read(tmp_path):
    root, folder = fresh(tmp_path, per_class=2)
    f = os.path.join(folder, "train_image_paths.npy")
    np.save(f, np.load(f).astype(object), allow_pickle=True)
    assert len(load_sketchy(root, split=1).train_y_pool) == 16


# ----------------------------------------------------------------------------- errors


def test_missing_directory_names_files_source_and_flag(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_sketchy(str(tmp_path / "nowhere"), split=1)
    msg = str(e.value)
    for part in (
        "SketchyVGG/split1/train_sketch_features.npy",
        "test_image_paths.npy",
        "10.5281/zenodo.3890097",
        "--config.data.dir",
    ):
        assert part in msg, part


def test_missing_one_file(tmp_path):
    root, folder = fresh(tmp_path, per_class=2)
    os.remove(os.path.join(folder, "test_image_features.npy"))
    with pytest.raises(FileNotFoundError, match="test_image_features.npy"):
        load_sketchy(root, split=1)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda f, p: (f[:-1], p), "same items"),
        (lambda f, p: (f[:, :100], p), r"\[N, 512\]"),
        (lambda f, p: (np.where(np.arange(len(f))[:, None] == 2, np.nan, f), p), "NaN or Inf"),
        (lambda f, p: (f, np.array([s.split("/")[-1] for s in p])), "class folder"),
    ],
)
def test_malformed_files(tmp_path, edit, match):
    root, folder = fresh(tmp_path, per_class=2)
    ff, pf = (os.path.join(folder, f"train_sketch_{w}.npy") for w in ("features", "paths"))
    f, p = edit(np.load(ff), np.load(pf))
    np.save(ff, f.astype(np.float32))
    np.save(pf, p)
    with pytest.raises(ValueError, match=match):
        load_sketchy(root, split=1)


def test_split1_files_in_split2_folder_are_refused(tmp_path):
    root, folder = fresh(tmp_path, per_class=2)
    os.rename(folder, os.path.join(root, "SketchyVGG", "split2"))
    with pytest.raises(ValueError, match="expected the 21 unseen classes"):
        load_sketchy(root, split=2)


def test_test_class_in_train_is_refused(tmp_path):
    root, folder = fresh(tmp_path, per_class=2)
    pf = os.path.join(folder, "train_sketch_paths.npy")
    p = np.load(pf)
    p[0] = "bear/x.png"
    np.save(pf, p)
    with pytest.raises(ValueError, match="not be zero-shot"):
        load_sketchy(root, split=1)


# ----------------------------------------------------------------------------- pairing


def test_pairing_is_class_matched_deterministic_and_cycles_classes(fixture_dir):
    ds = load_sketchy(fixture_dir, split=1)
    C = len(ds.train_classes)
    b = ds.train_batch(5, 4, seed=3)
    np.testing.assert_array_equal(b["label_x"], b["label_y"])
    # a fresh object (as after a restart) gives the same batch: resumable
    again = load_sketchy(fixture_dir, split=1).train_batch(5, 4, seed=3)
    for k in b:
        np.testing.assert_array_equal(b[k], again[k])
    assert not np.array_equal(ds.train_batch(5, 4, seed=4)["x"], b["x"])
    # B = C: every class exactly once per step
    for step in range(3):
        labels = ds.train_batch(step, C, seed=0)["label_x"]
        assert sorted(labels) == sorted(ds.train_classes)
    # B < C: consecutive steps walk through a shuffled cycle of the classes
    assert C % 4 == 0
    stream = np.concatenate([ds.train_batch(s, 4, seed=0)["label_x"] for s in range(2 * C // 4)])
    assert sorted(stream[:C]) == sorted(ds.train_classes)
    assert sorted(stream[C:]) == sorted(ds.train_classes)
    # rows really are of the labelled class
    i = np.flatnonzero((ds.train_x_pool == b["x"][0]).all(1))[0]
    assert ds.train_x_label[i] == b["label_x"][0]


def test_pairing_process_slices_make_the_global_batch(fixture_dir):
    ds = load_sketchy(fixture_dir, split=1)
    full = ds.train_batch(2, 8, seed=1)
    parts = [ds.train_batch(2, 8, seed=1, process_index=i, process_count=2) for i in range(2)]
    for k in full:
        np.testing.assert_array_equal(full[k], np.concatenate([p[k] for p in parts]))
    with pytest.raises(ValueError, match="not divisible"):
        ds.train_batch(0, 7, seed=1, process_count=2)


# ----------------------------------------------------------------------------- retrieval


def brute_force_map_at_k(queries, gallery, ql, gl, k):
    out = []
    for q, label in zip(queries, ql):
        d = [1.0 - q @ g / (np.linalg.norm(q) * np.linalg.norm(g)) for g in gallery]
        order = sorted(range(len(gallery)), key=lambda j: (d[j], j))
        hits, total = 0, 0.0
        for rank, j in enumerate(order[:k], start=1):
            if gl[j] == label:
                hits += 1
                total += hits / rank
        out.append(total / k)
    return np.array(out)


def test_map_at_k_and_per_class_ap_match_brute_force():
    rng = np.random.default_rng(0)
    # integer vectors with duplicates: exact ties, broken by gallery index
    gallery = rng.integers(-2, 3, size=(40, 3)).astype(np.float32)
    gallery[rng.random(40) < 0.01] += 0.0
    gallery[gallery.sum(1) == 0] = 1.0
    queries = rng.integers(-2, 3, size=(17, 3)).astype(np.float32)
    queries[np.abs(queries).sum(1) == 0] = 1.0
    ql, gl = rng.integers(0, 4, 17), rng.integers(0, 4, 40)
    for k in (1, 7, 40):
        want = brute_force_map_at_k(queries, gallery, ql, gl, k)
        per_q = retrieval_per_query(queries, gallery, ql, gl, ks=(k,), map_ks=(k,), chunk_size=5)
        # float32 sums of k terms in [0, 1] against float64
        assert_close(per_q[f"mAP@{k}"], want, depth=k, scale=1.0)
        m = retrieval_metrics(queries, gallery, ql, gl, ks=(k,), map_ks=(k,))
        assert m[f"mAP@{k}"] == approx(want.mean(), depth=k, scale=1.0)
    # per-class AP = mean plain AP of each class's queries
    ap = per_q["mAP@all"]
    classes, per_class = per_class_average_precision(ap, ql)
    for c, v in zip(classes, per_class):
        assert v == approx(np.nanmean(ap[ql == c]), depth=len(ql), scale=1.0)
    assert np.nanmean(ap) == approx(m["mAP@all"], depth=len(ql), scale=1.0)
    rel = np.array([[1, 0, 1, 1]], bool)
    assert float(average_precision_at_k(rel, 4)[0]) == approx((1 + 2 / 3 + 3 / 4) / 4, depth=4)


# ----------------------------------------------------------------------------- learnability


def chance_map(query_labels, gallery_labels) -> float:
    """Expected mAP@all (plain AP) of a uniformly random ranking, from the class counts.

    For a query with R relevant items among N, precision at rank k counts the relevant
    items in the top k; over random permutations E[rel_k] = R/N and E[rel_j rel_k] =
    R(R-1)/(N(N-1)) for j != k, so E[AP] = (H_N + (R-1)/(N-1) · (N - H_N)) / N with H_N the
    N-th harmonic number (R/N + O(log N / N)). Averaged over the queries with R > 0, as
    mAP@all is.
    """
    ql, gl = np.asarray(query_labels), np.asarray(gallery_labels)
    n = len(gl)
    h = np.sum(1.0 / np.arange(1, n + 1))
    r = (gl[None, :] == ql[:, None]).sum(1).astype(np.float64)
    ap = (h + (r - 1) / (n - 1) * (n - h)) / n
    return float(ap[r > 0].mean())


def test_chance_map_is_the_mean_ap_of_random_rankings():
    # Unequal classes (1 to 9 gallery items) and a query class absent from the gallery.
    gl = np.repeat(np.arange(9), np.arange(1, 10))
    ql = np.concatenate([np.arange(10), np.arange(9)])
    rng = np.random.default_rng(0)
    reps = 400
    order = np.argsort(rng.random((reps * len(ql), len(gl))), axis=1)
    rel = gl[order] == np.tile(ql, reps)[:, None]
    ap = np.asarray(average_precision(rel))
    ap = ap[~np.isnan(ap)]
    assert len(ap) == reps * 18
    assert chance_map(ql, gl) == pytest.approx(ap.mean(), abs=sampling_tolerance(ap.std(), len(ap)))
    # one class per item: AP = 1/rank, so chance = H_N / N; every item relevant: 1
    assert chance_map(np.arange(5), np.arange(5)) == approx(np.sum(1 / np.arange(1, 6)) / 5)
    assert chance_map(np.zeros(3), np.zeros(7)) == approx(1.0)


# A ridge map fit on the training classes retrieves the unseen test classes with mAP@all
# 0.94 (fixture seeds 0, 1, 2: 0.94, 0.92, 0.95; chance 0.070). With as many training
# classes as the class space has dimensions (16) it gets 0.64-0.81, with 8 (the old
# fixture) 0.38-0.41: the training centres span only part of the class space.
RIDGE_MIN_MAP = 0.8
RIDGE = 10.0  # λ of the ridge, against X^T X of trace ~1.25 · 512 · 192


def ridge_retrieval(ds) -> tuple[float, float]:
    """mAP@all of test sketches mapped by a ridge regression x -> y (closed form, float64,
    fit on the loader's class-matched train pairs) against the test photos, and of the raw
    sketch features against the photos."""
    x, y = ds.train.x.astype(np.float64), ds.train.y.astype(np.float64)
    mx, my = x.mean(0), y.mean(0)
    xc = x - mx
    w = np.linalg.solve(xc.T @ xc + RIDGE * np.eye(x.shape[1]), xc.T @ (y - my))
    mapped = (ds.retrieval_x - mx) @ w + my
    labels = ds.retrieval_label_x, ds.retrieval_label_y
    ridge = retrieval_metrics(mapped, ds.retrieval_y, *labels, ks=(1,))["mAP@all"]
    raw = retrieval_metrics(ds.retrieval_x, ds.retrieval_y, *labels, ks=(1,))["mAP@all"]
    return ridge, raw


def test_fixture_is_learnable_a_ridge_map_from_train_classes_retrieves_test_classes(
    fixture_dir,
):
    ds = load_sketchy(fixture_dir, split=1, use_tfds=False)
    assert not set(ds.train_classes) & set(ds.test_classes)
    chance = chance_map(ds.retrieval_label_x, ds.retrieval_label_y)
    ridge, raw = ridge_retrieval(ds)
    assert ridge >= RIDGE_MIN_MAP > 10 * chance, (ridge, chance)
    # The raw features are not comparable across the domains (two different extractors):
    # retrieval needs the learnt map, so an identity embedding stays below the end-to-end
    # thresholds.
    assert raw < min(E2E_MIN_MAP.values()), (raw, chance)


# ----------------------------------------------------------------------------- configs


def test_configs():
    c1, c2 = sketchy.get_config(), sketchy.get_config("split2")
    assert c1.data.split == 1 and c2.data.split == 2 and c1.model.dz == 64
    assert c1.loss.instance_noise.scale_by_data_std and c1.model.mlp.disc_features == 1024
    assert tuple(c2.eval.retrieval_ks) == (100, 200) and tuple(c2.eval.retrieval_map_ks) == (200,)
    i1, i2 = iiae_sketchy.get_config(), iiae_sketchy.get_config("split2")
    assert (i1.train.batch_size, i2.train.batch_size) == (100, 104) and i1.model.name == "iiae"
    with pytest.raises(ValueError, match="split1"):
        sketchy.get_config("split3")


# ----------------------------------------------------------------------------- end to end


def tiny(config, fixture_dir, batch, steps=4):
    config.data.dir = fixture_dir
    config.train.num_steps = steps
    config.train.batch_size = batch
    config.eval.batch_size = 50  # divides the 150 test rows: one shape, one compile
    config.eval.num_joint_samples = 64
    # Several steps per compiled call, one log and one checkpoint at the end: few
    # dispatches. With one step per call, 500 4-device steps on a 2-core machine loaded by
    # other processes aborted in 5 of 12 runs, each right after the log of step 250, on
    # XLA:CPU's 40 s all-reduce rendezvous timeout (4 participants, 3 or 2 arrived).
    config.train.steps_per_call = min(steps, 50)
    config.train.log_every = config.train.checkpoint_every = steps
    config.eval.retrieval_ks = (100,)
    config.eval.retrieval_map_ks = (50,)
    return config


# Training steps of the end-to-end runs and the mAP@all on the unseen classes they must reach.
# Batch 32 = the number of training classes (every class once per step, the IIAE reference's
# batch). Chance is 0.070 (150 photos, 6 per class) and the raw features give 0.16 (see the
# ridge test above). Measured in this suite's set-up (conftest's XLA flags) on a 2-core AMD
# EPYC (AVX2, no AVX-512), config seeds 1, 2, 3 (seed 1 is the test's):
#   wyner, one device, 700 steps: 0.50, 0.63, 0.62 (500 steps: 0.29, 0.37, 0.43, and 0.27 to
#     0.53 on four devices or without the test's flags: adversarial training amplifies
#     rounding differences). Networks of width 32: 0.28 after 1000 steps.
#   iiae, four devices, 150 steps: 0.67, 0.66, 0.64 (100 steps: 0.57; width 32: 0.30).
E2E_STEPS = {"wyner": 700, "iiae": 150}
E2E_MIN_MAP = {"wyner": 0.3, "iiae": 0.4}


@pytest.mark.slow
@pytest.mark.parametrize(
    "which",
    # The Wyner case (700 steps, ~75 s of the CI machine's 2 cores) runs in `make test-all`;
    # `make test` keeps the IIAE case and the Wyner step's own tests.
    [pytest.param("wyner", marks=pytest.mark.heavy), "iiae"],
)
def test_train_and_evaluate_on_the_fixture(tmp_path, fixture_dir, which, monkeypatch):
    if which == "wyner":
        # One device: a Wyner step on the 4 fake devices costs twice the CPU time; the
        # 4-device loop is run by the IIAE case below, and the Wyner step is compared on one
        # and four devices in test_wyner_model.py.
        one_device = parallel.make_mesh(jax.devices()[:1])
        monkeypatch.setattr(parallel, "make_mesh", lambda devices=None: one_device)
        config = tiny(sketchy.get_config(), fixture_dir, 32, E2E_STEPS[which])
        m = config.model.mlp
        m.encoder_features, m.decoder_hidden, m.disc_features = 128, (64,), 128
        config.model.disc.hidden_dim = 64
        config.model.dz, config.model.du, config.model.dv = 16, 4, 4
        # Only the terms that train f_x and f_y (retrieval needs z_x, z_y): the conditional
        # matchings cx2y and cy2x, which align f_x(sketch), f_y(photo) and f_xy; fewer terms,
        # a faster compile and step. The reference's lr 1e-4 needs thousands of steps here.
        lam = config.loss.lambdas
        for k in ("j_rec_x", "j_rec_y", "cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y"):
            lam[k] = 0.0
        lam.j_rec_zuv = lam.j = lam.c = 0.0
        lam.var_ci = -1.0
        config.optim.lr_generator = config.optim.lr_discriminator = 3e-3
        # Images for the top-10 figure: one small PNG per test sketch and photo path.
        ds = data.build(config.data)
        root = tmp_path / "images"
        for sub, paths in (("sk", ds.retrieval_paths_x), ("ph", ds.retrieval_paths_y)):
            for i, rel in enumerate(paths):
                os.makedirs(root / sub / os.path.dirname(rel), exist_ok=True)
                Image.fromarray(np.full((8, 8, 3), i % 255, np.uint8)).save(root / sub / rel)
        config.data.image_root = str(root)
        config.data.sketch_subdir, config.data.photo_subdir = "sk", "ph"
    else:
        config = tiny(iiae_sketchy.get_config(), fixture_dir, 32, E2E_STEPS[which])
        c = config.iiae
        c.hidden, c.joint_hidden, c.decoder_hidden = (128,), (128,), 64
        c.shared_dim, c.exclusive_dim = 16, 4
        c.lr, c.anneal_steps = 1e-3, 100.0
        ds = load_sketchy(fixture_dir, split=1, use_tfds=False)
    metrics = trainer.train_and_evaluate(config, str(tmp_path))
    for key in (
        "retrieval/mAP@all",
        "retrieval/mAP@all_interp",
        "retrieval/P@100",
        "retrieval/mAP@50",
    ):
        assert 0.0 <= metrics[key] <= 1.0, key
    # The unseen classes are retrieved well above chance (computed from the class counts).
    chance = chance_map(ds.retrieval_label_x, ds.retrieval_label_y)
    assert E2E_MIN_MAP[which] >= 2.5 * chance
    assert metrics["retrieval/mAP@all"] >= E2E_MIN_MAP[which], (metrics, chance)
    # interpolation raises every precision: float32 sums over the 150 ranks of each query
    slack = tolerance(1.0, depth=150)
    assert metrics["retrieval/mAP@all_interp"] >= metrics["retrieval/mAP@all"] - slack
    assert not any(k.startswith("probe/") for k in metrics)
    assert os.path.getsize(tmp_path / "figures" / "retrieval_per_class_ap.png") > 1000
    if which == "wyner":
        top10 = np.asarray(Image.open(tmp_path / "figures" / "retrieval_top10.png"))
        assert top10.shape[1] > 10 * 64  # query + 10 photos per row
    if which == "iiae":  # eval.py's path: restore the checkpoint, same retrieval numbers
        os.remove(tmp_path / "metrics.json")
        again = trainer.evaluate_checkpoint(config, str(tmp_path))
        for key in ("retrieval/mAP@all", "retrieval/P@100"):
            # a mean over the 150 queries of numbers in [0, 1]
            assert again[key] == approx(metrics[key], depth=150, scale=1.0), key
        assert os.path.exists(tmp_path / "metrics.json")


def test_tfds_copy_matches_the_npy_files(fixture_dir):
    via_tfds = load_sketchy(fixture_dir, split=1)
    direct = load_sketchy(fixture_dir, split=1, use_tfds=False)
    assert os.path.isdir(os.path.join(fixture_dir, "tfds"))
    assert via_tfds.class_names == direct.class_names
    for name in ("train_x_pool", "train_y_pool", "train_x_label", "retrieval_x", "retrieval_y"):
        np.testing.assert_array_equal(getattr(via_tfds, name), getattr(direct, name))
    builder = tfds_builder_class()
    assert "10.5281/zenodo.3890097" in builder.MANUAL_DOWNLOAD_INSTRUCTIONS
    assert "tensorflow" not in sys.modules  # written and read without TensorFlow


def test_retrieval_cut_offs_larger_than_the_gallery_are_refused_before_training(
    tmp_path, fixture_dir
):
    from wyner_jax.evaluation import runner

    """split2 evaluates P@200 and mAP@200; the fixture's gallery has 150 photos. The run is
    refused before its first step with the key and the gallery size named, and leaves no
    checkpoint behind (it used to train to the end and then lose its evaluation)."""
    config = sketchy.get_config("split2")
    config.data.dir = fixture_dir
    config.data.split = 1  # the fixture's split; split2's evaluation settings stay
    config.train.num_steps = 2
    config.train.batch_size = 32
    workdir = tmp_path / "run"
    with pytest.raises(ValueError, match=r"config.eval.retrieval_ks contains k=200.*150 items"):
        trainer.train(config, str(workdir))
    assert not (workdir / "checkpoints").exists() and not (workdir / "config.json").exists()
    # The check itself, as evaluate() would meet it: a cut-off within the gallery passes.
    config.eval.retrieval_ks, config.eval.retrieval_map_ks = (100, 150), (150,)
    runner.check_evaluation_settings(data.build(config.data), config)
    config.eval.retrieval_map_ks = (151,)
    with pytest.raises(ValueError, match=r"retrieval_map_ks contains k=151"):
        runner.check_evaluation_settings(data.build(config.data), config)
