"""Small matplotlib helpers shared by the command line and the notebooks."""

from __future__ import annotations

import numpy as np


def style_grid(ds, *, splits=("test", "conflict", "heldout"), scale: float = 1.0):
    """A script x style grid of example crops (blank where the cell is empty).

    Returns:
      The matplotlib Figure.
    """
    import matplotlib.pyplot as plt

    from scriptlab.data import sample_grid

    grid = sample_grid(ds, splits=splits)
    n_rows, n_cols = len(ds.scripts), len(ds.styles)
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(1.6 * n_cols * scale, 0.85 * n_rows * scale), squeeze=False
    )
    for i, row in enumerate(grid):
        for j, hit in enumerate(row):
            ax = axes[i, j]
            ax.set_xticks([])
            ax.set_yticks([])
            if hit is not None:
                split, k = hit
                s = ds.split(split)
                ax.imshow(s.images[k])
                ax.set_title(ds.families[s.family[k]], fontsize=6, pad=1)
            else:
                ax.set_facecolor("0.92")
            if j == 0:
                ax.set_ylabel(ds.scripts[i], fontsize=8, rotation=0, ha="right", va="center")
    fig.tight_layout(pad=0.3, rect=(0, 0, 1, 1 - 0.35 / n_rows))
    for j, style in enumerate(ds.styles):
        box = axes[0, j].get_position()
        fig.text(
            (box.x0 + box.x1) / 2,
            1 - 0.12 / n_rows,
            style,
            ha="center",
            va="center",
            fontsize=10,
            weight="bold",
        )
    return fig


def image_row(images, titles=(), *, cmap=None, size: float = 1.4, suptitle: str | None = None):
    """Plot a row of images with optional titles; returns the Figure."""
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    n = len(images)
    fig, axes = plt.subplots(
        1, n, figsize=(size * 2 * n / 1.0 / 2 + 0.2, size * 0.7), squeeze=False
    )
    for k, ax in enumerate(axes[0]):
        ax.imshow(images[k], cmap=cmap)
        ax.set_xticks([])
        ax.set_yticks([])
        if k < len(titles):
            ax.set_title(titles[k], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    fig.tight_layout(pad=0.2)
    return fig
