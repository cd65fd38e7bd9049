"""Gradient paths of the Variational Wyner model, against tables written from the spec.

wyner-model.md §1.3 says which networks produce each variable of the four sample sets, §2.2
which variables each density-ratio estimator sees, §2.4 every generator loss term and §3.2
which parameters each half of the update trains. From those, for every loss term: the
parameter groups (top-level modules of the parameter trees) that receive a non-zero
gradient; every other group must receive exactly zero. The tables below are derived from
the spec by hand, not recorded from the code, and one parameterised test checks each row.

Generator groups (`WynerGenerator`): F_xy, f_xy (joint encoder z = f_xy(F_xy(x, y))); F_x, f_x,
l_x (marginal encoder z = f_x(F_x(x)) and local head u = l_x([z, F_x(x)])); F_y, f_y, l_y;
decoders g_x(z, u), g_y(z, v). Discriminator groups (`WynerDiscriminator`): the shared feature
map D_F(x, y), each estimator's latent embedder E_k and ratio head H_k (§2.1), and the
latent-only MLP A_k of an agg estimator.

Also here: the D step writes no generator parameter and the G step no discriminator
parameter (`train_step`, §3.2); the CI heads train on detached D_F features in the D step
(§2.2); a λ = 0 term adds nothing to the generator's gradient; and j_rec_zuv against NumPy.
"""

import copy

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import digits_add1
from tests import tolerances
from wyner_jax import data, nets
from wyner_jax.models import wyner
from wyner_jax.models.base import build_model

GEN_GROUPS = frozenset({"F_xy", "f_xy", "F_x", "f_x", "l_x", "F_y", "f_y", "l_y", "g_x", "g_y"})

# What each variable of the four sample sets depends on (§1.3). The data x_q, y_q and the prior
# draws z_p, u_p, v_p, u ~ p(u), v ~ p(v) are constants.
#   var:  z_qxy = f_xy(F_xy(x_q, y_q));  u_qxy = l_x(z_qxy, F_x(x_q));  v_qxy = l_y(z_qxy, F_y(y_q))
#   j:    x_p = g_x(z_p, u_p);  y_p = g_y(z_p, v_p)
#   cx2y: z_qx = f_x(F_x(x_q));  u_qxm = l_x(z_qx, F_x(x_q));  y_px = g_y(z_qx, v)
#   cy2x: z_qy = f_y(F_y(y_q));  v_qym = l_y(z_qy, F_y(y_q));  x_py = g_x(z_qy, u)
# A term reaches the union of what its inputs depend on: the plug-in S = E_P T_k − E_Q T_k
# through D_F(x, y) and E_k(latents) of both its sample sets, over the variables §2.2 lists.
GEN_TABLE = {
    # --- distribution matching (§2.2 / §2.4)
    # var (x_q, y_q, z_qxy, u_qxy, v_qxy) vs joint (x_p, y_p, z_p, u_p, v_p)
    "j": {"F_xy", "f_xy", "F_x", "l_x", "F_y", "l_y", "g_x", "g_y"},
    # var (x_q, y_q, z_qxy, v_qxy) vs cx2y (x_q, y_px, z_qx, v): u excluded, so l_x gets nothing
    "cx2y": {"F_xy", "f_xy", "F_y", "l_y", "F_x", "f_x", "g_y"},
    # var (x_q, y_q, z_qxy, u_qxy) vs cy2x (x_py, y_q, z_qy, u): v excluded, so l_y gets nothing
    "cy2x": {"F_xy", "f_xy", "F_x", "l_x", "F_y", "f_y", "g_x"},
    # cx2y (x_q, y_px, z_qx, u_qxm, v) vs cy2x (x_py, y_q, z_qy, u, v_qym): no joint encoder
    "c": {"F_x", "f_x", "l_x", "g_y", "F_y", "f_y", "l_y", "g_x"},
    # cx2y (x_q, y_px, z_qx, u_qxm, v) vs joint (x_p, y_p, priors)
    "mx": {"F_x", "f_x", "l_x", "g_y", "g_x"},
    # cy2x (x_py, y_q, z_qy, u, v_qym) vs joint
    "my": {"F_y", "f_y", "l_y", "g_x", "g_y"},
    # --- CI penalties: E_P[T_k] on the unshuffled (h_set, z_set) only; h not detached in G
    "var_ci": {"F_xy", "f_xy"},  # (D_F(x_q, y_q), z_qxy): the data carry no gradient
    "j_ci": {"g_x", "g_y"},  # (D_F(x_p, y_p), z_p): z_p is a prior draw
    "cx2y_ci": {"F_x", "f_x", "g_y"},  # (D_F(x_q, y_px), z_qx)
    "cy2x_ci": {"F_y", "f_y", "g_x"},  # (D_F(x_py, y_q), z_qy)
    # --- latent ("agg") matching on z alone: T(z_P) − T(z_Q)
    # var_agg is broken in the reference (§2.2: built, never computed); the code's documented
    # meaning is q(z|x,y) against p(z), i.e. z_qxy vs z_p.
    "var_agg": {"F_xy", "f_xy"},
    "cx2y_agg": {"F_x", "f_x"},  # z_qx vs z_p
    "cy2x_agg": {"F_y", "f_y"},  # z_qy vs z_p
    "c_agg": {"F_x", "f_x", "F_y", "f_y"},  # z_qx vs z_qy
    # --- reconstruction consistency (§2.4 table)
    "j_rec_x": {"g_x", "F_xy", "f_xy", "F_x", "l_x"},  # ‖x_q − g_x(z_qxy, u_qxy)‖₁
    "j_rec_y": {"g_y", "F_xy", "f_xy", "F_y", "l_y"},  # ‖y_q − g_y(z_qxy, v_qxy)‖₁
    "cx2y_rec_y": {"g_y", "F_x", "f_x", "F_y", "l_y"},  # ‖y_q − g_y(z_qx, l_y(z_qx, y_q))‖₁
    "cy2x_rec_x": {"g_x", "F_y", "f_y", "F_x", "l_x"},  # ‖x_q − g_x(z_qy, l_x(z_qy, x_q))‖₁
    "mx_rec_x": {"g_x", "F_x", "f_x", "l_x"},  # ‖x_q − g_x(z_qx, u_qxm)‖₁
    "my_rec_y": {"g_y", "F_y", "f_y", "l_y"},  # ‖y_q − g_y(z_qy, v_qym)‖₁
    # (ẑ, û, v̂) = joint-encode(x_p, y_p) against the constants (z_p, u_p, v_p): "gradients
    # flow into both the decoders and the encoders" — the joint encoder and both local heads.
    "j_rec_zuv": {"g_x", "g_y", "F_xy", "f_xy", "F_x", "l_x", "F_y", "l_y"},
}


def disc_table(terms: wyner.Terms) -> dict[str, set[str]]:
    """The D step's objective −J_k per estimator (§2.3), with the generator's outputs constant:
    a pair estimator trains D_F and its own E_k, H_k; a CI estimator only its own E_k, H_k,
    because "in the D step, h is detached for the CI estimators" (§2.2); an agg estimator its
    latent-only MLP."""
    table = {k: {"D_F", f"E_{k}", f"H_{k}"} for k in terms.pairs}
    table.update({k: {f"E_{k}", f"H_{k}"} for k in terms.ci})
    table.update({k: {f"A_{k}"} for k in terms.agg})
    return table


# --------------------------------------------------------------------------- set-up


def tiny_config(dz=5, du=3, dv=2):
    """Digits-Add1, MLP family, tiny widths; dz, du, dv all different (for j_rec_zuv)."""
    config = digits_add1.get_config("mlp")
    m = config.model
    m.dz, m.du, m.dv = dz, du, dv
    m.mlp.encoder_hidden = ()
    m.mlp.encoder_features = 16
    m.mlp.decoder_hidden = (16,)
    m.mlp.disc_hidden = ()
    m.mlp.disc_features = 16
    m.disc.hidden_dim = 8
    config.train.batch_size = 8
    config.data.multiplier = 1
    return config


def first_batch(dataset, n=8):
    b = dataset.train_batch(0, n, 0)
    return {"x": jnp.asarray(b["x"]), "y": jnp.asarray(b["y"])}


def random_state(model, batch, seed=0):
    """A `WynerState` of the model's structure with random parameters.

    The structure is `jax.eval_shape` of `model.init` (traced, not compiled: compiling init
    costs ~10 s on 2 cores, as much as a test here); which paths carry a gradient does not
    depend on the initial values, only on their being generic (no zero kernels)."""
    shapes = jax.eval_shape(model.init, jax.random.PRNGKey(seed), batch)
    rng = np.random.default_rng(seed)

    def fill(path, s):
        name = str(path[-1].key).rsplit("/", 1)[-1]  # spectral norm's "dense/kernel/u"
        if name in ("mean", "bias"):
            return jnp.asarray(0.1 * rng.standard_normal(s.shape), s.dtype)
        if name in ("var", "scale", "sigma"):
            return jnp.asarray(1.0 + 0.1 * rng.uniform(size=s.shape), s.dtype)
        fan_in = s.shape[0] if len(s.shape) > 1 and name.startswith("kernel") else 1
        return jnp.asarray(rng.standard_normal(s.shape) / np.sqrt(fan_in), s.dtype)

    def filled(tree):
        return jax.tree_util.tree_map_with_path(fill, tree)

    gen, disc = filled(shapes.gen_params), filled(shapes.disc_params)
    return wyner.WynerState(
        step=jnp.zeros((), jnp.int32),
        rng=jax.random.PRNGKey(seed + 1),
        gen_params=gen,
        gen_stats=filled(shapes.gen_stats),
        disc_params=disc,
        disc_stats=filled(shapes.disc_stats),
        gen_opt=model.gen_opt.init(gen),
        disc_opt=model.disc_opt.init(disc),
        ema_params=gen,
    )


def values_and_rows(f, params):
    """f(params) = (a dict of scalars, aux), and the gradient of each scalar.

    One program, compiled once: the gradient of Σ_k w_k·f_k(params) with the weights w an
    argument, run once per term with w one-hot. A zero-weighted term contributes exact
    zeros (0·finite = 0), so each run is that term's gradient alone. (The Jacobian by
    vmapping the VJP over the rows gives the same numbers but costs 2-3× the compile time.)
    """
    names = list(jax.eval_shape(f, params)[0])

    def weighted(p, w):
        out, aux = f(p)
        return sum(w[k] * out[k] for k in names), (out, aux)

    grad = jax.jit(jax.grad(weighted, has_aux=True))
    rows = {}
    for k in names:
        g, (out, aux) = grad(params, {j: jnp.float32(j == k) for j in names})
        rows[k] = jax.device_get(g)
    return jax.device_get(out), rows, jax.device_get(aux)


def reached(grads) -> set[str]:
    """The groups with any non-zero gradient entry."""
    return {g for g, t in grads.items() if any(np.any(np.asarray(a) != 0) for a in leaves(t))}


def leaves(tree):
    return jax.tree_util.tree_leaves(tree)


def group_norm(tree) -> float:
    return float(np.sqrt(sum(np.sum(np.square(np.asarray(a, np.float64))) for a in leaves(tree))))


@pytest.fixture(scope="module")
def table_model():
    """Every term of §2.4 active (λ = 1), except var_ci at λ = 0: built and logged, not
    penalised (the λ = 0 case). Spectral normalisation off: it changes no path (the update
    tests below keep it on), and without it a second call of a network in train mode
    reproduces the first (each spectrally normalised call advances its power iteration), so
    j_rec_zuv's re-encoding can be recomputed outside the model."""
    config = tiny_config()
    config.model.sn_on_feature_layers = False
    lam = config.loss.lambdas
    for k in lam.keys():
        lam[k] = 1.0
    lam.var_ci = 0.0
    dataset = data.build(config.data)
    model = build_model(config, dataset)
    batch = first_batch(dataset)
    state = random_state(model, batch)
    prior = model.sample_priors(jax.random.PRNGKey(1), batch["x"].shape[0])
    return model, state, batch, prior


@pytest.fixture(scope="module")
def gen_rows(table_model):
    """Value and gradient (over the generator parameters) of every logged generator term, in
    the G step of `train_step`: reconstructions on, the discriminator frozen but
    differentiated through, CI features not detached, instance noise as configured. Also the
    generator's samples (without the reconstructions), for the D step."""
    model, state, batch, prior = table_model
    k_noise, k_perm, k_enc = jax.random.split(jax.random.PRNGKey(2), 3)

    def terms(gen_params):
        with nets.compute_dtype(model.compute_dtype):
            s, _ = model.generator.apply(
                {"params": gen_params, "batch_stats": state.gen_stats},
                batch["x"],
                batch["y"],
                prior,
                train=True,
                recon=True,
                rngs={"encoder_noise": k_enc},
                mutable=["batch_stats"],
            )
            logits, _ = model.discriminator.apply(
                {"params": state.disc_params, "batch_stats": state.disc_stats},
                s,
                model.sigma_x,
                model.sigma_y,
                train=True,
                noise=model.noise_in_g_step,
                detach_ci_features=False,
                rngs={"noise": k_noise, "permute": k_perm},
                mutable=["batch_stats"],
            )
            _, t = model.generator_loss(logits, s["rec"])
        return t, {k: v for k, v in s.items() if k != "rec"}

    return values_and_rows(terms, state.gen_params)


@pytest.fixture(scope="module")
def disc_rows(table_model, gen_rows):
    """Value and gradient (over the discriminator parameters) of every logged D-step term, on
    generator samples that are constants, with the CI features detached, as in
    `train_step`'s D step."""
    model, state, _, _ = table_model
    samples = gen_rows[2]
    k_noise, k_perm = jax.random.split(jax.random.PRNGKey(3))

    def terms(disc_params):
        with nets.compute_dtype(model.compute_dtype):
            logits, _ = model.discriminator.apply(
                {"params": disc_params, "batch_stats": state.disc_stats},
                samples,
                model.sigma_x,
                model.sigma_y,
                train=True,
                noise=True,
                detach_ci_features=True,
                rngs={"noise": k_noise, "permute": k_perm},
                mutable=["batch_stats"],
            )
            return model.discriminator_loss(logits)[1], None

    return values_and_rows(terms, state.disc_params)


# --------------------------------------------------------------------------- the tables


def test_the_tables_cover_every_term_and_group(table_model, gen_rows, disc_rows):
    model, state, _, _ = table_model
    terms = model.terms
    assert set(GEN_TABLE) == set(terms.active()), "a §2.4 term without a row, or a row too many"
    assert set(state.gen_params) == GEN_GROUPS
    disc = disc_table(terms)
    assert set(state.disc_params) == set().union(*disc.values())
    _, rows, _ = gen_rows
    assert {f"gen/{k}" for k in GEN_TABLE} | {"gen/total"} == set(rows)
    _, rows, _ = disc_rows
    assert {f"disc/{k}" for k in disc} | {"disc/total"} == set(rows)


@pytest.mark.parametrize("term", list(GEN_TABLE))
def test_generator_term_reaches_exactly_the_networks_of_the_spec(term, gen_rows):
    values, rows, _ = gen_rows
    grads = rows[f"gen/{term}"]
    assert np.isfinite(values[f"gen/{term}"])
    expected = GEN_TABLE[term]
    got = reached(grads)
    assert got == expected, (
        f"gen/{term}: gradient missing from {sorted(expected - got)}, "
        f"present in {sorted(got - expected)} (should be exactly zero there)"
    )
    for g in expected:
        norm = group_norm(grads[g])
        assert np.isfinite(norm) and norm > 0, (g, norm)


def test_discriminator_term_reaches_exactly_its_own_estimator(table_model, disc_rows):
    model, state, _, _ = table_model
    values, rows, _ = disc_rows
    failures = []
    for k, expected in disc_table(model.terms).items():
        grads = rows[f"disc/{k}"]
        got = reached(grads)
        if got != expected or not all(group_norm(grads[g]) > 0 for g in expected):
            failures.append(f"disc/{k}: expected {sorted(expected)}, got {sorted(got)}")
        assert np.isfinite(values[f"disc/{k}"])
    assert not failures, "\n".join(failures)
    # The sum trains everything: every estimator has uniform weight 1 (§2.3).
    assert reached(rows["disc/total"]) == set(state.disc_params)


def test_a_zero_lambda_term_contributes_nothing(table_model, gen_rows):
    """var_ci has λ = 0: it is estimated and logged (§2.1: a CI estimator is built for
    λ ≥ 0) and its own gradient reaches the joint encoder, but ∂ gen/total is the
    λ-weighted sum of the other terms' gradients: the same as with the term removed."""
    model, _, _, _ = table_model
    values, rows, _ = gen_rows
    assert model.lambdas["var_ci"] == 0.0 and "var_ci" in model.terms.ci
    assert np.isfinite(values["gen/var_ci"]) and values["gen/var_ci"] != 0.0
    assert group_norm(rows["gen/var_ci"]["f_xy"]) > 0
    kept = [k for k in model.terms.active() if model.lambdas[k] != 0.0]
    assert "var_ci" not in kept and len(kept) == len(model.terms.active()) - 1
    weighted = {
        k: jax.tree_util.tree_map(lambda a, k=k: model.lambdas[k] * a, rows[f"gen/{k}"])
        for k in kept
    }
    without = jax.tree_util.tree_map(lambda *a: sum(a), *weighted.values())
    with_it = jax.tree_util.tree_map(lambda a, b: a + b, without, rows["gen/var_ci"])
    total = rows["gen/total"]
    # Rounding: the total's backward pass sums the terms' cotangents in another order than
    # this sum of separate backward passes; the scale is the largest single contribution.
    paths = jax.tree_util.tree_flatten_with_path(total)[0]
    distinguishable = False
    for (path, t), w, wi, *parts in zip(
        paths, leaves(without), leaves(with_it), *(leaves(v) for v in weighted.values())
    ):
        scale = max(float(np.max(np.abs(p))) for p in parts)
        tolerances.assert_close(
            t, w, depth=len(kept), scale=scale, err_msg=jax.tree_util.keystr(path)
        )
        tol = tolerances.tolerance(w, depth=len(kept), scale=scale)
        distinguishable |= bool(np.max(np.abs(np.asarray(wi) - np.asarray(w))) > 100 * tol)
    assert distinguishable, "var_ci's gradient is too small for this test to see it"


# --------------------------------------------------------------------------- the update


@pytest.fixture(scope="module")
def step_models():
    """λ_cx2y = 1 alone (with var_ci and cx2y_ci built at λ = 0): one pair estimator, two CI
    estimators, and l_x built (u_qxy, u_qxm) though no active term reaches it; spectral
    normalisation on (the default). Two copies: the generator's learning rate 0, and the
    discriminator's; one initial state for both."""
    config = tiny_config()
    lam = config.loss.lambdas
    for k in lam.keys():
        lam[k] = 0.0
    lam.cx2y = 1.0
    dataset = data.build(config.data)
    frozen = {}
    for which in ("lr_generator", "lr_discriminator"):
        c = copy.deepcopy(config)
        c.optim[which] = 0.0
        frozen[which] = build_model(c, dataset)
    batch = first_batch(dataset)
    return frozen, random_state(frozen["lr_generator"], batch), batch


def assert_same_params(after, before, what):
    """Bit for bit (one program on one machine: exactness is the claim)."""
    assert jax.tree_util.tree_structure(after) == jax.tree_util.tree_structure(before), what
    for (path, a), b in zip(jax.tree_util.tree_flatten_with_path(after)[0], leaves(before)):
        np.testing.assert_array_equal(a, b, err_msg=f"{what}{jax.tree_util.keystr(path)}")


def moved(after, before) -> set[str]:
    """The groups with any entry changed."""
    return {
        g
        for g in before
        if any(np.any(a != b) for a, b in zip(leaves(after[g]), leaves(before[g])))
    }


def test_discriminator_step_leaves_the_generator_and_trains_ci_heads_on_detached_features(
    step_models,
):
    """With lr_G = 0 every change to the generator would come from the D step: there is none,
    while every discriminator network moves (the first Adam step moves exactly the entries
    with a non-zero gradient). Then the CI heads' parameters are perturbed: the D_F and pair
    head updates stay bit for bit the same, so no CI loss reaches D_F in the D step (§2.2)."""
    frozen, state, batch = step_models
    model = frozen["lr_generator"]
    step = jax.jit(model.train_step)
    new, metrics = jax.device_get(step(state, batch))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert_same_params(new.gen_params, state.gen_params, "gen_params")
    assert_same_params(new.ema_params, state.ema_params, "ema_params")
    expected = set().union(*disc_table(model.terms).values())
    assert moved(new.disc_params, state.disc_params) == expected == set(state.disc_params)

    ci_heads = {f"{p}_{k}" for k in model.terms.ci for p in "EH"}
    assert ci_heads == {"E_var_ci", "H_var_ci", "E_cx2y_ci", "H_cx2y_ci"}
    perturbed = dict(state.disc_params)
    for g in ci_heads:
        perturbed[g] = jax.tree_util.tree_map(lambda a: 1.5 * a + 0.01, perturbed[g])
    new_p, _ = jax.device_get(step(state.replace(disc_params=perturbed), batch))
    for g in state.disc_params:
        if g in ci_heads:
            continue
        assert_same_params(new_p.disc_params[g], new.disc_params[g], f"disc_params[{g}]")


def test_generator_step_leaves_the_discriminator_and_moves_exactly_the_table_networks(
    step_models,
):
    """With lr_D = 0 every change to the discriminator would come from the G step: there is
    none. The generator networks that move are exactly those of the table rows of the terms
    with λ ≠ 0 (here gen/cx2y alone): l_x exists but no active term reaches it."""
    frozen, state, batch = step_models
    model = frozen["lr_discriminator"]
    new, metrics = jax.device_get(jax.jit(model.train_step)(state, batch))
    assert all(np.isfinite(float(v)) for v in metrics.values())
    assert_same_params(new.disc_params, state.disc_params, "disc_params")
    active = [k for k in model.terms.active() if model.lambdas[k] != 0.0]
    assert active == ["cx2y"]
    assert "l_x" in state.gen_params
    assert moved(new.gen_params, state.gen_params) == GEN_TABLE["cx2y"]


# --------------------------------------------------------------------------- j_rec_zuv


def test_j_rec_zuv_is_three_latent_mses_summed(table_model, gen_rows):
    """§2.4: ‖ẑ − z_p‖² + ‖û − u_p‖² + ‖v̂ − v_p‖², three means summed, (ẑ, û, v̂) the joint
    encoding of the generated pair (x_p, y_p), against NumPy in float64. dz, du, dv differ,
    so one mean over the concatenation [z, u, v] (which weights them by their widths) fails."""
    model, state, _, prior = table_model
    values = gen_rows[0]
    a = model.arch
    assert len({a.dz, a.du, a.dv}) == 3

    variables = {"params": state.gen_params, "batch_stats": state.gen_stats}

    def call(method, *args):
        out, _ = model.generator.apply(
            variables,
            *args,
            train=True,
            method=method,
            rngs={"encoder_noise": jax.random.PRNGKey(0)},
            mutable=["batch_stats"],
        )
        return out

    z, u, v = (np.asarray(prior[k], np.float64) for k in "zuv")
    x_p = call(wyner.WynerGenerator.decode_x, prior["z"], prior["u"])
    y_p = call(wyner.WynerGenerator.decode_y, prior["z"], prior["v"])
    joint = gen_rows[2]["j"]  # the model's joint samples, from the logged step
    for k in "zuv":
        np.testing.assert_array_equal(joint[k], prior[k])
    tolerances.assert_close(x_p, joint["x"], depth=8, err_msg="x_p")
    tolerances.assert_close(y_p, joint["y"], depth=8, err_msg="y_p")
    z_hat, u_hat, v_hat, _, _ = (
        np.asarray(t, np.float64) for t in call(wyner.WynerGenerator.variational, x_p, y_p)
    )
    assert z_hat.shape == z.shape and u_hat.shape == u.shape and v_hat.shape == v.shape
    parts = [np.mean((p - t) ** 2) for p, t in ((z_hat, z), (u_hat, u), (v_hat, v))]
    expected = float(sum(parts))
    # float32 both sides: the encoder's few layers, then a mean of squares of O(1) entries.
    logged = float(values["gen/j_rec_zuv"])
    assert logged == tolerances.approx(expected, depth=16)

    concat = np.concatenate([z_hat - z, u_hat - u, v_hat - v], -1)
    one_mean = float(np.mean(concat**2))
    assert abs(one_mean - expected) > 100 * tolerances.tolerance(expected, depth=16), (
        "the test config cannot tell the per-latent sum from one mean over [z, u, v]"
    )
