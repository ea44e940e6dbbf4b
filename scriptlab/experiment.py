"""The font-style unlearning experiment: four modes x several seeds, measured honestly.

For every trained model: script accuracy on the in-distribution test split, on
the bias-conflicting split, on held-out font families and on Caveat alone; the
font-style accuracy of the model's own font head; and the accuracy of a FRESH
linear probe fitted afterwards on frozen embeddings (Elazar & Goldberg 2018),
next to two chance levels (majority style, and style guessed from the script).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np

from scriptlab import zoo
from scriptlab.data import Dataset, cache_dir
from scriptlab.probe import probe_accuracy
from scriptlab.train import MODES, dataset_for, predict

METRICS = (
    "test", "conflict", "heldout", "caveat",
    "font_head", "font_probe", "font_chance", "font_from_script",
)


def _halves(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    perm = np.random.default_rng(seed).permutation(n)
    return np.sort(perm[: n // 2]), np.sort(perm[n // 2 :])


def measure(m: zoo.ZooModel, ds: Dataset) -> dict[str, float]:
    """Every number of the results table for one trained model."""
    out = {}
    preds = {}
    for split in ("test", "conflict", "heldout"):
        s = ds.split(split)
        preds[split] = predict(m.apply_fn, m.params, s.images)
        out[split] = float(np.mean(np.argmax(preds[split][0], -1) == s.script))
    caveat = ds.families.index("Caveat")
    hits = []
    for split in ("test", "conflict"):
        s = ds.split(split)
        sel = s.family == caveat
        hits.append(np.argmax(preds[split][0], -1)[sel] == s.script[sel])
    out["caveat"] = float(np.mean(np.concatenate(hits)))

    # Style is scored on the conflict split, where style is not the script's
    # assigned one: fit on one half, score on the other.
    c = ds.conflict
    fit, score = _halves(len(c))
    font_logits, emb = preds["conflict"][1], preds["conflict"][2]
    out["font_head"] = float(np.mean(np.argmax(font_logits[score], -1) == c.style[score]))
    out["font_probe"] = probe_accuracy(emb[fit], c.style[fit], emb[score], c.style[score], len(ds.styles))
    counts = np.bincount(c.style[fit], minlength=len(ds.styles))
    out["font_chance"] = float(np.mean(c.style[score] == np.argmax(counts)))
    table = np.zeros((len(ds.scripts), len(ds.styles)))
    np.add.at(table, (c.script[fit], c.style[fit]), 1)
    out["font_from_script"] = float(np.mean(np.argmax(table, 1)[c.script[score]] == c.style[score]))
    return out


def _aggregate(rows: list[dict]) -> dict[str, dict[str, float]]:
    return {
        k: {"mean": float(np.mean([r[k] for r in rows])), "std": float(np.std([r[k] for r in rows]))}
        for k in METRICS
    }


def run(
    preset: str = "workshop",
    seeds: int = 3,
    *,
    modes: tuple[str, ...] = MODES,
    lam_sweep: tuple[float, ...] = (0.1, 0.3, 1.0),
    progress: bool = True,
    cache: bool = True,
) -> dict:
    """Train (via the zoo cache) and measure every mode over ``seeds`` seeds, plus a lam sweep.

    Returns:
      {"per_seed": {mode: [row, ...]}, "summary": {mode: {metric: {mean, std}}},
       "lam_sweep": [{"lam_max": ..., **row}], "preset", "seeds", "configs"}.
    """
    cfgs = {m: zoo.config(m, preset).__dict__ for m in modes}
    key = hashlib.sha256(json.dumps([preset, seeds, modes, lam_sweep, cfgs], sort_keys=True,
                                    default=str).encode()).hexdigest()[:12]
    where = cache_dir() / "experiments" / f"{preset}-{seeds}-{key}.json"
    if cache and where.exists():
        return json.loads(where.read_text())
    ds = dataset_for(zoo.config("baseline", preset), progress=progress)
    zoo.warm([(m, preset, s, {}) for m in modes for s in range(seeds)]
             + [("unlearn", preset, 0, {"lam_max": lam}) for lam in lam_sweep], progress=progress)
    per_seed = {
        mode: [measure(zoo.load(mode, preset, seed=s, progress=progress), ds) for s in range(seeds)]
        for mode in modes
    }
    sweep = [
        {"lam_max": lam, **measure(zoo.load("unlearn", preset, seed=0, lam_max=lam, progress=progress), ds)}
        for lam in lam_sweep
    ]
    results = {
        "preset": preset,
        "seeds": seeds,
        "per_seed": per_seed,
        "summary": {mode: _aggregate(rows) for mode, rows in per_seed.items()},
        "lam_sweep": sweep,
        "configs": cfgs,
    }
    if cache:
        where.parent.mkdir(parents=True, exist_ok=True)
        where.write_text(json.dumps(results, indent=1, default=str))
    return results


def table(results: dict) -> str:
    """The results as a fixed-width text table (mean +- std over seeds)."""
    head = f"{'mode':<10}" + "".join(f"{k:>17}" for k in METRICS)
    lines = [head, "-" * len(head)]
    for mode, row in results["summary"].items():
        cells = "".join(f"{row[k]['mean']:>10.3f} ±{row[k]['std']:.3f}" for k in METRICS)
        lines.append(f"{mode:<10}{cells}")
    return "\n".join(lines)


def figure(results: dict):
    """Bar charts: script accuracy per split, and style decodability, per mode."""
    import matplotlib.pyplot as plt

    modes = list(results["summary"])
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.2))
    for ax, keys, title in (
        (axes[0], ("test", "conflict", "heldout", "caveat"), "script accuracy"),
        (axes[1], ("font_head", "font_probe", "font_from_script", "font_chance"), "font-style accuracy"),
    ):
        width = 0.8 / len(keys)
        for i, k in enumerate(keys):
            means = [results["summary"][m][k]["mean"] for m in modes]
            stds = [results["summary"][m][k]["std"] for m in modes]
            ax.bar(np.arange(len(modes)) + i * width, means, width, yerr=stds, label=k, capsize=2)
        ax.set_xticks(np.arange(len(modes)) + 0.4 - width / 2, modes)
        ax.set_ylim(0, 1)
        ax.set_title(title)
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    return fig


def write(results: dict, out: str | Path) -> Path:
    """results.json, results.txt and results.png into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1, default=str))
    (out / "results.txt").write_text(table(results) + "\n")
    figure(results).savefig(out / "results.png", dpi=90)
    return out
