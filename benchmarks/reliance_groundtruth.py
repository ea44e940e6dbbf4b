"""Style-reliance ground truth of the cached zoo models, with the time it takes.

For the first N conflict and test crops of the workshop dataset, render every
crop's style twins (``scriptlab.data.style_twins``: each style, and a held-out
family), then for each model and seed the share of crops whose predicted script
changes with the font alone (``scriptlab.reliance``), seeds pooled, with 95 %
bootstrap intervals over crops. Only models already in the zoo cache are read;
nothing is trained.

    python benchmarks/reliance_groundtruth.py --n 500 --models baseline unlearn oracle rho99
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from scriptlab import data, zoo
from scriptlab.reliance import reliance, style_reliance
from scriptlab.twins import Twins


def cached(name: str, seed: int) -> bool:
    return (zoo.path(zoo.config(name, seed=seed), name) / "checkpoint.json").exists()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=500)
    parser.add_argument("--models", nargs="+", default=["baseline", "unlearn", "oracle", "rho99"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--splits", nargs="+", default=["conflict", "test"])
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument(
        "--keep", default=None, help="folder to keep the rendered twins in between runs (.npz)"
    )
    args = parser.parse_args()

    ds = data.load("workshop", progress=False)
    twins = {}
    for split in args.splits:
        kept = Path(args.keep) / f"twins-{split}-{args.n}.npz" if args.keep else None
        if kept is not None and kept.exists():
            with np.load(kept, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            slots = tuple(str(x) for x in arrays.pop("slots"))
            families = tuple(str(x) for x in arrays.pop("families"))
            twins[split] = Twins(**arrays, slots=slots, families=families)
            print(f"twins {split}: read from {kept}")
            continue
        t = time.perf_counter()
        twins[split] = data.style_twins(
            ds, split, np.arange(args.n), cache=False, workers=args.workers
        )
        dt = time.perf_counter() - t
        if kept is not None:
            kept.parent.mkdir(parents=True, exist_ok=True)
            np.savez(kept, **{k: np.asarray(v) for k, v in twins[split]._asdict().items()})
        n_twins = int(twins[split].valid.sum())
        print(
            f"twins {split}: {args.n} crops, {n_twins} twins in {dt:.1f} s "
            f"({args.n / dt:.1f} crops/s, {n_twins / dt:.1f} twins/s)"
        )

    slots = twins[args.splits[0]].slots
    keys = ["any", *slots]
    print()
    print(
        f"{'model':9s} {'seeds':6s} {'split':9s} "
        + " ".join(f"{k:>19s}" for k in [*keys, "any->bias"])
        + "   per-seed any   s/model"
    )
    for name in args.models:
        seeds = [s for s in args.seeds if cached(name, s)]
        if not seeds:
            print(f"{name:9s} not cached for seeds {args.seeds}; skipped")
            continue
        runs = {split: [] for split in args.splits}
        seconds = []
        for s in seeds:
            m = zoo.load(name, seed=s, progress=False)
            t = time.perf_counter()
            for split in args.splits:
                crops = ds.split(split).images[: args.n]
                runs[split].append(reliance(m.apply_fn, m.params, crops, twins[split]))
            seconds.append(time.perf_counter() - t)
        for split in args.splits:
            shares = style_reliance(runs[split], n_resamples=2000, seed=0)
            cells = " ".join(
                f"{shares[k].share:.3f} [{shares[k].low:.3f},{shares[k].high:.3f}]" for k in keys
            )
            # flips to a script whose biased training style is the twin's style: the shortcut's
            # direction (Latin in serif read as Cyrillic, whose biased style is serif)
            bias = np.array([ds.bias_style(sc) for sc in ds.scripts])
            toward = [
                r._replace(flip=r.flip & (bias[np.maximum(r.twin_pred, 0)] == twins[split].style))
                for r in runs[split]
            ]
            tb = style_reliance(toward, n_resamples=2000, seed=0)["any"]
            cells += f" {tb.share:.3f} [{tb.low:.3f},{tb.high:.3f}]"
            per_seed = ",".join(
                f"{style_reliance(r, n_resamples=1)['any'].share:.3f}" for r in runs[split]
            )
            print(
                f"{name:9s} {','.join(map(str, seeds)):6s} {split:9s} {cells}   {per_seed}"
                f"   {np.mean(seconds):.1f}"
            )
    print()
    for split in args.splits:
        swapped = twins[split].valid & ~twins[split].own
        styles = [k for k, slot in enumerate(slots) if slot != "heldout"]
        n = {"any": int(swapped[:, styles].any(1).sum())}
        n |= {slot: int(swapped[:, k].sum()) for k, slot in enumerate(slots)}
        print(f"crops with a swapped twin, {split}: {n}")


if __name__ == "__main__":
    main()
