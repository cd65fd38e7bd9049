"""The sub-pixel stride-2 transposed convolution equals lax/Flax's, values and gradients."""

import flax.linen as nn
import jax
import jax.extend
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from tests.tolerances import assert_close
from wyner_jax.subpixel import ConvTranspose2x, conv_transpose_2x, same_padding

DN = ("NHWC", "HWIO", "NHWC")
CASES = [
    (5, ((2, 3), (2, 3))),  # the reference DeconvNet (PyTorch p2, output_padding 1)
    (4, "SAME"),  # the IIAE decoders
    (3, "SAME"),
    (2, "SAME"),
    (5, ((1, 1), (0, 2))),
    (4, ((0, 0), (3, 1))),
]


def reference(x, kernel, padding):
    return lax.conv_transpose(x, kernel, (2, 2), padding, dimension_numbers=DN)


def explicit(k, padding):
    return (same_padding(k), same_padding(k)) if padding == "SAME" else padding


@pytest.mark.parametrize("form", ["phase_conv", "tap_matmul", "col2im"])
@pytest.mark.parametrize("k,padding", CASES)
@pytest.mark.parametrize("hw", [(4, 4), (3, 5), (1, 1)])
def test_values_match_lax_conv_transpose(k, padding, hw, form):
    rng = np.random.default_rng(k * 10 + hw[1])
    x = jnp.asarray(rng.standard_normal((2, *hw, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, 3, 4)), jnp.float32)
    want = reference(x, kernel, padding)
    got = conv_transpose_2x(x, kernel, explicit(k, padding), form=form)
    assert got.shape == want.shape
    # Phase by phase vs XLA's dilated convolution: at most K²·C_in products per output, summed
    # in orders that differ.
    assert_close(got, want, depth=k * k * x.shape[-1])


@pytest.mark.parametrize("form", ["phase_conv", "tap_matmul", "col2im"])
@pytest.mark.parametrize("k,padding", CASES[:2])
def test_gradients_match(k, padding, form):
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.standard_normal((2, 4, 4, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((k, k, 3, 5)), jnp.float32)
    target = jnp.asarray(rng.standard_normal(reference(x, kernel, padding).shape), jnp.float32)

    def loss(f):
        return lambda x, w: jnp.sum((f(x, w) - target) ** 2)

    want = jax.grad(loss(lambda x, w: reference(x, w, padding)), argnums=(0, 1))(x, kernel)
    ours = lambda x, w: conv_transpose_2x(x, w, explicit(k, padding), form=form)  # noqa: E731
    got = jax.grad(loss(ours), (0, 1))(x, kernel)
    # Forward (at most K²·C_in products per output) then backward: the input gradient sums
    # over K²·C_out taps, the kernel gradient over the N·H·W input pixels.
    depth = k * k * x.shape[-1] + max(k * k * kernel.shape[-1], np.prod(x.shape[:3]))
    for g, w in zip(got, want):
        assert_close(g, w, depth=depth)


def test_module_is_a_drop_in_for_flax_conv_transpose():
    x = jnp.asarray(np.random.default_rng(2).standard_normal((2, 4, 4, 6)), jnp.float32)
    ours = ConvTranspose2x(8, (5, 5), padding=((2, 3), (2, 3)))
    flax_ = nn.ConvTranspose(8, (5, 5), strides=(2, 2), padding=((2, 3), (2, 3)))
    params = flax_.init(jax.random.PRNGKey(0), x)
    assert jax.tree_util.tree_map(jnp.shape, ours.init(jax.random.PRNGKey(0), x)) == (
        jax.tree_util.tree_map(jnp.shape, params)
    )
    params = jax.tree_util.tree_map(lambda a: a + 0.1, params)  # a non-zero bias too
    # At most 5·5·6 products per output, then the bias.
    assert_close(ours.apply(params, x), flax_.apply(params, x), depth=5 * 5 * 6 + 1)


def count_dots(jaxpr) -> int:
    """dot_general equations of a jaxpr, sub-jaxprs (jit, custom_vjp, ...) included."""
    n = 0
    for eqn in jaxpr.eqns:
        n += eqn.primitive.name == "dot_general"
        for sub in jax.extend.core.jaxprs_in_params(eqn.params):
            n += count_dots(sub)
    return n


def count_products(fn, *args):
    return count_dots(jax.make_jaxpr(fn)(*args).jaxpr)


def test_auto_form_is_one_product_on_cpu_and_bad_form():
    """On CPU, 'auto' is one GEMM with every tap (col2im), whatever the input size; the
    per-tap form is 16 products for k4; same results."""
    pad = explicit(4, "SAME")
    assert jax.default_backend() == "cpu"
    for n, c_out in ((1, 3), (1, 16), (65, 16)):
        x = jnp.ones((n, 2, 2, 3), jnp.float32)
        kernel = jnp.ones((4, 4, 3, c_out), jnp.float32)
        for form, products in (("auto", 1), ("tap_matmul", 16)):
            fn = lambda x, k: conv_transpose_2x(x, k, pad, form=form)  # noqa: E731
            assert count_products(fn, x, kernel) == products
            # Sums of at most 4·4·3 ones.
            assert_close(fn(x, kernel), reference(x, kernel, "SAME"), depth=4 * 4 * 3)
    with pytest.raises(ValueError, match="form"):
        conv_transpose_2x(x, kernel, pad, form="dilated")


# One axis of stride 1 (a single phase there), as the caption decoder's (1, 4) layers, and a
# kernel smaller than its stride (a phase without taps: zeros).
STRIDE_CASES = [
    ((1, 4), (1, 2), ((0, 0), (2, 2))),
    ((4, 1), (2, 1), ((2, 2), (0, 0))),
    ((3, 4), (1, 2), "SAME"),
    ((1, 1), (2, 2), ((0, 0), (0, 0))),
]


@pytest.mark.parametrize("form", ["phase_conv", "tap_matmul", "col2im"])
@pytest.mark.parametrize("k,strides,padding", STRIDE_CASES)
def test_a_stride_one_axis_matches_lax_values_and_gradients(k, strides, padding, form):
    rng = np.random.default_rng(sum(k) + 7 * strides[0])
    x = jnp.asarray(rng.standard_normal((2, 3, 5, 3)), jnp.float32)
    kernel = jnp.asarray(rng.standard_normal((*k, 3, 4)), jnp.float32)
    explicit_pad = padding
    if padding == "SAME":
        explicit_pad = tuple(same_padding(n, s) for n, s in zip(k, strides))

    def ref(x, w):
        return lax.conv_transpose(x, w, strides, padding, dimension_numbers=DN)

    def ours(x, w):
        return conv_transpose_2x(x, w, explicit_pad, form=form, strides=strides)

    want = ref(x, kernel)
    got = ours(x, kernel)
    assert got.shape == want.shape
    assert_close(got, want, depth=k[0] * k[1] * x.shape[-1])  # K_h·K_w·C_in products
    target = jnp.asarray(rng.standard_normal(want.shape), jnp.float32)
    grads = [
        jax.grad(lambda x, w: jnp.sum((f(x, w) - target) ** 2), (0, 1))(x, kernel)
        for f in (ref, ours)
    ]
    # Forward, then backward: K_h·K_w·C_out taps (input gradient) or N·H·W pixels (kernel).
    depth = k[0] * k[1] * x.shape[-1] + max(k[0] * k[1] * kernel.shape[-1], np.prod(x.shape[:3]))
    for want_g, got_g in zip(*grads):
        assert_close(got_g, want_g, depth=depth)


def test_module_with_strides_1_2_is_a_drop_in_and_bad_strides_are_refused():
    x = jnp.asarray(np.random.default_rng(3).standard_normal((2, 1, 4, 6)), jnp.float32)
    pad = ((0, 0), (2, 2))
    ours = ConvTranspose2x(5, (1, 4), padding=pad, strides=(1, 2))
    flax_ = nn.ConvTranspose(5, (1, 4), strides=(1, 2), padding=pad)
    params = jax.tree_util.tree_map(lambda a: a + 0.1, flax_.init(jax.random.PRNGKey(0), x))
    # 1·4·6 products per output, then the bias.
    assert_close(ours.apply(params, x), flax_.apply(params, x), depth=1 * 4 * 6 + 1)
    with pytest.raises(ValueError, match="strides"):
        conv_transpose_2x(x, jnp.ones((1, 4, 6, 5)), pad, strides=(1, 3))
