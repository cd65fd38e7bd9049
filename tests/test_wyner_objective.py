"""The Wyner objective as pure functions (``models/wyner/objective.py``), without a model:
each term weighted by its own λ, the CI penalty var_ci in particular."""

import jax
import jax.numpy as jnp
import numpy as np

from configs import default
from tests.tolerances import approx
from wyner_jax.models.wyner import objective
from wyner_jax.models.wyner.terms import Terms


def loss_config(lam, **kw):
    settings = dict(
        discriminator="js",
        generator="symmetric_kl",
        recon_x="l1",
        recon_y="l1",
        recon_latent="l2",
        label_smoothing=1.0,
        uniform_disc_weights=True,
    )
    settings.update(kw)
    return objective.LossConfig(lambdas=dict(lam), **settings)


def only(**on):
    lam = {k: 0.0 for k in default.LAMBDA_KEYS}
    lam.update(on)
    return lam


def logits_for(terms, seed=0, n=8):
    r = np.random.default_rng(seed)
    keys = terms.pairs + terms.ci + terms.agg
    return {
        k: (jnp.asarray(r.normal(i, 1, n), jnp.float32), jnp.asarray(r.normal(-i, 1, n)))
        for i, k in enumerate(keys)
    }


def test_ci_penalty_is_the_mean_unshuffled_logit_weighted_by_lambda_var_ci():
    """var_ci = E_P[T_var_ci] (§2.4), in L_G with weight λ_var_ci; the j_ci estimate that a
    λ = 0 keeps (its estimator is still trained) is logged, with no gradient."""
    lam = only(j=1.0, var_ci=0.25)
    terms = Terms.from_lambdas(lam)
    assert terms.pairs == ("j",) and terms.ci == ("var_ci", "j_ci")
    cfg = loss_config(lam)
    logits = logits_for(terms)
    total, logged = jax.jit(lambda l: objective.generator_loss(l, {}, terms, cfg))(logits)
    p = {k: np.asarray(v[0], np.float64) for k, v in logits.items()}
    q = {k: np.asarray(v[1], np.float64) for k, v in logits.items()}
    scale = max(max(np.abs(a).max() for a in p.values()), max(np.abs(a).max() for a in q.values()))
    assert float(logged["gen/var_ci"]) == approx(p["var_ci"].mean(), depth=8, scale=scale)
    assert float(logged["gen/j_ci"]) == approx(p["j_ci"].mean(), depth=8, scale=scale)
    expected = (p["j"].mean() - q["j"].mean()) + 0.25 * p["var_ci"].mean()
    assert float(total) == approx(expected, depth=16, scale=scale)

    grads = jax.grad(lambda l: objective.generator_loss(l, {}, terms, cfg)[0])(logits)
    np.testing.assert_allclose(grads["var_ci"][0], np.full(8, 0.25 / 8), rtol=1e-6)
    assert not np.any(grads["var_ci"][1]) and not np.any(grads["j_ci"][0])

    doubled = loss_config(dict(lam, var_ci=0.5))
    total2, _ = objective.generator_loss(logits, {}, terms, doubled)
    assert float(total2 - total) == approx(0.25 * p["var_ci"].mean(), depth=16, scale=scale)


def test_discriminator_loss_weights_uniform_or_by_lambda():
    lam = only(j=1.0, cx2y=0.5, var_ci=0.0)
    terms = Terms.from_lambdas(lam)
    logits = logits_for(terms)
    uniform, logged = objective.discriminator_loss(logits, loss_config(lam))
    assert set(logged) == {f"disc/{k}" for k in logits} | {"disc/total"}
    neg_j = {k: float(logged[f"disc/{k}"]) for k in logits}
    scale = sum(abs(v) for v in neg_j.values())
    assert float(uniform) == approx(sum(neg_j.values()), depth=8, scale=scale)
    weighted, _ = objective.discriminator_loss(logits, loss_config(lam, uniform_disc_weights=False))
    expected = sum(lam[k] * v for k, v in neg_j.items())  # var_ci at λ = 0: not in the sum
    assert float(weighted) == approx(expected, depth=8, scale=scale)
