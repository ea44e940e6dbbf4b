"""Summaries of a dataset: counts, bias fractions, a sample grid."""

from __future__ import annotations

import numpy as np

from scriptlab import fonts
from scriptlab.data.config import Dataset, _bias_style

# --------------------------------------------------------------------------- summaries


def counts(ds: Dataset) -> dict[str, dict[str, dict[str, int]]]:
    """Sample counts per split x script x style."""
    out = {}
    for split, s in ds.splits.items():
        table = np.zeros((len(ds.scripts), len(ds.styles)), int)
        np.add.at(table, (s.script, s.style), 1)
        out[split] = {
            sc: {st: int(table[i, j]) for j, st in enumerate(ds.styles) if table[i, j]}
            for i, sc in enumerate(ds.scripts)
        }
    return out


def bias_fraction(ds: Dataset, split: str = "train") -> dict[str, float]:
    """Per script, the fraction of samples drawn in the script's assigned style."""
    s = ds.split(split)
    out = {}
    for i, name in enumerate(ds.scripts):
        sel = s.script == i
        if sel.any():
            out[name] = float(np.mean(s.style[sel] == ds.bias_style(name)))
    return out


def summary(ds: Dataset, seconds: float | None = None) -> dict:
    """A JSON-able description: classes, font table, counts, rho, timing."""
    seconds = ds.seconds if seconds is None else seconds
    total = sum(len(s) for s in ds.splits.values())
    return {
        "preset": ds.config.preset,
        "seed": ds.config.seed,
        "key": ds.key,
        "image_size": list(ds.config.image_size),
        "rho": ds.config.rho,
        "scripts": list(ds.scripts),
        "styles": list(ds.styles),
        "bias": {s: _bias_style(ds.config, s) for s in ds.scripts},
        "fonts": fonts.font_table(ds.config.fonts),
        "sizes": {k: len(v) for k, v in ds.splits.items()},
        "counts": counts(ds),
        "bias_fraction_train": bias_fraction(ds),
        "seconds": round(seconds, 3),
        "crops_per_second": round(total / seconds, 1) if seconds else None,
    }


def sample_grid(ds: Dataset, *, splits=("test", "conflict")) -> list[list[int | None]]:
    """For each (script, style) cell, the (split, index) of one example, or None."""
    grid = []
    for i in range(len(ds.scripts)):
        row = []
        for j in range(len(ds.styles)):
            hit = None
            for split in splits:
                s = ds.split(split)
                idx = np.flatnonzero((s.script == i) & (s.style == j))
                if len(idx):
                    hit = (split, int(idx[0]))
                    break
            row.append(hit)
        grid.append(row)
    return grid
