"""Pair Recall@k across domains (iiae.md §5.3) against brute-force NumPy, ties included."""

import numpy as np
import pytest

from wyner_jax.evaluation import instance_retrieval
from wyner_jax.evaluation.instance_retrieval import (
    instance_retrieval_metrics,
    pair_recall,
    partner_ranks,
)


def brute_ranks(q, g):
    """Position of gallery item i in query i's ranking: float64 squared distances, stable
    argsort (ties by index), as the reference's argmin reads it for k = 1."""
    q = np.asarray(q, np.float64).reshape(len(q), -1)
    g = np.asarray(g, np.float64).reshape(len(g), -1)
    d = ((q[:, None, :] - g[None, :, :]) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")
    return np.array([int(np.flatnonzero(order[i] == i)[0]) for i in range(len(q))])


def noisy_pairs(n, dim, noise, seed):
    rng = np.random.default_rng(seed)
    base = rng.normal(size=(n, dim))
    scale = noise * np.linspace(0.0, 2.0, n)[:, None]  # from exact pairs to lost ones
    return (
        (base + scale * rng.normal(size=(n, dim))).astype(np.float32),
        (base + scale * rng.normal(size=(n, dim))).astype(np.float32),
    )


@pytest.mark.parametrize("dim,direct_max", [(8, 64), (200, 64), (8, 0)])
def test_partner_ranks_match_brute_force(dim, direct_max):
    q, g = noisy_pairs(37, dim, noise=1.0, seed=dim)
    ranks = partner_ranks(q, g, direct_max_dim=direct_max)
    np.testing.assert_array_equal(ranks, brute_ranks(q, g))
    assert 0 < np.mean(ranks == 0) < 1  # neither trivial nor hopeless
    d = ((q[:, None].astype(np.float64) - g[None]) ** 2).sum(-1)
    recall = pair_recall(q, g, ks=(1, 5))
    assert recall[1] == pytest.approx(np.mean(np.argmin(d, axis=1) == np.arange(37)))
    assert recall[5] == pytest.approx(np.mean(brute_ranks(q, g) < 5))


def test_chunks_and_padding_do_not_change_ranks(monkeypatch):
    q, g = noisy_pairs(23, 8, noise=1.0, seed=3)
    whole = partner_ranks(q, g)
    monkeypatch.setattr(instance_retrieval, "CHUNK_ELEMENTS", 23 * 8 * 5)  # chunks of 5
    np.testing.assert_array_equal(partner_ranks(q, g), whole)


@pytest.mark.parametrize("dim", [8, 128])
def test_ties_break_by_gallery_index(dim):
    n = 10
    collapsed = np.ones((n, dim), np.float32)  # every code equal: only query 0 finds its pair
    np.testing.assert_array_equal(partner_ranks(collapsed, collapsed), np.arange(n))
    assert pair_recall(collapsed, collapsed)[1] == pytest.approx(1 / n)
    rng = np.random.default_rng(dim)
    g = rng.normal(size=(n, dim)).astype(np.float32)
    g[7] = g[2]  # a duplicated gallery item: query 7's partner ranks after item 2
    q = g + 0.001 * rng.normal(size=g.shape).astype(np.float32)
    q[7] = g[7]
    ranks = partner_ranks(q, g)
    np.testing.assert_array_equal(ranks, brute_ranks(q, g))
    assert ranks[7] == 1


def test_metric_names_and_perfect_codes():
    q, g = noisy_pairs(12, 8, noise=0.0, seed=1)
    emb = {"z_x": q, "z_y": g, "e_x": np.zeros((12, 8)), "e_y": np.zeros((12, 8)), "z_xy": q}
    out = instance_retrieval_metrics(emb)
    assert out == {
        "R@1_x2y": 1.0,
        "R@1_y2x": 1.0,
        "R@1_excl_x2y": pytest.approx(1 / 12),
        "R@1_excl_y2x": pytest.approx(1 / 12),
        "R@1_chance": pytest.approx(1 / 12),
    }
    spatial = instance_retrieval_metrics({"z_x": q.reshape(12, 2, 2, 2), "z_y": g.reshape(12, 8)})
    assert spatial["R@1_x2y"] == 1.0 and "R@1_excl_x2y" not in spatial
    with pytest.raises(ValueError, match="one gallery item per query"):
        partner_ranks(q, g[:5])
