"""Command line: ``scriptlab dataset | train | experiment | prepare | cache`` (also ``python -m scriptlab``).

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
    "detect": ("detection.json", "detection.md"),
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
    from scriptlab.cache import write_atomic

    write_atomic(path, text.encode())


def _savefig(fig, path: Path) -> None:
    from scriptlab.cache import write_atomic

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


def _mesh(args):
    """The mesh of --devices, after joining a multi-process run if the environment names one."""
    from scriptlab import distributed

    distributed.initialize()
    try:
        return distributed.make_mesh(args.devices)
    except ValueError as err:
        raise UsageError(f"--devices {args.devices}: {err}") from None


def _train(args) -> None:
    from scriptlab import distributed, train

    cfg = train.make_train_config(
        mode=args.mode,
        preset=args.preset,
        seed=args.seed,
        **({"epochs": args.epochs} if args.epochs else {}),
    )
    with distributed.data_parallel(_mesh(args)):
        result = train.train(cfg)
    out = train.save(result, args.out)  # process 0 writes
    if not distributed.is_main_process():
        return
    _write(out / "metrics.json", json.dumps(_strict(result.history), indent=1, allow_nan=False))
    last = result.history[-1]
    print(
        f"{cfg.mode}: val script acc {last['val_script_acc']:.3f}, "
        f"val font acc {last['val_font_acc']:.3f}; wrote {out}"
    )


def _experiment(args) -> None:
    import matplotlib

    matplotlib.use("Agg")
    from scriptlab import data, distributed, experiment, viz, zoo

    mesh = _mesh(args)
    if not distributed.is_main_process() or len({d.process_index for d in mesh.devices.flat}) > 1:
        raise UsageError(
            "--devices: scriptlab experiment runs in one process (its zoo cache locks each "
            "model's folder); on many hosts run scriptlab train, one process per device group"
        )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    ds = data.load(args.preset, zoo.config("baseline", args.preset).data_seed)
    summary = _strict(data.summary(ds))
    _write(out / "summary.json", json.dumps(summary, indent=1, ensure_ascii=False))
    _savefig(viz.style_grid(ds), out / "preview.png")
    with distributed.data_parallel(mesh):
        results = experiment.run(args.preset, args.seeds)
    experiment.write(results, out)
    print((out / "results.txt").read_text())
    print(f"wrote {out}/results.json, results.txt, results.png")


def _detect(args) -> None:
    from scriptlab import shortcut

    t0 = time.perf_counter()
    results = shortcut.zoo_study(args.preset, args.seeds)
    shortcut.write(results, args.out)
    print(shortcut.tables(results)["summary"])
    print(f"wrote {args.out}/detection.json, detection.md ({time.perf_counter() - t0:.0f} s)")


def _megabytes(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def _prepare(args) -> None:
    from scriptlab import cache, workshop

    chosen = args.notebooks
    print(
        f"prepare: notebooks {', '.join(chosen)}: "
        f"{len(workshop.requests(args.preset, chosen))} zoo models ({args.preset} preset)"
    )
    done = workshop.prepare(args.preset, notebooks=chosen, workers=args.workers)
    parts = ", ".join(f"{k} {_megabytes(v)}" for k, v in done.disk.items())
    print(
        f"prepare: {done.trained} models trained, {done.cached} already cached, "
        f"in {done.seconds:.0f} s; cache {cache.cache_dir()}: "
        f"{_megabytes(sum(done.disk.values()))} ({parts})"
    )


def _check_archive_out(file: Path) -> None:
    """FILE may be written: not a folder or a symbolic link, in a folder that exists."""
    if file.is_symlink():
        raise UsageError(f"FILE {file} is a symbolic link; refusing to write through it")
    if file.is_dir():
        raise UsageError(f"FILE {file} is a folder; expected an archive file name")
    if not file.parent.is_dir() or not os.access(file.parent, os.W_OK | os.X_OK):
        raise UsageError(f"FILE {file}: its folder {file.parent} does not exist or is not writable")


def _cache_export(args) -> None:
    from scriptlab import archive, workshop

    file = Path(args.file)
    _check_archive_out(file)
    entries = archive.export_models(file, workshop.requests(args.preset))
    print(
        f"cache export: {len(entries)} zoo models ({args.preset} preset) -> {file} "
        f"({_megabytes(file.stat().st_size)})"
    )


def _cache_import(args) -> None:
    from scriptlab import archive

    file = Path(args.file)
    if not file.is_file():
        raise UsageError(f"FILE {file} does not exist or is not a file")
    done = archive.import_models(file, replace=args.replace)
    kept = (
        f", {len(done.kept)} already cached kept (--replace overwrites them)" if done.kept else ""
    )
    print(
        f"cache import: {len(done.written)} zoo models written{kept}; "
        f"checksums, version {__version__} and config keys verified"
    )


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


def _notebooks(text: str) -> tuple[str, ...]:
    """Notebook numbers and ranges ("1-2,4-11") or "all" (``workshop.parse_notebooks``)."""
    from scriptlab import workshop

    try:
        return workshop.parse_notebooks(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err).removeprefix("notebooks ")) from None


def _devices(text: str) -> str | int:
    """'all' or a device count >= 1 (checked against the devices there are once JAX starts)."""
    if text == "all":
        return text
    try:
        return _integer(text, 1)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be 'all' or an integer >= 1, got {text!r}"
        ) from None


def _nonneg(text: str) -> int:
    return _integer(text, 0)


_DEVICES_HELP = (
    "'all' or a count: split every training batch over that many devices (default 1: "
    "one device, the single-device code); see docs/scaling.md"
)


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
    p.add_argument("--devices", type=_devices, default=1, help=_DEVICES_HELP)
    p.set_defaults(func=_train)

    p = sub.add_parser("experiment", help="the unlearning experiment; write results.json + figures")
    p.add_argument("--preset", default="workshop", choices=["smoke", "workshop", "full"])
    p.add_argument("--seeds", type=_positive, default=3, help="seeds per method (>= 1)")
    p.add_argument("--out", default="out/experiment")
    p.add_argument("--devices", type=_devices, default=1, help=_DEVICES_HELP)
    p.set_defaults(func=_experiment)

    p = sub.add_parser(
        "detect", help="can each method see the font-style shortcut? write detection.json + .md"
    )
    p.add_argument("--preset", default="workshop", choices=["smoke", "workshop", "full"])
    p.add_argument("--seeds", type=_positive, default=3, help="seeds per model (>= 1)")
    p.add_argument("--out", default="out/detect")
    p.set_defaults(func=_detect)

    p = sub.add_parser(
        "prepare",
        help="render the notebooks' dataset, train every zoo model they load (skips cached ones)",
    )
    p.add_argument("--preset", default="workshop", choices=["smoke", "workshop", "full"])
    p.add_argument("--workers", type=_positive, default=None, help="training processes (>= 1)")
    p.add_argument(
        "--notebooks",
        type=_notebooks,
        default="all",
        help="which notebooks to prepare, e.g. '1-2,4-11' (all but 03's experiment); default all",
    )
    p.set_defaults(func=_prepare)

    p = sub.add_parser("cache", help="share trained zoo models: export / import one archive")
    cache_sub = p.add_subparsers(
        dest="action", metavar="{export,import}", required=True, parser_class=_Parser
    )
    q = cache_sub.add_parser("export", help="write the notebooks' zoo models into FILE (.tar.gz)")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--preset", default="workshop", choices=["smoke", "workshop", "full"])
    q.set_defaults(func=_cache_export)
    q = cache_sub.add_parser("import", help="verify FILE and install its zoo models")
    q.add_argument("file", metavar="FILE")
    q.add_argument("--replace", action="store_true", help="overwrite models already cached")
    q.set_defaults(func=_cache_import)

    args = parser.parse_args(argv)
    try:
        if args.command in OUTPUTS:
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
