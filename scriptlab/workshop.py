"""Everything the notebooks need, prepared once: ``scriptlab prepare``.

The notebooks train their zoo models on first use, which on a laptop means about
18 models before the first picture. ``prepare`` does that work ahead of time, in
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
from typing import NamedTuple

from scriptlab import data, experiment, zoo
from scriptlab.fonts import check_name

PRESETS = ("smoke", "workshop", "full")

# (preset seed) of every dataset the notebooks load; the notebooks use the workshop preset.
DATASET_SEEDS = (0,)

# Zoo entries the notebooks load by name (notebooks 02 and 04-11), each at seed 0.
MODELS = ("baseline", "unlearn", "high_lr", "overfit", "shuffled")

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


def requests(preset: str = "workshop") -> list[tuple[str, str, int, dict]]:
    """Every zoo model the notebooks need, as ``zoo.warm`` requests, each once, in a fixed order.

    Args:
      preset: "workshop" (the notebooks'), or "smoke" / "full" for the same list at that size.

    Returns:
      [(name, preset, seed, overrides), ...]: the notebooks' direct loads (``MODELS``, seed 0),
      then notebook 03's experiment (``experiment.zoo_requests``) less the ones already listed.
    """
    check_name("preset", preset, PRESETS)
    out: list[tuple[str, str, int, dict]] = [(n, preset, 0, {}) for n in MODELS]
    for req in experiment.zoo_requests(
        preset,
        EXPERIMENT_SEEDS,
        EXPERIMENT_METHODS,
        EXPERIMENT_REFERENCES,
        EXPERIMENT_LAM_SWEEP,
    ):
        if req not in out:
            out.append(req)
    return out


def is_cached(request: tuple[str, str, int, dict]) -> bool:
    """Whether the zoo already holds a finished checkpoint for ``request``."""
    name, preset, seed, overrides = request
    return (
        zoo.path(zoo.config(name, preset, seed, **overrides), name) / "checkpoint.json"
    ).exists()


class Prepared(NamedTuple):
    """What ``prepare`` did: models trained and found cached, seconds taken, cache bytes by folder."""

    trained: int
    cached: int
    seconds: float
    disk: dict[str, int]


def disk_usage(root: Path | None = None) -> dict[str, int]:
    """Bytes under each top-level folder of the cache (``data``, ``zoo``, ``experiments``, ...)."""
    root = data.cache_dir() if root is None else root
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
    workers: int | None = None,
    progress: bool = True,
    evaluate: bool = True,
) -> Prepared:
    """Render the notebooks' datasets, train their zoo models and evaluate notebook 03's experiment.

    Everything goes to the cache (``data.cache_dir()``); cached entries are skipped, so a
    second call trains nothing. Call it under ``if __name__ == "__main__":`` in a script
    (the training workers are spawned processes, see ``zoo.warm``).

    Args:
      preset: "workshop" for the notebooks; "smoke" trains the same list on tiny data.
      workers: training processes (default: one per core).
      progress: progress bars.
      evaluate: also run notebook 03's ``experiment.run`` so its results are cached.

    Returns:
      A ``Prepared`` with the counts, the seconds taken and the cache's size by folder.
    """
    check_name("preset", preset, PRESETS)
    if workers is not None and (not isinstance(workers, int) or workers < 1):
        raise ValueError(f"workers must be an integer >= 1 or None, got {workers!r}")
    t0 = time.perf_counter()
    for seed in DATASET_SEEDS:
        data.load(preset, seed, progress=progress)
    wanted = requests(preset)
    missing = [r for r in wanted if not is_cached(r)]
    zoo.warm(missing, workers=workers, progress=progress)
    if evaluate:
        experiment.run(
            preset,
            EXPERIMENT_SEEDS,
            methods=EXPERIMENT_METHODS,
            references=EXPERIMENT_REFERENCES,
            lam_sweep=EXPERIMENT_LAM_SWEEP,
            progress=progress,
        )
    return Prepared(
        trained=len(missing),
        cached=len(wanted) - len(missing),
        seconds=time.perf_counter() - t0,
        disk=disk_usage(),
    )
