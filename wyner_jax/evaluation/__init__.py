"""Evaluators: plain functions on arrays (no model code), one module per paper metric; the
evaluators that apply them to a trained model are listed in ``registry.py``."""

from wyner_jax.evaluation.classifier import ClassifierResult, train_image_classifier
from wyner_jax.evaluation.coherence import add_one, coherence
from wyner_jax.evaluation.figures import image_grid, save_png, scatter_plot
from wyner_jax.evaluation.frechet import conditional_frechet_distance, frechet_distance
from wyner_jax.evaluation.gaussian import (
    gaussian_conditional_closed_form,
    gaussian_mutual_information,
    joint_covariance,
    regression_slope_and_residual_variance,
    wyner_ci_under_instance_noise,
    wyner_common_information_gaussian,
)
from wyner_jax.evaluation.probe import fit_linear_probe, linear_probe_accuracy
from wyner_jax.evaluation.retrieval import (
    average_precision,
    mean_average_precision,
    pairwise_distances,
    precision_at_k,
    rank_relevance,
    retrieval_metrics,
)

__all__ = [
    "ClassifierResult",
    "add_one",
    "average_precision",
    "coherence",
    "conditional_frechet_distance",
    "fit_linear_probe",
    "frechet_distance",
    "gaussian_conditional_closed_form",
    "gaussian_mutual_information",
    "joint_covariance",
    "image_grid",
    "linear_probe_accuracy",
    "mean_average_precision",
    "pairwise_distances",
    "precision_at_k",
    "rank_relevance",
    "regression_slope_and_residual_variance",
    "retrieval_metrics",
    "save_png",
    "scatter_plot",
    "wyner_ci_under_instance_noise",
    "wyner_common_information_gaussian",
]
