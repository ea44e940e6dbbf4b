"""Accuracy breakdowns: confusion matrices and per-group accuracy."""

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
    values, *, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values``, all resamples drawn at once.

    Args:
      values: float[n], n >= 1, finite (e.g. 0/1 indicators: the interval of a share).
      n_boot: resamples (>= 1).
      level: the coverage, in (0, 1).
      seed: the resampling seed; the same seed gives the same interval.

    Returns:
      (low, high).

    References: Efron & Tibshirani 1993, An Introduction to the Bootstrap (percentile interval).
    """
    v = np.asarray(values, np.float64)
    if v.ndim != 1 or v.size == 0 or not np.isfinite(v).all():
        raise ValueError(f"values must be a non-empty finite 1-d array, got shape {v.shape}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be an integer >= 1, got {n_boot!r}")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    idx = np.random.default_rng(seed).integers(0, v.size, (n_boot, v.size))
    means = v[idx].mean(1)
    low, high = np.quantile(means, [(1 - level) / 2, (1 + level) / 2])
    return float(low), float(high)
