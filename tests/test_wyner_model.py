"""The Wyner model's update: data parallelism, term guards, EMA, gradients paths."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import digits_add1, gaussian
from tests.test_subpixel import count_dots
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
    chex.assert_trees_all_close(one.gen_params, four.gen_params, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(one.disc_params, four.disc_params, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(one.ema_params, four.ema_params, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(m1, m4, rtol=1e-4, atol=1e-5)

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
    # gen/total is the λ-weighted sum of the logged (unweighted) terms; disc/total the plain
    # sum of the discriminator losses (uniform weights, the reference default).
    lam = config.loss.lambdas
    expected = sum(lam[k] * float(m1[f"gen/{k}"]) for k in terms)
    np.testing.assert_allclose(float(m1["gen/total"]), expected, rtol=1e-5)
    disc = sum(float(m1[f"disc/{k}"]) for k in model.terms.pairs + model.terms.ci + model.terms.agg)
    np.testing.assert_allclose(float(m1["disc/total"]), disc, rtol=1e-5)


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
        np.testing.assert_allclose(float(wyner.ema_decay(0.999, n, True)), expected, rtol=1e-6)
    ema = {"w": jnp.array([1.0, 2.0])}
    new = wyner.ema_update(ema, {"w": jnp.array([3.0, 2.0])}, 0.9)
    np.testing.assert_allclose(new["w"], [1.2, 2.0], rtol=1e-6)


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
    np.testing.assert_allclose(metrics["gen/total"], metrics["gen/j"], rtol=1e-6)
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

    for n in (1, 2):
        np.testing.assert_allclose(ours(params, h, es[:n]), reference(params, h, es[:n]), rtol=1e-5)
        weights = jnp.arange(1.0, 6 * n + 1).reshape(n, 6)
        loss = lambda f: lambda p, h, es: jnp.sum(jnp.tanh(f(p, h, es)) * weights)  # noqa
        g0 = jax.grad(loss(ours), argnums=(0, 1, 2))(params, h, es[:n])
        g1 = jax.grad(loss(reference), argnums=(0, 1, 2))(params, h, es[:n])
        chex.assert_trees_all_close(g0, g1, rtol=1e-5, atol=1e-6)


def test_ratio_head_blocks_are_drawn_with_the_whole_kernels_xavier_bound():
    params = wyner.RatioHead(width=64, layers=1, negative_slope=0.2).init(
        jax.random.PRNGKey(0), jnp.ones((2, 300)), (jnp.ones((2, 100)),), train=True
    )["params"]
    bound = np.sqrt(6.0 / (300 + 100 + 64))  # xavier_uniform of the [400, 64] kernel
    for name in ("kernel_h", "kernel_e"):
        w = np.asarray(params[name])
        assert np.abs(w).max() <= bound and np.abs(w).max() > 0.98 * bound
        np.testing.assert_allclose(w.std(), bound / np.sqrt(3), rtol=0.05)  # U(±b): b/√3
