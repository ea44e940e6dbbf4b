"""Browsing a model's misread crops: minority-style accuracy, misread crops, heat maps."""

from __future__ import annotations

import numpy as np

from scriptlab.data import Dataset
from scriptlab.experiment.scoring import MIN_CELL, Predictions, _cells, _worst


def minority_accuracy(
    ds: Dataset, script_logits, split: str, *, min_cell: int = MIN_CELL
) -> tuple[float, float | None, str | None]:
    """Script accuracy on a split's crops drawn in a style other than their script's assigned one.

    Args:
      ds: the dataset.
      script_logits: float[N, S] a model's script logits on ``split``.
      split: a split name.
      min_cell: the worst cell ignores (script, style) cells with fewer crops.

    Returns:
      (mean accuracy over those crops, the worst (script, style) cell's accuracy, its name).
    """
    s = ds.split(split)
    logits = np.asarray(script_logits)
    if logits.shape != (len(s), len(ds.scripts)):
        raise ValueError(
            f"script_logits must be float[{len(s)}, {len(ds.scripts)}] for split {split!r}, "
            f"got shape {logits.shape}"
        )
    assigned = np.array([ds.bias_style(name) for name in ds.scripts])
    off = s.style != assigned[s.script]
    if not off.any():
        raise ValueError(f"split {split!r} has no crops in a minority style")
    hit = np.argmax(logits, -1)[off] == s.script[off]
    acc, n = _cells(hit, s.script[off], s.style[off], len(ds.scripts), len(ds.styles))
    return (float(hit.mean()), *_worst(acc, n, ds.scripts, ds.styles, min_cell))


def misread(
    ds: Dataset,
    preds: dict[str, Predictions] | dict[str, np.ndarray],
    split: str,
    *,
    script: str | None = None,
    family: str | None = None,
) -> np.ndarray:
    """Indices of the crops of ``split`` whose script is misread, optionally of one script/family.

    Args:
      preds: {split: Predictions} (``predictions``), or {split: int[N] predicted script}
        (``predicted``).
    """
    s = ds.split(split)
    p = preds[split]
    read = np.argmax(p.script, -1) if isinstance(p, Predictions) else np.asarray(p)
    sel = read != s.script
    if script is not None:
        sel &= s.script == ds.scripts.index(script)
    if family is not None:
        sel &= s.family == ds.families.index(family)
    return np.flatnonzero(sel)


def heatmaps(results: dict, names: tuple[str, ...], split: str = "conflict_cells"):
    """Script x style accuracy on the conflict split (mean over seeds), one panel per model."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(
        1, len(names), figsize=(2.3 * len(names) + 0.6, 3.6), layout="constrained", squeeze=False
    )
    for ax, name in zip(axes[0], names, strict=True):
        cells = np.array(
            [
                [np.nan if v is None else v for v in row]
                for row in np.mean(
                    [np.array(r["tables"][split], float) for r in results["per_seed"][name]], 0
                )
            ]
        )
        im = ax.imshow(cells, vmin=0, vmax=1, cmap="viridis")
        ax.set_xticks(range(len(results["styles"])), results["styles"], rotation=90, fontsize=9)
        ax.set_yticks(
            range(len(results["scripts"])),
            results["scripts"] if ax is axes[0, 0] else [],
            fontsize=9,
        )
        ax.set_title(name, fontsize=10)
    fig.colorbar(im, ax=axes[0, -1], shrink=0.7, label="script accuracy")
    return fig
