"""Command line: ``scriptlab dataset | train | experiment`` (also ``python -m scriptlab``)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from scriptlab.train import MODES


def _dataset(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from scriptlab import data, viz

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    ds = data.load(args.preset, args.seed, workers=args.workers, cache=not args.no_cache)
    summary = data.summary(ds, seconds=ds.seconds or None)
    summary["load_seconds"] = round(time.perf_counter() - t0, 3)
    (out / "summary.json").write_text(json.dumps(summary, indent=1, ensure_ascii=False))
    viz.style_grid(ds).savefig(out / "preview.png", dpi=100)
    rate = summary["crops_per_second"]
    how = f"generated at {rate:.0f} crops/s" if rate else "loaded from cache"
    print(f"{args.preset}: {summary['sizes']} {how}; wrote {out}/summary.json and preview.png")


def _train(args) -> None:
    from scriptlab import train

    cfg = train.make_train_config(
        mode=args.mode,
        preset=args.preset,
        seed=args.seed,
        **({"epochs": args.epochs} if args.epochs else {}),
    )
    result = train.train(cfg)
    out = train.save(result, args.out)
    (out / "metrics.json").write_text(json.dumps(result.history, indent=1))
    last = result.history[-1]
    print(
        f"{cfg.mode}: val script acc {last['val_script_acc']:.3f}, "
        f"val font acc {last['val_font_acc']:.3f}; wrote {out}"
    )


def _experiment(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from scriptlab import data, experiment, viz, zoo

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = data.load(args.preset, zoo.config("baseline", args.preset).data_seed)
    (out / "summary.json").write_text(json.dumps(data.summary(ds), indent=1, ensure_ascii=False))
    viz.style_grid(ds).savefig(out / "preview.png", dpi=100)
    results = experiment.run(args.preset, args.seeds)
    experiment.write(results, out)
    print((out / "results.txt").read_text())
    print(f"wrote {out}/results.json, results.txt, results.png")


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {value}")
    return value


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="scriptlab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("dataset", help="generate a dataset; write summary.json and preview.png")
    p.add_argument("--preset", default="workshop", choices=["smoke", "workshop", "full"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="out/dataset")
    p.add_argument("--workers", type=int, default=None)
    p.add_argument("--no-cache", action="store_true", help="regenerate even if cached")
    p.set_defaults(func=_dataset)

    p = sub.add_parser("train", help="train one model; write checkpoint + metrics.json")
    p.add_argument("--mode", default="baseline", choices=list(MODES))
    p.add_argument("--preset", default="workshop", choices=["smoke", "workshop", "full"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--out", default="out/train")
    p.set_defaults(func=_train)

    p = sub.add_parser("experiment", help="the unlearning experiment; write results.json + figures")
    p.add_argument("--preset", default="workshop", choices=["smoke", "workshop", "full"])
    p.add_argument("--seeds", type=_positive, default=3, help="seeds per method (>= 1)")
    p.add_argument("--out", default="out/experiment")
    p.set_defaults(func=_experiment)

    args = parser.parse_args(argv)
    args.func(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
