"""Cached validation results (JSON) under $SCRIPTLAB_CACHE/influence/."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np


def results_path(name: str) -> Path:
    """Where a cached validation result lives: $SCRIPTLAB_CACHE/influence/<name>.json."""
    from scriptlab.data import cache_dir

    return cache_dir() / "influence" / f"{name}.json"


def save_result(name: str, result: dict) -> Path:
    """Write a JSON-serialisable dict (numbers, lists, strings) to the influence cache."""
    p = results_path(name)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=1, default=lambda a: np.asarray(a).tolist()))
    return p


def load_result(name: str) -> dict | None:
    """A cached validation result, or None if absent or unreadable."""
    p = results_path(name)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None
