"""Small matplotlib helpers shared by the command line and the notebooks."""

from __future__ import annotations

import atexit
import itertools
import threading
import time

import numpy as np

# Font sizes in points. Notebooks show figures at 72 dpi, where one point is one pixel on
# screen: below about 9 pt a label is under 7 px tall and hard to read at 100 % zoom.
SMALL = 9
STYLE = {
    "figure.dpi": 72,
    "figure.constrained_layout.use": True,
    "font.size": 11,
    "axes.titlesize": 11,
    "axes.labelsize": 11,
    "xtick.labelsize": 10,
    "ytick.labelsize": 10,
    "legend.fontsize": 10,
    "figure.titlesize": 12,
    "savefig.dpi": 100,
}


def style(**overrides) -> None:
    """Set the notebooks' one figure style in matplotlib's rcParams (call once, at the top).

    Readable label sizes at the displayed size (72 dpi, nothing below ``SMALL`` points) and
    constrained layout, which makes room for titles, suptitles and tick labels so that they
    do not overlap (no ``tight_layout`` needed).

    Args:
      overrides: rcParams to set on top of ``STYLE``, e.g. ``{"figure.dpi": 96}`` written
        as ``**{"figure.dpi": 96}``.
    """
    import matplotlib.pyplot as plt

    plt.rcParams.update({**STYLE, **overrides})


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
        n_rows,
        n_cols,
        figsize=(1.9 * n_cols * scale, 0.95 * n_rows * scale),
        squeeze=False,
        layout="constrained",
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
                ax.set_title(ds.families[s.family[k]], fontsize=SMALL, pad=2)
            else:
                ax.set_facecolor("0.92")
            if j == 0:
                ax.set_ylabel(ds.scripts[i], rotation=0, ha="right", va="center")
    for j, name in enumerate(ds.styles):
        # above the first row's family titles; constrained layout makes room for it
        axes[0, j].annotate(
            name,
            (0.5, 1),
            xycoords="axes fraction",
            xytext=(0, SMALL + 6),
            textcoords="offset points",
            ha="center",
            va="bottom",
            weight="bold",
        )
    return fig


def image_row(images, titles=(), *, cmap=None, size: float = 1.4, suptitle: str | None = None):
    """Plot a row of images with optional titles; returns the Figure."""
    import matplotlib.pyplot as plt

    images = np.asarray(images)
    n = len(images)
    fig, axes = plt.subplots(
        1, n, figsize=(size * n + 0.2, size * 0.7 + 0.3), squeeze=False, layout="constrained"
    )
    for k, ax in enumerate(axes[0]):
        ax.imshow(images[k], cmap=cmap)
        ax.set_xticks([])
        ax.set_yticks([])
        if k < len(titles):
            ax.set_title(titles[k], fontsize=SMALL)
    if suptitle:
        fig.suptitle(suptitle)
    return fig


# Attribution maps: a diverging map for signed evidence (red for, blue against, white zero)
# and a sequential one for magnitudes.
SIGNED_CMAP = "RdBu_r"
ABS_CMAP = "inferno"


def attribution_limits(maps, *, signed: bool = False, percentile: float = 99.5):
    """One pair of colour limits for attribution maps that are compared side by side.

    Panels drawn with the same limits can be compared by eye: a weak map looks weak instead of
    being stretched to full contrast, as scaling each panel to its own maximum does. The upper
    limit is a high percentile of ``|maps|`` rather than the maximum, so one hot pixel does not
    wash out the rest; pixels beyond it saturate (the colourbar's end).

    Args:
      maps: float[..., H, W] attribution maps (any leading shape), all in the same units.
      signed: True for limits symmetric about zero (draw with ``SIGNED_CMAP``, so negative
        evidence shows); False for magnitudes from zero (draw ``|maps|`` with ``ABS_CMAP``).
      percentile: of ``|maps|``, in (0, 100], that sets the upper limit.

    Returns:
      (vmin, vmax): (-q, q) when signed, else (0, q); q > 0 even for all-zero maps.
    """
    if not 0 < percentile <= 100:
        raise ValueError(f"percentile must be in (0, 100], got {percentile}")
    q = max(float(np.percentile(np.abs(np.asarray(maps, float)), percentile)), 1e-12)
    return (-q, q) if signed else (0.0, q)


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
    vlims=None,
    colorbar_label: str | None = None,
    cell: tuple[float, float] = (1.9, 0.95),
    fontsize: float | None = None,
    suptitle: str | None = None,
    panel_titles=None,
):
    """Plot rows of images as a grid without ticks; returns the Figure.

    Args:
      panels: rows of images, ``panels[r][c]`` float[H, W] or float[H, W, 3]; every row
        has the same length.
      row_labels: a label left of each row (horizontal).
      col_titles: a title above each column; underscores show as spaces.
      cmaps: one colormap for every panel, or a sequence of one per column (None
        entries: matplotlib's default; RGB images ignore it).
      vlims: colour limits of single-channel panels: None (each panel stretched to its own
        range), one (vmin, vmax) pair for every panel, or a sequence of one per column (None
        entries: own range). Panels that share limits can be compared by eye
        (``attribution_limits``).
      colorbar_label: when given, each column with limits gets a colourbar below it, with
        this label ("{title}" in it is replaced by the column's title); with one pair of
        limits for every panel, the grid gets a single colourbar on its right instead.
      cell: (width, height) in inches of one panel.
      fontsize: of the labels and titles (default: the style's, see ``style``).
      suptitle: a title over the whole grid.
      panel_titles: rows of titles, one above each panel (drawn after ``col_titles``, so
        they replace the first row's); e.g. the labels of a query's neighbours.
    """
    import matplotlib.pyplot as plt

    n_rows, n_cols = len(panels), len(panels[0])
    if cmaps is None or isinstance(cmaps, str):
        cmaps = [cmaps] * n_cols
    shared = vlims is not None and len(vlims) == 2 and np.isscalar(vlims[0])
    if vlims is None or shared:
        vlims = [vlims] * n_cols
    if len(vlims) != n_cols:
        raise ValueError(
            f"vlims must be one (vmin, vmax) pair or {n_cols} (one per column), got {len(vlims)}"
        )
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(cell[0] * n_cols, cell[1] * n_rows),
        squeeze=False,
        layout="constrained",
    )
    for r, row in enumerate(panels):
        for c, image in enumerate(row):
            lims = vlims[c] if np.ndim(image) == 2 and vlims[c] is not None else (None, None)
            shown = axes[r, c].imshow(np.asarray(image), cmap=cmaps[c], vmin=lims[0], vmax=lims[1])
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if (
                colorbar_label is not None
                and r == n_rows - 1
                and lims[0] is not None
                and not shared
            ):
                title = col_titles[c].replace("_", " ") if c < len(col_titles) else ""
                bar = fig.colorbar(shown, ax=axes[:, c], location="bottom", shrink=0.9, aspect=12)
                bar.set_label(colorbar_label.replace("{title}", title), fontsize=fontsize)
    if shared and colorbar_label is not None:
        bar = fig.colorbar(shown, ax=axes, location="right", shrink=0.6, aspect=25)
        bar.set_label(colorbar_label, fontsize=fontsize)
    for r, label in enumerate(row_labels):
        axes[r, 0].set_ylabel(label, rotation=0, ha="right", va="center", fontsize=fontsize)
    for c, title in enumerate(col_titles):
        axes[0, c].set_title(title.replace("_", " "), fontsize=fontsize)
    for r, titles in enumerate(panel_titles or ()):
        for c, title in enumerate(titles):
            axes[r, c].set_title(title, fontsize=SMALL if fontsize is None else fontsize)
    if suptitle:
        fig.suptitle(suptitle, fontsize=None if fontsize is None else fontsize + 2)
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


def busy(fn=None, *, message: str = "computing ...", when=None):
    """Wrap a widget callback so a status line shows while it computes.

    For ``ipywidgets.interact``: the wrapped callback prints ``message`` as soon as a control
    moves, and ``clear_output(wait=True)`` keeps that line until the callback's first output
    (its figure or text) replaces it, so a slow move (compiling a new shape, a gradient pass
    over the training set) reads as work in progress, not as a frozen widget. The signature is
    the callback's own, so ``interact`` builds the same controls. Use as ``busy(fn)`` or as a
    decorator, ``@busy`` / ``@busy(message="scoring ...")``.

    Args:
      fn: the callback.
      message: the status line.
      when: optional predicate, called with the callback's arguments (defaults filled in):
        the line shows only when it returns True, e.g. ``lambda model, **_: model not in
        cache`` for a move that is slow only the first time.
    """
    import functools
    import inspect

    if fn is None:
        return functools.partial(busy, message=message, when=when)
    for name, f in (("fn", fn), ("when", when)):
        if f is not None and not callable(f):
            raise TypeError(f"{name} must be a callable, got {type(f).__name__}")
    signature = inspect.signature(fn)

    @functools.wraps(fn)
    def run(*args, **kwargs):
        from IPython.display import clear_output

        if when is not None:
            bound = signature.bind(*args, **kwargs)
            bound.apply_defaults()
            if not when(**bound.arguments):
                return fn(*args, **kwargs)
        print(message, flush=True)
        clear_output(wait=True)  # cleared by the next output, not now
        return fn(*args, **kwargs)

    return run


class Cached:
    """``fn(key)`` computed once per key: on demand, or ahead of time in a background thread.

    Some widget moves need seconds of work (a t-SNE map per perplexity, a post-hoc head per
    model). ``cached[key]`` computes ``fn(key)`` the first time and returns the kept value
    afterwards; ``prefetch(keys)`` computes keys in a daemon thread while the learner reads on,
    so a later move answers at once. A key that the widget and the thread ask for at the same
    time is computed once (one lock per key). Values are waited for (``block_until_ready``)
    inside the computing thread, so the work is really done there.

    Args:
      fn: key -> value; keys must be hashable (a tuple of arguments works).

    Attributes:
      errors: {key: exception} raised by ``fn`` in the prefetch thread; that key is left
        out, so asking for it again computes it and raises in the caller.

    When the interpreter exits (a kernel shut down, a script ending), prefetch threads start
    no new key and the exit waits for the key in flight (up to ``EXIT_WAIT`` seconds): a
    daemon thread stopped inside XLA aborts the process ("FATAL: exception not rethrown").
    """

    THREAD = "scriptlab-prefetch"  # the prefetch threads' name (benchmarks wait for them)
    EXIT_WAIT = 120.0  # seconds the exit waits for a key in flight
    _stop = threading.Event()  # set at exit: no prefetch thread starts another key
    _threads: list = []

    def __init__(self, fn):
        if not callable(fn):
            raise TypeError(f"fn must be a callable key -> value, got {type(fn).__name__}")
        self.fn = fn
        self.errors: dict = {}
        self._values: dict = {}
        self._locks: dict = {}
        self._guard = threading.Lock()

    def __contains__(self, key) -> bool:
        return key in self._values

    def __getitem__(self, key):
        import jax

        with self._guard:
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            if key not in self._values:
                self._values[key] = jax.block_until_ready(self.fn(key))
        return self._values[key]

    def prefetch(self, keys):
        """Compute ``keys`` in order in a daemon thread; returns the started thread."""
        keys = list(keys)

        def work():
            for key in keys:
                if Cached._stop.is_set():  # the interpreter is exiting
                    return
                try:
                    self[key]
                except Exception as err:  # noqa: BLE001 (kept, and raised again on request)
                    self.errors[key] = err

        thread = threading.Thread(target=work, name=self.THREAD, daemon=True)
        Cached._threads[:] = [t for t in Cached._threads if t.is_alive()] + [thread]
        thread.start()
        return thread


@atexit.register
def _finish_prefetch() -> None:
    """At exit: prefetch threads start no new key, and the exit waits for the keys in flight."""
    Cached._stop.set()
    deadline = time.monotonic() + Cached.EXIT_WAIT
    for thread in Cached._threads:
        thread.join(max(0.0, deadline - time.monotonic()))
