"""The results figure, and the results written to a folder (JSON, text, PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scriptlab.cache import write_atomic
from scriptlab.experiment.results import _write_json
from scriptlab.experiment.tables import (
    _check_cells,
    _short,
    family_accuracy,
    family_table,
    goal_table,
    table,
)


def figure(results: dict):
    """Bar charts: script accuracy on the shortcut's symptoms, and style decodability."""
    import matplotlib.pyplot as plt

    names = list(results["summary"])
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.4), layout="constrained")
    for ax, keys, title in (
        (
            axes[0],
            ("test", "conflict", "conflict_worst", "heldout_lcg", "caveat_cyrillic"),
            "script accuracy",
        ),
        (
            axes[1],
            ("font_probe", "font_mlp_probe", "font_cond_probe", "font_from_script"),
            "style left in the embedding",
        ),
    ):
        width = 0.8 / len(keys)
        for i, k in enumerate(keys):
            stats = [results["summary"][n].get(k) for n in names]
            ax.bar(
                np.arange(len(names)) + i * width,
                [s["mean"] if s else 0 for s in stats],
                width,
                yerr=[s["std"] if s else 0 for s in stats],
                label=_short(k),
                capsize=2,
            )
        ax.set_xticks(np.arange(len(names)) + 0.4 - width / 2, names, rotation=30)
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.legend(fontsize=8, ncol=2)
    return fig


def family_figure(results: dict, names: tuple[str, ...], key: str = "wide_cells"):
    """Script accuracy per held-out font family (rows) and model (columns), mean over seeds.

    Families are sorted by the first model's accuracy, worst at the top; each cell is
    annotated with its mean.

    Args:
      results: ``run``'s output.
      names: the models (columns), in order.
      key: "wide_cells" (the widened held-out split) or "heldout_cells".
    """
    import matplotlib.pyplot as plt

    _check_cells(results, names, key)
    acc = {n: family_accuracy(results, n, key) for n in names}
    families = sorted(acc[names[0]], key=lambda f: acc[names[0]][f][0].mean())
    grid = np.array([[acc[n][f][0].mean() for n in names] for f in families])
    fig, ax = plt.subplots(
        figsize=(1.2 + 1.1 * len(names), 0.9 + 0.24 * len(families)), layout="constrained"
    )
    im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1, aspect="auto")
    for (i, j), v in np.ndenumerate(grid):
        ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="black" if v > 0.6 else "white")  # fmt: skip
    ax.set_xticks(range(len(names)), names, rotation=30, ha="right")
    crops = [acc[names[0]][f][1] for f in families]
    ax.set_yticks(
        range(len(families)), [f"{f} ({c})" for f, c in zip(families, crops, strict=True)]
    )
    ax.tick_params(labelsize=8)
    fig.colorbar(im, ax=ax, shrink=0.6, label="script accuracy")
    split = "widened held-out" if key == "wide_cells" else "held-out"
    ax.set_title(f"{split} families (crops)", fontsize=9)
    return fig


def write(results: dict, out: str | Path) -> Path:
    """results.json (strict JSON), results.txt and results.png into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "results.json", results)
    text = table(results) + ("\n\n" + goal_table(results) if results.get("goal") else "")
    text += "\n\nHeld-out font families, script accuracy per cell:\n" + family_table(results)
    if all("wide_cells" in rows[0]["tables"] for rows in results["per_seed"].values()):
        text += "\n\nWidened held-out split, script accuracy per cell:\n"
        text += family_table(results, key="wide_cells")
    write_atomic(out / "results.txt", (text + "\n").encode())
    import io

    import matplotlib.pyplot as plt

    fig = figure(results)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    plt.close(fig)
    write_atomic(out / "results.png", png.getvalue())
    return out
