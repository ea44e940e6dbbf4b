"""LEACE against closed forms: zero cross-covariance, the binary oblique projection, probes at chance."""

import numpy as np
import pytest

from scriptlab.erasure import erase, fit_leace
from scriptlab.probe import probe_accuracy


def _toy(n=2000, d=6, k=3, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.integers(0, k, n)
    centres = rng.normal(0, 2, (k, d))
    mix = rng.normal(0, 1, (d, d))  # correlated, anisotropic features
    x = centres[z] + rng.normal(0, 1, (n, d)) @ mix
    return x.astype(np.float32), z


def test_erased_features_have_zero_cross_covariance():
    x, z = _toy()
    r = np.asarray(erase(fit_leace(x, z, 3), x), np.float64)
    onehot = np.eye(3)[z]
    cross = (r - r.mean(0)).T @ (onehot - onehot.mean(0)) / len(r)
    before = (x - x.mean(0)).T @ (onehot - onehot.mean(0)) / len(x)
    assert np.abs(before).max() > 0.3
    assert np.abs(cross).max() < 1e-4


def test_binary_case_matches_the_oblique_projection():
    # For a binary concept LEACE reduces to r(x) = x - b b^T S^-1 (x - mu) / (b^T S^-1 b),
    # b the cross-covariance vector and S the feature covariance (Belrose et al. 2023, eq. 4).
    x, z = _toy(k=2, seed=1)
    x64 = x.astype(np.float64)
    mu = x64.mean(0)
    s = np.cov(x64.T, bias=True)
    b = (x64 - mu).T @ (z - z.mean()) / len(x)
    s_inv_b = np.linalg.solve(s, b)
    expected = x64 - np.outer((x64 - mu) @ s_inv_b, b) / (b @ s_inv_b)
    got = np.asarray(erase(fit_leace(x, z, 2), x))
    np.testing.assert_allclose(got, expected, atol=2e-3)


def test_linear_probe_falls_to_chance_and_rank_is_k_minus_one():
    x, z = _toy(n=4000, seed=2)
    fit, score = slice(0, 2000), slice(2000, 4000)
    eraser = fit_leace(x[fit], z[fit], 3)
    before = probe_accuracy(x[fit], z[fit], x[score], z[score], 3)
    after = probe_accuracy(erase(eraser, x[fit]), z[fit], erase(eraser, x[score]), z[score], 3)
    chance = np.max(np.bincount(z[score])) / 2000
    assert before > 0.9
    assert after < chance + 0.04
    assert np.linalg.matrix_rank(np.asarray(eraser.proj), tol=1e-4) == 2


def test_weights_fit_the_reweighted_distribution():
    # Duplicating examples and weighting them by their multiplicity give the same eraser.
    x, z = _toy(n=300, seed=3)
    reps = np.random.default_rng(3).integers(1, 4, len(x))
    a = fit_leace(np.repeat(x, reps, 0), np.repeat(z, reps), 3)
    b = fit_leace(x, z, 3, weights=reps.astype(float))
    np.testing.assert_allclose(a.proj, b.proj, atol=2e-4)
    np.testing.assert_allclose(a.mean, b.mean, atol=1e-5)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(features=np.zeros((5,))), "features must be float"),
        (dict(concept=np.zeros(7, int)), "concept must be int"),
        (dict(concept=np.full(10, 3)), "concept labels must lie"),
        (dict(features=np.full((10, 2), np.nan)), "NaN"),
        (dict(weights=-np.ones(10)), "weights must be"),
    ],
)
def test_bad_input_is_named(kwargs, match):
    args = dict(features=np.random.default_rng(0).normal(size=(10, 2)), concept=np.arange(10) % 2)
    args.update(kwargs)
    with pytest.raises(ValueError, match=match):
        fit_leace(args["features"], args["concept"], 2, weights=args.get("weights"))


# --------------------------------------------------------------------------- probes


def test_mlp_probe_reads_a_concept_a_linear_probe_cannot():
    # XOR of two signs: no linear probe beats chance, one hidden layer reads it.
    rng = np.random.default_rng(4)
    x = rng.normal(size=(4000, 2)).astype(np.float32)
    y = ((x[:, 0] > 0) ^ (x[:, 1] > 0)).astype(int)
    from scriptlab.probe import mlp_probe_accuracy

    lin = probe_accuracy(x[:2000], y[:2000], x[2000:], y[2000:], 2)
    mlp = mlp_probe_accuracy(x[:2000], y[:2000], x[2000:], y[2000:], 2)
    assert lin < 0.65 and mlp > 0.9


def test_conditional_probe_equals_separate_probes():
    # One vmapped fit over condition masks gives each condition's own probe.
    from scriptlab.probe import conditional_probe_accuracy, fit_probe

    rng = np.random.default_rng(5)
    c = rng.integers(0, 3, 1200)
    y = rng.integers(0, 2, 1200)
    w = rng.normal(size=(3, 4))  # the concept's direction depends on the condition
    x = (rng.normal(size=(1200, 4)) + (2 * y - 1)[:, None] * w[c]).astype(np.float32)
    fit, score = slice(0, 600), slice(600, 1200)
    acc = conditional_probe_accuracy(x[fit], y[fit], c[fit], x[score], y[score], c[score], 2, 3)
    # the same standardisation, then one probe per condition fitted separately
    mean, scale = x[fit].mean(0), x[fit].std(0) + 1e-6
    hits = []
    for k in range(3):
        tr, te = np.flatnonzero(c[fit] == k), 600 + np.flatnonzero(c[score] == k)
        p = fit_probe((x[tr] - mean) / scale, y[tr], 2)
        hits.append(p.predict((x[te] - mean) / scale) == y[te])
    assert abs(acc - np.mean(np.concatenate(hits))) < 0.01
    assert acc > 0.8


def test_weighted_probe_equals_the_duplicated_fit():
    from scriptlab.probe import fit_probe

    x, z = _toy(n=300, seed=6)
    reps = np.random.default_rng(6).integers(1, 4, len(x))
    w = fit_probe(x, z, 3, weights=reps.astype(float))
    d = fit_probe(np.repeat(x, reps, 0), np.repeat(z, reps), 3, weights=np.ones(reps.sum()))
    for a, b in zip(w, d, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-3, atol=1e-4)
    assert np.mean(w.predict(x) == z) > 0.8
