"""Small matplotlib helpers shared by the command line and the notebooks."""

from __future__ import annotations

import itertools

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


def abs_scaled(image_map) -> np.ndarray:
    """``|map|`` divided by its maximum, so a saliency map shows in [0, 1] (an all-zero map stays 0)."""
    m = np.abs(np.asarray(image_map))
    return m / max(float(m.max()), 1e-12)


def image_grid(
    panels,
    *,
    row_labels=(),
    col_titles=(),
    cmaps=None,
    cell: tuple[float, float] = (1.9, 0.95),
    fontsize: float = 8,
    suptitle: str | None = None,
):
    """Plot rows of images as a grid without ticks; returns the Figure.

    Args:
      panels: rows of images, ``panels[r][c]`` float[H, W] or float[H, W, 3]; every row
        has the same length.
      row_labels: a label left of each row (horizontal).
      col_titles: a title above each column; underscores show as spaces.
      cmaps: one colormap for every panel, or a sequence of one per column (None
        entries: matplotlib's default; RGB images ignore it).
      cell: (width, height) in inches of one panel.
      fontsize: of the labels and titles.
      suptitle: a title over the whole grid.
    """
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(panels), len(panels[0])
    if cmaps is None or isinstance(cmaps, str):
        cmaps = [cmaps] * n_cols
    fig, axes = plt.subplots(
        n_rows, n_cols, figsize=(cell[0] * n_cols, cell[1] * n_rows), squeeze=False
    )
    for r, row in enumerate(panels):
        for c, image in enumerate(row):
            axes[r, c].imshow(np.asarray(image), cmap=cmaps[c])
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
    for r, label in enumerate(row_labels):
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=fontsize)
    for c, title in enumerate(col_titles):
        axes[0, c].set_title(title.replace("_", " "), fontsize=fontsize)
    if suptitle:
        fig.suptitle(suptitle, fontsize=fontsize + 2)
    fig.tight_layout()
    return fig


def text_table(rows, columns, *, header: bool = True) -> str:
    """A fixed-width text table, one line per row, columns separated by one space.

    Args:
      rows: mappings (e.g. dicts) holding every key of ``columns``.
      columns: (title, key, format spec) triples, e.g. ``("ink mass", "ink_mass", "8.2f")``;
        the spec's leading number is the column's width. A title aligns like its
        column: left for text (an "s" spec), right for numbers.
      header: whether the first line holds the titles.

    Returns:
      The table as one string (no trailing newline), ready to ``print``.
    """
    lines = []
    if header:
        titles = []
        for title, _, spec in columns:
            width = "".join(itertools.takewhile(str.isdigit, spec.lstrip("<>^")))
            titles.append(f"{title:{'<' if spec.endswith('s') else '>'}{width}s}")
        lines.append(" ".join(titles))
    for row in rows:
        lines.append(" ".join(f"{row[key]:{spec}}" for _, key, spec in columns))
    return "\n".join(lines)
