"""Tests for scriptlab.interpret.embedding: t-SNE pieces against dense references, quality measures."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scriptlab.interpret import embedding as E


def _blobs(n=120, d=16, centers=3, spread=8.0, seed=0):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(centers, d)) * spread
    labels = np.arange(n) % centers
    return (mu[labels] + rng.normal(size=(n, d))).astype(np.float32), labels


def _dense_kl(p, y):
    """KL(P || Q) written the textbook way, over the full N x N matrices."""
    n = y.shape[0]
    d2 = jnp.sum((y[:, None, :] - y[None, :, :]) ** 2, axis=-1)
    num = (1.0 / (1.0 + d2)) * (1.0 - jnp.eye(n))
    q = num / num.sum()
    safe_p = jnp.where(p > 0, p, 1.0)
    return jnp.sum(jnp.where(p > 0, p * (jnp.log(safe_p) - jnp.log(jnp.where(p > 0, q, 1.0))), 0.0))


@pytest.mark.parametrize("perplexity", [5.0, 30.0])
@pytest.mark.slow
def test_perplexity_calibration_hits_target_entropy(perplexity):
    x, _ = _blobs(n=150)
    aff = E.affinities(x, perplexity=perplexity)
    p = np.asarray(aff.conditional, np.float64)
    np.testing.assert_allclose(p.sum(1), 1.0, atol=1e-5)
    entropy = -np.sum(np.where(p > 0, p * np.log(np.where(p > 0, p, 1.0)), 0.0), axis=1)
    assert np.abs(entropy - np.log(perplexity)).max() < 1e-3
    # Nearest-first neighbour lists, self excluded, matching a brute-force search.
    d = ((x[:, None, :] - x[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    k = aff.neighbors.shape[1]
    assert k == int(3 * perplexity + 1)
    np.testing.assert_array_equal(np.sort(aff.neighbors, 1), np.sort(np.argsort(d, 1)[:, :k], 1))


def test_joint_probabilities_symmetric_and_normalised():
    x, _ = _blobs(n=60)
    p = np.asarray(E.joint_probabilities(E.affinities(x, perplexity=10.0)))
    assert p.min() >= 0 and np.all(np.diag(p) == 0)
    np.testing.assert_allclose(p, p.T, atol=0)
    np.testing.assert_allclose(p.sum(), 1.0, atol=1e-5)


@pytest.mark.parametrize("n_neighbors", [None, 49])  # kNN P, and the dense P (k = N - 1)
@pytest.mark.slow
def test_kl_and_gradient_match_jax_grad_of_dense_kl(n_neighbors):
    x, _ = _blobs(n=50)
    aff = E.affinities(x, perplexity=8.0, n_neighbors=n_neighbors)
    p = E.joint_probabilities(aff)
    y = jnp.asarray(np.random.default_rng(1).normal(size=(50, 2)), jnp.float32)
    kl, grad = E.kl_divergence_and_gradient(aff, y, block_size=16)  # 16 does not divide 50
    np.testing.assert_allclose(kl, _dense_kl(p, y), rtol=1e-4)
    ref = jax.grad(_dense_kl, argnums=1)(p, y)
    np.testing.assert_allclose(grad, ref, atol=1e-5 * float(jnp.abs(ref).max()))


def test_exaggeration_scales_only_the_attraction():
    x, _ = _blobs(n=40)
    aff = E.affinities(x, perplexity=5.0)
    p = E.joint_probabilities(aff)
    y = jnp.asarray(np.random.default_rng(2).normal(size=(40, 2)), jnp.float32)
    _, g1 = E.kl_divergence_and_gradient(aff, y)
    kl12, g12 = E.kl_divergence_and_gradient(aff, y, exaggeration=12.0)
    d2 = jnp.sum((y[:, None] - y[None]) ** 2, -1)
    num = (1.0 / (1.0 + d2)) * (1.0 - jnp.eye(40))
    attr = 4.0 * jnp.sum((p * num)[..., None] * (y[:, None] - y[None]), axis=1)
    np.testing.assert_allclose(g12 - g1, 11.0 * attr, atol=1e-5 * float(jnp.abs(attr).max()) * 12)
    np.testing.assert_allclose(kl12, _dense_kl(p, y), rtol=1e-4)  # the KL is of the plain P


def test_two_clusters_come_out_as_two_clusters():
    x, labels = _blobs(n=80, d=10, centers=2, spread=10.0)
    res = E.tsne(x, perplexity=10.0, n_iter=300, exaggeration_iter=100, record_every=50)
    y = np.asarray(res.embedding)
    a, b = y[labels == 0], y[labels == 1]
    within = max(
        np.linalg.norm(a - a.mean(0), axis=1).max(), np.linalg.norm(b - b.mean(0), axis=1).max()
    )
    assert np.linalg.norm(a.mean(0) - b.mean(0)) > 2 * within
    assert float(E.knn_accuracy(y, labels, k=5)) == 1.0
    # The record: init first, final iterate last, KL history finite and lower at the end.
    assert res.trajectory.shape == (300 // 50 + 1, 80, 2)
    np.testing.assert_array_equal(res.trajectory[-1], res.embedding)
    assert np.isclose(float(jnp.std(res.trajectory[0][:, 0])), 1e-4, rtol=1e-3)
    assert np.all(np.isfinite(res.kl_history)) and res.kl_history[-1] < res.kl_history[0]
    np.testing.assert_allclose(res.kl, res.kl_history[-1], rtol=0.05)
    # Deterministic: the same call gives the same numbers.
    again = E.tsne(x, perplexity=10.0, n_iter=300, exaggeration_iter=100, record_every=50)
    np.testing.assert_array_equal(again.embedding, res.embedding)


def test_clear_errors():
    x, _ = _blobs(n=20)
    with pytest.raises(ValueError, match="perplexity must be < the number of points N = 20"):
        E.tsne(x, perplexity=20.0)
    with pytest.raises(ValueError, match="perplexity must be < n_neighbors"):
        E.affinities(x, perplexity=10.0, n_neighbors=8)
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="x contains NaN or infinite values in 1 of 20 rows"):
        E.tsne(bad, perplexity=5.0)
    with pytest.raises(ValueError, match="at least 4 points, got N = 3"):
        E.tsne(x[:3], perplexity=1.0)
    with pytest.raises(ValueError, match="must be a 2-D array"):
        E.pca(x[0])
    with pytest.raises(ValueError, match="record_every must divide n_iter = 100"):
        E.tsne(x, perplexity=5.0, n_iter=100, record_every=7)
    with pytest.raises(ValueError, match="init array must have shape"):
        E.tsne(x, perplexity=5.0, init=np.zeros((19, 2)))
    with pytest.raises(ValueError, match="labels must be int"):
        E.knn_accuracy(x, np.zeros(19, int))


def test_trustworthiness_matches_sklearn():
    manifold = pytest.importorskip("sklearn.manifold")
    x, _ = _blobs(n=90)
    y = np.random.default_rng(3).normal(size=(90, 2)).astype(np.float32)
    y_good = x[:, :2] + 0.1 * y
    for emb in (y, y_good):
        for k in (1, 5, 12):
            ours = float(E.trustworthiness(x, emb, n_neighbors=k, block_size=32))
            ref = manifold.trustworthiness(x, emb, n_neighbors=k)
            # float32 distances (ours) vs float64 (sklearn) may swap a near-tie: one rank
            # step moves T by 2 / (N k (2N - 3k - 1)) < 1e-4 here.
            assert abs(ours - ref) < 1e-4, (k, ours, ref)


def _knn_loop(x, labels, groups, k):
    d = ((x[:, None, :].astype(np.float64) - x[None]) ** 2).sum(-1)
    d[groups[:, None] != groups[None, :]] = np.inf
    np.fill_diagonal(d, np.inf)
    hits = []
    for i in range(len(x)):
        votes = np.zeros(labels.max() + 1)
        for rank, j in enumerate(np.argsort(d[i])[:k]):
            if np.isfinite(d[i, j]):
                votes[labels[j]] += 1.0 + 1e-3 * (k - rank) / k
        hits.append(np.argmax(votes) == labels[i])
    return np.array(hits)


def test_knn_accuracy_matches_plain_loop():
    x, _ = _blobs(n=70, centers=4, spread=1.5)
    labels = np.random.default_rng(4).integers(0, 3, 70)
    labels[:35] = np.arange(35) % 3  # make the labels partly follow the blobs
    groups = np.arange(70) % 4
    groups[:3] = 9  # a group of 3 points votes with 2 neighbours
    k = 7
    plain = _knn_loop(x, labels, np.zeros(70, int), k)
    assert np.isclose(float(E.knn_accuracy(x, labels, k=k, block_size=16)), plain.mean())
    within = _knn_loop(x, labels, groups, k)
    assert np.isclose(float(E.knn_accuracy(x, labels, k=k, groups=groups)), within.mean())
    recall = [within[labels == c].mean() for c in range(3)]
    got = float(E.knn_accuracy(x, labels, k=k, groups=groups, balanced=True))
    assert np.isclose(got, np.mean(recall), atol=1e-6)


def test_pca_matches_covariance_eigenvectors():
    x, _ = _blobs(n=100, d=6)
    res = E.pca(x, n_components=3)
    xc = x.astype(np.float64) - x.mean(0)
    evals, evecs = np.linalg.eigh(xc.T @ xc)
    order = np.argsort(evals)[::-1]
    np.testing.assert_allclose(
        res.explained_variance_ratio, evals[order][:3] / evals.sum(), rtol=1e-4
    )
    for c in range(3):
        v = evecs[:, order[c]]
        v = v * np.sign(v[np.argmax(np.abs(v))])
        np.testing.assert_allclose(res.components[c], v, atol=1e-4)
    np.testing.assert_allclose(res.projected, xc @ np.asarray(res.components).T, atol=1e-3)


class _Out(NamedTuple):
    embedding: jax.Array
    activations: dict


def _toy_apply(params, images):
    flat = images.reshape(images.shape[0], -1)
    return _Out(jnp.tanh(flat @ params), {"flat": flat})


def test_embed_matches_direct_apply():
    params = jax.random.normal(jax.random.key(1), (4 * 8 * 3, 6))
    images = jax.random.uniform(jax.random.key(0), (5, 4, 8, 3))
    direct = _toy_apply(params, images)
    np.testing.assert_allclose(
        E.embed(_toy_apply, params, images, batch_size=2), direct.embedding, atol=1e-5
    )
    flat = E.embed(_toy_apply, params, images, layer="flat", batch_size=2)
    np.testing.assert_allclose(flat, direct.activations["flat"], atol=0)
    with pytest.raises(ValueError, match="images must be float32"):
        E.embed(_toy_apply, params, images[0])
