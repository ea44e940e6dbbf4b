"""The results figure, and the results written to a folder (JSON, text, PNG)."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from scriptlab.cache import write_atomic
from scriptlab.experiment.results import _write_json
from scriptlab.experiment.tables import _short, family_table, goal_table, table


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


def write(results: dict, out: str | Path) -> Path:
    """results.json (strict JSON), results.txt and results.png into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _write_json(out / "results.json", results)
    text = table(results) + ("\n\n" + goal_table(results) if results.get("goal") else "")
    text += "\n\nHeld-out font families, script accuracy per cell:\n" + family_table(results)
    write_atomic(out / "results.txt", (text + "\n").encode())
    import io

    import matplotlib.pyplot as plt

    fig = figure(results)
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=90)
    plt.close(fig)
    write_atomic(out / "results.png", png.getvalue())
    return out
