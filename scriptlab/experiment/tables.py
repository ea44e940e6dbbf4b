"""Fixed-width text tables of the results."""

from __future__ import annotations

import numpy as np

from scriptlab.experiment.scoring import ACCURACY, GOAL, STYLE


def _cell(stat: dict | None) -> str:
    return f"{'-':>11}" if stat is None else f"{stat['mean']:>6.3f}±{stat['std']:.2f}"


def table(results: dict, metrics: tuple[str, ...] | None = None) -> str:
    """Fixed-width tables (mean ± std over seeds), each under 100 characters wide."""
    groups = [metrics] if metrics else [ACCURACY[:6], ACCURACY[6:], STYLE]
    width = _name_width(results["summary"])
    out = []
    for keys in groups:
        # a space, then the 11 characters of a cell: names longer than 11 would run together
        head = f"{'method':<{width}}" + "".join(f" {_short(k):>11}" for k in keys)
        lines = [head, "-" * len(head)]
        for name, row in results["summary"].items():
            lines.append(f"{name:<{width}}" + "".join(f" {_cell(row.get(k))}" for k in keys))
        out.append("\n".join(lines))
    return "\n\n".join(out)


_SHORT = {
    "conflict_worst": "confl_worst",
    "val_conflict": "val_confl",
    "val_conflict_worst": "vconf_worst",
    "heldout_macro": "held_macro",
    "heldout_worst": "held_worst",
    "heldout_lcg": "held_LCG",
    "caveat_cyrillic": "caveat_cyr",
    "font_mlp_probe": "mlp_probe",
    "font_cond_probe": "cond_probe",
    "font_from_script": "from_script",
    "font_probe": "lin_probe",
    "font_chance": "chance",
}


def _short(k: str) -> str:
    return _SHORT.get(k, k)


def _name_width(names) -> int:
    """The method column's width: the longest name and two spaces, so the columns stay aligned."""
    return max(len("method"), *(len(n) for n in names)) + 2


def goal_table(results: dict) -> str:
    """Share of the baseline-to-oracle gap each method closes, per symptom (* = seeds separated)."""
    width = _name_width(results["goal"])
    head = f"{'method':<{width}}" + "".join(f"{_short(k):>14}" for k in GOAL)
    lines = [head, "-" * len(head)]
    for name, row in results["goal"].items():
        cells = "".join(
            f"{'-':>14}"
            if row[k]["closed"] is None
            else f"{100 * row[k]['closed']:>12.0f}%{'*' if row[k]['separated'] else ' '}"
            for k in GOAL
        )
        lines.append(f"{name:<{width}}{cells}")
    return "\n".join(lines)


HELDOUT_TABLES = ("heldout_cells", "wide_cells")  # the held-out splits' (script, family) cells


def _check_cells(results: dict, names: tuple[str, ...], key: str) -> None:
    for n in names:
        if n not in results["per_seed"]:
            raise ValueError(f"unknown model {n!r}; allowed: {', '.join(results['per_seed'])}")
    if key not in HELDOUT_TABLES:
        raise ValueError(f"key must be one of {', '.join(HELDOUT_TABLES)}, got {key!r}")
    for n in names:
        if any(key not in r["tables"] for r in results["per_seed"][n]):
            raise ValueError(f"the rows of {n!r} hold no {key!r} (run with wide=True)")


def family_accuracy(
    results: dict, name: str, key: str = "wide_cells"
) -> dict[str, tuple[np.ndarray, int]]:
    """Script accuracy per held-out font family, per seed, over every script the family renders.

    Args:
      results: ``run``'s output.
      name: a model of the results.
      key: "wide_cells" (the widened held-out split) or "heldout_cells" (the default one).

    Returns:
      {family: (float64[seeds] accuracy, crops)}, the accuracy crop-weighted over the family's
      (script, family) cells (each stored to 4 decimals), families in the order the cells
      first name them.
    """
    _check_cells(results, (name,), key)
    rows = results["per_seed"][name]
    families = dict.fromkeys(c.split("/", 1)[1] for r in rows for c in r["tables"][key])
    out = {}
    for family in families:
        accs, crops = [], 0
        for r in rows:
            cells = [v for c, v in r["tables"][key].items() if c.split("/", 1)[1] == family]
            crops = sum(n for _, n in cells)
            accs.append(sum(a * n for a, n in cells) / crops)
        out[family] = (np.array(accs), crops)
    return out


def family_table(
    results: dict,
    names: tuple[str, ...] | None = None,
    scripts: tuple[str, ...] | None = None,
    key: str = "heldout_cells",
) -> str:
    """Held-out accuracy per (script, font family) cell, mean over seeds, one column per model.

    Args:
      results: ``run``'s output.
      names: models (columns); default every model in the results.
      scripts: only these scripts' rows (e.g. ``fonts.LCG``); default all.
      key: "heldout_cells" (the default held-out split) or "wide_cells" (the widened one).
    """
    names = tuple(results["summary"]) if names is None else names
    _check_cells(results, names, key)
    cells = results["per_seed"][names[0]][0]["tables"][key]
    rows = [c for c in cells if scripts is None or c.split("/")[0] in scripts]
    width = max([len(c) for c in rows] + [len("script/family")]) + 2
    # each column as wide as its own name, so one long name does not widen them all
    cols = [max(8, len(n) + 1) for n in names]
    head = f"{'script/family':<{width}}{'crops':>6}" + "".join(
        f"{n:>{w}}" for n, w in zip(names, cols, strict=True)
    )
    lines = [head, "-" * len(head)]
    for c in rows:
        means = [np.mean([r["tables"][key][c][0] for r in results["per_seed"][n]]) for n in names]
        values = "".join(f"{v:>{w}.3f}" for v, w in zip(means, cols, strict=True))
        lines.append(f"{c:<{width}}{cells[c][1]:>6}" + values)
    return "\n".join(lines)
