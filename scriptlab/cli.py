"""Command line: ``scriptlab dataset | train | experiment`` (also ``python -m scriptlab``).

Every argument, the output folder included, is checked before any rendering or
training. An error prints one line and exits with status 2 (``--debug`` shows
the traceback instead). Files are written into ``--out`` atomically, and never
through a symbolic link that would lead out of it.
"""

from __future__ import annotations

import argparse
import io
import json
import math
import os
import sys
import time
from pathlib import Path

from scriptlab import __version__
from scriptlab.train import MODES

# what each command writes into --out (checked for symbolic links before the work starts)
OUTPUTS = {
    "dataset": ("summary.json", "preview.png"),
    "train": ("checkpoint.json", "checkpoint.msgpack", "metrics.json"),
    "experiment": ("summary.json", "preview.png", "results.json", "results.txt", "results.png"),
}


class UsageError(ValueError):
    """A bad argument or output folder, found before any work starts."""


def _check_out(out: Path, names: tuple[str, ...]) -> None:
    """--out is a folder, or can be made one, that we may write into, and none of the files
    we will write there is a symbolic link."""
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {out} exists and is not a folder")
    parent = out
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise UsageError(f"--out {out}: cannot create or write into {parent}")
    for name in names:
        if (out / name).is_symlink():
            raise UsageError(
                f"--out {out}: {name} is a symbolic link (to {os.readlink(out / name)}); "
                f"refusing to write through it"
            )
    if out.is_dir():
        for child in out.glob("epoch_*.msgpack"):
            if child.is_symlink():
                raise UsageError(f"--out {out}: {child.name} is a symbolic link")


def _strict(obj):
    """JSON-ready copy of ``obj`` with NaN and infinities as null (strict JSON has neither)."""
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, dict):
        return {k: _strict(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_strict(v) for v in obj]
    return obj


def _write(path: Path, text: str) -> None:
    from scriptlab.data import write_atomic

    write_atomic(path, text.encode())


def _savefig(fig, path: Path) -> None:
    from scriptlab.data import write_atomic

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    write_atomic(path, buf.getvalue())


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
    _write(out / "summary.json", json.dumps(_strict(summary), indent=1, ensure_ascii=False))
    _savefig(viz.style_grid(ds), out / "preview.png")
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
    _write(out / "metrics.json", json.dumps(_strict(result.history), indent=1, allow_nan=False))
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
    summary = _strict(data.summary(ds))
    _write(out / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False))
    _savefig(viz.style_grid(ds), out / "preview.png")
    results = experiment.run(args.preset, args.seeds)
    experiment.write(results, out)
    print((out / "results.txt").read_text())
    print(f"wrote {out}/results.json, results.txt, results.png")


def _integer(text: str, low: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {text!r}") from None
    if value < low:
        raise argparse.ArgumentTypeError(f"must be an integer >= {low}, got {value}")
    return value


def _positive(text: str) -> int:
    return _integer(text, 1)


def _nonneg(text: str) -> int:
    return _integer(text, 0)


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # one line, exit 2 (argparse's usage block is noise here)
        self.exit(2, f"{self.prog}: error: {message}\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="scriptlab", description=__doc__)
    parser.add_argument("--version", action="version", version=f"scriptlab {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks of errors")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("dataset", help="generate a dataset; write summary.json and preview.png")
    p.add_argument("--preset", default="workshop", choices=["smoke", "workshop", "full"])
    p.add_argument("--seed", type=_nonneg, default=0)
    p.add_argument("--out", default="out/dataset")
    p.add_argument("--workers", type=_positive, default=None)
    p.add_argument("--no-cache", action="store_true", help="regenerate even if cached")
    p.set_defaults(func=_dataset)

    p = sub.add_parser("train", help="train one model; write checkpoint + metrics.json")
    p.add_argument("--mode", default="baseline", choices=list(MODES))
    p.add_argument("--preset", default="workshop", choices=["smoke", "workshop", "full"])
    p.add_argument("--seed", type=_nonneg, default=0)
    p.add_argument("--epochs", type=_positive, default=None)
    p.add_argument("--out", default="out/train")
    p.set_defaults(func=_train)

    p = sub.add_parser("experiment", help="the unlearning experiment; write results.json + figures")
    p.add_argument("--preset", default="workshop", choices=["smoke", "workshop", "full"])
    p.add_argument("--seeds", type=_positive, default=3, help="seeds per method (>= 1)")
    p.add_argument("--out", default="out/experiment")
    p.set_defaults(func=_experiment)

    args = parser.parse_args(argv)
    try:
        _check_out(Path(args.out), OUTPUTS[args.command])
        args.func(args)
    except KeyboardInterrupt:
        raise
    except Exception as err:
        if args.debug:
            raise
        message = " ".join(str(err).split()) or type(err).__name__
        print(f"scriptlab {args.command}: error: {message}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
