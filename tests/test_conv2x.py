"""The im2col stride-2 convolution equals lax/Flax's, values and gradients."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from tests.tolerances import assert_close
from wyner_jax.conv2x import Conv2x, conv_2x, explicit_padding

CASES = [
    (5, ((2, 2), (2, 2))),  # the Wyner ConvEncoder (PyTorch k5 s2 p2)
    (4, "SAME"),  # the IIAE encoders
    (3, "SAME"),
    (4, "VALID"),
    (5, ((1, 3), (0, 2))),
]


def reference(x, kernel, padding):
    return lax.conv_general_dilated(
        x, kernel, (2, 2), padding, dimension_numbers=("NHWC", "HWIO", "NHWC")
    )


@pytest.mark.parametrize("form", ["im2col", "auto"])
@pytest.mark.parametrize("k,padding", CASES)
@pytest.mark.parametrize("hw", [(8, 8), (5, 7)])
def test_values_match_lax(k, padding, hw, form):
    rng = np.random.default_rng(k + hw[1])
    x = jnp.asarray(rng.standard_normal((2, *hw, 6)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, 6, 5)), jnp.float32)
    want = reference(x, kernel, padding)
    got = conv_2x(x, kernel, padding, form=form)
    assert got.shape == want.shape
    # One GEMM over the patches vs XLA's convolution: K²·C_in products summed in orders that
    # differ.
    assert_close(got, want, depth=k * k * x.shape[-1])


@pytest.mark.parametrize("k,padding", CASES[:2])
def test_gradients_match(k, padding):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.standard_normal((2, 8, 8, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, 3, 4)), jnp.float32)
    target = jnp.asarray(rng.standard_normal(reference(x, kernel, padding).shape), jnp.float32)

    def loss(f):
        return lambda x, w: jnp.sum((f(x, w) - target) ** 2)

    want = jax.grad(loss(lambda x, w: reference(x, w, padding)), (0, 1))(x, kernel)
    got = jax.grad(loss(lambda x, w: conv_2x(x, w, padding, form="im2col")), (0, 1))(x, kernel)
    # Forward (K²·C_in products per output) then backward: the input gradient sums over the
    # K²·C_out taps that read a pixel, the kernel gradient over the N·H'·W' output positions.
    n_out = np.prod(target.shape[:3])
    depth = k * k * x.shape[-1] + max(k * k * kernel.shape[-1], n_out)
    for g, w in zip(got, want):
        assert_close(g, w, depth=depth)


def test_same_padding_is_flax_and_lax_same():
    for n in (4, 5, 7, 8):
        for k in (3, 4, 5):
            want = lax.padtype_to_pads((n, n), (k, k), (2, 2), "SAME")
            assert explicit_padding("SAME", (k, k), (n, n)) == tuple(map(tuple, want))


def test_module_is_a_drop_in_for_flax_conv():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 4, 4, 6)), jnp.float32)
    ours = Conv2x(8, (5, 5), padding=((2, 2), (2, 2)))
    flax_ = nn.Conv(8, (5, 5), strides=(2, 2), padding=((2, 2), (2, 2)))
    params = flax_.init(jax.random.PRNGKey(0), x)
    assert jax.tree_util.tree_map(jnp.shape, ours.init(jax.random.PRNGKey(0), x)) == (
        jax.tree_util.tree_map(jnp.shape, params)
    )
    params = jax.tree_util.tree_map(lambda a: a + 0.1, params)  # a non-zero bias too
    # 5·5·6 products per output, then the bias.
    assert_close(ours.apply(params, x), flax_.apply(params, x), depth=5 * 5 * 6 + 1)
    with pytest.raises(ValueError, match="form"):
        conv_2x(x, params["params"]["kernel"], "SAME", form="fft")


def test_auto_uses_im2col_for_small_images_on_cpu_only(monkeypatch):
    x, kernel = jnp.ones((2, 4, 4, 8)), jnp.ones((5, 5, 8, 16))
    pad = ((2, 2), (2, 2))

    def primitives():
        jaxpr = jax.make_jaxpr(lambda a, b: conv_2x(a, b, pad))(x, kernel)
        return {e.primitive.name for e in jaxpr.eqns}

    assert "dot_general" in primitives() and "conv_general_dilated" not in primitives()
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    assert "conv_general_dilated" in primitives()
