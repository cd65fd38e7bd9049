"""CUB image features ↔ captions: tokeniser, vocabulary, loader (raw files and TFDS), refusals,
the sentence embedding and CCA score against independent NumPy/SciPy computations, and a short
end-to-end run of configs/cub.py on the synthetic fixture."""

import os
import sys

import numpy as np
import pytest
import scipy.linalg

from tests.tolerances import approx, assert_close, assert_trees_close
from wyner_jax import data
from wyner_jax.data import captions as cap
from wyner_jax.data.cub import FeatureRows, load_cub
from wyner_jax.evaluation import cca as cca_lib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "scripts"))

from make_cub_fixture import make_fixture  # noqa: E402


@pytest.fixture(scope="module")
def fixture_dir(tmp_path_factory):
    return make_fixture(str(tmp_path_factory.mktemp("cub")))


# ----------------------------------------------------------------------------- tokeniser


@pytest.mark.parametrize(
    "line, tokens",
    [
        (
            "this bird's beak is short, and pointed.",
            ["this", "bird", "'s", "beak", "is", "short", ",", "and", "pointed", "."],
        ),
        ("it doesn't have a long tail", ["it", "does", "n't", "have", "a", "long", "tail"]),
        ("a grey-and-white body.", ["a", "grey-and-white", "body", "."]),
        ("this is a bird. it has wings", ["this", "is", "a", "bird", ".", "it", "has", "wings"]),
        ("(the beak) is 3.5 cm", ["(", "the", "beak", ")", "is", "3.5", "cm"]),
        ("it cannot fly; it's tiny!", ["it", "can", "not", "fly", ";", "it", "'s", "tiny", "!"]),
        ("wings: 1,000 feathers", ["wings", ":", "1,000", "feathers"]),
        ("  ", []),
    ],
)
def test_tokenize_follows_treebank_conventions(line, tokens):
    assert cap.tokenize(line) == tokens


def test_vocabulary_count_threshold_order_and_encoding():
    corpus = [["b", "a"]] * 4 + [["c", "a"], ["<pad>", "d"]] + [["d"]] * 3
    vocab, counts = cap.build_vocabulary(corpus, min_count=3)
    # a: 5, b: 4 (> 3, kept, in first-occurrence order b then a); c: 1 and d: 4 → d kept
    assert vocab == ("<exc>", "<pad>", "<eos>", "b", "a", "d")
    assert counts["a"] == 5 and counts["c"] == 1
    ids = cap.encode([["a", "zzz", "b"], ["a"] * 40], vocab, max_length=6)
    np.testing.assert_array_equal(ids[0], [4, cap.EXC_ID, 3, cap.EOS_ID, cap.PAD_ID, cap.PAD_ID])
    np.testing.assert_array_equal(ids[1], [4, 4, 4, 4, 4, cap.EOS_ID])
    assert ids.dtype == np.int32
    assert cap.decode(ids[0], vocab) == "a <exc> b"
    np.testing.assert_array_equal(cap.caption_lengths(ids), [4, 6])


# ----------------------------------------------------------------------------- loader


def test_loader_pairs_caption_i_with_image_i_div_10(fixture_dir):
    ds = data.build({"name": "cub", "dir": fixture_dir})
    feats = np.load(os.path.join(fixture_dir, "resnet101_2048", "train.npy"))
    lines = open(os.path.join(fixture_dir, "text_trainvalclasses.txt")).read().splitlines()
    assert ds.x_shape == (2048,) and ds.y_shape == (32,)
    assert len(ds.train) == 10 * len(feats) == len(lines) and len(ds.test) == 120
    for i in (0, 9, 10, 137, len(lines) - 1):
        np.testing.assert_array_equal(ds.train.x[i], feats[i // 10])
        want = cap.encode([cap.tokenize(lines[i])], ds.vocab)[0]
        np.testing.assert_array_equal(ds.train.y[i], want)
    assert ds.train.y.dtype == np.int32 and ds.vocab[:3] == cap.SPECIAL_TOKENS
    # the vocabulary is the training words seen more than 3 times
    _, counts = cap.build_vocabulary([cap.tokenize(s) for s in lines])
    assert set(ds.vocab[3:]) == {w for w, c in counts.items() if c > 3}
    assert cap.EXC_ID in ds.train.y  # the fixture's rare words
    # the float32 rounding of the float64 std
    assert_close(ds.x_std, feats.astype(np.float64).std(0))
    real = (ds.train.y != cap.PAD_ID) & (ds.train.y != cap.EOS_ID)
    assert ds.word_counts.sum() == real.sum()
    assert ds.word_counts[ds.vocab.index("bird")] == np.sum(ds.train.y == ds.vocab.index("bird"))


def test_tfds_copy_equals_the_files(fixture_dir):
    a = load_cub(fixture_dir, use_tfds=True)
    b = load_cub(fixture_dir, use_tfds=False)
    assert os.path.isdir(os.path.join(fixture_dir, "tfds", "cub_captions"))
    assert a.vocab == b.vocab and a.test_captions == b.test_captions
    for split in ("train", "test"):
        pa, pb = getattr(a, split), getattr(b, split)
        np.testing.assert_array_equal(np.asarray(pa.x), np.asarray(pb.x))
        np.testing.assert_array_equal(pa.y, pb.y)


def test_batches_are_deterministic_token_ids(fixture_dir):
    ds = load_cub(fixture_dir)
    b1, b2 = ds.train_batch(3, 16, seed=1), load_cub(fixture_dir).train_batch(3, 16, seed=1)
    for k in b1:
        np.testing.assert_array_equal(b1[k], b2[k])
    assert b1["y"].shape == (16, 32) and b1["y"].dtype == np.int32
    assert b1["x"].shape == (16, 2048) and b1["x"].dtype == np.float32


def test_feature_rows_behave_like_the_array():
    pool = np.arange(12, dtype=np.float32).reshape(4, 3)
    index = np.array([0, 0, 2, 3, 3, 1])
    rows, full = FeatureRows(pool, index), pool[index]
    assert rows.shape == full.shape and len(rows) == 6 and rows.ndim == 2
    np.testing.assert_array_equal(np.asarray(rows), full)
    np.testing.assert_array_equal(rows[[5, 1]], full[[5, 1]])
    np.testing.assert_array_equal(rows[2:4], full[2:4])
    np.testing.assert_array_equal(rows[3], full[3])
    np.testing.assert_array_equal(rows[:, 1], full[:, 1])


# ----------------------------------------------------------------------------- refusals


def test_missing_dataset_says_where_to_get_it_and_where_to_put_it(tmp_path):
    with pytest.raises(FileNotFoundError) as e:
        load_cub(str(tmp_path / "nowhere"))
    msg = str(e.value)
    for part in (
        "text_trainvalclasses.txt",
        "text_testclasses.txt",
        os.path.join("resnet101_2048", "train.npy"),
        "mmdgm/datasets/cub.zip",
        "--config.data.dir",
        "scripts/cub_resnet_features.py",
        "scripts/make_cub_fixture.py",
    ):
        assert part in msg, part
    assert not os.path.exists(tmp_path / "nowhere")  # nothing half-written


@pytest.mark.parametrize(
    "edit, match",
    [
        ("drop_line", "10 lines per image"),
        ("shape", r"\[N_images, 2048\]"),
        ("nan", "NaN or Inf"),
        ("garbage", "cannot be read"),
    ],
)
def test_malformed_inputs_are_refused(tmp_path, edit, match):
    root = make_fixture(str(tmp_path), num_train=3, num_test=2)
    text = os.path.join(root, "text_testclasses.txt")
    feats = os.path.join(root, "resnet101_2048", "test.npy")
    if edit == "drop_line":
        lines = open(text).read().splitlines()
        open(text, "w").write("\n".join(lines[:-1]) + "\n")
    elif edit == "shape":
        np.save(feats, np.load(feats)[:, :100])
    elif edit == "nan":
        f = np.load(feats)
        f[1, 5] = np.nan
        np.save(feats, f)
    else:
        open(feats, "wb").write(b"not an npy file")
    with pytest.raises(ValueError, match=match):
        load_cub(root, use_tfds=False)
    with pytest.raises(ValueError, match=match):  # refused before any TFDS copy is written
        load_cub(root, use_tfds=True)
    assert not os.path.exists(os.path.join(root, "tfds", "cub_captions", "1.0.0"))


# ----------------------------------------------------------------------------- CCA


def correlated_views(n=600, dx=12, dy=8, seed=0):
    rng = np.random.default_rng(seed)
    shared = rng.normal(size=(n, 3))
    x = shared @ rng.normal(size=(3, dx)) + rng.normal(size=(n, dx)) + 2.0
    y = shared @ rng.normal(size=(3, dy)) + 0.7 * rng.normal(size=(n, dy)) - 1.0
    return x, y


def generalized_eig_cca(x, y, k, eps):
    """Independent CCA: SciPy's dense generalised eigensolver on A w = ρ B w, as the reference
    calls it (A = [[0, C_xy], [C_yx, 0]], B = blockdiag(C_xx, C_yy) + ridge), sorted by ρ."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    n, dx, dy = len(x), x.shape[1], y.shape[1]
    c_xx, c_yy, c_xy = xc.T @ xc / n, yc.T @ yc / n, xc.T @ yc / n
    a = np.block([[np.zeros((dx, dx)), c_xy], [c_xy.T, np.zeros((dy, dy))]])
    b = scipy.linalg.block_diag(
        c_xx + eps * np.trace(c_xx) / dx * np.eye(dx), c_yy + eps * np.trace(c_yy) / dy * np.eye(dy)
    )
    rho, w = scipy.linalg.eig(a, b)  # eigenvectors of unit Euclidean norm
    order = np.argsort(-rho.real)[:k]
    return rho.real[order], w.real[:, order], (c_xx, c_yy)


def eigengap(values, k):
    """Smallest distance between the first k of the descending `values` and from them to
    value k, relative to the largest: an eigen- or singular vector's rounding error is that of
    its matrix divided by this."""
    values = np.asarray(values, np.float64)[: k + 1]
    return float(np.min(-np.diff(values)) / values[0])


def same_up_to_column_sign(a, b, **tol):
    """Float64 columns equal up to sign, at `assert_close(..., dtype=np.float64, **tol)`."""
    signs = np.sign(np.sum(a * b, axis=0))
    assert_close(a * signs, b, dtype=np.float64, **tol)


@pytest.mark.parametrize("eps", [1e-12, 0.1])
def test_cca_matches_scipy_generalized_eig_both_normalizations(eps):
    x, y = correlated_views()
    k, dx = 5, x.shape[1]
    rho, w, (c_xx, c_yy) = generalized_eig_cca(x, y, k, eps)
    unit_norm = cca_lib.fit_cca(x, y, k=k, eps=eps)  # the reference's scaling
    # Float64 throughout: an SVD of the whitened 12×8 cross-covariance against a dense
    # generalised eigensolver of the 20×20 pencil. Depth: the pencil's size for the
    # eigenvalues, divided by the relative gap to the nearest other ρ for the eigenvectors.
    size = x.shape[1] + y.shape[1]
    assert_close(unit_norm.correlations, rho, dtype=np.float64, depth=size)
    assert rho[0] > 0.8 and rho[-1] < 0.3  # three shared directions, then noise
    got = np.concatenate([unit_norm.proj_x, unit_norm.proj_y])
    vec_depth = size / eigengap(generalized_eig_cca(x, y, k + 1, eps)[0], k)
    same_up_to_column_sign(got, w, depth=vec_depth)
    assert_close(unit_norm.mean_x, x.mean(0), dtype=np.float64, depth=len(x))  # a mean of n
    unit_var = cca_lib.fit_cca(x, y, k=k, eps=eps, normalization="unit_variance")
    wx, wy = w[:dx], w[dx:]
    wx = wx / np.sqrt(np.einsum("ik,ij,jk->k", wx, c_xx, wx))
    wy = wy / np.sqrt(np.einsum("ik,ij,jk->k", wy, c_yy, wy))
    same_up_to_column_sign(unit_var.proj_x, wx, depth=vec_depth)
    same_up_to_column_sign(unit_var.proj_y, wy, depth=vec_depth)
    # canonical variates: unit variance, correlation ρ_j between the views (no ridge); the
    # variance is a sum over the n = 600 rows
    px, py = unit_var.project(x, y)
    assert_close(px.std(0), 1.0, dtype=np.float64, depth=len(x), scale=1.0)
    if eps < 1e-9:
        # The ridge moves ρ by O(eps·cond C) ≈ 1e-12, but the directions' correlation only by
        # O(eps²) (ρ is stationary in the direction): compare with the ridge-free pencil's ρ,
        # at the rounding of the n-row sums and the eigensolver.
        rho_exact = generalized_eig_cca(x, y, k, 0.0)[0]
        for j in range(k):
            got_rho = np.corrcoef(px[:, j], py[:, j])[0, 1]
            want_rho = approx(rho_exact[j], dtype=np.float64, depth=len(x) + size, scale=1.0)
            assert got_rho == want_rho


def test_cca_score_is_the_mean_pair_cosine_and_pool_index_is_exact():
    rng = np.random.default_rng(2)
    shared, index = rng.normal(size=(40, 3)), np.arange(400) // 10  # ten y rows per x row
    pool = shared @ rng.normal(size=(3, 12)) + 0.5 * rng.normal(size=(40, 12))
    y = shared[index] @ rng.normal(size=(3, 8)) + 0.5 * rng.normal(size=(400, 8))
    fitted = cca_lib.fit_cca(pool, y, k=4, x_index=index)
    direct = cca_lib.fit_cca(pool[index], y, k=4)
    # Float64; the covariances are sums over n = 400 pairs, weighted pool rows vs repeated
    # rows: depth n for the correlations, n / (relative gap to the next ρ) for the directions.
    n = len(index)
    gap = eigengap(cca_lib.fit_cca(pool[index], y, k=5).correlations, 4)
    assert_close(fitted.proj_x, direct.proj_x, dtype=np.float64, depth=n / gap)
    assert_close(fitted.correlations, direct.correlations, dtype=np.float64, depth=n)
    xs, ys = pool[index], y
    brute = []
    for a, b in zip(xs, ys):
        p = (a - fitted.mean_x) @ fitted.proj_x
        q = (b - fitted.mean_y) @ fitted.proj_y
        brute.append(p @ q / (np.linalg.norm(p) * np.linalg.norm(q)))
    # a float64 mean of 400 cosines (each a 4-term dot product)
    assert fitted.score(xs, ys) == approx(np.mean(brute), dtype=np.float64, depth=400, scale=1.0)
    # shuffled pairs score near 0, real pairs clearly above. A sampling bound: cosines of
    # unrelated 4-d projections have std ≈ 1/√4, so over 400 shuffled pairs a standard error
    # of 0.025 (a little more with only 40 distinct images): 0.1 is four of them, and the
    # real pairs' 0.3 twelve.
    assert fitted.score(xs, ys) > 0.3
    assert abs(fitted.score(xs, ys[np.random.default_rng(1).permutation(400)])) < 0.1


def test_cca_refuses_bad_k_and_singular_covariances():
    x, y = correlated_views(n=50)
    with pytest.raises(ValueError, match="min"):
        cca_lib.fit_cca(x, y, k=9)
    with pytest.raises(ValueError, match="cca_eps"):
        cca_lib.fit_cca(x[:3], y[:30], k=2, x_index=np.arange(30) // 10)


def test_ppmi_matches_brute_force_counting():
    toks = np.array(
        [[3, 4, 5, 3, cap.EOS_ID, 1, 1], [4, 0, 3, cap.EOS_ID, 1, 1, 1], [5, 5, 4, 3, 0, 4, 3]]
    )
    v, window = 6, 2
    counts = np.zeros((v, v))
    for row in toks:
        words = []
        for t in row:
            if t == cap.EOS_ID:
                break
            if t != cap.PAD_ID:
                words.append(t)
        for i, w in enumerate(words):
            for j, c in enumerate(words):
                if 0 < abs(i - j) <= window:
                    counts[w, c] += 1
    np.testing.assert_array_equal(cca_lib.cooccurrence_counts(toks, v, window), counts)
    ppmi = cca_lib.ppmi_matrix(counts, alpha=0.75)
    total = counts.sum()
    for w in range(v):
        for c in range(v):
            if counts[w, c] == 0:
                assert ppmi[w, c] == 0
                continue
            p_c = counts[:, c].sum() ** 0.75 / np.sum(counts.sum(0) ** 0.75)
            pmi = np.log(counts[w, c] / total / (counts[w].sum() / total) / p_c)
            # float64 logs of ratios of sums of v = 6 counts: an absolute error of a few
            # eps at least (scale 1), relative to |pmi| when it is larger
            assert ppmi[w, c] == approx(
                max(pmi, 0.0), dtype=np.float64, depth=v, scale=max(1.0, abs(pmi))
            )
    vecs = cca_lib.ppmi_svd_word_vectors(toks, v, dim=3, window=window)
    u, s, _ = np.linalg.svd(ppmi)
    # the 6×6 SVD of the same matrix: its size over the relative gap of the singular values
    same_up_to_column_sign(vecs, u[:, :3] * np.sqrt(s[:3]), depth=v / eigengap(s, 3))


def test_sif_embedding_matches_a_direct_loop():
    rng = np.random.default_rng(0)
    v, d = 9, 4
    vectors = rng.normal(size=(v, d))
    counts = rng.integers(1, 50, v)
    toks = np.array([[3, 0, 4, cap.EOS_ID, 5, 1], [6, 7, 8, 3, 4, 5], [cap.EOS_ID, 1, 1, 1, 1, 1]])
    weights = cca_lib.sif_weights(counts)
    c = counts.astype(float)
    c[[cap.PAD_ID, cap.EOS_ID]] = 0
    for w in range(v):
        want = 0.0 if w in (cap.PAD_ID, cap.EOS_ID) else 1e-3 / (1e-3 + c[w] / c.sum())
        assert weights[w] == approx(want, dtype=np.float64, depth=3)  # a / (a + c / Σc)
    got = cca_lib.weighted_average_embeddings(toks, vectors, weights)
    for row, e in zip(toks, got):
        total, n = np.zeros(d), 0
        for t in row:
            total += weights[t] * vectors[t]
            n += 1
            if t == cap.EOS_ID:
                break
        # float64 sums of at most 6 weighted vectors, then the division
        assert_close(e, total / n, dtype=np.float64, depth=row.size + 1)
    emb = cca_lib.SentenceEmbedder(vectors, weights, np.eye(d)[1])
    # e − (e·u)u with u = e_1: a d-term dot product and one subtraction, relative to |e|
    scale = np.abs(got).max()
    assert_close(emb(toks)[:, 1], 0.0, dtype=np.float64, depth=d + 1, scale=scale)
    assert_close(emb(toks)[:, [0, 2, 3]], got[:, [0, 2, 3]], dtype=np.float64, depth=d + 1)


def test_caption_cca_on_the_fixture_separates_real_from_shuffled(fixture_dir):
    ds = load_cub(fixture_dir)
    instrument = cca_lib.CaptionCCA.fit(ds, k=6, word_dim=16, eps=1e-2)
    test_x = np.asarray(ds.test.x)
    gt = instrument.score(test_x, ds.test.y)
    shuffled = instrument.score(test_x, ds.test.y[np.random.default_rng(0).permutation(120)])
    assert gt > 0.5 and gt > shuffled + 0.4
    m = cca_lib.cca_metrics(instrument, ds, {"x2y": ds.test.y, "y2x": test_x})
    # the same float64 computation on the same inputs
    for key in ("cca/x2y", "cca/y2x"):
        assert m[key] == approx(gt, dtype=np.float64), key


# ----------------------------------------------------------------------------- networks


def test_sentence_networks_have_the_reference_shapes_and_tied_inverse():
    import jax
    import jax.numpy as jnp

    from wyner_jax import text_nets

    v = 50
    emb = text_nets.TokenEmbedding(v, 128)
    fmap = text_nets.SentenceFeatureMap(base=32, vocab_size=v)
    tokens = jnp.ones((2, 32), jnp.int32)
    shapes = jax.eval_shape(
        lambda: fmap.init_with_output(jax.random.PRNGKey(0), tokens, train=True)[0]
    )
    assert shapes.shape == (2, 16 * 32 * 16)  # 8192 features, as §4.2

    class Tied(text_nets.nn.Module):
        @text_nets.nn.compact
        def __call__(self, z):
            table = text_nets.TokenEmbedding(v, 128, name="E")
            return text_nets.SentenceDecoder(32, v, base=2, embedding=table, spectral_norm=False)(
                z, True
            )

    model = Tied()
    z = jax.random.normal(jax.random.PRNGKey(1), (3, 10))
    params = model.init(jax.random.PRNGKey(2), z)
    logits, _ = model.apply(params, z, mutable=["batch_stats"])
    assert logits.shape == (3, 32, v)
    # the decoder has no output matrix of its own: changing the table changes the logits
    # exactly by h·ΔEᵀ, with h the decoder's embedding-space output
    assert "Dense_0" not in params["params"]["SentenceDecoder_0"]
    table = params["params"]["E"]["embedding"]
    np.testing.assert_array_equal(table[text_nets.PAD_ID], 0.0)
    bumped = jax.tree_util.tree_map(lambda a: a, params)
    bumped["params"]["E"]["embedding"] = table.at[7].add(1.0)
    logits2, _ = model.apply(bumped, z, mutable=["batch_stats"])
    changed = np.abs(np.asarray(logits2 - logits)).max(axis=(0, 1)) > 0
    assert changed[7] and changed.sum() == 1


def test_sentence_decoder_equals_flax_conv_transpose_values_and_gradients(monkeypatch):
    """The decoder's transposed convolutions (subpixel.ConvTranspose2x: (1, 2) and (2, 2)
    strides, phase by phase) against Flax's nn.ConvTranspose on the same variables: the
    parameter tree (names included, so earlier checkpoints load) and the outputs and gradients
    agree."""
    import flax.linen as nn
    import jax
    import jax.numpy as jnp

    from wyner_jax import text_nets

    class FlaxConvTranspose(nn.Module):  # the reference: lax.conv_transpose on the dilated input
        features: int
        kernel_size: tuple
        padding: tuple
        strides: tuple
        use_bias: bool
        kernel_init: object
        dtype: object = None

        @nn.compact
        def __call__(self, x):
            return nn.ConvTranspose(
                self.features,
                self.kernel_size,
                strides=self.strides,
                padding=self.padding,
                use_bias=self.use_bias,
                kernel_init=self.kernel_init,
                dtype=self.dtype,
                name="conv",
            )(x)

    dec = text_nets.SentenceDecoder(32, 40, base=4, spectral_norm=False)
    z = jax.random.normal(jax.random.PRNGKey(1), (3, 10))
    variables = dec.init(jax.random.PRNGKey(2), z, True)
    variables = jax.tree_util.tree_map(lambda a: a + 0.01, variables)  # non-zero biases

    def loss(params, z):
        logits, _ = dec.apply({**variables, "params": params}, z, True, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(logits))

    ours = loss(variables["params"], z), jax.grad(loss, (0, 1))(variables["params"], z)
    monkeypatch.setattr(text_nets, "ConvTranspose2x", FlaxConvTranspose)
    flax_params = {
        k: ({"conv": v} if k.startswith("ConvTranspose") else v)
        for k, v in variables["params"].items()
    }
    shapes = jax.eval_shape(lambda z: dec.init(jax.random.PRNGKey(2), z, True), z)["params"]
    assert jax.tree_util.tree_map(jnp.shape, shapes) == jax.tree_util.tree_map(
        jnp.shape, flax_params
    )

    def flax_loss(params, z):
        logits, _ = dec.apply({**variables, "params": params}, z, True, mutable=["batch_stats"])
        return jnp.sum(jnp.sin(logits))

    want = flax_loss(flax_params, z), jax.grad(flax_loss, (0, 1))(flax_params, z)
    # 12 layers (Linear, 5 transposed convs, 5 batch norms on batch statistics, Dense), forward
    # and backward: depth 24. k = 16, not 8: the kernel gradients of the last two transposed
    # convs are sums over 768 and 3072 pixels with cancellation, taken in different orders
    # (col2im GEMM vs XLA's dilated conv); observed up to 17·eps·max|g| on one CPU.
    tol = dict(depth=2 * 12, k=16)
    assert_close(ours[0], want[0], **tol)
    assert_close(ours[1][1], want[1][1], err_msg="z", **tol)
    for k, g in ours[1][0].items():
        w = want[1][0][k]["conv"] if k.startswith("ConvTranspose") else want[1][0][k]
        assert_trees_close(g, w, **tol)


def test_argmax_input_blocks_the_gradient_soft_input_passes_it():
    import jax
    import jax.numpy as jnp

    from wyner_jax import text_nets

    v = 20
    logits = jax.random.normal(jax.random.PRNGKey(0), (4, 32, v))
    results = {}
    for mode in text_nets.DISCRIMINATOR_INPUTS:
        fmap = text_nets.SentenceFeatureMap(
            base=2, vocab_size=v, embed_dim=32, discriminator_input=mode
        )
        params = fmap.init(jax.random.PRNGKey(1), logits, train=True)

        def out(l):
            h, _ = fmap.apply(params, l, train=True, mutable=["batch_stats"])
            return jnp.sum(h**2)

        results[mode] = np.abs(np.asarray(jax.jit(jax.grad(out))(logits))).max()
        # token ids and argmax-equal logits give the same features in argmax mode
        if mode == "argmax":
            a, _ = fmap.apply(params, logits, train=True, mutable=["batch_stats"])
            b, _ = fmap.apply(params, jnp.argmax(logits, -1), train=True, mutable=["batch_stats"])
            # one-hot of the argmax vs the ids' rows of the table, then 3 conv + batch-norm
            # layers
            assert_close(a, b, depth=1 + 2 * 3)
    assert results["argmax"] == 0.0  # the reference: no adversarial gradient (§7.6)
    assert results["soft"] > 0.0


def test_caption_cross_entropy_ignores_pad():
    import jax.numpy as jnp

    from wyner_jax import losses

    logits = jnp.asarray(np.random.default_rng(0).normal(size=(2, 4, 6)), jnp.float32)
    tokens = jnp.asarray([[3, 2, 1, 1], [4, 5, 2, 1]])
    got = losses.RECONSTRUCTION_LOSSES["token_ce"](logits, tokens)
    lp = np.asarray(logits) - np.log(np.exp(np.asarray(logits)).sum(-1, keepdims=True))
    keep = [(b, i) for b in range(2) for i in range(4) if tokens[b, i] != cap.PAD_ID]
    want = -np.mean([lp[b, i, int(tokens[b, i])] for b, i in keep])
    # float32 log-softmax over V = 6 logits (errors relative to the logits and their
    # log-sum-exp), then a mean over at most 8 tokens; against float64
    scale = 2 * np.abs(np.asarray(logits)).max() + np.log(6)
    assert float(got) == approx(want, depth=6 + tokens.size, scale=scale)


# ----------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def trained_run(fixture_dir, tmp_path_factory):
    from configs import cub
    from wyner_jax import trainer

    config = cub.get_config("fixture")
    config.data.dir = fixture_dir
    config.train.num_steps = 3
    config.train.log_every = 3
    config.train.checkpoint_every = 3
    workdir = str(tmp_path_factory.mktemp("cub_run"))
    metrics = trainer.train_and_evaluate(config, workdir)
    return config, workdir, metrics


@pytest.mark.slow  # a train-step compile plus four inference compiles: ~60 s CPU
@pytest.mark.heavy
def test_configs_cub_trains_and_evaluates_on_the_fixture(trained_run):
    import json

    config, workdir, metrics = trained_run
    for key in ("cca/ground_truth", "cca/x2y", "cca/y2x", "cca/joint", "cca/top_correlation"):
        assert np.isfinite(metrics[key]), key
    assert metrics["cca/ground_truth"] > 0.5  # the fixture's captions describe the images
    on_disk = json.load(open(os.path.join(workdir, "metrics.json")))
    assert on_disk["cca/x2y"] == approx(metrics["cca/x2y"], dtype=np.float64)  # JSON round trip
    samples = json.load(open(os.path.join(workdir, "samples.json")))
    assert len(samples["x2y"]) == config.eval.caption_samples
    first = samples["x2y"][0]
    assert len(first["real"]) == 10 and len(first["generated"]) == 3
    assert all(isinstance(g, str) for g in first["generated"])
    assert len(samples["joint"]) == config.eval.caption_samples
    from PIL import Image

    table = Image.open(os.path.join(workdir, "figures", "x2y_captions.png"))
    assert table.size[0] > 400 and table.size[1] > 100


@pytest.mark.slow  # as above, for the IIAE caption networks
@pytest.mark.heavy
def test_configs_iiae_cub_trains_and_evaluates_on_the_fixture(fixture_dir, tmp_path):
    import json

    from configs import iiae_cub
    from wyner_jax import trainer

    config = iiae_cub.get_config("fixture")
    config.data.dir = fixture_dir
    config.train.num_steps = 2
    config.train.log_every = 2
    config.train.checkpoint_every = 2
    metrics = trainer.train_and_evaluate(config, str(tmp_path))
    for key in ("cca/ground_truth", "cca/x2y", "cca/y2x", "cca/joint"):
        assert np.isfinite(metrics[key]), key
    log = [json.loads(line) for line in open(tmp_path / "train_metrics.jsonl")]
    assert 0 < log[-1]["loss/rec_y"] < 2 * np.log(len(load_cub(fixture_dir).vocab))
    samples = json.load(open(tmp_path / "samples.json"))
    assert len(samples["x2y"][0]["generated"]) == 3


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda c: setattr(c.loss, "recon_y", "l1"), "recon_y=token_ce"),
        (lambda c: setattr(c.model, "family", "mlp"), "recon_y"),
        (lambda c: setattr(c.model.sentence, "discriminator_input", "gumbel"), "argmax"),
        (lambda c: setattr(c.model, "marginal_encoder_noise_dim", 2), "token ids"),
        (lambda c: setattr(c.model.sentence, "embed_dim", 48), "embedding"),
    ],
)
def test_caption_config_mistakes_are_refused(fixture_dir, edit, match):
    from configs import cub
    from wyner_jax.models.base import build_model

    config = cub.get_config("fixture")
    config.data.dir = fixture_dir
    edit(config)
    with pytest.raises(ValueError, match=match):
        build_model(config, load_cub(fixture_dir))
