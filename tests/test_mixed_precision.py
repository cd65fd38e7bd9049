"""config.model.compute_dtype='bfloat16': layers compute in bf16, everything kept is float32."""

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np
import pytest

from tests.test_wyner_model import initial_state, small_config
from tests.tolerances import approx
from wyner_jax import data, nets
from wyner_jax.models.base import build_model


def one_step(config):
    dataset = data.build(config.data)
    model = build_model(config, dataset)
    state = initial_state(model, config, dataset)
    batch = {k: jnp.asarray(v) for k, v in dataset.train_batch(0, 16, config.seed).items()}
    step = jax.jit(model.train_step)
    hlo = step.lower(state, batch).as_text()
    new_state, metrics = step(state, batch)
    return jax.device_get(new_state), jax.device_get(metrics), hlo


@pytest.mark.parametrize("model_name", ["wyner", "iiae"])
def test_bf16_compute_keeps_float32_state_and_losses(model_name):
    config = small_config()
    config.model.name = model_name
    for k in ("cx2y_rec_y", "cy2x_rec_x", "mx_rec_x", "my_rec_y", "j_rec_zuv"):
        config.loss.lambdas[k] = 0.0  # a smaller program to compile twice
    f32_state, f32_metrics, f32_hlo = one_step(config)
    config.model.compute_dtype = "bfloat16"
    state, metrics, hlo = one_step(config)

    # The matrix products run in bf16 (and only then).
    assert "bf16" in hlo and "bf16" not in f32_hlo
    # Parameters, optimiser moments, EMA, BN statistics stay float32 and finite.
    for a in jax.tree_util.tree_leaves(state):
        if jnp.issubdtype(a.dtype, jnp.floating):
            assert a.dtype == np.float32
            assert np.all(np.isfinite(a))
    # The same losses up to bf16 rounding (8 bits of mantissa, eps 2^-7): 8·eps(bf16) of the
    # larger of the term and 1, the magnitude of the normalised activations and discriminator
    # outputs that the small Wyner estimator terms are differences of. Measured (AMD EPYC,
    # AVX2): at most 0.1·eps(bf16)·scale; the bound leaves room for CPUs whose bf16 products
    # accumulate differently. Only terms computed from the initial parameters are compared:
    # the Wyner generator terms follow a discriminator update, and Adam's first step
    # (≈ lr·sign(g)) turns rounding in tiny gradients into lr-sized differences.
    for k, v in f32_metrics.items():
        assert metrics[k].dtype == np.float32, k
        if not k.startswith("gen/"):
            scale = max(abs(float(v)), 1.0)
            assert float(metrics[k]) == approx(float(v), dtype=ml_dtypes.bfloat16, scale=scale), k


def test_unknown_compute_dtype_is_refused():
    config = small_config()
    config.model.compute_dtype = "float16"
    with pytest.raises(ValueError, match="compute_dtype to one of float32, bfloat16"):
        build_model(config, data.build(config.data))
    with pytest.raises(ValueError, match="Unknown compute dtype"):
        with nets.compute_dtype("int8"):
            pass
