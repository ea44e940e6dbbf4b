"""Running the experiment: every method x seed, measured once and kept in the results cache."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

# the names tests patch (``monkeypatch.setattr(experiment, ...)``) are read through the
# package at call time, so a patch takes effect here as it did in the single module
from scriptlab import data as data_lib
from scriptlab import experiment, zoo
from scriptlab.cache import cache_dir, clean_temporaries, write_atomic
from scriptlab.data import Dataset
from scriptlab.experiment.methods import METHODS, POSTHOC, REFERENCES, _apply_posthoc, fit_posthoc
from scriptlab.experiment.scoring import _aggregate, goal, measure, score

# Part of the results cache key (next to each model's TrainConfig.key(), which carries the
# training-code version): bump it whenever evaluation code changes a number or a row gains a field.
EVAL_CODE_VERSION = 4
# The widened held-out split is the held-out split of this zoo entry's dataset (the diverse font
# table's): its families are held out of every model's training fonts.
WIDE_SOURCE = "diverse"


def _posthoc_row(
    m: zoo.ZooModel,
    ds: Dataset,
    method: str,
    memo: dict | None = None,
    wide: Dataset | None = None,
) -> dict:
    fitted = fit_posthoc(m, ds, method, memo=memo)
    row = score(_apply_posthoc(m, ds, fitted, memo, wide), ds, wide=wide)
    row["l2"] = fitted.l2
    if POSTHOC[method].heldout:  # fitted on val_conflict: its scores are in-sample
        row["val_conflict"] = row["val_conflict_worst"] = row["val_conflict_worst_cell"] = None
        row["l2_selection"] = {str(k): v for k, v in fitted.selection.items()}
    return row


def _rows(
    name: str,
    preset: str,
    seeds: int,
    ds: Dataset,
    progress: bool,
    memos: dict,
    wide: Dataset | None = None,
) -> list[dict]:
    """One row per seed; ``memos[(trunk, seed)]`` keeps each trunk's predictions for the next."""
    trunk = POSTHOC[name].trunk if name in POSTHOC else name
    rows = []
    for s in range(seeds):
        m = zoo.load(trunk, preset, seed=s, progress=progress)
        memo = memos.setdefault((trunk, s), {})
        if name in POSTHOC:
            row = _posthoc_row(m, ds, name, memo, wide)
        else:
            row = measure(m, ds, memo=memo, wide=wide)
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
    wide: bool = True,
) -> dict:
    """Train (via the zoo cache) and measure every method and reference over ``seeds`` seeds.

    Args:
      preset: dataset preset.
      seeds: seeds per method (>= 1).
      methods: names from ``METHODS``.
      references: names from ``REFERENCES`` (the oracle is needed for ``goal``).
      lam_sweep: extra ``lam_max`` values for ``unlearn``, seed 0.
      wide: also score every model on the widened held-out split (``WIDE``: the held-out
        split of the diverse font table's dataset, rendered once and cached).

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
    # the config keys carry the training-code version: new training code, new results
    model_keys = {n: zoo.config(n, preset).key() for n in names}
    wide_cfg = zoo.config(WIDE_SOURCE, preset) if wide else None
    wide_key = (
        None
        if wide_cfg is None
        else data_lib.make_config(preset, wide_cfg.data_seed, **wide_cfg.data_overrides()).key()
    )
    key = hashlib.sha256(
        json.dumps(
            [EVAL_CODE_VERSION, preset, seeds, methods, references, lam_sweep, cfgs, model_keys]
            + ([wide_key] if wide else []),
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
            if cached.get("eval_code_version") != EVAL_CODE_VERSION:
                raise ValueError(f"made by eval code version {cached.get('eval_code_version')}")
            return cached
        except (OSError, ValueError) as err:
            print(f"experiment: cached results {where} are unreadable ({err}); recomputing")
    if cache:
        clean_temporaries(where.parent)  # half-written results of killed runs
    ds = experiment.dataset_for(zoo.config("baseline", preset), progress=progress)
    wide_ds = None if wide_cfg is None else experiment.dataset_for(wide_cfg, progress=progress)
    zoo.warm(zoo_requests(preset, seeds, methods, references, lam_sweep), progress=progress)
    memos: dict = {}  # (trunk, seed) -> its predictions, shared by the methods on that trunk
    per_seed = {
        n: experiment._rows(n, preset, seeds, ds, progress, memos, wide_ds)
        for n in (*methods, *references)
    }
    del memos
    summary = {n: _aggregate(rows) for n, rows in per_seed.items()}
    sweep = [
        {
            "lam_max": lam,
            **measure(
                zoo.load("unlearn", preset, seed=0, lam_max=lam, progress=progress),
                ds,
                wide=wide_ds,
            ),
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
        "wide_families": None if wide_ds is None else list(wide_ds.families),
        "eval_code_version": EVAL_CODE_VERSION,
    }
    if cache:
        _write_json(where, results)
    return results


def _write_json(path: Path, obj) -> None:
    """Strict JSON (no bare NaN), written atomically (``cache.write_atomic``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(obj, indent=1, default=str, allow_nan=False).encode())
