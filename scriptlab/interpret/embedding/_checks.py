"""The point-cloud check every embedding function runs before jit."""

from __future__ import annotations

from typing import Any

import numpy as np


def _check_points(x: Any, name: str, *, min_points: int = 4) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {arr.shape}")
    if arr.shape[0] < min_points:
        raise ValueError(f"{name} needs at least {min_points} points, got N = {arr.shape[0]}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or infinite values in {bad} of {arr.shape[0]} rows")
    return arr
