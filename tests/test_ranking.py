"""Top-k shares of influence rankings and embedding neighbours against plain loops."""

import numpy as np
import pytest

from scriptlab.interpret import ranking as R


def shares_loop(order, k, query_keys, point_keys, skip=None):
    """Plain-loop reference: per query, the top-k of a given ranking and the base rates."""
    q = len(order)
    share, joint, base, joint_base, top = [], [], [], [], []
    for i in range(q):
        keep = [j for j in order[i] if j != (skip[i] if skip is not None else -1)]
        t = keep[:k]
        m = point_keys[t] == query_keys[i]
        share.append(m.mean(0))
        joint.append(m.all(-1).mean())
        allm = point_keys[keep] == query_keys[i]
        base.append(allm.mean(0))
        joint_base.append(allm.all(-1).mean())
        top.append(t)
    return [np.array(v) for v in (share, joint, base, joint_base, top)]


def test_ranking_shares_match_a_plain_loop():
    rng = np.random.default_rng(0)
    scores = rng.normal(size=(7, 50)).astype(np.float32)
    train_keys = np.stack([rng.integers(0, 3, 50), rng.integers(0, 4, 50)], 1)  # (style, script)
    query_keys = np.stack([rng.integers(0, 3, 7), rng.integers(0, 4, 7)], 1)
    for largest in (True, False):
        res = R.ranking_shares(scores, query_keys, train_keys, k=6, largest=largest, block_size=3)
        order = np.argsort(-scores if largest else scores, axis=1, kind="stable")
        share, joint, base, joint_base, top = shares_loop(order, 6, query_keys, train_keys)
        np.testing.assert_array_equal(res.indices, top)
        np.testing.assert_allclose(res.share, share, rtol=1e-6)
        np.testing.assert_allclose(res.joint, joint, rtol=1e-6)
        np.testing.assert_allclose(res.base_rate, base, rtol=1e-6)
        np.testing.assert_allclose(res.joint_base_rate, joint_base, rtol=1e-6)


def test_ranking_that_follows_the_shortcut_scores_one():
    # training crops 0..4 carry (style 1, script 2); the scores rank exactly them first
    train_keys = np.array([[1, 2]] * 5 + [[0, 2]] * 5 + [[1, 0]] * 10)
    scores = np.r_[np.arange(5, 0, -1), np.zeros(15)][None].astype(np.float32)
    res = R.ranking_shares(scores, np.array([[1, 2]]), train_keys, k=5)
    np.testing.assert_allclose(res.joint, [1.0])
    np.testing.assert_allclose(res.joint_base_rate, [0.25])
    np.testing.assert_allclose(res.base_rate, [[0.75, 0.5]])
    # one label column given as int[N]
    one = R.ranking_shares(scores, np.array([1]), train_keys[:, 0], k=5)
    np.testing.assert_allclose(one.share, [[1.0]])


def test_neighbour_shares_match_a_plain_loop_with_and_without_self():
    rng = np.random.default_rng(1)
    points = rng.normal(size=(40, 5)).astype(np.float32)
    keys = np.stack([rng.integers(0, 3, 40), rng.integers(0, 2, 40)], 1)
    queries = points[[3, 10, 17]]
    d = ((queries[:, None] - points[None]) ** 2).sum(-1)
    order = np.argsort(d, axis=1, kind="stable")
    skip = np.array([3, 10, 17])
    res = R.neighbour_shares(queries, points, keys[skip], keys, k=4, exclude=skip, block_size=2)
    share, joint, base, joint_base, top = shares_loop(order, 4, keys[skip], keys, skip)
    np.testing.assert_array_equal(res.indices, top)
    np.testing.assert_allclose(res.share, share, rtol=1e-6)
    np.testing.assert_allclose(res.joint, joint, rtol=1e-6)
    np.testing.assert_allclose(res.base_rate, base, rtol=1e-5)
    np.testing.assert_allclose(res.joint_base_rate, joint_base, rtol=1e-5)
    # without exclusion a query that is a point finds itself first
    res = R.neighbour_shares(queries, points, keys[skip], keys, k=4)
    np.testing.assert_array_equal(res.indices[:, 0], skip)
    share, *_ = shares_loop(order, 4, keys[skip], keys)
    np.testing.assert_allclose(res.share, share, rtol=1e-6)


def test_ranking_bad_inputs():
    with pytest.raises(ValueError, match=r"k must be in \[1, 4\]"):
        R.ranking_shares(np.zeros((2, 4)), [0, 1], [0, 1, 0, 1], k=5)
    with pytest.raises(ValueError, match="train_keys must have 2 label columns"):
        R.ranking_shares(np.zeros((2, 4)), np.zeros((2, 2), int), [0, 1, 0, 1], k=2)
    with pytest.raises(ValueError, match=r"exclude must be int\[2\]"):
        R.neighbour_shares(np.zeros((2, 3)), np.zeros((4, 3)), [0, 1], [0, 1, 0, 1], exclude=[0, 4])
    with pytest.raises(ValueError, match=r"k must be in \[1, 3\]"):
        R.neighbour_shares(
            np.zeros((2, 3)), np.zeros((4, 3)), [0, 1], [0, 1, 0, 1], k=4, exclude=[0, 1]
        )
