"""The Wyner model's update: data parallelism, term guards, EMA, gradients paths."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import digits_add1, gaussian
from tests.test_subpixel import count_dots
from tests.tolerances import approx, assert_close, assert_trees_close, sampling_tolerance
from wyner_jax import data, nets, parallel
from wyner_jax.models import wyner
from wyner_jax.models.base import build_model


def small_config(family="mlp"):
    config = digits_add1.get_config(family)
    config.model.mlp.encoder_hidden = ()
    config.model.mlp.encoder_features = 32
    config.model.mlp.decoder_hidden = (32,)
    config.model.mlp.disc_hidden = ()
    config.model.mlp.disc_features = 32
    config.model.conv.base = 4
    config.model.disc.hidden_dim = 16
    config.train.batch_size = 16
    config.data.multiplier = 1
    return config


def initial_state(model, config, dataset):
    batch0 = dataset.train_batch(0, config.train.batch_size, config.seed)
    return jax.device_get(
        jax.jit(model.init)(
            jax.random.PRNGKey(config.seed), {k: jnp.asarray(v) for k, v in batch0.items()}
        )
    )


def run_steps(model, state, config, dataset, devices, n_steps):
    mesh = parallel.make_mesh(devices)
    state = parallel.replicate(state, mesh)
    step = parallel.compile_train_step(model.train_step, mesh)
    for i in range(n_steps):
        batch = parallel.global_batch(
            dataset.train_batch(i, config.train.batch_size, config.seed), mesh
        )
        state, metrics = step(state, batch)
    return jax.device_get(state), jax.device_get(metrics)


# The conv case compiles the conv networks twice (~100 s on 2 cores): `make test-all`.
@pytest.mark.parametrize("family", ["mlp", pytest.param("conv", marks=pytest.mark.heavy)])
def test_one_device_and_four_devices_give_the_same_parameters(family):
    """The step has global-batch semantics: sharding the batch changes nothing (DESIGN §4)."""
    assert jax.device_count() >= 4, "conftest sets 4 fake CPU devices"
    config = small_config(family)
    if family == "conv":  # fewer terms: the conv graph is the slow one to compile
        for k in ("cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y", "j_rec_zuv"):
            config.loss.lambdas[k] = 0.0
    dataset = data.build(config.data)
    model = build_model(config, dataset)
    state = initial_state(model, config, dataset)
    one, m1 = run_steps(model, state, config, dataset, jax.devices()[:1], 3)
    four, m4 = run_steps(model, state, config, dataset, jax.devices()[:4], 3)
    # Three steps, each summing over the batch (in another order on four devices) through
    # about eight layers; each leaf at its own scale (a bias after three Adam steps is ~3·lr).
    # The Adam moments are linear in the gradients: rounding-level differences, so a
    # per-device statistic (10^5-10^7 eps·scale, measured) fails here. Adam's update
    # m/(√v + ε) then amplifies a rounding difference of an entry whose gradient is near ε up
    # to a fraction of lr (measured 0.1·lr on one g_y kernel entry with other λs), hence the
    # parameters' wider depth, as in test_multihost.
    depth = 3 * (config.train.batch_size + 8)
    assert_trees_close(four.gen_opt, one.gen_opt, depth=depth)
    assert_trees_close(four.disc_opt, one.disc_opt, depth=depth)
    assert_trees_close(four.gen_params, one.gen_params, depth=6 * depth)
    assert_trees_close(four.disc_params, one.disc_params, depth=6 * depth)
    assert_trees_close(four.ema_params, one.ema_params, depth=6 * depth)
    assert_trees_close(m4, m1, depth=depth)

    # The update moved every network, kept everything finite and logged every active term.
    assert int(one.step) == 3
    for before, after in (
        (state.gen_params, one.gen_params),
        (state.disc_params, one.disc_params),
        (state.gen_params, one.ema_params),
    ):
        moved = jax.tree_util.tree_map(lambda a, b: bool(np.any(a != b)), before, after)
        assert any(jax.tree_util.tree_leaves(moved))
        assert all(np.all(np.isfinite(a)) for a in jax.tree_util.tree_leaves(after))
    terms = model.terms.pairs + model.terms.ci + model.terms.agg + model.terms.rec
    assert {f"gen/{k}" for k in terms} | {"gen/total", "disc/total"} == set(
        k for k in m1 if k.startswith("gen/")
    ) | {"disc/total"}
    assert all(np.isfinite(float(v)) for v in m1.values())
    # That gen/total and disc/total weight each of these terms by its own λ:
    # test_totals_weight_each_term_by_its_own_lambda.


def distinct_lambdas(config):
    """Gives every active λ (> 0) of ``config`` its own value, 0.5, 0.75, 1, ... in
    LAMBDA_KEYS order, so that a weight applied to the wrong term changes the total."""
    lam = config.loss.lambdas
    active = [k for k in gaussian.default.LAMBDA_KEYS if lam[k] > 0]
    for i, k in enumerate(active):
        lam[k] = 0.5 + 0.25 * i
    assert len({lam[k] for k in active}) == len(active) >= 2
    return config


def test_totals_weight_each_term_by_its_own_lambda():
    """L_G = Σ_k λ_k · term_k (§2.5) and L_D = Σ_k (−J_k) (§2.3, uniform weights), against
    NumPy on synthetic logits and reconstruction pairs.

    Every term gets its own inputs (so all terms differ) and every active λ its own value, read
    from the config dict, not from the model's table: a weight applied to another term, a term
    left out of the sum, a logged value that is already weighted, or the latent reconstruction
    taken as one mean over [z, u, v] instead of three means summed, all fail.
    """
    config = distinct_lambdas(small_config())
    loss = config.loss
    assert (loss.generator, loss.discriminator, loss.label_smoothing) == ("symmetric_kl", "js", 1)
    assert (loss.recon_x, loss.recon_y, loss.recon_latent) == ("l1", "l1", "l2")
    assert loss.uniform_disc_weights
    model = build_model(config, data.build(config.data))
    t = model.terms
    assert t.pairs and t.ci and "j_rec_zuv" in t.rec and "j_rec_x" in t.rec
    rng = np.random.default_rng(0)
    f32 = lambda a: np.asarray(a, np.float32)  # noqa: E731
    f64 = lambda a: np.asarray(a, np.float64)  # noqa: E731
    error = {"x": lambda d: np.abs(d), "y": lambda d: np.abs(d), "latent": np.square}

    # Term values spread by about 1 from one term to the next, λ by ≥ 0.25: swapping two λs
    # moves the total by Δλ·Δterm ≳ 0.1, over ten times the rounding tolerance. The scale of
    # a float32 mean of n terms is their mean magnitude (each partial sum is at most their sum).
    logits, rec, gen, disc, scale, d_scale = {}, {}, {}, {}, {}, {}
    for i, k in enumerate(t.pairs + t.agg + t.ci):
        t_p, t_q = f32(rng.normal(i, 1.0, 16)), f32(rng.normal(-i, 1.0, 16))
        logits[k] = (t_p, t_q)
        p, q = f64(t_p), f64(t_q)
        gen[k] = p.mean() if k in t.ci else p.mean() - q.mean()  # E_P[T] / symmetric KL
        scale[k] = np.abs(p).mean() + (0 if k in t.ci else np.abs(q).mean())
        # JS objective: mean log σ(T_P) + mean log(1 - σ(T_Q)) + 2 log 2.
        sp_p, sp_q = np.logaddexp(0, -p), np.logaddexp(0, q)
        disc[k] = -(-sp_p.mean() - sp_q.mean() + 2 * np.log(2))
        d_scale[k] = sp_p.mean() + sp_q.mean() + 2 * np.log(2)
    for i, k in enumerate(t.rec):
        latent = wyner.RECONSTRUCTIONS[k] == "latent"
        shapes = [(16, 2), (16, 1), (16, 1)] if k == "j_rec_zuv" else [(16, 4)]  # z, u, v
        target = tuple(f32(rng.normal(0.0, 1.0, s)) for s in shapes)
        pred = tuple(f32(rng.normal(1.0 if latent else i + 1.0, 1.0, s)) for s in shapes)
        err = [error[wyner.RECONSTRUCTIONS[k]](f64(a) - f64(b)) for a, b in zip(pred, target)]
        gen[k] = scale[k] = sum(e.mean() for e in err)  # one mean per target, summed
        rec[k] = (target, pred) if k == "j_rec_zuv" else (target[0], pred[0])

    total, logged = jax.jit(model.generator_loss)(logits, rec)
    assert set(logged) == {f"gen/{k}" for k in gen} | {"gen/total"}
    for k in gen:  # float32 means of ≤ 16 × 4 elements
        assert float(logged[f"gen/{k}"]) == approx(gen[k], depth=64, scale=scale[k]), k
    lam = config.loss.lambdas
    expected = sum(lam[k] * gen[k] for k in gen)
    bound = sum(lam[k] * scale[k] for k in gen)
    assert float(total) == approx(expected, depth=64 + len(gen), scale=bound)

    d_total, d_logged = jax.jit(model.discriminator_loss)(logits)
    assert set(d_logged) == {f"disc/{k}" for k in disc} | {"disc/total"}
    for k in disc:
        assert float(d_logged[f"disc/{k}"]) == approx(disc[k], depth=16, scale=d_scale[k]), k
    bound = sum(d_scale.values())
    assert float(d_total) == approx(sum(disc.values()), depth=16 + len(disc), scale=bound)


def test_term_guards_follow_the_reference():
    lam = {k: 0.0 for k in gaussian.default.LAMBDA_KEYS}
    lam.update(
        j=1.0, cx2y=1.0, c=1.0, mx_rec_x=1.0, cy2x_rec_x=1.0, j_rec_x=1.0, cx2y_agg=1.0, cy2x_ci=0.0
    )
    t = wyner.Terms.from_lambdas(lam)
    assert t.pairs == ("j", "cx2y")  # c needs both conditionals
    assert "mx_rec_x" not in t.rec and "cy2x_rec_x" not in t.rec  # need λ_cy2x > 0
    assert "j_rec_x" in t.rec  # λ_j > 0 suffices
    assert t.ci == ("var_ci", "j_ci", "cx2y_ci")  # λ ≥ 0 builds; cy2x_ci has no path
    assert t.agg == ("cx2y_agg",)  # decoupled from λ_j (a reference coupling, fixed)
    lam["var_ci"] = -1.0
    assert "var_ci" not in wyner.Terms.from_lambdas(lam).ci
    with pytest.raises(ValueError, match="No distribution-matching term"):
        wyner.Terms.from_lambdas({k: 0.0 for k in lam})


def test_ema_decay_matches_torch_ema_warmup():
    for n in (1, 5, 100, 10_000):
        expected = min(0.999, (1 + n) / (10 + n))
        assert float(wyner.ema_decay(0.999, n, True)) == approx(expected, depth=3)
    ema = {"w": jnp.array([1.0, 2.0])}
    new = wyner.ema_update(ema, {"w": jnp.array([3.0, 2.0])}, 0.9)
    assert_close(new["w"], [1.2, 2.0], depth=3)  # d·e + (1 - d)·p: three roundings


def test_discriminator_step_does_not_change_the_generator_and_ci_heads_see_detached_features():
    """D gradients reach only D; in the D step the CI loss does not train D_F (§2.2)."""
    config = small_config()
    lam = config.loss.lambdas
    for k in list(lam.keys()):
        lam[k] = 0.0
    lam.j = 1.0  # one pair estimator + the var CI estimator (λ_var_ci = 0 still builds it)
    dataset = data.build(config.data)
    model = build_model(config, dataset)
    batch = {k: jnp.asarray(v) for k, v in dataset.train_batch(0, 16, 0).items()}
    state = model.init(jax.random.PRNGKey(0), batch)
    prior = model.sample_priors(jax.random.PRNGKey(1), 16)
    samples, _ = model.generator.apply(
        {"params": state.gen_params, "batch_stats": state.gen_stats},
        batch["x"],
        batch["y"],
        prior,
        train=True,
        recon=False,
        mutable=["batch_stats"],
    )

    def ci_only_loss(disc_params):
        logits, _ = model.discriminator.apply(
            {"params": disc_params, "batch_stats": state.disc_stats},
            samples,
            model.sigma_x,
            model.sigma_y,
            train=True,
            noise=True,
            detach_ci_features=True,
            rngs={"noise": jax.random.PRNGKey(2), "permute": jax.random.PRNGKey(3)},
            mutable=["batch_stats"],
        )
        from wyner_jax import losses

        return -losses.js_objective(*logits["var_ci"])

    grads = jax.grad(ci_only_loss)(state.disc_params)
    norm = lambda t: sum(float(jnp.sum(g**2)) for g in jax.tree_util.tree_leaves(t))  # noqa: E731
    assert norm(grads["D_F"]) == 0.0
    assert norm(grads["H_var_ci"]) > 0.0
    assert norm(grads["H_j"]) == 0.0


def test_zero_lambda_terms_are_logged_without_a_backward_pass():
    """λ_var_ci = 0 (the reference still trains that estimator, §7 item 4): gen/var_ci is
    logged and the generator loss equals Σ λ·term, but the G step's backward pass through
    H_var_ci is not built (0·∂term is no update), so the step has fewer products."""
    config = small_config()
    lam = config.loss.lambdas
    for k in list(lam.keys()):
        lam[k] = 0.0
    lam.j = 1.0
    dataset = data.build(config.data)
    batch = {k: jnp.asarray(v) for k, v in dataset.train_batch(0, 16, 0).items()}

    def model_and_state(lambda_var_ci):
        config.loss.lambdas.var_ci = lambda_var_ci
        model = build_model(config, dataset)
        return model, model.init(jax.random.PRNGKey(0), batch)

    def step_jaxpr(model, state):
        return jax.make_jaxpr(model.train_step)(state, batch).jaxpr

    model, state = model_and_state(0.0)
    zero = step_jaxpr(model, state)
    _, metrics = jax.jit(model.train_step)(state, batch)  # only this case is run
    small = step_jaxpr(*model_and_state(1e-3))
    assert np.isfinite(metrics["gen/var_ci"]) and metrics["gen/var_ci"] != 0.0
    assert float(metrics["gen/total"]) == approx(float(metrics["gen/j"]), depth=2)  # 0 + 1·j
    # H_var_ci is Dense → LReLU → Dense: its backward to the generator is two products
    # (input gradients of both layers) in the G step, plus E_var_ci's input gradient. Those
    # are exactly the ones gone; the D step trains the estimator either way.
    assert count_dots(small) - count_dots(zero) == 3


def test_ratio_head_equals_the_reference_mlp_on_the_concatenated_input():
    """RatioHead (first kernel in two blocks, h·W_h shared by the embeddings) against
    nets.MLP, the reference get_fc, on [h, e] with the blocks stacked into one kernel:
    outputs and gradients (parameters and inputs) agree, for one and for two embeddings."""
    kh, ke1, ke2, kinit = jax.random.split(jax.random.PRNGKey(3), 4)
    h = jax.random.normal(kh, (6, 10))
    es = (jax.random.normal(ke1, (6, 4)), jax.random.normal(ke2, (6, 4)))
    head = wyner.RatioHead(width=8, layers=2, negative_slope=0.2)
    params = head.init(kinit, h, es, train=True)["params"]
    mlp = nets.MLP(hidden=(8, 8), features=1, negative_slope=0.2)

    def as_mlp(p):
        return {
            "Dense_0": {
                "kernel": jnp.concatenate([p["kernel_h"], p["kernel_e"]]),
                "bias": p["bias"],
            },
            "Dense_1": p["rest"]["Dense_0"],
            "Linear_0": p["rest"]["Linear_0"],
        }

    def ours(p, h, es):
        return jnp.stack(head.apply({"params": p}, h, es, train=True))

    def reference(p, h, es):
        rows = [jnp.concatenate([h, e], -1) for e in es]
        return jnp.stack([mlp.apply({"params": as_mlp(p)}, r, train=True)[:, 0] for r in rows])

    # Two 14-long first-layer dot products (h·W_h + e·W_e) vs one, then two 8-wide layers;
    # the gradients add the backward of those layers and the sum over the 6 rows.
    for n in (1, 2):
        assert_close(ours(params, h, es[:n]), reference(params, h, es[:n]), depth=14 + 2 * 8)
        weights = jnp.arange(1.0, 6 * n + 1).reshape(n, 6)
        loss = lambda f: lambda p, h, es: jnp.sum(jnp.tanh(f(p, h, es)) * weights)  # noqa
        g0 = jax.grad(loss(ours), argnums=(0, 1, 2))(params, h, es[:n])
        g1 = jax.grad(loss(reference), argnums=(0, 1, 2))(params, h, es[:n])
        assert_trees_close(g0, g1, depth=2 * (14 + 2 * 8) + 6 * n)


def test_ratio_head_blocks_are_drawn_with_the_whole_kernels_xavier_bound():
    params = wyner.RatioHead(width=64, layers=1, negative_slope=0.2).init(
        jax.random.PRNGKey(0), jnp.ones((2, 300)), (jnp.ones((2, 100)),), train=True
    )["params"]
    bound = np.sqrt(6.0 / (300 + 100 + 64))  # xavier_uniform of the [400, 64] kernel
    for name in ("kernel_h", "kernel_e"):
        w = np.asarray(params[name])
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
        # U(±b) has standard deviation b/√3; the sample std of n draws has standard error
        # σ·√((κ - 1)/(4n)) with kurtosis κ = 9/5 for the uniform, i.e. σ·√(0.2/n).
        sigma = bound / np.sqrt(3)
        assert w.std() == pytest.approx(
            sigma, rel=0, abs=sampling_tolerance(sigma * np.sqrt(0.2), w.size)
        )


def test_linear_tail_learning_rate_schedule():
    """optim.schedule='linear_tail': lr until decay_from·num_steps, then linearly to 0."""
    import ml_collections

    from wyner_jax.optim import learning_rate, make_optimizer

    o = ml_collections.ConfigDict(
        dict(
            name="adam",
            b1=0.5,
            b2=0.999,
            eps=1e-8,
            amsgrad=True,
            clip_grad_norm=-1.0,
            schedule="linear_tail",
            decay_from=0.6,
        )
    )
    sched = learning_rate(o, 1e-3, 1000)
    for step, want in ((0, 1e-3), (600, 1e-3), (800, 5e-4), (1000, 0.0), (1200, 0.0)):
        assert float(sched(step)) == approx(want, scale=1e-3), step
    o.schedule = "constant"
    assert learning_rate(o, 1e-3, 1000) == 1e-3
    # The optimizer applies it. With a constant gradient Adam's step is lr (bias-corrected
    # m/√v = 1): the 10th of 10 updates (count 9) uses 1e-3·(1 − 3/4); past the end, 0.
    o.schedule = "linear_tail"
    opt = make_optimizer(o, 1e-3, 10)
    params, grads = {"w": jnp.ones(3)}, {"w": jnp.ones(3)}
    state = opt.init(params)
    steps = []
    for _ in range(11):
        update, state = opt.update(grads, state, params)
        steps.append(float(jnp.abs(update["w"]).max()))
    assert steps[0] == approx(1e-3, depth=10) and steps[9] == approx(2.5e-4, depth=10, scale=1e-3)
    assert steps[10] == 0.0
    o.decay_from = 1.0
    with pytest.raises(ValueError, match="decay_from"):
        learning_rate(o, 1e-3, 1000)
    o.schedule = "cosine"
    with pytest.raises(ValueError, match="constant' or 'linear_tail"):
        learning_rate(o, 1e-3, 1000)


def test_generator_batchnorm_switch():
    """model.mlp.generator_batchnorm=False builds the generator's feature maps and decoders
    without BatchNorm (no batch-norm statistics; spectral norm's state stays); True (the
    reference) keeps them."""
    config = gaussian.get_config()
    dataset = data.build(config.data)
    batch = {"x": dataset.train.x[:8], "y": dataset.train.y[:8]}
    normed = {}
    for on in (True, False):
        config.model.mlp.generator_batchnorm = on
        state = build_model(config, dataset).init(jax.random.PRNGKey(0), batch)
        paths = jax.tree_util.tree_flatten_with_path(state.gen_stats)[0]
        names = ["/".join(str(getattr(k, "key", k)) for k in p) for p, _ in paths]
        normed[on] = {n.split("/")[0] for n in names if n.endswith("/mean")}
    assert {"F_x", "F_y", "F_xy", "g_x", "g_y"} <= normed[True]
    assert normed[False] == set()
