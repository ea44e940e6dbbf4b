"""Accuracy breakdowns (confusion matrices, per-group accuracy) and bootstrap intervals."""

from __future__ import annotations

import numpy as np


def confusion(true, pred, n_classes: int) -> np.ndarray:
    """Counts[i, j] = number of samples of class i predicted as j."""
    true, pred = np.asarray(true), np.asarray(pred)
    if true.shape != pred.shape:
        raise ValueError(
            f"true and pred must have the same shape, got {true.shape} and {pred.shape}"
        )
    out = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(out, (true, pred), 1)
    return out


def group_accuracy(true, pred, groups, names) -> dict[str, tuple[float, int]]:
    """Accuracy and count per group id (only groups that occur), keyed by ``names[id]``."""
    true, pred, groups = map(np.asarray, (true, pred, groups))
    out = {}
    for g in np.unique(groups):
        sel = groups == g
        out[names[g]] = (float(np.mean(true[sel] == pred[sel])), int(sel.sum()))
    return out


def bootstrap_interval(
    samples, statistic=None, *, n_resamples: int = 1000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile bootstrap interval of a statistic of N independent samples.

    All resamples are drawn at once, ``rng.integers(0, N, (n_resamples, N))`` with
    ``rng = np.random.default_rng(seed)``, and the statistic is evaluated on all of them in
    one vectorised call, so the same seed gives the same interval.

    Args:
      samples: float[N, ...] (e.g. 0/1 hits for an accuracy, one score per crop), or a
        tuple of arrays that share their first axis N; they are resampled together (paired),
        as ``(labels, scores)`` must be for an AUC.
      statistic: maps the resampled arrays, each [n_resamples, N, ...], to
        float[n_resamples]; default the mean over N of a single array.
      n_resamples: bootstrap resamples (at least 100).
      level: coverage of the interval, in (0, 1); 0.95 gives the 2.5th and 97.5th percentiles.
      seed: seed of the resampling.

    Returns:
      (low, high): the interval's ends.

    References:
      Efron & Tibshirani 1993, An Introduction to the Bootstrap (percentile interval).
    """
    arrays = (
        tuple(np.asarray(s) for s in samples)
        if isinstance(samples, tuple)
        else (np.asarray(samples),)
    )
    n = len(arrays[0]) if arrays[0].ndim else 0
    if n < 2 or any(a.ndim == 0 or len(a) != n for a in arrays):
        shapes = [a.shape for a in arrays]
        raise ValueError(
            f"samples must be arrays of at least 2 samples sharing their first axis, got shapes {shapes}"
        )
    if statistic is None:
        if len(arrays) != 1:
            raise ValueError(
                f"statistic is required for {len(arrays)} paired arrays; the default mean takes one"
            )

        def statistic(x):
            return x.mean(axis=1)

    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 100:
        raise ValueError(f"n_resamples must be at least 100, got {n_resamples}")
    idx = np.random.default_rng(seed).integers(0, n, (n_resamples, n))
    stats = np.asarray(statistic(*(a[idx] for a in arrays)), float)
    if stats.shape != (n_resamples,):
        raise ValueError(
            f"statistic must return one value per resample, shape ({n_resamples},), got {stats.shape}"
        )
    tail = 50 * (1 - level)
    low, high = np.percentile(stats, [tail, 100 - tail])
    return float(low), float(high)
