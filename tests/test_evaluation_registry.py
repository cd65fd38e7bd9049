"""The evaluator registry: which evaluators apply to which data, their settings checks run
before training, and each metric's direction declared by its evaluator."""

import dataclasses

import pytest

from configs import digits_add1, gaussian
from wyner_jax import data
from wyner_jax.evaluation import base, direction, registry, runner


def names(dataset):
    return [e.name for e in registry.applicable(dataset)]


def test_each_dataset_gets_its_evaluators():
    g = gaussian.get_config().data
    g.n_train, g.n_test = 64, 32
    assert names(data.build(g)) == ["gaussian closed forms"]
    digits = data.build(digits_add1.get_config().data)
    assert names(digits) == ["representation", "generation"]
    # The optional capabilities of the other datasets, on the digits' arrays.
    zero_shot = dataclasses.replace(digits)
    object.__setattr__(zero_shot, "retrieval_x", digits.test.x)
    assert names(zero_shot) == ["zero-shot retrieval", "generation"]
    unlabelled = dataclasses.replace(digits, num_classes=None, domains={})
    object.__setattr__(unlabelled, "instance_pairs", True)
    assert names(unlabelled) == ["instance retrieval"]
    assert len({e.name for e in registry.EVALUATORS}) == len(registry.EVALUATORS)


def test_settings_are_checked_by_the_evaluators_that_apply(monkeypatch):
    digits = data.build(digits_add1.get_config().data)
    config = digits_add1.get_config()
    config.eval.retrieval_ks = (len(digits.test.y) + 1,)
    with pytest.raises(ValueError, match=r"retrieval_ks contains k=\d+, but the retrieval gallery"):
        runner.check_evaluation_settings(digits, config)

    seen = []

    def check(dataset, config):
        seen.append(dataset.name)

    never = base.Evaluator("never", lambda d: False, None, check=lambda d, c: seen.append("no"))
    extra = base.Evaluator("extra", lambda d: True, None, check=check)
    monkeypatch.setattr(registry, "EVALUATORS", (never, extra))
    runner.check_evaluation_settings(digits, config)  # the registry's own checks are gone
    assert seen == ["digits_add1"]


@pytest.mark.parametrize(
    "metric, mode",
    [
        ("fd/x2y", "min"),
        ("retrieval/R@1_excl_y2x", "min"),
        ("probe/azimuth_from_shared", "min"),
        ("probe/azimuth_from_excl", "max"),
        ("retrieval/R@1_x2y", "max"),
        ("coherence/joint", "max"),
        ("gaussian/x2y_slope", "max"),
    ],
)
def test_each_metric_improves_the_way_its_evaluator_declares(metric, mode):
    assert direction.best_mode(metric, "auto") == mode
    assert direction.lower_is_better(metric) == (mode == "min")
