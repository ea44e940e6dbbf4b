"""Cached validation results (JSON) under $SCRIPTLAB_CACHE/influence/."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np


def results_path(name: str) -> Path:
    """Where a cached validation result lives: $SCRIPTLAB_CACHE/influence/<name>.json."""
    from scriptlab.cache import cache_dir

    if not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", str(name)):
        raise ValueError(f"name must be a plain file name (letters, digits, _ . -), got {name!r}")
    return cache_dir() / "influence" / f"{name}.json"


def save_result(name: str, result: dict) -> Path:
    """Write a JSON-serialisable dict (numbers, lists, strings) to the influence cache."""
    from scriptlab.cache import write_atomic

    if not isinstance(result, dict):
        raise ValueError(f"result must be a dict, got {type(result).__name__}")
    p = results_path(name)
    p.parent.mkdir(parents=True, exist_ok=True)
    text = json.dumps(result, indent=1, default=lambda a: np.asarray(a).tolist())
    write_atomic(p, text.encode())  # a killed run leaves the old file or none, never half
    return p


def load_result(name: str) -> dict | None:
    """A cached validation result, or None if absent, unreadable or not a dict (recompute it)."""
    p = results_path(name)
    try:
        result = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    return result if isinstance(result, dict) else None
