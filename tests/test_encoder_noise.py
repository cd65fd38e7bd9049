"""Stochastic encoders as the reference builds them (wyner-model.md §1.2).

With `model.*_encoder_noise_dim` = d > 0, fresh N(0, 1) columns are appended to the input of
every encoder network on every call: to x and y before F_xy, to F_xy(x, y) before f_xy, to x
before F_x, to F_x(x) before f_x, to [z, F_x(x)] before l_x; and the conditional path encodes
x afresh. With d = 0 (the default) every encoder is a deterministic map. Checked here by
recording what each network receives (`nn.intercept_methods`), on the digits MLP family.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.test_gradient_paths import first_batch, tiny_config
from wyner_jax import data
from wyner_jax.models.base import build_model

JOINT, MARGINAL = 3, 2


def model_and_batch(joint: int, marginal: int):
    config = tiny_config()
    config.model.sn_on_feature_layers = False
    config.model.joint_encoder_noise_dim = joint
    config.model.marginal_encoder_noise_dim = marginal
    lam = config.loss.lambdas
    lam.j = lam.cx2y = lam.cy2x = lam.c = 1.0
    dataset = data.build(config.data)
    model = build_model(config, dataset)
    batch = first_batch(dataset)
    variables = model.generator.init(
        {"params": jax.random.PRNGKey(0), "encoder_noise": jax.random.PRNGKey(1)},
        batch["x"],
        batch["y"],
        model.sample_priors(jax.random.PRNGKey(2), 8),
        train=True,
        recon=True,
    )
    return model, batch, variables


def recorded_call(model, batch, variables, key):
    """The generator's samples and, per network name, the inputs of each of its calls."""
    inputs: dict[str, list[np.ndarray]] = {}

    def record(next_fun, args, kwargs, context):
        if context.method_name == "__call__" and context.module.name in NETWORKS:
            inputs.setdefault(context.module.name, []).append(np.asarray(args[0]))
        return next_fun(*args, **kwargs)

    with nn.intercept_methods(record):
        samples, _ = model.generator.apply(
            variables,
            batch["x"],
            batch["y"],
            model.sample_priors(jax.random.PRNGKey(3), 8),
            train=True,
            recon=False,
            rngs={"encoder_noise": key},
            mutable=["batch_stats"],
        )
    return samples, inputs


NETWORKS = ("F_xy", "f_xy", "F_x", "f_x", "l_x", "F_y", "f_y", "l_y")


@pytest.fixture(scope="module")
def stochastic():
    model, batch, variables = model_and_batch(JOINT, MARGINAL)
    return model, batch, variables, recorded_call(model, batch, variables, jax.random.PRNGKey(7))


def test_every_encoder_network_gets_its_own_fresh_noise_columns(stochastic):
    model, batch, _, (_, inputs) = stochastic
    x, y = np.asarray(batch["x"]).reshape(8, -1), np.asarray(batch["y"]).reshape(8, -1)
    dx = x.shape[1]
    # F_xy sees [x, ε_x, y, ε_y]; F_x and F_y see [x, ε] (once on the variational path, once
    # more on each conditional path); the heads see [features, ε] and [z, features, ε].
    (fxy_in,) = inputs["F_xy"]
    np.testing.assert_array_equal(fxy_in[:, :dx], x)
    np.testing.assert_array_equal(fxy_in[:, dx + JOINT : 2 * dx + JOINT], y)
    draws = [fxy_in[:, dx : dx + JOINT], fxy_in[:, 2 * dx + JOINT :], inputs["f_xy"][0][:, -JOINT:]]
    assert [len(inputs[n]) for n in ("F_x", "f_x", "l_x")] == [2, 1, 2]  # var + cx2y paths
    for name in ("F_x", "f_x", "l_x", "F_y", "f_y", "l_y"):
        for a in inputs[name]:
            draws.append(a[:, -MARGINAL:])
    for h in inputs["F_x"]:
        np.testing.assert_array_equal(h[:, :dx], x)
    # Each draw is standard normal-like and differs from every other one: no two networks
    # (nor two calls of one network) share a draw.
    for i, a in enumerate(draws):
        assert np.all(np.isfinite(a)) and np.std(a) > 0.3
        for b in draws[:i]:
            assert a.shape != b.shape or not np.allclose(a, b), "two heads share a noise draw"
    # The conditional path encoded x afresh: its F_x features differ from the variational one's.
    assert not np.allclose(inputs["F_x"][0], inputs["F_x"][1])


def test_a_call_is_stochastic_only_when_asked(stochastic):
    model, batch, variables, (samples, _) = stochastic
    again, _ = recorded_call(model, batch, variables, jax.random.PRNGKey(7))
    other, _ = recorded_call(model, batch, variables, jax.random.PRNGKey(8))
    for path, key in (("var", "z"), ("var", "u"), ("cx2y", "z"), ("cx2y", "y"), ("cy2x", "v")):
        # the same key: the same draws; another key: other latents and samples
        np.testing.assert_array_equal(again[path][key], samples[path][key])
        assert not np.allclose(other[path][key], samples[path][key]), (path, key)

    model, batch, variables = model_and_batch(0, 0)
    one, inputs = recorded_call(model, batch, variables, jax.random.PRNGKey(7))
    two, _ = recorded_call(model, batch, variables, jax.random.PRNGKey(8))
    jax.tree_util.tree_map(np.testing.assert_array_equal, one, two)
    # Deterministic encoders take the data (and features) alone, and the conditional path
    # reuses the variational path's F_x(x) instead of computing it again.
    assert inputs["F_xy"][0].shape[1] == 2 * np.prod(batch["x"].shape[1:])
    assert len(inputs["F_x"]) == 1 and len(inputs["F_y"]) == 1


def test_head_widths_include_the_noise_columns(stochastic):
    model, _, variables, (_, inputs) = stochastic
    p = variables["params"]
    a = model.arch
    features = a.enc_features  # the width of F_x(x), F_y(y) and F_xy(x, y)
    widths = {name: [h.shape[1] for h in calls] for name, calls in inputs.items()}
    dx = int(np.prod(a.x_shape))
    assert widths["F_xy"] == [2 * dx + 2 * JOINT] and widths["f_xy"] == [features + JOINT]
    assert widths["F_x"] == [dx + MARGINAL] * 2 and widths["f_x"] == [features + MARGINAL]
    assert widths["l_x"] == [a.dz + features + MARGINAL] * 2
    assert p["f_x"]["Dense_0"]["kernel"].shape == (features + MARGINAL, a.dz)
    assert p["l_x"]["Dense_0"]["kernel"].shape == (a.dz + features + MARGINAL, a.du)
    assert p["f_xy"]["Dense_0"]["kernel"].shape[0] == inputs["f_xy"][0].shape[1]


def test_translation_is_stochastic_through_the_encoder_noise(stochastic):
    """x→y at evaluation: the same v, another encoder-noise key, another y (the reference
    keeps encoder noise on at evaluation)."""
    model, batch, variables, _ = stochastic
    v = jnp.zeros((8, model.arch.dv))
    run = lambda key: model.generator.apply(  # noqa: E731
        variables, batch["x"], v, False, method="x2y", rngs={"encoder_noise": key}
    )
    assert not np.allclose(run(jax.random.PRNGKey(0)), run(jax.random.PRNGKey(1)))
    np.testing.assert_array_equal(run(jax.random.PRNGKey(0)), run(jax.random.PRNGKey(0)))


@pytest.mark.parametrize("noise_dim", [4, 0])
def test_gaussian_x2y_spread_has_an_encoder_part_only_with_stochastic_encoders(noise_dim):
    """configs/gaussian.py at initialisation, evaluation path (model._apply, as x2y): for each
    test x, 32 draws of y with (a) fresh v and fresh encoder noise, (b) fresh v and one
    encoder-noise key, (c) one v and fresh encoder noise. With stochastic encoders (c) has a
    spread of its own: the common part z ~ q(z|x) varies, which is what lets x→y reach
    Var(y|x) = 1 − ρ² (issue 21); with deterministic encoders (c) is exactly 0 and (a) equals
    (b) bit for bit."""
    from configs import gaussian
    from wyner_jax.models.wyner import WynerGenerator

    config = gaussian.get_config()
    config.data.n_train, config.data.n_test = 512, 256
    config.model.joint_encoder_noise_dim = config.model.marginal_encoder_noise_dim = noise_dim
    dataset = data.build(config.data)
    model = build_model(config, dataset)
    state = model.init(
        jax.random.PRNGKey(0), {"x": dataset.train.x[:256], "y": dataset.train.y[:256]}
    )
    variables, x = model.eval_variables(state), dataset.test.x

    def x2y(v_key, enc_key):
        v = jax.random.normal(v_key, (len(x), model.arch.dv))
        return np.asarray(
            model._apply(variables, x, v, method=WynerGenerator.x2y, key=enc_key), np.float64
        )

    keys = jax.random.split(jax.random.PRNGKey(5), 64)
    v_keys, enc_keys = keys[:32], keys[32:]
    spread = {
        "a": np.stack([x2y(v, e) for v, e in zip(v_keys, enc_keys)]),
        "b": np.stack([x2y(v, enc_keys[0]) for v in v_keys]),
        "c": np.stack([x2y(v_keys[0], e) for e in enc_keys]),
    }
    var = {k: float(s.var(axis=0).mean()) for k, s in spread.items()}
    assert var["b"] > 0  # g_y's local input v always varies y
    if noise_dim:
        # The encoder part is a sizeable share of the spread, not rounding noise.
        assert var["c"] > 0.05 * var["a"], var
    else:
        assert var["c"] == 0.0
        np.testing.assert_array_equal(spread["a"], spread["b"])
