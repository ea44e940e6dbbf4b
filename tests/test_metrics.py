import numpy as np
import pytest

from scriptlab.metrics import bootstrap_interval, confusion, group_accuracy


def test_confusion_counts_by_hand():
    c = confusion([0, 0, 1, 2, 2, 2], [0, 1, 1, 2, 0, 2], 3)
    assert c.tolist() == [[1, 1, 0], [0, 1, 0], [1, 0, 2]]
    with pytest.raises(ValueError, match="same shape"):
        confusion([0, 1], [0], 2)


def test_group_accuracy_by_hand():
    acc = group_accuracy([0, 1, 1, 0], [0, 1, 0, 1], [2, 2, 0, 0], ["a", "b", "c"])
    assert acc == {"a": (0.0, 2), "c": (1.0, 2)}
    assert np.isclose(sum(a * n for a, n in acc.values()) / 4, 0.5)


def _loop_interval(arrays, statistic, n_resamples, level, seed):
    """Plain-loop reference: the same draws, one resample at a time."""
    n = len(arrays[0])
    idx = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    stats = [statistic(*(a[row] for a in arrays)) for row in idx]
    tail = 50 * (1 - level)
    return tuple(np.percentile(stats, [tail, 100 - tail]))


def test_bootstrap_interval_of_a_mean_matches_a_plain_loop():
    hits = (np.random.default_rng(1).random(300) < 0.7).astype(float)
    got = bootstrap_interval(hits, n_resamples=500, level=0.9, seed=3)
    want = _loop_interval((hits,), np.mean, 500, 0.9, 3)
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-12)
    assert got == bootstrap_interval(hits, n_resamples=500, level=0.9, seed=3)  # deterministic
    assert got != bootstrap_interval(hits, n_resamples=500, level=0.9, seed=4)


def test_bootstrap_interval_of_paired_samples_matches_a_plain_loop():
    rng = np.random.default_rng(2)
    x = rng.normal(size=200)
    y = x + rng.normal(size=200)

    def corr_rows(a, b):  # Pearson correlation of each resample (rows)
        a, b = a - a.mean(-1, keepdims=True), b - b.mean(-1, keepdims=True)
        return (a * b).sum(-1) / np.sqrt((a * a).sum(-1) * (b * b).sum(-1))

    got = bootstrap_interval((x, y), corr_rows, n_resamples=400, seed=0)
    want = _loop_interval((x, y), lambda a, b: np.corrcoef(a, b)[0, 1], 400, 0.95, 0)
    np.testing.assert_allclose(got, want, atol=1e-12)
    assert got[0] < np.corrcoef(x, y)[0, 1] < got[1]


def test_bootstrap_interval_of_a_mean_is_close_to_the_normal_interval():
    values = np.random.default_rng(0).exponential(size=4000)
    low, high = bootstrap_interval(values, n_resamples=2000)
    half = 1.96 * values.std() / np.sqrt(len(values))  # closed form, large N
    np.testing.assert_allclose([low, high], [values.mean() - half, values.mean() + half], atol=0.01)


def test_bootstrap_interval_rejects_bad_input():
    with pytest.raises(ValueError, match="at least 2 samples sharing their first axis"):
        bootstrap_interval(np.ones(1))
    with pytest.raises(
        ValueError, match=r"sharing their first axis, got shapes \[\(3,\), \(4,\)\]"
    ):
        bootstrap_interval((np.ones(3), np.ones(4)), lambda a, b: a.mean(1))
    with pytest.raises(ValueError, match="statistic is required for 2 paired arrays"):
        bootstrap_interval((np.ones(3), np.ones(3)))
    with pytest.raises(ValueError, match="level must be in"):
        bootstrap_interval(np.ones(3), level=95)
    with pytest.raises(ValueError, match="n_resamples must be at least 100, got 10"):
        bootstrap_interval(np.ones(3), n_resamples=10)
    with pytest.raises(ValueError, match=r"one value per resample, shape \(100,\), got \(\)"):
        bootstrap_interval(np.ones(3), lambda x: x.mean(), n_resamples=100)
