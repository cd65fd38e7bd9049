"""``spectral_dense`` against Flax's ``SpectralNorm(Dense)`` (an independent implementation of
the same layer, which rescales the kernel instead of the product) and against the closed form
σ = largest singular value after many power-iteration steps."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.tolerances import assert_close, assert_trees_close
from wyner_jax import nets


class FlaxSpectralDense(nn.Module):
    """What ``nets.Linear(spectral_norm=True)`` was built from before ``spectral_dense``."""

    features: int

    @nn.compact
    def __call__(self, h, train: bool):
        layer = nn.Dense(self.features, kernel_init=nets.TORCH_DEFAULT, name="dense")
        return nn.SpectralNorm(layer, name="sn")(h, update_stats=train)


def _variables(features=6, fan_in=9):
    x = jax.random.normal(jax.random.PRNGKey(1), (5, fan_in))
    ours = nets.Linear(features, spectral_norm=True)
    variables = ours.init(jax.random.PRNGKey(0), x, train=True)
    # Non-zero bias and a u that is not yet the singular vector: every term is exercised.
    variables["params"]["dense"]["bias"] = jnp.linspace(-1.0, 1.0, features)
    variables["batch_stats"]["sn"]["dense/kernel/u"] = jax.random.normal(
        jax.random.PRNGKey(2), (1, features)
    )
    return ours, x, variables


def test_same_variables_as_flax_spectral_norm():
    ours, x, variables = _variables()
    theirs = FlaxSpectralDense(6).init(jax.random.PRNGKey(0), x, train=True)
    shapes = lambda v: jax.tree_util.tree_map(jnp.shape, v)  # noqa: E731
    assert shapes(variables) == shapes(theirs)


@pytest.mark.parametrize("train", [True, False])
def test_values_statistics_and_gradients_match_flax(train):
    ours, x, variables = _variables()
    theirs = FlaxSpectralDense(6)

    def run(module, params, x):
        y, upd = module.apply(
            {"params": params, "batch_stats": variables["batch_stats"]},
            x,
            train=train,
            mutable=["batch_stats"],
        )
        # A loss that weights each output differently, so every gradient term matters.
        loss = jnp.sum(jnp.sin(y) * jnp.arange(1.0, 7.0))
        return loss, (y, upd["batch_stats"])

    outs = {}
    for name, module in (("ours", ours), ("flax", theirs)):
        (loss, (y, stats)), grads = jax.value_and_grad(
            lambda p, x: run(module, p, x), argnums=(0, 1), has_aux=True
        )(variables["params"], x)
        outs[name] = (y, stats, grads)
    (y0, s0, g0), (y1, s1, g1) = outs["ours"], outs["flax"]
    # Forward: a power-iteration step (Wᵀu over 6 outputs, Wv over 9 inputs, two norms),
    # σ = uᵀWv (6·9 products), x·W/σ (9 products) + b: depth 6 + 9 + 2 + 54 + 9 + 1 = 81;
    # the gradients go back through the same chain.
    depth = 81
    assert_close(y0, y1, depth=depth)
    assert_trees_close((s0, g0), (s1, g1), depth=2 * depth)
    if not train:
        assert jax.tree_util.tree_all(
            jax.tree_util.tree_map(np.array_equal, s0, variables["batch_stats"])
        )


def test_sigma_converges_to_the_largest_singular_value():
    ours, x, variables = _variables()
    stats = variables["batch_stats"]
    for _ in range(200):
        _, upd = ours.apply(
            {"params": variables["params"], "batch_stats": stats},
            x,
            train=True,
            mutable=["batch_stats"],
        )
        stats = upd["batch_stats"]
    kernel = np.asarray(variables["params"]["dense"]["kernel"], np.float64)
    top = np.linalg.svd(kernel, compute_uv=False)[0]
    # float32 power iteration (converged: its error no longer shrinks with more steps) vs the
    # float64 SVD: σ = uᵀWv is a sum of 9·6 products.
    assert_close(float(stats["sn"]["dense/kernel/sigma"]), top, depth=9 * 6)
    # With σ converged the layer's kernel has spectral norm 1: y − b = x·W/σ, 9 products per
    # output on top of σ's error; y's roundings are relative to |y| (the bias included).
    y = ours.apply({"params": variables["params"], "batch_stats": stats}, x, train=False)
    bias = np.asarray(variables["params"]["dense"]["bias"])
    want = np.asarray(x, np.float64) @ kernel / top
    assert_close(y - bias, want, depth=9 * 6 + 9 + 1, scale=np.abs(np.asarray(y)).max())


def test_bfloat16_compute_keeps_float32_statistics():
    ours, x, variables = _variables()
    with nets.compute_dtype("bfloat16"):
        y, upd = ours.apply(variables, x, train=True, mutable=["batch_stats"])
    assert y.dtype == jnp.bfloat16
    assert upd["batch_stats"]["sn"]["dense/kernel/sigma"].dtype == jnp.float32
    y32 = ours.apply(variables, x, train=True, mutable=["batch_stats"])[0]
    # bfloat16 roundings (to nearest: half an eps each, k = 2) of x, of the kernel, of the
    # product (accumulated in float32 or wider) and of the bias add: depth 4 at bfloat16's
    # eps (2⁻⁷).
    assert_close(np.asarray(y, np.float32), y32, dtype=jnp.bfloat16, depth=4, k=2)
