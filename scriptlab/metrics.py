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
