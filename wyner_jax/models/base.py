"""The small interface every model implements, so that one trainer, one checkpointer and one
set of evaluators serve both the Variational Wyner model and IIAE.

A model object is built once from the config and the dataset's shapes. It holds no arrays
that change during training: everything that does lives in its ``state`` pytree, which the
trainer shards, donates, checkpoints and restores without knowing its fields.

All methods below are pure functions of arrays (``train_step`` and the inference methods
are jit-compiled by the caller), written with *global-batch* semantics: the same code runs
on one device or sharded over a mesh.
"""

from __future__ import annotations

from typing import Any, Callable, Protocol

import jax

from wyner_jax.models.iiae import IIAEModel
from wyner_jax.models.wyner import WynerModel

Batch = dict[str, jax.Array]
State = Any  # a flax.struct.dataclass pytree with at least `step` and `rng`
Variables = Any


class PairedModel(Protocol):
    name: str

    def init(self, rng: jax.Array, batch: Batch) -> State:
        """Creates the initial training state from a key and an example (global) batch."""

    def train_step(self, state: State, batch: Batch) -> tuple[State, dict[str, jax.Array]]:
        """One full update; randomness comes from ``fold_in(state.rng, state.step)``.

        Returns the new state and scalar metrics (every loss term, unweighted, plus totals).
        """

    def eval_variables(self, state: State) -> Variables:
        """The variables used for evaluation (the EMA generator for the Wyner model)."""

    def embed(self, variables: Variables, x: jax.Array, y: jax.Array) -> dict[str, jax.Array]:
        """Representations for probes and retrieval: any of 'z_xy', 'z_x', 'z_y'.

        'z_x' is the query embedding of x alone and 'z_y' that of y alone (retrieval);
        'z_xy' the joint encoding, when the model has one.
        """

    def translate_x2y(self, variables: Variables, x: jax.Array, key: jax.Array) -> jax.Array:
        """Conditional generation y ~ p(y | x)."""

    def translate_y2x(self, variables: Variables, y: jax.Array, key: jax.Array) -> jax.Array:
        """Conditional generation x ~ p(x | y)."""

    def sample_joint(
        self, variables: Variables, key: jax.Array, n: int
    ) -> tuple[jax.Array, jax.Array]:
        """Joint generation (x, y) ~ p(x, y) from the priors."""

    def reconstruct(
        self, variables: Variables, x: jax.Array, y: jax.Array
    ) -> tuple[jax.Array, jax.Array]:
        """Reconstructions of (x, y) through the joint (variational) encoder."""

    def capabilities(self, state: State) -> set[str]:
        """The inference methods this configuration supports, among 'embed', 'x2y', 'y2x',
        'joint', 'reconstruct' (e.g. a Wyner model trained without λ_cx2y has no f_x)."""


# config.model.name → the model class; a new model is one module and one line here.
MODELS: dict[str, Callable[[Any, Any], PairedModel]] = {
    "wyner": WynerModel,
    "iiae": IIAEModel,
}


def build_model(config, dataset) -> PairedModel:
    """Returns the model named by ``config.model.name`` for ``dataset``'s shapes."""
    name = config.model.name
    if name not in MODELS:
        choices = " or ".join(repr(k) for k in MODELS)
        raise ValueError(f"Unknown config.model.name {name!r}; use {choices}.")
    return MODELS[name](config, dataset)
