"""Statistics of the detection study against scipy, sklearn and plain loops."""

import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as sps
from sklearn.metrics import roc_auc_score

from scriptlab.interpret import stats as S


@pytest.mark.parametrize("equal_var", [True, False])
def test_t_test_matches_scipy_batched(equal_var):
    rng = np.random.default_rng(0)
    a = rng.normal(0.3, 1.0, size=(4, 20)).astype(np.float32)
    b = rng.normal(0.0, 2.0, size=(4, 25)).astype(np.float32)
    a[3] += 3.0  # a tiny p-value
    ours = S.t_test(a, b, equal_var=equal_var)
    ref = sps.ttest_ind(a, b, axis=-1, equal_var=equal_var)
    np.testing.assert_allclose(ours.statistic, ref.statistic, rtol=1e-4)
    np.testing.assert_allclose(ours.p_value, ref.pvalue, rtol=2e-3, atol=1e-7)
    if not equal_var:
        np.testing.assert_allclose(ours.df, ref.df, rtol=1e-4)


def test_t_test_on_tcav_like_scores_and_constant_samples():
    # TCAV scores are shares of a few dozen examples: many ties, values near 0 and 1
    rng = np.random.default_rng(1)
    a = rng.integers(30, 41, size=20) / 40
    b = rng.integers(15, 26, size=20) / 40
    ref = sps.ttest_ind(a, b)
    np.testing.assert_allclose(S.t_test(a, b).p_value, ref.pvalue, rtol=2e-3, atol=1e-12)
    # scipy returns NaN for two constant samples; the t-test here says what the means say
    assert float(S.t_test(np.ones(5), np.ones(5)).p_value) == 1.0
    assert float(S.t_test(np.ones(5), np.zeros(5)).p_value) == 0.0


def test_t_test_rejects_one_sample():
    with pytest.raises(ValueError, match="a must hold >= 2 samples"):
        S.t_test(np.ones(1), np.ones(3))


def test_holm_and_bonferroni_on_known_p_values():
    p = np.array([0.01, 0.04, 0.03, 0.005], np.float32)
    # sorted: 0.005, 0.01, 0.03, 0.04 -> x4, x3, x2, x1 = 0.02, 0.03, 0.06, 0.04 -> running max
    holm = S.adjust_p_values(p, method="holm")
    np.testing.assert_allclose(holm, [0.03, 0.06, 0.06, 0.02], rtol=1e-6)
    np.testing.assert_allclose(
        S.adjust_p_values(p, method="bonferroni"), [0.04, 0.16, 0.12, 0.02], rtol=1e-6
    )
    np.testing.assert_allclose(S.adjust_p_values(p, method="none"), p)
    # the family is every entry, whatever the shape; capped at 1
    grid = np.array([[0.5, 0.01], [0.2, 0.9]], np.float32)
    np.testing.assert_allclose(
        S.adjust_p_values(grid, method="holm"), [[1.0, 0.04], [0.6, 1.0]], rtol=1e-6
    )


def holm_loop(p):
    order = np.argsort(p, kind="stable")
    out, running, m = np.empty_like(p), 0.0, len(p)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def test_holm_matches_plain_loop():
    p = np.random.default_rng(2).uniform(0, 0.1, size=37).astype(np.float32)
    np.testing.assert_allclose(S.adjust_p_values(p), holm_loop(p), rtol=1e-6)
    with pytest.raises(ValueError, match="method must be one of"):
        S.adjust_p_values(p, method="fdr")
    with pytest.raises(ValueError, match=r"p_values must lie in \[0, 1\]"):
        S.adjust_p_values(p + 1)


def test_roc_auc_matches_sklearn_with_ties():
    rng = np.random.default_rng(3)
    labels = rng.uniform(size=(3, 50)) < 0.3
    scores = np.round(rng.normal(size=(3, 50)) + labels, 1)  # many ties
    ours = S.roc_auc(scores, labels)
    np.testing.assert_allclose(
        ours, [roc_auc_score(labels[i], scores[i]) for i in range(3)], rtol=1e-6
    )
    np.testing.assert_allclose(S.roc_auc([1.0, 1.0, 1.0], [0, 1, 1]), 0.5)
    np.testing.assert_allclose(S.roc_auc([0.0, 1.0, 2.0], [0, 1, 1]), 1.0)
    with pytest.raises(ValueError, match="at least one positive and one negative"):
        S.roc_auc([0.0, 1.0], [1, 1])
    with pytest.raises(ValueError, match="labels must be bool or integer 0 / 1"):
        S.roc_auc([0.0, 1.0], [0, 2])


def test_stratified_resamples_keep_each_stratum():
    strata = np.array([0, 1, 1, 0, 2, 1, 0])
    idx = np.asarray(S.resample_indices(7, n_resamples=200, seed=4, strata=strata))
    assert idx.shape == (200, 7)
    np.testing.assert_array_equal(strata[idx], np.broadcast_to(strata, idx.shape))
    # every member of a stratum is drawn, and the draw is deterministic
    assert set(idx[:, 0]) == {0, 3, 6}
    np.testing.assert_array_equal(
        idx, S.resample_indices(7, n_resamples=200, seed=4, strata=strata)
    )
    plain = np.asarray(S.resample_indices(7, n_resamples=500, seed=0))
    assert set(plain.ravel()) == set(range(7))


def test_bootstrap_auc_matches_plain_loop_over_the_same_indices():
    rng = np.random.default_rng(5)
    labels = rng.uniform(size=60) < 0.4
    scores = np.round(rng.normal(size=60) + 0.8 * labels, 1).astype(np.float32)
    est = S.bootstrap_auc(scores, labels, n_resamples=300, seed=7)
    idx = np.asarray(S.resample_indices(60, n_resamples=300, seed=7, strata=labels))
    aucs = [roc_auc_score(labels[i], scores[i]) for i in idx]
    np.testing.assert_allclose(est.value, roc_auc_score(labels, scores), rtol=1e-6)
    np.testing.assert_allclose([est.low, est.high], np.quantile(aucs, [0.025, 0.975]), rtol=1e-5)
    assert est.low <= est.value <= est.high


def test_bootstrap_mean_and_differences_match_plain_loops():
    rng = np.random.default_rng(6)
    a = rng.normal(size=40).astype(np.float32)
    b = (a + rng.normal(0.5, 0.3, size=40)).astype(np.float32)
    idx = np.asarray(S.resample_indices(40, n_resamples=250, seed=1))
    mean = S.bootstrap_mean(a, n_resamples=250, seed=1, level=0.9)
    np.testing.assert_allclose(
        [mean.low, mean.high], np.quantile([a[i].mean() for i in idx], [0.05, 0.95]), rtol=1e-5
    )
    paired = S.bootstrap_difference(a, b, n_resamples=250, seed=1)
    ref = [np.mean(a[i] - b[i]) for i in idx]
    np.testing.assert_allclose(
        [paired.low, paired.high], np.quantile(ref, [0.025, 0.975]), rtol=1e-4
    )
    np.testing.assert_allclose(paired.value, np.mean(a - b), rtol=1e-5)
    # unpaired: the groups are resampled apart, each keeping its size
    c = b[:25]
    group = np.r_[np.ones(40, bool), np.zeros(25, bool)]
    idx = np.asarray(S.resample_indices(65, n_resamples=250, seed=1, strata=group))
    both = np.r_[a, c]
    ref = [both[i][:40].mean() - both[i][40:].mean() for i in idx]
    unpaired = S.bootstrap_difference(a, c, paired=False, n_resamples=250, seed=1)
    np.testing.assert_allclose(
        [unpaired.low, unpaired.high], np.quantile(ref, [0.025, 0.975]), rtol=1e-4
    )
    np.testing.assert_allclose(unpaired.value, a.mean() - c.mean(), rtol=1e-5)


def test_bootstrap_share_of_bools_and_bad_level():
    flips = np.array([True] * 3 + [False] * 7)
    est = S.bootstrap_mean(flips, n_resamples=400)
    assert float(est.value) == pytest.approx(0.3)
    assert 0.0 <= float(est.low) < 0.3 < float(est.high) <= 1.0
    with pytest.raises(ValueError, match="level must be"):
        S.bootstrap_mean(flips, level=1.0)


def test_seed_summary():
    v = jnp.array([[0.2, 1.0], [0.4, 1.0], [0.9, 1.0]])
    s = S.seed_summary(v)
    np.testing.assert_allclose(s.mean, [0.5, 1.0], rtol=1e-6)
    np.testing.assert_allclose(s.std, [np.std([0.2, 0.4, 0.9], ddof=1), 0.0], rtol=1e-5)
    np.testing.assert_allclose(s.low, [0.2, 1.0])
    np.testing.assert_allclose(s.high, [0.9, 1.0])
    assert s.n == 3
    assert float(S.seed_summary(jnp.array([0.7])).std) == 0.0
