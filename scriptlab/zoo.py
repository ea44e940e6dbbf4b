"""Named trained models, trained on first use and cached on disk.

``load("baseline")`` trains once (about a minute on 2 cores) and afterwards
restores in about a second. Models live in $SCRIPTLAB_CACHE/zoo (default
~/.cache/scriptlab/zoo), one folder per (name, preset, seed, config hash), so a
change of recipe never returns a stale model.
"""

from __future__ import annotations

import contextlib
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from scriptlab import train as train_lib
from scriptlab.augment import STYLE_AUGMENT
from scriptlab.cache import cache_dir, cache_lock
from scriptlab.model import ApplyFn, ScriptNet, functional
from scriptlab.validation import check_name

# The recipes. Every entry starts from train.TrainConfig's defaults.
ZOO: dict[str, dict[str, Any]] = {
    "baseline": dict(mode="baseline", snapshots=True),
    "multitask": dict(mode="multitask"),
    "unlearn": dict(mode="unlearn", snapshots=True),
    "ascent": dict(mode="ascent"),
    # Methods that target the style shortcut (scriptlab.train's docstring).
    "cdann": dict(mode="cdann"),
    "balanced": dict(mode="balanced"),
    "groupdro": dict(mode="groupdro"),
    # Balanced sampling makes style independent of script, and the conditional flip
    # then removes what style is left in the trunk without fighting the task.
    "balanced_cdann": dict(mode="cdann", balance=True),
    # The marginal flip under balanced sampling: tests whether the flip fails at rho 0.9
    # because marginal invariance fights a task correlated with style.
    "balanced_unlearn": dict(mode="unlearn", balance=True),
    # Reference points for the bias: the same recipe with styles uniform within each
    # script (rho = 0.2 = 1 / 5 styles: no shortcut to learn, the oracle), and with a
    # stronger bias than the default 0.9. All are evaluated on the rho = 0.9 dataset's
    # splits (conflict and held-out do not depend on rho).
    "oracle": dict(mode="baseline", rho=0.2),
    "rho99": dict(mode="baseline", rho=0.99),
    # What data does (issue 30): the default recipe on the diverse font table (43 more pip
    # families; its held-out families are held out of every table's training). Evaluated on
    # the default dataset's splits and on the diverse table's held-out split.
    "diverse": dict(mode="baseline", fonts="diverse"),
    # ... with style augmentation in the jitted step (scriptlab.augment: stroke width, shear,
    # elastic, affine, colour), on the default fonts and on the diverse ones.
    "augment": dict(mode="baseline", augment=STYLE_AUGMENT),
    "diverse_augment": dict(mode="baseline", fonts="diverse", augment=STYLE_AUGMENT),
    # ... and the diverse fonts with styles uniform within each script: the oracle's data, more
    # faces. Asks whether more fonts help once style is no clue to the script.
    "diverse_oracle": dict(mode="baseline", fonts="diverse", rho=0.2),
    # Adebayo et al. 2018 data randomisation: a model that memorises permuted script
    # labels. The default recipe cannot fit 30k random labels in 4 epochs (it stays at
    # chance loss), so it trains on 2,000 crops for 60 epochs without regularisation.
    "shuffled": dict(
        mode="baseline",
        shuffle_labels=True,
        n_train=2000,
        epochs=60,
        dropout=(0.0, 0.0),
        weight_decay=0.0,
    ),
    # The seed's "dead filters are manifestations of high learning rates": 2.5x the
    # default peak rate with no warm-up. Measured (notebook 06): 6/32 conv2 and 40/64
    # conv3 filters dead on the test crops, none in conv1; val accuracy 0.86 (baseline
    # 0.95). Its first steps overshoot
    # (loss in the hundreds), so the divergence guard is loosened to NaN/inf and
    # losses above 1e4.
    "high_lr": dict(mode="baseline", lr=0.01, warmup_steps=0, snapshots=True, max_loss=1e4),
    # The seed's "noisy filters mean ... overfitting": few crops, long, no regularisation.
    "overfit": dict(mode="baseline", n_train=512, epochs=40, dropout=(0.0, 0.0), weight_decay=0.0),
}


class ZooModel(NamedTuple):
    """A trained model, its functional view, its recipe and its training curves.

    Attributes:
      name: its key in ``ZOO``.
      model: the trained ScriptNet.
      params: its parameters, as split by ``model.functional``.
      apply_fn: the ``scriptlab.protocols.ApplyFn`` of its architecture.
      config: the ``train.TrainConfig`` it was trained with.
      history: one dict of losses and validation accuracies per epoch.
      data_key: the cache key of the dataset it was trained on.
    """

    name: str
    model: ScriptNet
    params: Any
    apply_fn: ApplyFn
    config: train_lib.TrainConfig
    history: list[dict]
    data_key: str


def config(
    name: str, preset: str = "workshop", seed: int = 0, **overrides
) -> train_lib.TrainConfig:
    """The TrainConfig of a zoo entry (recipe + preset + seed + overrides)."""
    check_name("zoo model", name, tuple(ZOO))
    return train_lib.make_train_config(**{**ZOO[name], "preset": preset, "seed": seed, **overrides})


def path(cfg: train_lib.TrainConfig, name: str) -> Path:
    return cache_dir() / "zoo" / f"{name}-{cfg.preset}-s{cfg.seed}-{cfg.key()}"


_NO_MAIN_GUARD = (
    "a zoo worker process re-imported the script that started it, and the script loads or "
    "trains zoo models at import time; put that code under `if __name__ == '__main__':` "
    "(worker processes are spawned, so they import the main script)"
)


def is_cached(name: str, preset: str, seed: int, overrides: dict | None = None) -> bool:
    """Whether the zoo already holds a finished checkpoint of ``name`` (nothing is trained)."""
    cfg = config(name, preset, seed, **(overrides or {}))
    return (path(cfg, name) / "checkpoint.json").exists()


def _check_not_bootstrapping() -> None:
    """Fail fast (instead of training, or waiting on a lock) inside a spawned worker's re-import."""
    import multiprocessing

    if getattr(multiprocessing.current_process(), "_inheriting", False):
        raise RuntimeError(_NO_MAIN_GUARD)


def compile_cache(directory: str | Path | None = None) -> Path | None:
    """Keep compiled XLA programs on disk: JAX's persistent compilation cache, in the zoo's cache.

    Compiling is most of a warm notebook's time on a small CPU (a whole-network influence
    cell compiles six programs), and the same programs come back: a notebook run again, its
    solutions notebook, the browser test after nbval, a recipe's later seeds in ``warm``.
    Programs that took over 0.2 s to compile are kept, keyed by the program, the backend,
    the device count and the JAX version (never a stale program); entries are a few MB.
    ``load`` and ``load_epochs`` call this; it must run before the process compiles
    anything (JAX reads the setting once), so call it first in a script that needs it
    earlier. Off with ``SCRIPTLAB_COMPILE_CACHE=0``, or where JAX already has a folder.

    Args:
      directory: the folder; default ``cache_dir() / "compiled"``.

    Returns:
      The folder in use, or None where the cache is off or the folder cannot be written.
    """
    import os

    import jax

    if os.environ.get("SCRIPTLAB_COMPILE_CACHE", "1") == "0":
        return None
    if jax.config.jax_compilation_cache_dir:  # the user's, or an earlier call's
        return Path(jax.config.jax_compilation_cache_dir)
    folder = Path(directory) if directory is not None else cache_dir() / "compiled"
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(folder, os.W_OK):  # a read-only shared cache: compile as usual
        return None
    jax.config.update("jax_compilation_cache_dir", str(folder))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.2)
    return folder


def _result(name: str, preset: str, seed: int, progress: bool, overrides) -> train_lib.Result:
    _check_not_bootstrapping()
    compile_cache()
    cfg = config(name, preset, seed, **overrides)
    where = path(cfg, name)
    with cache_lock(where) as writable:
        if (where / "checkpoint.json").exists():
            try:
                result = train_lib.restore(where, cfg)
                if writable:
                    with contextlib.suppress(OSError):  # a read-only folder keeps its old json
                        train_lib.add_checksums(where)
                return result
            except (ValueError, OSError, KeyError, TypeError, AttributeError) as err:
                warnings.warn(
                    f"zoo: cached {name} at {where} is unreadable ({err}); retraining", stacklevel=3
                )
        result = train_lib.train(cfg, progress=progress)
        try:
            if not writable:
                raise PermissionError("no lock could be taken")
            train_lib.save(result, where)
        except OSError as err:
            warnings.warn(
                f"zoo: cache {where.parent} is read-only ({err}); not saved", stacklevel=3
            )
        return result


def load(
    name: str, preset: str = "workshop", *, seed: int = 0, progress: bool = True, **overrides
) -> ZooModel:
    """A named trained model; trains and caches it on first use.

    Args:
      name: one of ``ZOO`` ("baseline", "unlearn", "multitask", "ascent",
        "shuffled", "high_lr", "overfit").
      preset: dataset preset ("workshop" for the notebooks, "smoke" for tests).
      seed: training seed.
      **overrides: TrainConfig fields (e.g. lam_max=0.3 for a sweep).
    """
    r = _result(name, preset, seed, progress, overrides)
    params, apply_fn = functional(r.model)
    return ZooModel(name, r.model, params, apply_fn, r.config, r.history, r.data_key)


def _init_worker(threads: int) -> None:
    """Worker initializer: its share of the cores, and the shared cache of compiled programs.

    XLA reads XLA_FLAGS when its CPU backend starts, on first use. Compiling the train step
    takes about half a minute on one core, and the seeds of one recipe compile the same
    program, so a recipe's later seeds load it from ``compile_cache`` instead.
    """
    import os

    os.environ["XLA_FLAGS"] = (
        f"--xla_cpu_multi_thread_eigen={'true' if threads > 1 else 'false'} "
        f"intra_op_parallelism_threads={threads}"
    )
    compile_cache()


def _train_job(job: tuple[str, str, int, dict]) -> str:
    name, preset, seed, overrides = job
    _result(name, preset, seed, False, overrides)
    return name


def warm(
    requests, *, workers: int | None = None, progress: bool = True, on_done=None
) -> list[Path]:
    """Train every missing zoo entry of ``requests``, several at once.

    On a small CPU one XLA process per core trains independent models faster
    than one process using all cores (benchmarks/bench_train.py prints the
    ratio), so the unlearning experiment's dozen models are
    trained by ``workers`` spawned processes (default: one per core), each with
    its share of the cores. Entries already cached are left alone.

    Args:
      requests: iterable of (name, preset, seed, overrides dict).
      workers: worker processes (default: os.cpu_count()); 1 trains in this process.
      on_done: called with each missing request as soon as its model is trained and cached
        (in the order they finish), e.g. to report what can be used already.

    Returns:
      The cache folder of every request, in order.
    """
    import os
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool
    from multiprocessing import get_context

    _check_not_bootstrapping()

    from tqdm.auto import tqdm

    requests = [(n, p, int(s), dict(o)) for n, p, s, o in requests]
    where = [path(config(n, p, s, **o), n) for n, p, s, o in requests]
    missing = [
        r for r, w in zip(requests, where, strict=True) if not (w / "checkpoint.json").exists()
    ]
    workers = min(workers or os.cpu_count() or 1, len(missing))
    if workers <= 1:
        for n, p, s, o in missing:
            _result(n, p, s, progress, o)
            if on_done is not None:
                on_done((n, p, s, o))
        return where
    # render (or check) each distinct dataset once, here, before workers race to it
    datasets = {}
    for n, p, s, o in missing:
        cfg = config(n, p, s, **o)
        datasets.setdefault((cfg.preset, cfg.data_seed, cfg.rho, cfg.fonts), cfg)
    for cfg in datasets.values():
        train_lib.dataset_for(cfg, progress=progress)
    threads = max(1, (os.cpu_count() or 1) // workers)
    # seed-major order: the first seed of each recipe compiles its step, the later ones reuse it
    missing.sort(key=lambda r: r[2])
    with ProcessPoolExecutor(
        workers,
        mp_context=get_context("spawn"),
        initializer=_init_worker,
        initargs=(threads,),
    ) as pool:
        jobs = {pool.submit(_train_job, r): r for r in missing}  # started in list order
        bar = tqdm(total=len(missing), desc="zoo: training", unit="model", disable=not progress)
        try:
            for job in as_completed(jobs):
                job.result()  # a worker's error, raised here
                bar.update()
                if on_done is not None:
                    on_done(jobs[job])
        except BrokenProcessPool as err:
            raise RuntimeError(
                f"zoo.warm: a worker died ({err}); a common cause: {_NO_MAIN_GUARD}"
            ) from err
        finally:  # on an error, models not yet started are not trained
            bar.close()
            for job in jobs:
                job.cancel()
    return where


def load_epochs(
    name: str, preset: str = "workshop", *, seed: int = 0, progress: bool = True, **overrides
) -> list[tuple[int, Any]]:
    """(epoch, params) snapshots of a zoo run, epoch 0 being the initialisation.

    Only entries trained with ``snapshots=True`` keep them (baseline, unlearn, high_lr).
    """
    r = _result(name, preset, seed, progress, overrides)
    if not r.snapshots:
        raise ValueError(
            f"zoo model {name!r} keeps no epoch snapshots; "
            f"entries with snapshots: {[k for k, v in ZOO.items() if v.get('snapshots')]}"
        )
    return r.snapshots
