"""What an evaluator is, and the shared work every evaluator draws on.

An ``Evaluator`` names the datasets it applies to and computes metrics (and figures) from an
``EvalContext``; ``evaluation/registry.py`` lists them in order and ``runner.evaluate`` runs
every one that applies. To add a metric: one module with an ``Evaluator`` and one line in
the registry.

The context computes the expensive shared pieces once, when an evaluator first asks: the
test (and train) codes, and the samples x→y, y→x and joint. Each piece draws with its own
fixed key, so the values do not depend on which evaluator asks first.

The dataset capabilities an evaluator can ask for are the functions below (the optional
attributes of a ``PairedDataset`` subclass), kept here in one place.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable

import jax
import numpy as np

from wyner_jax.evaluation.inference import EVAL_SEED, Inference

Result = tuple[dict[str, float], dict[str, np.ndarray]]


# ---------------------------------------------------------------- dataset capabilities
def labelled(dataset) -> bool:
    """Classes on both sides (probes, coherence, retrieval by class)."""
    return dataset.num_classes is not None


def zero_shot(dataset) -> bool:
    """The dataset has its own query and gallery sets (Sketchy: ``retrieval_x``/``_y``)."""
    return getattr(dataset, "retrieval_x", None) is not None


def instance_pairs(dataset) -> bool:
    """Each test pair is one scene in two domains (Maps, Facades, MNIST-CDCB)."""
    return bool(getattr(dataset, "instance_pairs", False))


def view_indexed(dataset) -> bool:
    """Pairs indexed by car and azimuth (Cars: ``test_views``)."""
    return getattr(dataset, "test_views", None) is not None


def captions(dataset) -> bool:
    """y is a token-id caption with a vocabulary (CUB)."""
    return bool(getattr(dataset, "vocab", None))


def gaussian_pairs(dataset) -> bool:
    """Jointly Gaussian pairs: every quantity has a closed form."""
    return dataset.name == "gaussian"


# ---------------------------------------------------------------- evaluators
@dataclasses.dataclass(frozen=True)
class Evaluator:
    """One family of metrics.

    Attributes:
      name: what the family is called in messages.
      applies_to: whether the family applies to a dataset (the capabilities above).
      run: ``run(ctx) -> (metrics, figures)``; may put other outputs into ``ctx.extras``.
      lower_is_better: prefixes of this family's metrics that improve downwards (distances,
        leakage checks); every other metric improves upwards.
      check: ``check(dataset, config)``, run before training: raises ``ValueError`` for
        settings the data cannot satisfy, so a run does not lose its evaluation at the end.
    """

    name: str
    applies_to: Callable[..., bool]
    run: Callable[["EvalContext"], Result]
    lower_is_better: tuple[str, ...] = ()
    check: Callable[..., None] | None = None


@dataclasses.dataclass
class EvalContext:
    """A trained model, its data and config, and the shared work of one evaluation."""

    model: object
    state: object
    dataset: object
    config: object
    extras: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        self.inf = Inference(self.model, self.state, self.config)
        key = jax.random.PRNGKey(EVAL_SEED)
        self.key = key
        self.k_x2y, self.k_y2x, self.k_joint, self.k_fig = jax.random.split(key, 4)

    @functools.cached_property
    def emb_test(self) -> dict[str, np.ndarray]:
        """Codes of the test pairs (``model.embed``: z_xy, z_x, z_y where the model has them)."""
        return self.inf.embed(self.dataset.test.x, self.dataset.test.y)

    @functools.cached_property
    def emb_train(self) -> dict[str, np.ndarray]:
        return self.inf.embed(self.dataset.train.x, self.dataset.train.y)

    @functools.cached_property
    def gen(self) -> dict:
        """Samples: ``x2y`` and ``y2x`` for every test pair, ``joint`` (x, y) pairs.

        Instance-paired images and car views have no metric on translations of the whole test
        set (10,000 MNIST-CDCB pairs at 256 px would be 7.9 GB per direction); their figures
        translate a few rows themselves."""
        caps, test, out = self.inf.caps, self.dataset.test, {}
        whole_test_set = not (instance_pairs(self.dataset) or view_indexed(self.dataset))
        if "x2y" in caps and whole_test_set:
            out["x2y"] = self.inf.x2y(test.x, self.k_x2y)
        if "y2x" in caps and whole_test_set:
            out["y2x"] = self.inf.y2x(test.y, self.k_y2x)
        if "joint" in caps:
            out["joint"] = self.inf.joint(int(self.config.eval.num_joint_samples), self.k_joint)
        return out
