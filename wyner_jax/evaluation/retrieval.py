"""Zero-shot retrieval metrics (paper §6.6, Sketchy: sketch queries z_x = f_x(x) against a
photo gallery z_y = f_y(y); relevance = same class).

Everything runs in jnp on the default device, over chunks of queries, so a 15k x 15k
problem needs only a chunk's [chunk_size, G] distance matrix at a time.

Conventions (they change numbers slightly, so they are fixed and documented):
  * Ranking: ascending distance; exact ties (e.g. duplicate gallery vectors) are broken by
    gallery index, lower first (stable sort). Distances are float32, so values closer than
    float32 resolution also count as ties.
  * mAP@all: plain non-interpolated AP (mean over the ranks of relevant items of the
    precision at that rank), averaged over queries that have at least one relevant gallery
    item; queries with none are excluded (their AP is undefined).
  * mAP@all_interp: the reference's AP with "optimistic interpolation": precision at rank r
    is replaced by the maximum precision at ranks >= r before averaging. It is >= mAP@all.
  * P@k: share of relevant items among the k nearest, averaged over all queries (a query
    with no relevant item scores 0, which is its true precision).
  * mAP@k (Sketchy split 2, `map_ks`): the ECCV-2018 CVAE definition that IIAE's code
    prints (iiae.md §4): (1/k) · Σ_{j≤k} rel_j · h_j / j with h_j the hits in the top j. It
    divides by k, not by the number of relevant items, so it is not SEM-PCYC's sklearn
    mAP@200; averaged over all queries.
  * Per-class AP (`per_class_average_precision`): mean plain AP of the queries of each class.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

METRICS = ("cosine", "euclidean")
_EPS = 1e-12


def pairwise_distances(queries: jax.Array, gallery: jax.Array, metric: str = "cosine") -> jax.Array:
    """[Q, G] distances: 'cosine' = 1 - cos(q, g), or 'euclidean' = ||q - g||.

    Both are built from the raw dot products q·g and per-vector norms (not from
    pre-normalised vectors) so identical gallery vectors always get bit-identical distances
    and their tie is then broken by index.
    """
    if metric not in METRICS:
        raise ValueError(f"Unknown retrieval metric '{metric}'; use one of {METRICS}.")
    # HIGHEST precision: on GPU/TPU the default matmul precision (TF32/bf16) would reorder
    # near neighbours.
    dot = jnp.matmul(queries, gallery.T, precision=jax.lax.Precision.HIGHEST)
    q_sq = jnp.sum(queries * queries, axis=1)
    g_sq = jnp.sum(gallery * gallery, axis=1)
    if metric == "cosine":
        norms = (
            jnp.sqrt(jnp.maximum(q_sq, _EPS))[:, None] * jnp.sqrt(jnp.maximum(g_sq, _EPS))[None, :]
        )
        return 1.0 - dot / norms
    return jnp.sqrt(jnp.maximum(q_sq[:, None] + g_sq[None, :] - 2.0 * dot, 0.0))


def rank_relevance(
    queries: jax.Array,
    gallery: jax.Array,
    query_labels: jax.Array,
    gallery_labels: jax.Array,
    metric: str = "cosine",
) -> jax.Array:
    """[Q, G] bool: entry (i, r) says whether the r-th nearest gallery item of query i is
    relevant (same label). Ties in distance are broken by gallery index (stable sort)."""
    order = jnp.argsort(pairwise_distances(queries, gallery, metric), axis=1, stable=True)
    return gallery_labels[order] == query_labels[:, None]


def precision_at_k(ranked_relevance: jax.Array, k: int) -> jax.Array:
    """Per-query P@k (paper §6.6 P@100): share of relevant items among the k nearest.

    Args:
      ranked_relevance: [Q, G] bool from `rank_relevance`.
      k: cut-off, 1 <= k <= G.
    """
    g = ranked_relevance.shape[1]
    if not 1 <= k <= g:
        raise ValueError(
            f"k={k} must lie in [1, gallery size {g}]; lower k or enlarge the gallery."
        )
    return jnp.sum(ranked_relevance[:, :k], axis=1) / k


def average_precision(ranked_relevance: jax.Array, interpolated: bool = False) -> jax.Array:
    """Per-query average precision over the whole ranking (paper §6.6 mAP@all).

    AP = mean over the ranks r of relevant items of precision@r. With `interpolated`, the
    reference's optimistic interpolation is applied first: precision@r := max over r' >= r
    of precision@r'. Queries without any relevant item get NaN.
    """
    rel = ranked_relevance.astype(jnp.float32)
    ranks = jnp.arange(1, rel.shape[1] + 1, dtype=jnp.float32)
    precision = jnp.cumsum(rel, axis=1) / ranks
    if interpolated:
        precision = jax.lax.cummax(precision, axis=1, reverse=True)
    num_relevant = jnp.sum(rel, axis=1)
    ap = jnp.sum(precision * rel, axis=1) / jnp.maximum(num_relevant, 1.0)
    return jnp.where(num_relevant > 0, ap, jnp.nan)


def average_precision_at_k(ranked_relevance: jax.Array, k: int) -> jax.Array:
    """Per-query mAP@k of the ECCV-2018 CVAE code (Sketchy split 2 "mAP@200", iiae.md §4):
    (1/k) · Σ_{j≤k} rel_j · h_j / j, h_j = number of relevant items in the top j."""
    g = ranked_relevance.shape[1]
    if not 1 <= k <= g:
        raise ValueError(
            f"k={k} must lie in [1, gallery size {g}]; lower k or enlarge the gallery."
        )
    rel = ranked_relevance[:, :k].astype(jnp.float32)
    ranks = jnp.arange(1, k + 1, dtype=jnp.float32)
    return jnp.sum(rel * jnp.cumsum(rel, axis=1) / ranks, axis=1) / k


def mean_average_precision(ranked_relevance: jax.Array, interpolated: bool = False) -> float:
    """mAP: mean of `average_precision` over queries with at least one relevant item
    (NaN if there are none)."""
    ap = np.asarray(average_precision(ranked_relevance, interpolated))
    return float(np.nanmean(ap)) if np.any(~np.isnan(ap)) else float("nan")


@functools.partial(jax.jit, static_argnames=("metric", "ks", "map_ks"))
def _chunk_stats(
    queries,
    gallery,
    query_labels,
    gallery_labels,
    metric: str,
    ks: tuple[int, ...],
    map_ks: tuple[int, ...] = (),
):
    rel = rank_relevance(queries, gallery, query_labels, gallery_labels, metric)
    stats = {
        "mAP@all": average_precision(rel, interpolated=False),
        "mAP@all_interp": average_precision(rel, interpolated=True),
    }
    for k in ks:
        stats[f"P@{k}"] = precision_at_k(rel, k)
    for k in map_ks:
        stats[f"mAP@{k}"] = average_precision_at_k(rel, k)
    return stats


def retrieval_metrics(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    ks: Sequence[int] = (10,),
    metric: str = "cosine",
    chunk_size: int = 1024,
    map_ks: Sequence[int] = (),
) -> dict[str, float]:
    """Retrieval scores of queries against a gallery (paper §6.6 Sketchy: P@K and mAP@all).

    Args:
      queries: [Q, D] query representations (e.g. z_x of test sketches).
      gallery: [G, D] gallery representations (e.g. z_y of test photos).
      query_labels, gallery_labels: [Q], [G] class ids; relevance = equal labels.
      ks: cut-offs for P@k.
      metric: 'cosine' (1 - cos, the reference default) or 'euclidean'.
      chunk_size: queries ranked at once; memory is O(chunk_size * G).
      map_ks: cut-offs for the ECCV-2018 mAP@k (Sketchy split 2 uses 200).

    Returns:
      {'mAP@all', 'mAP@all_interp', 'P@k' for k in ks, 'mAP@k' for k in map_ks} as floats;
      conventions in the module docstring (ties by gallery index, queries without relevant
      items excluded from the mAP@all's).
    """
    per_query = retrieval_per_query(
        queries, gallery, query_labels, gallery_labels, ks, metric, chunk_size, map_ks
    )
    return summarize_per_query(per_query)


def summarize_per_query(per_query: dict[str, np.ndarray]) -> dict[str, float]:
    """Means over queries of `retrieval_per_query`'s values; queries without a relevant item
    (NaN APs) are left out of the mAP@all's (P@k and mAP@k are never NaN)."""
    out = {}
    for key, values in per_query.items():
        if key.startswith("mAP@all"):
            valid = ~np.isnan(values)
            out[key] = float(values[valid].mean()) if valid.any() else float("nan")
        else:
            out[key] = float(values.mean())
    return out


def per_class_average_precision(
    ap: np.ndarray, query_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Per-class AP: (classes, mean AP of the queries of each class), classes sorted; NaN
    per-query APs (no relevant item) are left out of their class's mean."""
    ap, query_labels = np.asarray(ap, np.float64), np.asarray(query_labels)
    classes = np.unique(query_labels)
    means = []
    for c in classes:
        v = ap[query_labels == c]
        v = v[~np.isnan(v)]
        means.append(v.mean() if len(v) else np.nan)
    return classes, np.asarray(means)


def retrieval_per_query(
    queries: np.ndarray,
    gallery: np.ndarray,
    query_labels: np.ndarray,
    gallery_labels: np.ndarray,
    ks: Sequence[int] = (10,),
    metric: str = "cosine",
    chunk_size: int = 1024,
    map_ks: Sequence[int] = (),
) -> dict[str, np.ndarray]:
    """The per-query values behind `retrieval_metrics` (same arguments): {'mAP@all',
    'mAP@all_interp', 'P@k', 'mAP@k'} as [Q] float arrays (APs NaN for queries without a
    relevant gallery item). Use with `per_class_average_precision` for per-class AP."""
    queries = np.asarray(queries, np.float32).reshape(len(queries), -1)
    gallery = np.asarray(gallery, np.float32).reshape(len(gallery), -1)
    query_labels = np.asarray(query_labels).astype(np.int32)
    gallery_labels = np.asarray(gallery_labels).astype(np.int32)
    if queries.shape[1] != gallery.shape[1]:
        raise ValueError(
            f"queries have {queries.shape[1]} features but the gallery has {gallery.shape[1]}."
        )
    if len(queries) != len(query_labels) or len(gallery) != len(gallery_labels):
        raise ValueError(
            f"labels must match rows: {len(queries)} queries vs {len(query_labels)} labels, "
            f"{len(gallery)} gallery items vs {len(gallery_labels)} labels."
        )
    if len(queries) == 0:
        raise ValueError("retrieval_metrics needs at least one query.")
    if metric not in METRICS:
        raise ValueError(f"Unknown retrieval metric '{metric}'; use one of {METRICS}.")
    ks = tuple(int(k) for k in ks)
    map_ks = tuple(int(k) for k in map_ks)
    for k in ks + map_ks:
        if not 1 <= k <= len(gallery):
            raise ValueError(f"k={k} must lie in [1, gallery size {len(gallery)}]; lower k.")

    chunk_size = max(1, min(chunk_size, len(queries)))
    pad = (-len(queries)) % chunk_size
    if pad:  # repeat the first query so every chunk has one shape (one compilation)
        queries = np.concatenate([queries, np.repeat(queries[:1], pad, axis=0)])
        query_labels = np.concatenate([query_labels, np.repeat(query_labels[:1], pad)])
    gallery_dev, gallery_labels_dev = jnp.asarray(gallery), jnp.asarray(gallery_labels)
    parts = [
        _chunk_stats(
            jnp.asarray(queries[i : i + chunk_size]),
            gallery_dev,
            jnp.asarray(query_labels[i : i + chunk_size]),
            gallery_labels_dev,
            metric=metric,
            ks=ks,
            map_ks=map_ks,
        )
        for i in range(0, len(queries), chunk_size)
    ]
    n = len(queries) - pad
    return {key: np.concatenate([np.asarray(p[key]) for p in parts])[:n] for key in parts[0]}
