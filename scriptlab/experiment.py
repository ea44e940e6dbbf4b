"""The font-style shortcut experiment: every method x several seeds, measured so nothing hides.

Methods (``scriptlab.train``'s modes, plus post-hoc heads on frozen trunks):
  baseline, multitask, unlearn, ascent   the first essay's recipes;
  cdann                                  conditional adversary (one font head per script);
  balanced, groupdro                     group-balanced sampling, group DRO;
  balanced_unlearn, balanced_cdann       the two flips under group-balanced sampling;
  leace, dfr, leace_dfr,                 post-hoc: a new linear script head on a frozen
  unlearn_dfr, cdann_dfr                 trunk, after LEACE erasure of style and/or fitted
                                         on the group-balanced training distribution;
  dfr_val, unlearn_dfr_val, ...          the group-balanced head fitted on held-out crops
                                         (val + val_conflict) instead (``fit_posthoc``).
References (the same recipe on other training data, the same evaluation splits):
  oracle   styles uniform within each script (rho 0.2): no shortcut to learn;
  rho99    a stronger bias than the default 0.9.

For every model: script accuracy on the in-distribution test split, on the
bias-conflicting splits and on held-out font families, with the worst (script,
style) and (script, family) cells, the per-script macro average, the
Latin/Cyrillic/Greek held-out crops and Caveat by script; then how much style is
left in the embedding: the model's own font head and FRESH probes (linear, MLP,
per-script) fitted on one half of the conflict split and scored on the other
(Elazar & Goldberg 2018), next to two chance levels (majority style, and style
guessed from the script). Nothing is tuned on test, conflict or held-out:
hyperparameters are chosen on ``val_conflict``.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from scriptlab import zoo
from scriptlab.data import Dataset, cache_dir, clean_temporaries, write_atomic
from scriptlab.erasure import Eraser, erase, fit_leace
from scriptlab.fonts import LCG
from scriptlab.probe import (
    Probe,
    conditional_probe_accuracy,
    fit_probe,
    mlp_probe_accuracy,
    probe_accuracy,
)
from scriptlab.train import balanced_probabilities, dataset_for, group_ids, predict

METHODS = (
    "baseline",
    "unlearn",
    "cdann",
    "balanced",
    "groupdro",
    "balanced_unlearn",
    "balanced_cdann",
    "leace",
    "dfr",
    "leace_dfr",
    "unlearn_dfr",
    "cdann_dfr",
    "dfr_val",
    "unlearn_dfr_val",
    "cdann_dfr_val",
    "balanced_dfr_val",
    "balanced_unlearn_dfr_val",
    "balanced_cdann_dfr_val",
    "multitask",
    "ascent",
)
REFERENCES = ("oracle", "rho99")
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
METRICS = ACCURACY + STYLE
# The shortcut's three symptoms: the goal is to close half of each baseline-to-oracle gap.
GOAL = ("conflict_worst", "heldout_lcg", "caveat_cyrillic")
MIN_CELL = 10  # worst-group minima ignore cells with fewer crops than this
EVAL_SPLITS = ("test", "conflict", "val_conflict", "heldout")
# Every row also keeps the script each crop of these splits is read as (``predicted``), so a
# browser of misread crops needs no model.
PREDICTED_SPLITS = ("conflict", "heldout")
# Part of the results cache key (next to each model's TrainConfig.key(), which carries the
# training-code version): bump it whenever evaluation code changes a number or a row gains a field.
EVAL_CODE_VERSION = 3


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
    m: zoo.ZooModel, ds: Dataset, splits=EVAL_SPLITS, *, memo: dict | None = None
) -> dict[str, Predictions]:
    """A zoo model's predictions on the evaluation splits (or ``splits``).

    Args:
      memo: a dict kept by the caller for this one model and dataset: splits already in it
        are read from it, new ones are computed and added. The post-hoc methods of one trunk
        then share its forward passes (``run`` does this; so can a notebook).
    """
    memo = {} if memo is None else memo
    for s in splits:
        if s not in memo:
            memo[s] = Predictions(
                *map(np.asarray, predict(m.apply_fn, m.params, ds.split(s).images))
            )
    return {s: memo[s] for s in splits}


class Posthoc(NamedTuple):
    """A post-hoc method: a new linear script head on a trained model's frozen embedding.

    Attributes:
      trunk: the zoo model whose embedding is reused.
      erase: LEACE-erase style from the embedding before the head is fitted.
      balanced: weight every (script, style) group equally in the fit.
      heldout: fit on held-out crops (``val`` and ``val_conflict``) instead of the
        training crops, with ``l2`` chosen on a half of ``val_conflict`` left out of
        that choice's fit; ``val_conflict`` then scores in-sample and is not reported.
    """

    trunk: str
    erase: bool
    balanced: bool
    heldout: bool = False


POSTHOC = {
    "leace": Posthoc("baseline", erase=True, balanced=False),
    "dfr": Posthoc("baseline", erase=False, balanced=True),
    "leace_dfr": Posthoc("baseline", erase=True, balanced=True),
    "unlearn_dfr": Posthoc("unlearn", erase=False, balanced=True),
    "cdann_dfr": Posthoc("cdann", erase=False, balanced=True),
    "dfr_val": Posthoc("baseline", erase=False, balanced=True, heldout=True),
    "unlearn_dfr_val": Posthoc("unlearn", erase=False, balanced=True, heldout=True),
    "cdann_dfr_val": Posthoc("cdann", erase=False, balanced=True, heldout=True),
    "balanced_dfr_val": Posthoc("balanced", erase=False, balanced=True, heldout=True),
    "balanced_unlearn_dfr_val": Posthoc(
        "balanced_unlearn", erase=False, balanced=True, heldout=True
    ),
    "balanced_cdann_dfr_val": Posthoc("balanced_cdann", erase=False, balanced=True, heldout=True),
}
L2_GRID = (1e-5, 1e-4, 1e-3, 1e-2, 1e-1)  # the held-out fits choose their l2 from these


class PosthocHead(NamedTuple):
    """A fitted post-hoc head.

    Attributes:
      head: the linear script head (``probe.Probe``) on the (erased) embedding.
      eraser: the LEACE eraser, or None.
      l2: the weight penalty used.
      selection: {l2: worst (script, style) cell accuracy on the selection half of
        ``val_conflict``} for held-out fits, else {}.
    """

    head: Probe
    eraser: Eraser | None
    l2: float
    selection: dict

    def view(self, embedding) -> np.ndarray:
        """The embedding the head reads: erased if there is an eraser."""
        return embedding if self.eraser is None else np.asarray(erase(self.eraser, embedding))


def fit_posthoc(
    m: zoo.ZooModel, ds: Dataset, method: str, *, l2: float | None = None, memo: dict | None = None
) -> PosthocHead:
    """Fit the head of post-hoc ``method`` (a key of ``POSTHOC``) on model ``m``.

    ``leace`` erases style from the embedding (LEACE) and refits the head;
    ``dfr`` refits the head on the group-balanced training distribution, the
    training-set variant of deep feature reweighting (Kirichenko et al. 2022,
    https://arxiv.org/abs/2204.02937); ``leace_dfr`` does both, the eraser too
    fitted on the balanced distribution (under which style is independent of
    script, so erasing style removes no script information). The ``*_val``
    methods are DFR as Kirichenko et al. define it: the group-balanced refit uses
    held-out crops the trunk never trained on (``val`` plus ``val_conflict``,
    3,500 crops in the workshop preset), so the head sees how the trunk represents
    minority-style crops it has not memorised.

    Args:
      m: the trunk (any zoo model with an embedding).
      ds: its dataset.
      method: a key of ``POSTHOC``.
      l2: the head's weight penalty; default 1e-3 for training-set fits, and chosen
        from ``L2_GRID`` on half of ``val_conflict`` for held-out fits.
      memo: ``m``'s predictions kept across calls (``predictions``).
    """
    if method not in POSTHOC:
        raise ValueError(f"unknown post-hoc method {method!r}; allowed: {', '.join(POSTHOC)}")
    spec = POSTHOC[method]
    n_styles, n_scripts = len(ds.styles), len(ds.scripts)
    if spec.heldout:
        parts, names = [ds.val, ds.val_conflict], ("val", "val_conflict")
    else:
        parts, names = [ds.train], ("train",)
    embs = [p.embedding for p in predictions(m, ds, names, memo=memo).values()]
    emb = np.concatenate(embs)
    script = np.concatenate([p.script for p in parts])
    style = np.concatenate([p.style for p in parts])

    def fit(rows, penalty):
        w = None
        if spec.balanced:
            w = balanced_probabilities(group_ids(script[rows], style[rows], n_styles))
        eraser = fit_leace(emb[rows], style[rows], n_styles, weights=w) if spec.erase else None
        z = emb[rows] if eraser is None else np.asarray(erase(eraser, emb[rows]))
        head = fit_probe(z, script[rows], n_scripts, l2=penalty, weights=w)
        return PosthocHead(head, eraser, penalty, {})

    everything = np.arange(len(emb))
    if not spec.heldout:
        return fit(everything, 1e-3 if l2 is None else l2)
    if l2 is not None:
        return fit(everything, l2)
    # choose l2: fit on val + one half of val_conflict, score the other half's worst cell
    n_val, vc = len(ds.val), ds.val_conflict
    fit_half, select_half = _halves(len(vc))
    rows = np.concatenate([np.arange(n_val), n_val + fit_half])
    held = vc.take(select_half)
    selection = {}
    for penalty in L2_GRID:
        h = fit(rows, penalty)
        hit = h.head.predict(h.view(emb[n_val + select_half])) == held.script
        acc, n = _cells(hit, held.script, held.style, n_scripts, n_styles)
        selection[penalty] = _worst(acc, n, ds.scripts, ds.styles, MIN_CELL)[0]
    # ties (and no cell big enough to score: None) go to the stronger penalty
    best = max(L2_GRID, key=lambda k: (-1.0 if selection[k] is None else selection[k], k))
    return fit(everything, best)._replace(selection=selection)


def posthoc_predictions(
    m: zoo.ZooModel, ds: Dataset, method: str, *, l2: float | None = None, memo: dict | None = None
) -> dict[str, Predictions]:
    """The predictions of post-hoc ``method`` (``fit_posthoc``) on the evaluation splits.

    Args:
      memo: ``m``'s predictions kept across calls (``predictions``).

    Returns:
      {split: Predictions} whose embedding is the (erased) one and font logits None.
    """
    return _apply_posthoc(m, ds, fit_posthoc(m, ds, method, l2=l2, memo=memo), memo)


def _apply_posthoc(
    m: zoo.ZooModel, ds: Dataset, fitted: PosthocHead, memo: dict | None = None
) -> dict[str, Predictions]:
    out = {}
    for split, p in predictions(m, ds, memo=memo).items():
        z = fitted.view(p.embedding)
        out[split] = Predictions(np.asarray(fitted.head.logits(z)), None, z)
    return out


class PosthocApply(NamedTuple):
    """The ``scriptlab.protocols.ApplyFn`` of a post-hoc head on a frozen trunk.

    ``apply(params, images, **options)`` runs the trunk (``params["trunk"]``) and
    replaces its script logits by the head's: ``(view(z) - mean) / scale @ weights +
    bias`` on the trunk's embedding z, ``view`` the LEACE erasure when there is one.
    A NamedTuple of the trunk's apply_fn, so two heads on one architecture hash and
    compare equal and share jitted code (the head's numbers live in ``params``).
    """

    trunk: Any

    def __call__(self, params, images, **options):
        out = self.trunk(params["trunk"], images, **options)
        z = out.embedding
        if params["eraser"] is not None:
            z = z - (z - params["eraser"]["mean"]) @ params["eraser"]["proj"].T
        head = params["head"]
        logits = (z - head["mean"]) / head["scale"] @ head["weights"] + head["bias"]
        return out._replace(script=logits)


def posthoc_model(m: zoo.ZooModel, fitted: PosthocHead) -> tuple[PosthocApply, dict]:
    """(apply_fn, params) of a fitted post-hoc head on zoo model ``m``'s trunk, for any method.

    Args:
      m: the trunk the head was fitted on (``fit_posthoc``'s ``m``).
      fitted: the ``PosthocHead``.

    Returns:
      (``PosthocApply``, params {"trunk", "head", "eraser"}); its script logits equal
      ``posthoc_predictions``' on the same crops.
    """
    h = fitted.head
    head = {"weights": h.weights, "bias": h.bias, "mean": h.mean, "scale": h.scale}
    eraser = None
    if fitted.eraser is not None:
        eraser = {"mean": fitted.eraser.mean, "proj": fitted.eraser.proj}
    return PosthocApply(m.apply_fn), {"trunk": m.params, "head": head, "eraser": eraser}


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


def score(preds: dict[str, Predictions], ds: Dataset, *, min_cell: int = MIN_CELL) -> dict:
    """Every number of the results table for one model, from its predictions.

    Args:
      preds: {split: Predictions} for every split of ``EVAL_SPLITS``.
      ds: the dataset the predictions are of.
      min_cell: worst-group minima ignore cells with fewer crops.

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


def measure(m: zoo.ZooModel, ds: Dataset, *, memo: dict | None = None) -> dict:
    """``score`` of a zoo model's own predictions (``memo``: as in ``predictions``)."""
    return score(predictions(m, ds, memo=memo), ds)


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


def _posthoc_row(m: zoo.ZooModel, ds: Dataset, method: str, memo: dict | None = None) -> dict:
    fitted = fit_posthoc(m, ds, method, memo=memo)
    row = score(_apply_posthoc(m, ds, fitted, memo), ds)
    row["l2"] = fitted.l2
    if POSTHOC[method].heldout:  # fitted on val_conflict: its scores are in-sample
        row["val_conflict"] = row["val_conflict_worst"] = row["val_conflict_worst_cell"] = None
        row["l2_selection"] = {str(k): v for k, v in fitted.selection.items()}
    return row


def _rows(
    name: str, preset: str, seeds: int, ds: Dataset, progress: bool, memos: dict
) -> list[dict]:
    """One row per seed; ``memos[(trunk, seed)]`` keeps each trunk's predictions for the next."""
    trunk = POSTHOC[name].trunk if name in POSTHOC else name
    rows = []
    for s in range(seeds):
        m = zoo.load(trunk, preset, seed=s, progress=progress)
        memo = memos.setdefault((trunk, s), {})
        row = _posthoc_row(m, ds, name, memo) if name in POSTHOC else measure(m, ds, memo=memo)
        rows.append(row)
    return rows


def trained_models(methods: tuple[str, ...], references: tuple[str, ...]) -> list[str]:
    """The zoo entries ``run`` trains for ``methods`` and ``references``, in order.

    A post-hoc method (a key of ``POSTHOC``) trains nothing of its own: its trunk is listed.
    """
    names = [n for n in (*methods, *references) if n not in POSTHOC]
    names += [POSTHOC[n].trunk for n in methods if n in POSTHOC and POSTHOC[n].trunk not in names]
    return names


def zoo_requests(
    preset: str,
    seeds: int,
    methods: tuple[str, ...] = METHODS,
    references: tuple[str, ...] = REFERENCES,
    lam_sweep: tuple[float, ...] = (0.1, 1.0),
) -> list[tuple[str, str, int, dict]]:
    """The ``zoo.warm`` requests of ``run`` with the same arguments: every model it needs."""
    return [
        (n, preset, s, {}) for n in trained_models(methods, references) for s in range(seeds)
    ] + [("unlearn", preset, 0, {"lam_max": lam}) for lam in lam_sweep]


def run(
    preset: str = "workshop",
    seeds: int = 3,
    *,
    methods: tuple[str, ...] = METHODS,
    references: tuple[str, ...] = REFERENCES,
    lam_sweep: tuple[float, ...] = (0.1, 1.0),
    progress: bool = True,
    cache: bool = True,
) -> dict:
    """Train (via the zoo cache) and measure every method and reference over ``seeds`` seeds.

    Args:
      preset: dataset preset.
      seeds: seeds per method (>= 1).
      methods: names from ``METHODS``.
      references: names from ``REFERENCES`` (the oracle is needed for ``goal``).
      lam_sweep: extra ``lam_max`` values for ``unlearn``, seed 0.

    Returns:
      {"per_seed": {name: [row, ...]}, "summary": {name: {metric: {mean, std, min, max, n}}},
       "goal": ..., "lam_sweep": [{"lam_max": ..., **row}], "preset", "seeds", "configs"}.
    """
    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    for name in methods:
        if name not in METHODS:
            raise ValueError(f"unknown method {name!r}; allowed: {', '.join(METHODS)}")
    for name in references:
        if name not in REFERENCES:
            raise ValueError(f"unknown reference {name!r}; allowed: {', '.join(REFERENCES)}")
    names = trained_models(methods, references)
    cfgs = {n: zoo.config(n, preset).__dict__ for n in names}
    key = hashlib.sha256(
        json.dumps(
            [EVAL_CODE_VERSION, preset, seeds, methods, references, lam_sweep, cfgs],
            sort_keys=True,
            default=str,
        ).encode()
    ).hexdigest()[:12]
    where = cache_dir() / "experiments" / f"{preset}-{seeds}-{key}.json"
    if cache and where.exists():
        try:
            cached = json.loads(where.read_text())
            # valid JSON of the wrong shape (or another run's) is as unusable as a truncated file
            if not isinstance(cached, dict) or not {"per_seed", "summary"} <= cached.keys():
                raise ValueError("not a results object")
            if (cached.get("preset"), cached.get("seeds")) != (preset, seeds):
                raise ValueError(f"holds preset/seeds {cached.get('preset')}/{cached.get('seeds')}")
            return cached
        except (OSError, ValueError) as err:
            print(f"experiment: cached results {where} are unreadable ({err}); recomputing")
    if cache:
        clean_temporaries(where.parent)  # half-written results of killed runs
    ds = dataset_for(zoo.config("baseline", preset), progress=progress)
    zoo.warm(zoo_requests(preset, seeds, methods, references, lam_sweep), progress=progress)
    memos: dict = {}  # (trunk, seed) -> its predictions, shared by the methods on that trunk
    per_seed = {n: _rows(n, preset, seeds, ds, progress, memos) for n in (*methods, *references)}
    del memos
    summary = {n: _aggregate(rows) for n, rows in per_seed.items()}
    sweep = [
        {
            "lam_max": lam,
            **measure(zoo.load("unlearn", preset, seed=0, lam_max=lam, progress=progress), ds),
        }
        for lam in lam_sweep
    ]
    results = {
        "preset": preset,
        "seeds": seeds,
        "scripts": list(ds.scripts),
        "styles": list(ds.styles),
        "per_seed": per_seed,
        "summary": summary,
        "goal": goal(summary) if "oracle" in summary and "baseline" in summary else {},
        "lam_sweep": sweep,
        "configs": cfgs,
    }
    if cache:
        _write_json(where, results)
    return results


def _write_json(path: Path, obj) -> None:
    """Strict JSON (no bare NaN), written atomically (``data.write_atomic``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(obj, indent=1, default=str, allow_nan=False).encode())


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


def family_table(
    results: dict, names: tuple[str, ...] | None = None, scripts: tuple[str, ...] | None = None
) -> str:
    """Held-out accuracy per (script, font family) cell, mean over seeds, one column per model.

    Args:
      results: ``run``'s output.
      names: models (columns); default every model in the results.
      scripts: only these scripts' rows (e.g. ``fonts.LCG``); default all.
    """
    names = tuple(results["summary"]) if names is None else names
    for n in names:
        if n not in results["per_seed"]:
            raise ValueError(f"unknown model {n!r}; allowed: {', '.join(results['per_seed'])}")
    cells = results["per_seed"][names[0]][0]["tables"]["heldout_cells"]
    rows = [c for c in cells if scripts is None or c.split("/")[0] in scripts]
    width = max([len(c) for c in rows] + [len("script/family")]) + 2
    # each column as wide as its own name, so one long name does not widen them all
    cols = [max(8, len(n) + 1) for n in names]
    head = f"{'script/family':<{width}}{'crops':>6}" + "".join(
        f"{n:>{w}}" for n, w in zip(names, cols, strict=True)
    )
    lines = [head, "-" * len(head)]
    for c in rows:
        means = [
            np.mean([r["tables"]["heldout_cells"][c][0] for r in results["per_seed"][n]])
            for n in names
        ]
        values = "".join(f"{v:>{w}.3f}" for v, w in zip(means, cols, strict=True))
        lines.append(f"{c:<{width}}{cells[c][1]:>6}" + values)
    return "\n".join(lines)


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
