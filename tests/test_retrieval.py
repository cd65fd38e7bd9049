"""Retrieval metrics against an independent brute-force NumPy implementation."""

import numpy as np
import pytest

from tests.tolerances import approx, assert_close
from wyner_jax.evaluation.retrieval import (
    average_precision,
    mean_average_precision,
    precision_at_k,
    retrieval_metrics,
)


def brute_force(queries, gallery, query_labels, gallery_labels, ks, metric):
    """One query at a time, plain Python ranking with (distance, index) as the sort key."""
    queries = np.asarray(queries, np.float64)
    gallery = np.asarray(gallery, np.float64)
    aps, aps_interp, p_at = [], [], {k: [] for k in ks}
    for q, q_label in zip(queries, query_labels):
        if metric == "cosine":
            dist = [1.0 - q @ g / (np.linalg.norm(q) * np.linalg.norm(g)) for g in gallery]
        else:
            dist = [np.sqrt(np.sum((q - g) ** 2)) for g in gallery]
        order = sorted(range(len(gallery)), key=lambda j: (dist[j], j))
        relevant = [gallery_labels[j] == q_label for j in order]
        for k in ks:
            p_at[k].append(sum(relevant[:k]) / k)
        precisions, hits = [], 0
        for rank, is_rel in enumerate(relevant, start=1):
            hits += is_rel
            precisions.append(hits / rank)
        if hits == 0:
            continue
        interp, best = [0.0] * len(precisions), 0.0
        for r in range(len(precisions) - 1, -1, -1):
            best = max(best, precisions[r])
            interp[r] = best
        aps.append(np.mean([p for p, rel in zip(precisions, relevant) if rel]))
        aps_interp.append(np.mean([p for p, rel in zip(interp, relevant) if rel]))
    out = {"mAP@all": np.mean(aps), "mAP@all_interp": np.mean(aps_interp)}
    out.update({f"P@{k}": np.mean(v) for k, v in p_at.items()})
    return out


def random_float_problem():
    rng = np.random.default_rng(0)
    gallery_labels = rng.integers(0, 5, 150)
    gallery = rng.normal(size=(150, 8)) + gallery_labels[:, None] * 0.3
    # One label (9) absent from the gallery: those queries must drop out of the mAPs.
    query_labels = np.concatenate([rng.integers(0, 5, 35), [9, 9]])
    queries = rng.normal(size=(37, 8)) + (query_labels[:, None] % 5) * 0.3
    return queries, gallery, query_labels, gallery_labels


def tied_integer_problem():
    # Integer vectors: every dot product and squared norm is exact in float32, and
    # duplicated gallery rows give exactly tied distances that must be broken by index.
    # The range is wide enough that distinct vectors are not collinear: mathematically tied
    # cosines of *different* vectors (v and 3v) round differently in float32 and float64,
    # so they could not be compared with the brute force (checked below).
    rng = np.random.default_rng(1)
    base = rng.integers(-20, 21, size=(60, 5))
    base_labels = rng.integers(0, 4, 60)
    dup = rng.integers(0, 60, 40)
    gallery = np.concatenate([base, base[dup]])
    gallery_labels = np.concatenate(
        [base_labels, rng.integers(0, 4, 40)]
    )  # duplicates may differ in label
    perm = rng.permutation(len(gallery))
    gallery, gallery_labels = gallery[perm], gallery_labels[perm]
    queries = np.concatenate([rng.integers(-20, 21, size=(20, 5)), gallery[:5]])
    gallery = np.where(np.all(gallery == 0, axis=1, keepdims=True), 1, gallery)  # no zero vectors
    queries = np.where(np.all(queries == 0, axis=1, keepdims=True), 1, queries)
    query_labels = rng.integers(0, 4, len(queries))
    return queries.astype(np.float32), gallery.astype(np.float32), query_labels, gallery_labels


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
@pytest.mark.parametrize("problem", [random_float_problem, tied_integer_problem])
def test_matches_brute_force(problem, metric):
    queries, gallery, query_labels, gallery_labels = problem()
    ks = (1, 5, 10, len(gallery))
    expected = brute_force(queries, gallery, query_labels, gallery_labels, ks, metric)
    for chunk_size in (1, 7, 1024):
        got = retrieval_metrics(
            queries,
            gallery,
            query_labels,
            gallery_labels,
            ks=ks,
            metric=metric,
            chunk_size=chunk_size,
        )
        assert set(got) == set(expected)
        # The same rankings; an AP is float32 precisions summed over the gallery's ranks
        # (depth G) against float64. Measured: 1·eps·|expected| at most; a tie broken the
        # wrong way moves the tied problem's mAPs by 1e-3 to 2.4e-3, 36× to 85× the bound.
        for key in expected:
            assert got[key] == approx(expected[key], depth=len(gallery)), (key, chunk_size)


def test_tied_problem_has_exact_ties_but_no_near_ties():
    # The premise of the comparison: exact ties (duplicates) exist, and no two cosine
    # distances are merely close, where float32 and float64 could order them differently.
    # (Squared euclidean distances are integers here, so they are exact in both.)
    queries, gallery, _, _ = tied_integer_problem()
    assert len(np.unique(gallery, axis=0)) < len(gallery)
    q, g = queries.astype(np.float64), gallery.astype(np.float64)
    cos = 1 - (q @ g.T) / np.outer(np.linalg.norm(q, axis=1), np.linalg.norm(g, axis=1))
    gap = np.abs(cos[:, :, None] - cos[:, None, :])
    assert not np.any((gap > 0) & (gap < 1e-6))


def test_hand_computed_example():
    # Query 0 at the origin, gallery at distances 1..5 with relevance [0, 1, 0, 1, 1]:
    # precisions 0, 1/2, 1/3, 2/4, 3/5 -> AP = (1/2 + 2/4 + 3/5) / 3 = 0.5333...;
    # interpolated precisions at the relevant ranks are all 3/5 -> AP_interp = 0.6.
    # Query 1 has a label absent from the gallery: excluded from the mAPs, P@2 = 0.
    gallery = np.array([[1.0], [2.0], [3.0], [4.0], [5.0]])
    gallery_labels = np.array([0, 1, 0, 1, 1])
    queries = np.array([[0.0], [0.0]])
    query_labels = np.array([1, 7])
    got = retrieval_metrics(
        queries, gallery, query_labels, gallery_labels, ks=(2, 5), metric="euclidean"
    )
    assert got["mAP@all"] == pytest.approx(1.6 / 3)
    assert got["mAP@all_interp"] == pytest.approx(0.6)
    assert got["P@2"] == pytest.approx(0.25)
    assert got["P@5"] == pytest.approx(0.3)


def test_ties_broken_by_gallery_index():
    gallery = np.array([[1.0, 0.0], [2.0, 0.0]])  # identical cosine distance to the query
    queries = np.array([[1.0, 0.0]])
    first_irrelevant = retrieval_metrics(queries, gallery, [1], [0, 1], ks=(1,))
    first_relevant = retrieval_metrics(queries, gallery, [1], [1, 0], ks=(1,))
    assert first_irrelevant["mAP@all"] == pytest.approx(0.5)
    assert first_irrelevant["P@1"] == 0.0
    assert first_relevant["mAP@all"] == pytest.approx(1.0)
    assert first_relevant["P@1"] == 1.0


def test_public_helpers_on_ranked_relevance():
    rel = np.array([[0, 1, 0, 1, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]], bool)
    np.testing.assert_array_equal(precision_at_k(rel, 2), [0.5, 0.5, 0.0])  # exact: hits / 2
    ap = np.asarray(average_precision(rel))
    assert_close(ap[:2], [1.6 / 3, 1.0], depth=5)  # float32, summed over the 5 ranks
    assert np.isnan(ap[2])
    assert mean_average_precision(rel) == pytest.approx((1.6 / 3 + 1.0) / 2)
    assert mean_average_precision(rel, interpolated=True) == pytest.approx((0.6 + 1.0) / 2)


def test_bad_arguments():
    q, g = np.ones((2, 3)), np.ones((4, 3))
    with pytest.raises(ValueError, match="gallery size"):
        retrieval_metrics(q, g, [0, 1], [0, 1, 0, 1], ks=(5,))
    with pytest.raises(ValueError, match="metric"):
        retrieval_metrics(q, g, [0, 1], [0, 1, 0, 1], metric="manhattan")
    with pytest.raises(ValueError, match="features"):
        retrieval_metrics(q, np.ones((4, 2)), [0, 1], [0, 1, 0, 1])
