"""A trained model's inference methods, jit-compiled once per model and applied over data
in batches: what every evaluator (``evaluation/registry.py``) draws its codes and samples
with."""

from __future__ import annotations

import weakref

import jax
import jax.numpy as jnp
import numpy as np

EVAL_SEED = 12345


def batched(fn, arrays, batch_size: int, key=None):
    """Applies ``fn(*batch[, key_i])`` over rows of ``arrays`` in batches; concatenates outputs.

    Rows are visited in a fixed random order and the outputs put back in place: with
    BatchNorm on batch statistics at evaluation (the reference's default), a batch of
    class-sorted test data would be normalised per class, which erases the class signal.
    The reference shuffles its test loaders for the same reason. The final short batch is
    processed as it is (no padding).
    """
    n = len(arrays[0])
    order = np.random.default_rng(EVAL_SEED).permutation(n)
    outs = []
    for i, start in enumerate(range(0, n, batch_size)):
        rows = order[start : start + batch_size]
        chunk = [jnp.asarray(a[rows]) for a in arrays]
        args = chunk + ([jax.random.fold_in(key, i)] if key is not None else [])
        outs.append(jax.device_get(fn(*args)))
    inverse = np.argsort(order)
    return jax.tree_util.tree_map(lambda *xs: np.concatenate(xs, axis=0)[inverse], *outs)


OPTIONAL_METHODS = ("embed_exclusive", "translate_x2y_style", "translate_y2x_style")


class Inference:
    """The model's inference methods, jit-compiled with the variables as an argument (not
    baked into the program as constants, which would make every compile unique)."""

    # One set of compiled functions per model object (train.py's periodic image grids and
    # the final evaluation share them).
    _JITS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()

    def __init__(self, model, state, config):
        self.model = model
        self.variables = model.eval_variables(state)
        self.caps = model.capabilities(state)
        self.bs = int(config.eval.batch_size)
        # Optional methods (IIAE: exclusive codes, translation with another item's exclusive
        # code) are compiled when the model has them.
        for name in ("embed", "translate_x2y", "translate_y2x", "reconstruct", *OPTIONAL_METHODS):
            if hasattr(model, name):
                self.compiled(model, name)
        jits = self._JITS[model]
        jits.setdefault("sample_joint", jax.jit(model.sample_joint, static_argnums=2))
        self._jits = jits
        v = self.variables
        self._embed = lambda x, y: jits["embed"](v, x, y)
        self._x2y = lambda x, k: jits["translate_x2y"](v, x, k)
        self._y2x = lambda y, k: jits["translate_y2x"](v, y, k)
        self._recon = lambda x, y: jits["reconstruct"](v, x, y)
        self._joint = lambda k, n: jits["sample_joint"](v, k, n)

    @classmethod
    def compiled(cls, model, name: str):
        """``jax.jit(model.<name>)``, compiled once per model object and method (periodic
        evaluations reuse it: a fresh ``jax.jit`` of a bound method compiles again)."""
        jits = cls._JITS.setdefault(model, {})
        if name not in jits:
            jits[name] = jax.jit(getattr(model, name))
        return jits[name]

    def embed(self, x, y):
        return batched(self._embed, (x, y), self.bs)

    def has(self, name: str) -> bool:
        """Whether the model offers the optional method ``name`` (``OPTIONAL_METHODS``)."""
        return name in self._jits

    def call(self, name: str, a, b):
        """An optional two-input method over rows of (a, b), batched."""
        fn, v = self._jits[name], self.variables
        return batched(lambda p, q: fn(v, p, q), (a, b), self.bs)

    def x2y(self, x, key):
        return batched(self._x2y, (x,), self.bs, key)

    def y2x(self, y, key):
        return batched(self._y2x, (y,), self.bs, key)

    def reconstruct(self, x, y):
        return batched(self._recon, (x, y), self.bs)

    def joint(self, n, key):
        outs = [
            jax.device_get(self._joint(jax.random.fold_in(key, i), min(self.bs, n - s)))
            for i, s in enumerate(range(0, n, self.bs))
        ]
        return tuple(np.concatenate(parts, 0) for parts in zip(*outs))
