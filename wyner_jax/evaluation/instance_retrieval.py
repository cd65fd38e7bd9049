"""Instance-level cross-domain retrieval: pair Recall@k (IIAE's Table 9, iiae.md §5.3).

Every test pair (x_i, y_i) is one scene seen in two domains. For the query x_i, the gallery is
every test y_j, ranked by squared Euclidean distance between codes; the query is a hit at k
when its own partner y_i is among the k nearest. ``feat_dist_full.py`` of the reference
reports k = 1 (the argmin is the partner) in both directions:

* on the shared codes (IIAE: means of r(z^s|x), r(z^s|y), 8192-d for the spatial code),
  ``retrieval/R@1_x2y`` and ``retrieval/R@1_y2x``: higher is better;
* on the exclusive codes (means of q(z^x|x), q(z^y|y), 8-d), ``retrieval/R@1_excl_x2y``
  and ``retrieval/R@1_excl_y2x``: the two spaces are unrelated by design, so the goal is
  chance, 1/N (``retrieval/R@1_chance``). The Table's parenthesised values are exactly 1/N
  or 0.

Ties are broken by gallery index, lower first (NumPy's argmin, which the reference's
script uses): a query whose code ties with every gallery code (e.g. collapsed exclusive
codes) retrieves item 0, so exactly one query in N hits and R@1 is 1/N.

Numbers are fractions in [0, 1] (the Table prints percentages). Distances run in jnp on the
default device over chunks of queries: exact per-dimension differences for codes of up to
``DIRECT_MAX_DIM`` dimensions, the expansion ‖q‖² + ‖g‖² − 2q·g (float32, HIGHEST matmul
precision) above that, where a [chunk, G, D] difference tensor would not fit.
"""

from __future__ import annotations

import functools
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from wyner_jax.evaluation import base

DIRECT_MAX_DIM = 64
# Elements of one chunk's [chunk, G, D] difference tensor (direct path) or [chunk, G] matrix.
CHUNK_ELEMENTS = 1 << 24

# (query code, gallery code, metric-name infix): shared codes first, then exclusive ones.
CODE_PAIRS = (("z_x", "z_y", ""), ("e_x", "e_y", "excl_"))


@functools.partial(jax.jit, static_argnames=("direct",))
def _chunk_ranks(queries, gallery, start, direct: bool):
    """Rank of each query's partner (gallery row start + r) among all gallery rows."""
    if direct:
        d = jnp.sum(jnp.square(queries[:, None, :] - gallery[None, :, :]), axis=-1)
    else:
        dot = jnp.matmul(queries, gallery.T, precision=jax.lax.Precision.HIGHEST)
        q_sq = jnp.sum(queries * queries, axis=1)
        g_sq = jnp.sum(gallery * gallery, axis=1)
        d = q_sq[:, None] + g_sq[None, :] - 2.0 * dot
    rows = jnp.arange(queries.shape[0])
    partner = jnp.minimum(start + rows, gallery.shape[0] - 1)  # padded rows: any valid index
    d_partner = d[rows, partner][:, None]
    before = jnp.arange(gallery.shape[0])[None, :] < partner[:, None]
    return jnp.sum(d < d_partner, axis=1) + jnp.sum((d == d_partner) & before, axis=1)


def partner_ranks(
    queries: np.ndarray, gallery: np.ndarray, direct_max_dim: int = DIRECT_MAX_DIM
) -> np.ndarray:
    """[N] int: for each query i, the 0-based position of gallery item i (its partner) when
    the gallery is sorted by squared Euclidean distance to the query, ties by index:
    rank_i = #{j : d_ij < d_ii} + #{j < i : d_ij = d_ii}. Recall@k = mean(rank < k).

    Args:
      queries, gallery: [N, ...] codes of the two sides of N pairs (flattened per row).
      direct_max_dim: codes of at most this many dimensions use exact differences.
    """
    q = np.asarray(queries, np.float32).reshape(len(queries), -1)
    g = np.asarray(gallery, np.float32).reshape(len(gallery), -1)
    if len(q) != len(g):
        raise ValueError(
            f"Pair retrieval needs one gallery item per query (its partner), got {len(q)} "
            f"queries and {len(g)} gallery items."
        )
    if q.shape[1] != g.shape[1]:
        raise ValueError(f"queries have {q.shape[1]} features but the gallery has {g.shape[1]}.")
    if len(q) == 0:
        raise ValueError("Pair retrieval needs at least one pair.")
    n, dim = q.shape
    direct = dim <= direct_max_dim
    per_query = n * (dim if direct else 1)
    chunk = int(max(1, min(n, CHUNK_ELEMENTS // max(per_query, 1))))
    pad = (-n) % chunk
    if pad:  # one shape for every chunk: one compilation
        q = np.concatenate([q, np.repeat(q[:1], pad, axis=0)])
    g_dev = jnp.asarray(g)
    ranks = [
        np.asarray(_chunk_ranks(jnp.asarray(q[s : s + chunk]), g_dev, s, direct=direct))
        for s in range(0, len(q), chunk)
    ]
    return np.concatenate(ranks)[:n].astype(np.int64)


def pair_recall(queries, gallery, ks: Sequence[int] = (1,)) -> dict[int, float]:
    """{k: Recall@k}: share of queries whose partner is among their k nearest gallery items."""
    ranks = partner_ranks(queries, gallery)
    return {int(k): float(np.mean(ranks < int(k))) for k in ks}


def instance_retrieval_metrics(
    embeddings: dict[str, np.ndarray], ks: Sequence[int] = (1,)
) -> dict[str, float]:
    """``R@k_x2y``, ``R@k_y2x`` on the shared codes ('z_x', 'z_y') and ``R@k_excl_x2y``,
    ``R@k_excl_y2x`` on the exclusive codes ('e_x', 'e_y'), for the code pairs present in
    ``embeddings`` (rows = test pairs), and ``R@1_chance`` = 1/N."""
    out = {}
    n = None
    for key_x, key_y, infix in CODE_PAIRS:
        if key_x not in embeddings or key_y not in embeddings:
            continue
        zx, zy = embeddings[key_x], embeddings[key_y]
        n = len(zx)
        for direction, (q, g) in (("x2y", (zx, zy)), ("y2x", (zy, zx))):
            for k, value in pair_recall(q, g, ks).items():
                out[f"R@{k}_{infix}{direction}"] = value
    if n:
        out["R@1_chance"] = 1.0 / n
    return out


def run(ctx) -> tuple[dict[str, float], dict]:
    """Pair Recall@k (``config.eval.instance_retrieval_ks``) on the shared codes and, where
    the model has them (IIAE), the exclusive codes."""
    ks = tuple(ctx.config.eval.get("instance_retrieval_ks", (1,)))
    codes = dict(ctx.emb_test)
    if ctx.inf.has("embed_exclusive"):
        codes.update(ctx.inf.call("embed_exclusive", ctx.dataset.test.x, ctx.dataset.test.y))
    r = instance_retrieval_metrics(codes, ks)
    return {f"retrieval/{k}": v for k, v in r.items()}, {}


# The exclusive codes' cross-domain retrieval should sit at chance: lower is better.
EVALUATOR = base.Evaluator(
    "instance retrieval", base.instance_pairs, run, lower_is_better=("retrieval/R@1_excl_",)
)
