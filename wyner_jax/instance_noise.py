"""Instance noise (wyner-model.md §1.2): every input a discriminator sees is perturbed,
x ↦ x + σ·ε with ε ~ N(0, I), with a fresh ε for each input of each call.

``perturb`` takes a whole call's inputs at once, as a pytree whose leaves are ``Noisy(value,
sigma)``, and draws all their ε with one ``jax.random.normal`` of the total size, cut into
consecutive slices. The entries of one normal draw are independent, so this is the same
distribution as one draw per input, with less work: a Sketchy discriminator call perturbs
about forty inputs (x and y of four sample sets, the latents of every estimator), most of
them 64 × 64, and XLA:CPU runs each threefry call as its own rolled loop (82 loops per
Sketchy step became 16, ~9 ms less CPU time; the step's wall time did not change measurably,
those loops ran beside other work); on an accelerator, forty small kernels become one.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp


class Noisy(NamedTuple):
    """A value to perturb and its noise scale (a scalar or an array that broadcasts to it,
    e.g. a per-feature σ). Integer values (token ids) are passed through unperturbed."""

    value: Any
    sigma: Any


def _is_noisy(node) -> bool:
    return isinstance(node, Noisy)


def perturb(key, inputs):
    """``inputs`` with every ``Noisy(value, sigma)`` leaf replaced by value + sigma·ε, each
    leaf with its own ε (one standard-normal draw for all of them); with ``key=None`` the
    values unperturbed."""
    leaves, treedef = jax.tree_util.tree_flatten(inputs, is_leaf=_is_noisy)
    for leaf in leaves:
        if not isinstance(leaf, Noisy):
            raise TypeError(f"perturb takes a tree of Noisy(value, sigma) leaves, got {leaf!r}.")
    values = [jnp.asarray(leaf.value) for leaf in leaves]
    floating = [i for i, v in enumerate(values) if jnp.issubdtype(v.dtype, jnp.floating)]
    if key is not None and floating:
        eps = jax.random.normal(key, (sum(values[i].size for i in floating),), jnp.float32)
        start = 0
        for i in floating:
            v = values[i]
            e = eps[start : start + v.size].reshape(v.shape).astype(v.dtype)
            values[i] = v + leaves[i].sigma * e
            start += v.size
    return jax.tree_util.tree_unflatten(treedef, values)
