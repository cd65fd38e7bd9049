"""The IIAE baseline: its loss against an independent NumPy re-computation of iiae.md §2,
the update (finite, data-parallel), the architecture wiring and the inference methods."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import digits_add1, iiae_digits_add1
from tests.tolerances import assert_close, assert_trees_close, tolerance
from wyner_jax import data, parallel
from wyner_jax.models import iiae
from wyner_jax.models.base import build_model

LOGVAR_MAX = 9.21035


def small_config(family="mlp"):
    config = iiae_digits_add1.get_config(family)
    c = config.iiae
    c.hidden = (16, 8)
    c.joint_hidden = (16,)
    c.decoder_hidden = 8
    c.shared_dim = 4
    c.exclusive_dim = 2
    c.conv_base = 2
    c.conv_hidden = (8,)
    c.decoder_dropout = 0.5  # exercise the conv decoder's dropout path (the reference's rate)
    config.train.batch_size = 16
    config.data.multiplier = 1
    return config


def built(family="mlp", config=None):
    config = config or small_config(family)
    dataset = data.build(config.data)
    return config, dataset, build_model(config, dataset)


def first_batch(dataset, n=16):
    return {k: jnp.asarray(v) for k, v in dataset.train_batch(0, n, 0).items()}


# --------------------------------------------------------------------------- the loss


def random_outputs(rng, batch, ds, dx, x_shape):
    """Encoder/decoder outputs as the networks would give them; some log-variances lie above
    the clip so that the clip is exercised."""
    gauss = lambda d: (
        rng.normal(size=(batch, d)).astype(np.float32),  # noqa: E731
        rng.uniform(-4.0, 11.0, size=(batch, d)).astype(np.float32),
    )
    out = {"q_x": gauss(dx), "q_y": gauss(dx), "q_s": gauss(ds), "r_x": gauss(ds), "r_y": gauss(ds)}
    out["x_hat"] = rng.uniform(-1, 1, size=(batch,) + x_shape).astype(np.float32)
    out["y_hat"] = rng.uniform(-1, 1, size=(batch,) + x_shape).astype(np.float32)
    return out


def numpy_iiae_loss(out, x, y, t, beta, lam, w, ar, recon):
    """iiae.md §2 written out in float64 NumPy, term by term."""
    o = {
        k: (
            tuple(np.asarray(a, np.float64) for a in v)
            if isinstance(v, tuple)
            else np.asarray(v, np.float64)
        )
        for k, v in out.items()
    }
    clip = lambda lv: np.minimum(lv, LOGVAR_MAX)  # noqa: E731

    def kl_prior(mu, lv):
        lv = clip(lv)
        return np.mean(np.sum(0.5 * (-1.0 - lv + mu**2 + np.exp(lv)), axis=1))

    def kl_pair(mq, lq, mr, lr):
        lq, lr = clip(lq), clip(lr)
        per_dim = 0.5 * (-1.0 - lq + lr + ((mq - mr) ** 2 + np.exp(lq)) / np.exp(lr))
        return np.mean(np.sum(per_dim, axis=1))

    err = {"l2": lambda a, b: np.mean((a - b) ** 2), "l1": lambda a, b: np.mean(np.abs(a - b))}
    r_x = w * err[recon](o["x_hat"], np.asarray(x, np.float64))
    r_y = w * err[recon](o["y_hat"], np.asarray(y, np.float64))
    c = 1.0 - np.exp(-t / ar)
    return (
        (beta + lam) * (r_x + r_y)
        + c * (beta + lam) * (kl_prior(*o["q_x"]) + kl_prior(*o["q_y"]))
        + c * beta * kl_prior(*o["q_s"])
        + lam * (kl_pair(*o["q_s"], *o["r_x"]) + kl_pair(*o["q_s"], *o["r_y"]))
    )


@pytest.mark.parametrize("step", [0, 7, 1500, 20000])
@pytest.mark.parametrize("recon,x_shape", [("l2", (12,)), ("l1", (4, 4, 1))])
def test_loss_equals_numpy_recomputation_of_the_reference_formula(step, recon, x_shape):
    rng = np.random.default_rng(step)
    out = random_outputs(rng, batch=6, ds=5, dx=3, x_shape=x_shape)
    x = rng.uniform(-1, 1, size=(6,) + x_shape).astype(np.float32)
    y = rng.uniform(-1, 1, size=(6,) + x_shape).astype(np.float32)
    cfg = iiae.LossConfig(
        beta=0.3,
        lam=1.7,
        recon_weight=10.0,
        anneal_steps=2000.0,
        logvar_max=LOGVAR_MAX,
        recon_x=recon,
        recon_y=recon,
    )
    total, terms = jax.jit(lambda o, s: iiae.iiae_loss(o, x, y, s, cfg))(out, jnp.int32(step))
    expected = numpy_iiae_loss(out, x, y, step, 0.3, 1.7, 10.0, 2000.0, recon)
    # Every term is ≥ 0, so the total bounds them all; the longest float32 sums run over the
    # 6·16 reconstruction errors, plus a few operations per term.
    assert_close(total, expected, depth=6 * 16 + 8)
    # 1 - e^{-t/ar}: a cancellation against 1 for small t, so the scale is 1.
    assert_close(terms["anneal"], 1.0 - np.exp(-step / 2000.0), depth=3, scale=1.0)
    assert float(terms["total"]) == float(total)
    assert {"rec_x", "rec_y", "kl_x", "kl_y", "kl_s", "kl_rx", "kl_ry"} <= set(terms)


def test_logvar_clip_has_no_gradient_above_the_cap_and_annealing_none():
    rng = np.random.default_rng(0)
    out = random_outputs(rng, batch=4, ds=3, dx=2, x_shape=(5,))
    x = y = np.zeros((4, 5), np.float32)
    cfg = iiae.LossConfig(
        beta=0.5, lam=1.0, recon_weight=10.0, anneal_steps=100.0, logvar_max=LOGVAR_MAX
    )
    grad = jax.grad(lambda o: iiae.iiae_loss(o, x, y, jnp.int32(50), cfg)[0])(out)
    for k in iiae.GAUSSIANS:
        above = out[k][1] > LOGVAR_MAX
        assert above.any() and (~above).any()
        assert np.all(np.asarray(grad[k][1])[above] == 0.0)
        assert np.all(np.asarray(grad[k][1])[~above] != 0.0)
    # The annealing factor carries no gradient, and ar <= 0 switches it off.
    assert float(jax.grad(lambda s: iiae.anneal_factor(s, 10.0))(3.0)) == 0.0
    assert float(iiae.anneal_factor(jnp.int32(0), 0.0)) == 1.0


# --------------------------------------------------------------------------- the update


def test_train_step_changes_parameters_and_keeps_them_finite():
    _, dataset, model = built()
    batch = first_batch(dataset)
    state = model.init(jax.random.PRNGKey(0), batch)
    new, metrics = jax.jit(model.train_step)(state, batch)
    assert int(new.step) == 1
    moved = jax.tree_util.tree_map(lambda a, b: bool(jnp.any(a != b)), state.params, new.params)
    assert all(jax.tree_util.tree_leaves(moved))  # one Adam step moves every parameter
    assert all(bool(jnp.all(jnp.isfinite(a))) for a in jax.tree_util.tree_leaves(new.params))
    stats_moved = jax.tree_util.tree_map(
        lambda a, b: bool(jnp.any(a != b)), state.batch_stats, new.batch_stats
    )
    assert all(jax.tree_util.tree_leaves(stats_moved))  # running averages took this batch
    expected = {
        f"loss/{k}"
        for k in ("rec_x", "rec_y", "kl_x", "kl_y", "kl_s", "kl_rx", "kl_ry", "anneal", "total")
    }
    assert set(metrics) == expected
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert float(metrics["loss/anneal"]) == 0.0  # t = 0 at the first update


def jittered_batch(dataset, step, batch_size, seed):
    """The training batch plus small fixed noise.

    Why: a pixel that is constant over the batch (the digits' empty corners) gives its row of
    a Dense kernel feeding BatchNorm an exactly-zero gradient; its rounding noise differs
    between 1 and 4 devices and Adam normalises it to ±lr. The network's output does not
    depend on that direction (BN removes it), but the parameters would differ by ~lr per step.
    """
    batch = dataset.train_batch(step, batch_size, seed)
    rng = np.random.default_rng(step)
    for k in ("x", "y"):
        batch[k] = (batch[k] + 0.05 * rng.normal(size=batch[k].shape)).astype(np.float32)
    return batch


def run_steps(model, state, config, dataset, devices, n_steps):
    mesh = parallel.make_mesh(devices)
    state = parallel.replicate(state, mesh)
    step = parallel.compile_train_step(model.train_step, mesh)
    for i in range(n_steps):
        batch = jittered_batch(dataset, i, config.train.batch_size, config.seed)
        state, metrics = step(state, parallel.global_batch(batch, mesh))
    return jax.device_get(state), jax.device_get(metrics)


@pytest.mark.parametrize("family", ["mlp", "conv"])
def test_one_device_and_four_devices_give_the_same_parameters(family):
    """Global-batch semantics: BatchNorm statistics and the loss are over the whole batch."""
    assert jax.device_count() >= 4, "conftest sets 4 fake CPU devices"
    config = small_config(family)
    # c_t = 1 from the start: while c_t ≈ 0, the mean biases of q(z^x|x), q(z^y|y) have an
    # exactly-zero gradient (the decoders' BatchNorm removes any shift of z^x), whose
    # rounding noise Adam would blow up to ±lr, as in ``jittered_batch``.
    config.iiae.anneal_steps = 0.0
    config, dataset, model = built(config=config)
    batch0 = dataset.train_batch(0, config.train.batch_size, config.seed)
    state = jax.device_get(
        jax.jit(model.init)(
            jax.random.PRNGKey(config.seed), {k: jnp.asarray(v) for k, v in batch0.items()}
        )
    )
    one, m1 = run_steps(model, state, config, dataset, jax.devices()[:1], 3)
    four, m4 = run_steps(model, state, config, dataset, jax.devices()[:4], 3)
    # Three steps, each summing over the batch (in another order on four devices) through
    # about eight layers; each leaf at its own scale (a bias after three Adam steps is ~3·lr).
    depth = 3 * (config.train.batch_size + 8)
    assert_trees_close(four.params, one.params, depth=depth)
    assert_trees_close(four.batch_stats, one.batch_stats, depth=depth)
    assert_trees_close(m4, m1, depth=depth)


# --------------------------------------------------------------------------- architecture


def test_joint_encoder_reads_the_r_trunks_and_batchnorm_starts_as_the_reference():
    config, dataset, model = built()
    state = model.init(jax.random.PRNGKey(0), first_batch(dataset))
    p = state.params
    # r-trunk: Dense(64 → h₁) → BN → LReLU; q(z^s|x,y) reads concat(h_x, h_y).
    assert p["r_x_trunk"]["Linear_0"]["dense"]["kernel"].shape == (64, 16)
    assert p["q_s"]["Dense_0"]["kernel"].shape == (2 * 16, 16)
    # Heads emit mean and log-variance: 2·d outputs.
    assert p["q_s"]["Linear_0"]["dense"]["kernel"].shape[-1] == 2 * 4
    assert p["q_x"]["Linear_0"]["dense"]["kernel"].shape[-1] == 2 * 2
    # Decoders read [z^s, z^x].
    assert p["dec_x"]["MLP_0"]["Dense_0"]["kernel"].shape == (4 + 2, 8)
    scales = [
        np.asarray(a)
        for path, a in jax.tree_util.tree_flatten_with_path(p)[0]
        if path[-1].key == "scale"
    ]
    assert scales and all(0.8 < s.min() and s.max() < 1.2 for s in scales)
    assert np.std(np.concatenate(scales)) > 0.005  # γ ~ N(1, 0.02), not all ones
    assert model.capabilities(state) == {"embed", "x2y", "y2x", "joint", "reconstruct"}


def test_reconstruction_and_output_defaults_follow_the_family():
    _, _, mlp = built("mlp")
    _, _, conv = built("conv")
    assert (mlp.loss_cfg.recon_x, conv.loss_cfg.recon_x) == ("l2", "l1")
    assert (mlp.arch.out_act_x, conv.arch.out_act_x) == ("tanh", "tanh")
    config = small_config()
    config.iiae.decoder_out_act = "auto"
    _, _, auto = built(config=config)
    assert auto.arch.out_act_y == "tanh"  # flattened images in [-1, 1]


def test_bad_settings_fail_with_a_clear_message():
    config = small_config()
    config.model.family = "conv"  # but the data are flattened
    with pytest.raises(ValueError, match="needs HWC images"):
        built(config=config)
    config = small_config()
    config.iiae.recon_loss = "huber"
    with pytest.raises(ValueError, match="config.iiae.recon_loss"):
        built(config=config)
    config = small_config()
    config.iiae.decoder_out_act = "sigmoid"
    with pytest.raises(ValueError, match="decoder_out_act"):
        built(config=config)


def test_digits_config_keeps_the_wyner_budget():
    for arg in ("mlp", "conv"):
        ours, wyner = iiae_digits_add1.get_config(arg), digits_add1.get_config(arg)
        assert ours.model.name == "iiae" and ours.model.family == arg
        assert ours.data.to_dict() == wyner.data.to_dict()
        assert ours.train.to_dict() == wyner.train.to_dict()
        assert ours.eval.to_dict() == wyner.eval.to_dict()
    with pytest.raises(ValueError, match="'mlp' or 'conv'"):
        iiae_digits_add1.get_config("rnn")


# --------------------------------------------------------------------------- inference


@pytest.mark.parametrize("family", ["mlp", "conv"])
def test_inference_shapes_and_determinism(family):
    config, dataset, model = built(family)
    batch = first_batch(dataset)
    state = model.init(jax.random.PRNGKey(0), batch)
    state, _ = jax.jit(model.train_step)(state, batch)
    v = model.eval_variables(state)
    x, y = batch["x"], batch["y"]
    n = x.shape[0]

    emb = jax.jit(model.embed)(v, x, y)
    assert {k: a.shape for k, a in emb.items()} == {"z_x": (n, 4), "z_y": (n, 4), "z_xy": (n, 4)}
    # Running averages at evaluation: a row's code does not depend on the rest of the batch.
    part = jax.jit(model.embed)(v, x[:5], y[:5])
    # Another batch size may pick other kernels: the 64- and 16-long dot products and the
    # layers after them round differently.
    assert_trees_close(part, jax.tree_util.tree_map(lambda a: a[:5], emb), depth=64 + 16 + 4)

    k1, k2 = jax.random.PRNGKey(1), jax.random.PRNGKey(2)
    for translate, src, out_shape in (
        (model.translate_x2y, x, dataset.y_shape),
        (model.translate_y2x, y, dataset.x_shape),
    ):
        a, b, c = translate(v, src, k1), translate(v, src, k1), translate(v, src, k2)
        assert a.shape == (n,) + out_shape
        np.testing.assert_array_equal(a, b)
        # z^y ~ N(0, I) is drawn from the key: another key moves the outputs by far more than
        # rounding (even after one step the decoders read z^y).
        assert np.abs(np.asarray(a) - np.asarray(c)).max() > 1e3 * tolerance(a, depth=64)
        assert np.all(np.abs(a) <= 1.0)  # tanh output
    jx, jy = model.sample_joint(v, k1, 7)
    jx2, _ = model.sample_joint(v, k1, 7)
    assert jx.shape == (7,) + dataset.x_shape and jy.shape == (7,) + dataset.y_shape
    np.testing.assert_array_equal(jx, jx2)
    rx, ry = model.reconstruct(v, x, y)
    assert rx.shape == x.shape and ry.shape == y.shape
    np.testing.assert_array_equal(rx, model.reconstruct(v, x, y)[0])


def test_batch_statistics_at_evaluation_normalise_with_the_batch_and_write_nothing_back():
    """``bn_batch_stats_at_eval``: evaluation normalises each BatchNorm with the statistics of
    the batch it is given (the reference's TF behaviour), reads no running average and writes
    none back into the training state.

    Every code of ``embed`` starts with Dense → BatchNorm on x or on y, so normalising with the
    batch's own statistics removes a shift common to all rows of x and of y: the codes of
    (x + c, y + d) equal those of (x, y) up to rounding. With running averages (the flag
    ignored) they do not, which the second model below shows.
    """
    config = small_config()
    config.iiae.bn_batch_stats_at_eval = True
    _, dataset, model = built(config=config)
    batch = first_batch(dataset)
    state = model.init(jax.random.PRNGKey(0), batch)
    # Running averages away from their initial (0, 1), as after training.
    state = state.replace(batch_stats=jax.tree_util.tree_map(lambda a: a + 0.5, state.batch_stats))
    before = jax.tree_util.tree_map(np.array, state.batch_stats)  # copies
    v = model.eval_variables(state)
    x, y = batch["x"], batch["y"]
    rng = np.random.default_rng(0)
    c = jnp.asarray(0.3 * rng.normal(size=x.shape[1:]), jnp.float32)
    d = jnp.asarray(0.3 * rng.normal(size=y.shape[1:]), jnp.float32)

    emb = model.embed(v, x, y)
    assert emb["z_x"].shape == (16, 4)
    # 1. The batch's statistics: a shift common to the batch is removed. Rounding enters in
    # the 64-long first-layer dot products, BN's mean and variance over 16 rows, and the
    # three layers after it.
    depth = 64 + 16 + 3
    assert_trees_close(model.embed(v, x + c, y + d), emb, depth=depth)
    far = 100 * tolerance(emb["z_x"], depth=depth)  # "differs": by far more than rounding
    # ... and a row's code depends on the rest of its batch.
    part = model.embed(v, x[:8], y[:8])
    assert np.abs(np.asarray(part["z_x"]) - np.asarray(emb["z_x"][:8])).max() > far
    # 2. No running average is read: replacing them changes nothing, bit for bit.
    garbage = jax.tree_util.tree_map(lambda a: 7.0 * a + 3.0, state.batch_stats)
    chex.assert_trees_all_equal(model.embed({**v, "batch_stats": garbage}, x, y), emb)
    # 3. Nothing is written back: the state's running averages (mutable dicts of arrays) are
    # still those it held, and a second call gives the same codes.
    chex.assert_trees_all_equal(jax.tree_util.tree_map(np.asarray, state.batch_stats), before)
    chex.assert_trees_all_equal(model.embed(model.eval_variables(state), x, y), emb)

    # The check in 1. discriminates: with running averages the same shift moves the codes.
    config = small_config()
    config.iiae.bn_batch_stats_at_eval = False
    _, _, running = built(config=config)
    shifted, plain = running.embed(v, x + c, y + d), running.embed(v, x, y)
    assert np.abs(np.asarray(shifted["z_x"]) - np.asarray(plain["z_x"])).max() > far
