"""Scoring: every model's predictions on the evaluation splits, measured and aggregated."""

from __future__ import annotations

import base64
import math
from typing import NamedTuple

import numpy as np

# the names tests patch (``monkeypatch.setattr(experiment, ...)``) are read through the
# package at call time, so a patch takes effect here as it did in the single module
from scriptlab import experiment, zoo
from scriptlab.data import Dataset
from scriptlab.fonts import LCG
from scriptlab.probe import (
    conditional_probe_accuracy,
    mlp_probe_accuracy,
    probe_accuracy,
)

ACCURACY = (
    "test",
    "conflict",
    "conflict_worst",
    "val_conflict",
    "val_conflict_worst",
    "heldout",
    "heldout_macro",
    "heldout_worst",
    "heldout_lcg",
    "caveat",
    "caveat_cyrillic",
)
STYLE = (
    "font_head",
    "font_probe",
    "font_mlp_probe",
    "font_cond_probe",
    "font_chance",
    "font_from_script",
)
# The widened held-out split (issue 30): the diverse font table's held-out families, never in
# any model's training fonts, at least two per script where pip offers them. Scored like
# ``heldout`` (``wide``: all crops, ``wide_macro``: mean over scripts, ``wide_family``: mean
# over (script, family) cells, ``wide_worst``: the worst cell, ``wide_lcg``: Latin / Cyrillic /
# Greek), and ``heldout_family`` is ``wide_family``'s counterpart on the default split.
WIDE = "heldout_wide"
WIDE_METRICS = ("heldout_family", "wide", "wide_macro", "wide_family", "wide_worst", "wide_lcg")
METRICS = ACCURACY + STYLE + WIDE_METRICS
# The shortcut's three symptoms: the goal is to close half of each baseline-to-oracle gap.
GOAL = ("conflict_worst", "heldout_lcg", "caveat_cyrillic")
MIN_CELL = 10  # worst-group minima ignore cells with fewer crops than this
EVAL_SPLITS = ("test", "conflict", "val_conflict", "heldout")
# Every row also keeps the script each crop of these splits is read as (``predicted``), so a
# browser of misread crops needs no model.
PREDICTED_SPLITS = ("conflict", "heldout")


class Predictions(NamedTuple):
    """One model's outputs on one split: script logits, font logits (or None), embedding.

    Attributes:
      script: float32[N, n_scripts] script logits.
      font: float32[N, n_styles] font logits, or None where a post-hoc head
        replaces the script head only.
      embedding: float32[N, D], the representation the script head reads.
    """

    script: np.ndarray
    font: np.ndarray | None
    embedding: np.ndarray


def predictions(
    m: zoo.ZooModel,
    ds: Dataset,
    splits=EVAL_SPLITS,
    *,
    memo: dict | None = None,
    wide: Dataset | None = None,
) -> dict[str, Predictions]:
    """A zoo model's predictions on the evaluation splits (or ``splits``).

    Args:
      memo: a dict kept by the caller for this one model and dataset: splits already in it
        are read from it, new ones are computed and added. The post-hoc methods of one trunk
        then share its forward passes (``run`` does this; so can a notebook).
      wide: the diverse-font dataset whose held-out split is scored as ``WIDE`` (added to
        ``splits``), or None.
    """
    memo = {} if memo is None else memo
    if wide is not None and WIDE not in splits:
        splits = (*splits, WIDE)
    for s in splits:
        if s not in memo:
            images = wide.heldout.images if s == WIDE else ds.split(s).images
            memo[s] = Predictions(
                *map(np.asarray, experiment.predict(m.apply_fn, m.params, images))
            )
    return {s: memo[s] for s in splits}


def _halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


def _cells(hit, a, b, na: int, nb: int) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy and count of every (a, b) cell; accuracy NaN where empty."""
    n = np.zeros((na, nb))
    k = np.zeros((na, nb))
    np.add.at(n, (a, b), 1)
    np.add.at(k, (a, b), hit)
    with np.errstate(invalid="ignore", divide="ignore"):
        return k / n, n


def _worst(acc, n, names_a, names_b, min_cell: int) -> tuple[float | None, str | None]:
    """The lowest accuracy over cells of at least ``min_cell`` crops, and its cell (None if none)."""
    if not np.any(n >= min_cell):
        return None, None
    masked = np.where(n >= min_cell, acc, np.inf)
    i, j = np.unravel_index(np.argmin(masked), masked.shape)
    return float(masked[i, j]), f"{names_a[i]}/{names_b[j]}"


def _json_table(acc) -> list:
    return [[None if math.isnan(v) else round(float(v), 4) for v in row] for row in acc]


def _family_cells(hit, split, scripts, families, min_cell: int) -> tuple[float | None, dict]:
    """Mean accuracy over (script, family) cells of >= ``min_cell`` crops, and every cell."""
    acc, n = _cells(hit, split.script, split.family, len(scripts), len(families))
    cells = {
        f"{scripts[i]}/{families[j]}": [round(float(acc[i, j]), 4), int(n[i, j])]
        for i, j in zip(*np.nonzero(n), strict=True)
    }
    big = n >= min_cell
    return (float(acc[big].mean()) if big.any() else None), cells


def _by_script(hit, split, scripts) -> dict:
    """{script: [accuracy, crops]} for every script present in ``split``."""
    return {
        scripts[i]: [round(float(hit[split.script == i].mean()), 4), int(np.sum(split.script == i))]
        for i in np.unique(split.script)
    }


def score(
    preds: dict[str, Predictions],
    ds: Dataset,
    *,
    min_cell: int = MIN_CELL,
    wide: Dataset | None = None,
) -> dict:
    """Every number of the results table for one model, from its predictions.

    Args:
      preds: {split: Predictions} for every split of ``EVAL_SPLITS`` (and ``WIDE`` with
        ``wide``).
      ds: the dataset the predictions are of.
      min_cell: worst-group minima ignore cells with fewer crops.
      wide: the diverse-font dataset whose held-out split ``preds[WIDE]`` read; None leaves
        the ``wide_*`` numbers None.

    Returns:
      A row: each name of ``METRICS`` -> float (None where it does not apply), and
      ``tables``: the conflict (script x style) cells, the held-out (script x family)
      cells, the Latin/Cyrillic/Greek held-out confusion and Caveat by script;
      ``predicted``: the script read for each crop of ``PREDICTED_SPLITS`` (``predicted``).
    """
    S, F = len(ds.scripts), len(ds.styles)
    row: dict = {}
    read = {split: np.argmax(p.script, -1) for split, p in preds.items()}  # script read per crop
    hits = {}
    for split in preds:
        if split == WIDE:
            continue
        s = ds.split(split)
        hits[split] = read[split] == s.script
        row[split] = float(hits[split].mean())
    tables = {}
    for split in ("conflict", "val_conflict"):
        s = ds.split(split)
        acc, n = _cells(hits[split], s.script, s.style, S, F)
        row[f"{split}_worst"], row[f"{split}_worst_cell"] = _worst(
            acc, n, ds.scripts, ds.styles, min_cell
        )
        tables[f"{split}_cells"] = _json_table(acc)
    h = ds.heldout
    acc, n = _cells(hits["heldout"], h.script, h.family, S, len(ds.families))
    row["heldout_worst"], row["heldout_worst_cell"] = _worst(
        acc, n, ds.scripts, ds.families, min_cell
    )
    tables["heldout_cells"] = {
        f"{ds.scripts[i]}/{ds.families[j]}": [round(float(acc[i, j]), 4), int(n[i, j])]
        for i, j in zip(*np.nonzero(n), strict=True)
    }
    per_script = [hits["heldout"][h.script == i].mean() for i in range(S) if np.any(h.script == i)]
    row["heldout_macro"] = float(np.mean(per_script))
    lcg = [ds.scripts.index(x) for x in LCG]
    sel = np.isin(h.script, lcg)
    row["heldout_lcg"] = float(hits["heldout"][sel].mean())
    pred_h = read["heldout"]
    conf = np.zeros((3, 4), int)  # true L/C/G x predicted L/C/G/other
    for r, t in enumerate(lcg):
        for c, q in enumerate(lcg):
            conf[r, c] = np.sum((h.script == t) & (pred_h == q))
        conf[r, 3] = np.sum((h.script == t) & ~np.isin(pred_h, lcg))
    tables["heldout_lcg_confusion"] = conf.tolist()

    caveat = ds.families.index("Caveat")
    true = np.concatenate([ds.split(s).script for s in ("test", "conflict")])
    fam = np.concatenate([ds.split(s).family for s in ("test", "conflict")])
    hit = np.concatenate([hits[s] for s in ("test", "conflict")])
    row["caveat"] = float(hit[fam == caveat].mean()) if np.any(fam == caveat) else None
    tables["caveat_by_script"] = {
        ds.scripts[i]: [
            round(float(hit[(fam == caveat) & (true == i)].mean()), 4),
            int(np.sum((fam == caveat) & (true == i))),
        ]
        for i in np.unique(true[fam == caveat])
    }
    row["caveat_cyrillic"] = tables["caveat_by_script"].get("cyrillic", [None])[0]

    # Style is probed on the conflict split, where style is not the script's assigned
    # one: fit on one half, score on the other.
    c = ds.conflict
    fit, sc = _halves(len(c))
    emb = preds["conflict"].embedding
    font = preds["conflict"].font
    row["font_head"] = (
        None if font is None else float(np.mean(np.argmax(font[sc], -1) == c.style[sc]))
    )
    row["font_probe"] = probe_accuracy(emb[fit], c.style[fit], emb[sc], c.style[sc], F)
    row["font_mlp_probe"] = mlp_probe_accuracy(emb[fit], c.style[fit], emb[sc], c.style[sc], F)
    row["font_cond_probe"] = conditional_probe_accuracy(
        emb[fit], c.style[fit], c.script[fit], emb[sc], c.style[sc], c.script[sc], F, S
    )
    counts = np.bincount(c.style[fit], minlength=F)
    row["font_chance"] = float(np.mean(c.style[sc] == np.argmax(counts)))
    table = np.zeros((S, F))
    np.add.at(table, (c.script[fit], c.style[fit]), 1)
    row["font_from_script"] = float(np.mean(np.argmax(table, 1)[c.script[sc]] == c.style[sc]))
    row["heldout_family"], _ = _family_cells(hits["heldout"], h, ds.scripts, ds.families, min_cell)
    tables["heldout_by_script"] = _by_script(hits["heldout"], h, ds.scripts)
    row.update(dict.fromkeys((*WIDE_METRICS[1:], "wide_worst_cell")))
    if wide is not None:
        w, hit = wide.heldout, np.argmax(preds[WIDE].script, -1) == wide.heldout.script
        row["wide"] = float(hit.mean())
        row["wide_family"], tables["wide_cells"] = _family_cells(
            hit, w, wide.scripts, wide.families, min_cell
        )
        acc, n = _cells(hit, w.script, w.family, len(wide.scripts), len(wide.families))
        row["wide_worst"], row["wide_worst_cell"] = _worst(
            acc, n, wide.scripts, wide.families, min_cell
        )
        tables["wide_by_script"] = _by_script(hit, w, wide.scripts)
        row["wide_macro"] = float(np.mean([hit[w.script == i].mean() for i in np.unique(w.script)]))
        sel = np.isin(w.script, [wide.scripts.index(x) for x in LCG if x in wide.scripts])
        row["wide_lcg"] = float(hit[sel].mean()) if sel.any() else None
    row["tables"] = tables
    row["predicted"] = {split: _encode_labels(read[split]) for split in PREDICTED_SPLITS}
    return row


def _encode_labels(labels) -> str:
    """int[N] class indices as base64 of one byte each: 4,000 crops take 5.4 kB of JSON."""
    labels = np.asarray(labels)
    if labels.size and not (labels.min() >= 0 and labels.max() < 256):
        raise ValueError(f"labels must lie in [0, 256), got {labels.min()}..{labels.max()}")
    return base64.b64encode(labels.astype(np.uint8).tobytes()).decode("ascii")


def predicted(results: dict, name: str, seed: int = 0) -> dict[str, np.ndarray]:
    """The script each crop of ``PREDICTED_SPLITS`` is read as by ``name`` at ``seed``.

    ``run`` keeps these in every row, so browsing a model's misread crops
    (``misread``) needs neither the model nor a forward pass.

    Returns:
      {split: int64[N] script indices}, in the split's crop order.

    Raises:
      ValueError: naming the model or seed when ``results`` hold no such row, or when the
        rows predate this field.
    """
    rows = results["per_seed"].get(name)
    if rows is None:
        raise ValueError(
            f"name must be a model of these results ({', '.join(results['per_seed'])}), "
            f"got {name!r}"
        )
    if not isinstance(seed, int) or not 0 <= seed < len(rows):
        raise ValueError(f"seed must be an integer in [0, {len(rows)}), got {seed!r}")
    kept = rows[seed].get("predicted")
    if kept is None:
        raise ValueError(
            f"the row of {name!r} at seed {seed} keeps no predicted scripts (results written "
            "by an older scriptlab); run the experiment again"
        )
    return {
        split: np.frombuffer(base64.b64decode(v), np.uint8).astype(np.int64)
        for split, v in kept.items()
    }


def measure(
    m: zoo.ZooModel, ds: Dataset, *, memo: dict | None = None, wide: Dataset | None = None
) -> dict:
    """``score`` of a zoo model's own predictions (``memo``, ``wide``: as in ``predictions``)."""
    return score(predictions(m, ds, memo=memo, wide=wide), ds, wide=wide)


def _aggregate(rows: list[dict]) -> dict[str, dict[str, float]]:
    out = {}
    for k in METRICS:
        vals = [r[k] for r in rows if r.get(k) is not None]
        if vals:
            out[k] = {
                "mean": float(np.mean(vals)),
                "std": float(np.std(vals)),
                "min": float(np.min(vals)),
                "max": float(np.max(vals)),
                "n": len(vals),
            }
    return out


def goal(summary: dict, baseline: str = "baseline", oracle: str = "oracle") -> dict:
    """For each method and symptom: the share of the baseline-to-oracle gap it closes.

    Returns:
      {method: {metric: {"closed": fraction, "separated": bool}}}; ``separated`` says
      the method's worst seed beats the baseline's best seed.
    """
    out = {}
    for method, row in summary.items():
        if method in (baseline, oracle) or oracle not in summary:
            continue
        out[method] = {}
        for k in GOAL:
            base, best = summary[baseline][k], summary[oracle][k]
            gap = best["mean"] - base["mean"]
            out[method][k] = {
                "closed": float((row[k]["mean"] - base["mean"]) / gap) if gap else None,
                "separated": bool(row[k]["min"] > base["max"]),
            }
    return out
