"""Everything the notebooks need, prepared once: ``scriptlab prepare``.

The notebooks train their zoo models on first use, which on a laptop means about
21 models before the first picture. ``prepare`` does that work ahead of time, in
parallel (``zoo.warm``): it renders the notebooks' dataset, trains every zoo model
they load, and evaluates notebook 03's experiment into the results cache. What is
already cached is skipped. ``scriptlab cache export`` (``scriptlab.archive``) then
hands the trained models to other machines in one file.

The lists below are the notebooks' own ``zoo.load`` / ``zoo.load_epochs`` /
``experiment.run`` / ``data.load`` calls, written out once; ``tests/test_workshop.py``
reads the notebooks' sources and fails when the two disagree.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from scriptlab import cache, data, experiment, zoo
from scriptlab.protocols import ApplyFn
from scriptlab.train import predict
from scriptlab.validation import check_int, check_name

PRESETS = ("smoke", "workshop", "full")

# (preset seed) of every dataset the notebooks load; the notebooks use the workshop preset.
DATASET_SEEDS = (0,)

# Zoo entries the notebooks load by name (notebooks 02 and 04-11), each at seed 0, longest
# first (``zoo.warm`` starts them in this order).
MODELS = ("baseline", "unlearn", "high_lr", "shuffled", "multitask", "overfit", "oracle")

# What each notebook loads by name (seed 0); notebook 03 also runs the experiment below.
NOTEBOOKS: dict[str, tuple[str, ...]] = {
    "01": (),
    "02": ("baseline",),
    "03": ("baseline",),
    "04": ("baseline", "unlearn", "multitask", "oracle"),
    "05": ("baseline", "unlearn", "shuffled", "oracle"),
    "06": ("baseline", "high_lr", "oracle"),
    "07": ("baseline", "high_lr", "overfit", "oracle"),
    "08": ("baseline", "unlearn", "oracle"),
    "09": ("baseline", "oracle"),
    "10": ("baseline", "unlearn", "oracle"),
    "11": ("baseline", "oracle"),
    "12": ("baseline", "unlearn", "oracle"),
}
# Models a notebook loads at more seeds than 0, for a seed spread (all in notebook 03's set):
# 06 counts the baseline's dead filters, 10 embeds both models, at three training seeds.
NOTEBOOK_SEEDS: dict[str, dict[str, tuple[int, ...]]] = {
    "06": {"baseline": (0, 1, 2)},
    "10": {"baseline": (0, 1, 2), "unlearn": (0, 1, 2)},
}


def notebook_seeds(notebook: str, name: str) -> tuple[int, ...]:
    """The seeds at which ``notebook`` loads zoo model ``name`` (0 unless ``NOTEBOOK_SEEDS`` says)."""
    return NOTEBOOK_SEEDS.get(notebook, {}).get(name, (0,))


EXPERIMENT_NOTEBOOK = "03"

# Notebook 03's call, argument for argument:
# experiment.run(PRESET, SEEDS, methods=METHODS, references=REFERENCES, lam_sweep=()).
EXPERIMENT_SEEDS = 3
EXPERIMENT_METHODS = (
    "baseline",
    "unlearn",
    "cdann",
    "balanced_cdann",
    "dfr",
    "unlearn_dfr",
    "cdann_dfr",
    "dfr_val",
    "cdann_dfr_val",
    "balanced_cdann_dfr_val",
)
EXPERIMENT_REFERENCES = ("oracle",)
EXPERIMENT_LAM_SWEEP: tuple[float, ...] = ()
# Notebook 03's second call, "What data does" (issue 30), argument for argument:
# experiment.run(PRESET, DATA_SEEDS, methods=DATA_METHODS, references=DATA_REFERENCES,
# lam_sweep=()). One seed keeps CI's cold run short; `scriptlab experiment` runs three.
DATA_SEEDS = 1
DATA_METHODS = ("baseline", "dfr_val", "diverse_dfr_val", "diverse_augment_dfr_val")
DATA_REFERENCES = ("oracle", "diverse", "diverse_augment")

# Notebook 12's call: shortcut.zoo_study(PRESET, STUDY_SEEDS), the shortcut study over
# shortcut.ZOO_MODELS at these seeds (its fix, dfr_val, trains nothing of its own).
STUDY_NOTEBOOK = "12"
STUDY_SEEDS = 3


# The models each method notebook's closing section turns its method on (notebooks 04-11): the
# model that reads font style, the model that does not, and notebook 03's fix on the first one.
SHORTCUT_TRIO = ("baseline", "dfr_val", "oracle")


def shortcut_trio(
    baseline: zoo.ZooModel, oracle: zoo.ZooModel, ds: data.Dataset
) -> dict[str, tuple[ApplyFn, Any]]:
    """The baseline, its fix and the oracle as ``(apply_fn, params)``, for a closing section.

    The fix is ``shortcut.ZOO_FIX`` (a group-balanced script head fitted on held-out crops,
    ``experiment.fit_posthoc``) on the baseline's frozen trunk, composed into one ``ApplyFn``
    by ``experiment.posthoc_model``; it trains nothing.

    Args:
      baseline: the zoo model that relies on style (``zoo.load("baseline", ...)``).
      oracle: the zoo model trained with styles uniform within each script.
      ds: the dataset both were trained on (its val splits fit the fix).

    Returns:
      {name: (apply_fn, params)} in ``SHORTCUT_TRIO`` order.
    """
    from scriptlab.shortcut import ZOO_FIX

    if not isinstance(baseline, zoo.ZooModel) or not isinstance(oracle, zoo.ZooModel):
        raise ValueError(
            "baseline and oracle must be zoo.ZooModel (zoo.load), got "
            f"{type(baseline).__name__} and {type(oracle).__name__}"
        )
    fix = experiment.posthoc_model(baseline, experiment.fit_posthoc(baseline, ds, ZOO_FIX))
    return {
        "baseline": (baseline.apply_fn, baseline.params),
        ZOO_FIX: fix,
        "oracle": (oracle.apply_fn, oracle.params),
    }


def telling_crops(
    models: dict[str, tuple[ApplyFn, Any]],
    split: data.Split,
    *,
    relying: str = "baseline",
    reference: str = "oracle",
    n: int = 4,
    seed: int = 0,
) -> np.ndarray:
    """Crops that tell the models apart: misread by ``relying``, read right by ``reference``.

    On the conflict split these are the crops where the shortcut decides the answer: the
    style points to the wrong script for the relying model, and a model with no shortcut
    reads them. The choice is a seeded draw without replacement, in increasing index order.

    Args:
      models: {name: (apply_fn, params)} holding ``relying`` and ``reference``.
      split: the crops (``ds.conflict``).
      relying, reference: names in ``models``.
      n: how many crops (>= 1).
      seed: the draw's seed.

    Returns:
      int[k] indices into ``split``, k = min(n, number of telling crops).

    Raises:
      ValueError: for a name not in ``models``, a bad ``n`` or ``seed``, or no telling crop.
    """
    for arg, name in (("relying", relying), ("reference", reference)):
        check_name(arg, name, tuple(models))
    n = check_int("n", n, 1)
    seed = check_int("seed", seed, 0)
    read = {
        k: np.asarray(predict(*models[k], split.images)[0]).argmax(-1) == split.script
        for k in (relying, reference)
    }
    telling = np.flatnonzero(~read[relying] & read[reference])
    if not len(telling):
        raise ValueError(
            f"no crop of the {len(split)} given is misread by {relying!r} and read by "
            f"{reference!r}: nothing tells them apart here"
        )
    pick = np.random.default_rng(seed).choice(len(telling), min(n, len(telling)), replace=False)
    return np.sort(telling[pick])


def parse_notebooks(spec: str | None = None) -> tuple[str, ...]:
    """The notebook numbers a spec names, in order: "1-2,4-11", "03", "all" or None (all).

    Raises:
      ValueError: naming the spec and the notebooks there are.
    """
    every = tuple(NOTEBOOKS)
    if spec is None or spec.strip() == "all":
        return every
    chosen: set[str] = set()
    for part in spec.split(","):
        ends = part.strip().split("-")  # "4-11" or "4"
        try:
            lo, hi = int(ends[0]), int(ends[-1])
        except ValueError:
            lo, hi = 0, -1
        names = [f"{i:02d}" for i in range(lo, hi + 1)] if len(ends) <= 2 else []
        if not names or any(n not in NOTEBOOKS for n in names):
            raise ValueError(
                f"notebooks must be numbers or ranges from {every[0]}-{every[-1]} separated by "
                f"commas (e.g. '1-2,4-11'), or 'all'; got {spec!r}"
            )
        chosen.update(names)
    return tuple(n for n in every if n in chosen)


def _needs(preset: str, notebook: str) -> list[tuple[str, str, int, dict]]:
    """The zoo requests one notebook needs: its own loads, and for notebook 03 the experiment's."""
    out = [(n, preset, s, {}) for n in NOTEBOOKS[notebook] for s in notebook_seeds(notebook, n)]
    if notebook == EXPERIMENT_NOTEBOOK:
        out += experiment.zoo_requests(
            preset,
            EXPERIMENT_SEEDS,
            EXPERIMENT_METHODS,
            EXPERIMENT_REFERENCES,
            EXPERIMENT_LAM_SWEEP,
        ) + experiment.zoo_requests(preset, DATA_SEEDS, DATA_METHODS, DATA_REFERENCES, ())
    if notebook == STUDY_NOTEBOOK:
        from scriptlab.shortcut import ZOO_MODELS

        out += [(n, preset, s, {}) for n in ZOO_MODELS for s in range(STUDY_SEEDS)]
    return out


def requests(
    preset: str = "workshop", notebooks: tuple[str, ...] | None = None
) -> list[tuple[str, str, int, dict]]:
    """Every zoo model the notebooks need, as ``zoo.warm`` requests, each once, in a fixed order.

    Args:
      preset: "workshop" (the notebooks'), or "smoke" / "full" for the same list at that size.
      notebooks: notebook numbers ("01", ... as ``parse_notebooks`` returns); default all.

    Returns:
      [(name, preset, seed, overrides), ...]: the notebooks' direct loads (``MODELS`` order,
      seed 0), then notebook 03's experiment (``experiment.zoo_requests``) less the ones
      already listed.
    """
    check_name("preset", preset, PRESETS)
    chosen = tuple(NOTEBOOKS) if notebooks is None else notebooks
    for nb in chosen:
        check_name("notebook", nb, tuple(NOTEBOOKS))
    direct = {n for nb in chosen for n in NOTEBOOKS[nb]}
    out: list[tuple[str, str, int, dict]] = [(n, preset, 0, {}) for n in MODELS if n in direct]
    for nb in sorted(chosen, key=lambda nb: nb in (EXPERIMENT_NOTEBOOK, STUDY_NOTEBOOK)):
        for req in _needs(preset, nb):
            if req not in out:
                out.append(req)
    return out


def is_cached(request: tuple[str, str, int, dict]) -> bool:
    """Whether the zoo already holds a finished checkpoint for ``request`` (``zoo.is_cached``)."""
    return zoo.is_cached(*request)


class Prepared(NamedTuple):
    """What ``prepare`` did: models trained and found cached, seconds taken, cache bytes by folder,
    and the seconds after which each chosen notebook had everything it needs."""

    trained: int
    cached: int
    seconds: float
    disk: dict[str, int]
    ready: dict[str, float]


def disk_usage(root: Path | None = None) -> dict[str, int]:
    """Bytes under each top-level folder of the cache (``data``, ``zoo``, ``experiments``, ...)."""
    root = cache.cache_dir() if root is None else root
    usage: dict[str, int] = {}
    if not root.is_dir():
        return usage
    for top in sorted(root.iterdir()):
        if top.is_dir() and not top.is_symlink():
            usage[top.name] = sum(
                f.stat().st_size for f in top.rglob("*") if f.is_file() and not f.is_symlink()
            )
    return usage


def prepare(
    preset: str = "workshop",
    *,
    notebooks: str | tuple[str, ...] | None = None,
    workers: int | None = None,
    progress: bool = True,
    evaluate: bool = True,
) -> Prepared:
    """Render the notebooks' datasets, train their zoo models and evaluate notebook 03's experiment.

    Everything goes to the cache (``cache.cache_dir()``); cached entries are skipped, so a
    second call trains nothing. Models start in the order notebooks 02 and 04-11 need
    them, before notebook 03's experiment, and a line reports each notebook as soon as
    everything it loads is cached, so a workshop can start before the last model is done.
    Call it under ``if __name__ == "__main__":`` in a script (the training workers are
    spawned processes, see ``zoo.warm``).

    Args:
      preset: "workshop" for the notebooks; "smoke" trains the same list on tiny data.
      notebooks: which notebooks to prepare: a spec ("1-2,4-11", see ``parse_notebooks``) or a
        tuple of numbers; default all.
      workers: training processes (default: one per core).
      progress: progress bars and the notebook-ready lines.
      evaluate: also run notebook 03's ``experiment.run`` (when 03 is chosen) and notebook
        12's ``shortcut.zoo_study`` (when 12 is chosen) so their results are cached.

    Returns:
      A ``Prepared`` with the counts, the seconds taken, the cache's size by folder and
      each notebook's ready time.
    """
    check_name("preset", preset, PRESETS)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")
    chosen = notebooks if isinstance(notebooks, tuple) else parse_notebooks(notebooks)
    wanted = requests(preset, chosen)  # checks the numbers
    t0 = time.perf_counter()
    for seed in DATASET_SEEDS:
        data.load(preset, seed, progress=progress)
    missing = [r for r in wanted if not is_cached(r)]
    waiting = {nb: {_key(r) for r in _needs(preset, nb) if r in missing} for nb in chosen}
    ready: dict[str, float] = {}

    def report(done=None):
        for nb, left in waiting.items():
            left.discard(done)
            if nb in ready or left or (nb in (EXPERIMENT_NOTEBOOK, STUDY_NOTEBOOK) and evaluate):
                continue
            ready[nb] = time.perf_counter() - t0
            if progress:
                _say(f"prepare: notebook {nb} ready ({ready[nb] / 60:.1f} min)")

    report()
    zoo.warm(missing, workers=workers, progress=progress, on_done=lambda r: report(_key(r)))
    if evaluate and EXPERIMENT_NOTEBOOK in chosen:
        experiment.run(
            preset,
            EXPERIMENT_SEEDS,
            methods=EXPERIMENT_METHODS,
            references=EXPERIMENT_REFERENCES,
            lam_sweep=EXPERIMENT_LAM_SWEEP,
            progress=progress,
        )
        experiment.run(
            preset,
            DATA_SEEDS,
            methods=DATA_METHODS,
            references=DATA_REFERENCES,
            lam_sweep=(),
            progress=progress,
        )
        ready[EXPERIMENT_NOTEBOOK] = time.perf_counter() - t0
        if progress:
            minutes = ready[EXPERIMENT_NOTEBOOK] / 60
            _say(f"prepare: notebook {EXPERIMENT_NOTEBOOK} ready ({minutes:.1f} min)")
    if evaluate and STUDY_NOTEBOOK in chosen:
        from scriptlab import shortcut

        shortcut.zoo_study(preset, STUDY_SEEDS, progress=progress)
        ready[STUDY_NOTEBOOK] = time.perf_counter() - t0
        if progress:
            _say(f"prepare: notebook {STUDY_NOTEBOOK} ready ({ready[STUDY_NOTEBOOK] / 60:.1f} min)")
    return Prepared(
        trained=len(missing),
        cached=len(wanted) - len(missing),
        seconds=time.perf_counter() - t0,
        disk=disk_usage(),
        ready=dict(sorted(ready.items())),
    )


def _key(request: tuple[str, str, int, dict]) -> tuple:
    name, preset, seed, overrides = request
    return name, preset, int(seed), tuple(sorted(overrides.items()))


def _say(line: str) -> None:
    from tqdm.auto import tqdm

    tqdm.write(line)
