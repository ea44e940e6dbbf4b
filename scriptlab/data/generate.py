"""Generating a dataset: chunks of crops rendered in worker processes, seeded per chunk."""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import numpy as np

from scriptlab import fonts
from scriptlab.data.config import CHUNK, SPLITS, DataConfig, Dataset, Split
from scriptlab.data.render import _check_raqm, _plan, draw_chunk, glyph_alpha, paint


def _render_chunk(job) -> dict[str, np.ndarray]:
    """Render one chunk of planned samples (runs in a worker process)."""
    cfg, entropy, scripts, faces = job
    h, w = cfg.image_size
    table = fonts.table_faces(cfg.fonts)
    draws = draw_chunk(cfg, entropy, scripts, faces)
    alpha = np.empty((len(scripts), h, w), np.uint8)
    for i, glyph in enumerate(draws.glyphs):  # Pillow draws one string at a time
        alpha[i] = glyph_alpha(table[faces[i]], glyph, h, w)
    return {
        "images": paint(alpha, draws),
        "masks": alpha >= 128,
        "text": np.array([g.text for g in draws.glyphs], dtype=str),
        "color": np.round(draws.color * 255).astype(np.uint8),
    }


def split_plan(cfg: DataConfig, split: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The (script, style, face) ids of every crop of ``split``, as the dataset draws them.

    Returns:
      (script int32[N] into ``cfg.scripts``, style int32[N] into ``cfg.styles``,
      face int32[N] into ``fonts.table_faces(cfg.fonts)``).
    """
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, SPLITS.index(split), 0]))
    return _plan(cfg, split, rng)


def chunk_entropy(cfg: DataConfig, split: str, chunk: int) -> list[int]:
    """The seed of chunk ``chunk`` (crops ``chunk * CHUNK`` onwards) of ``split``."""
    return [cfg.seed, SPLITS.index(split), chunk + 1]


def _generate(cfg: DataConfig, workers: int | None, progress: bool) -> Dataset:
    _check_raqm()
    t0 = time.perf_counter()
    table, families = fonts.table_faces(cfg.fonts), fonts.families(cfg.fonts)
    family_ids = {f: i for i, f in enumerate(families)}
    plans, jobs = {}, []
    for split in SPLITS:
        plans[split] = split_plan(cfg, split)
        script, _, face = plans[split]
        for c, start in enumerate(range(0, len(script), CHUNK)):
            sl = slice(start, start + CHUNK)
            jobs.append((cfg, chunk_entropy(cfg, split, c), script[sl], face[sl]))
    results = map_chunks(
        _render_chunk,
        jobs,
        [len(j[2]) for j in jobs],
        workers=workers,
        progress=progress,
        desc=f"rendering {cfg.preset}",
    )
    splits, k = {}, 0
    for split in SPLITS:
        script, style, face = plans[split]
        n_chunks = -(-len(script) // CHUNK)
        parts = results[k : k + n_chunks]
        k += n_chunks
        splits[split] = Split(
            images=_concat(parts, "images", (0, *cfg.image_size, 3), np.uint8),
            masks=_concat(parts, "masks", (0, *cfg.image_size), bool),
            script=script.astype(np.int32),
            style=style.astype(np.int32),
            family=np.array([family_ids[table[f].family] for f in face], np.int32),
            text=_concat(parts, "text", (0,), str),
            color=_concat(parts, "color", (0, 3), np.uint8),
        )
    return Dataset(cfg, splits, cfg.scripts, cfg.styles, families, time.perf_counter() - t0)


def map_chunks(fn, jobs: list, sizes: list[int], *, workers: int | None, progress: bool, desc: str):
    """``[fn(job) for job in jobs]``, in spawned worker processes when there is enough work.

    The dataset's renderer and ``scriptlab.twins`` share it; ``fn`` must be a module-level
    function (workers import it) and each job's result depends only on the job, so the
    output is the same for any number of workers.

    Args:
      fn: the job function.
      jobs: one picklable job per chunk.
      sizes: crops per job, for the progress bar.
      workers: processes (default: all cores; 1 renders in this process).
      progress: show a tqdm bar.
      desc: the bar's label.

    Returns:
      The jobs' results, in order.
    """
    from tqdm.auto import tqdm

    total = sum(sizes)
    workers = workers or os.cpu_count() or 1
    bar = tqdm(
        total=total,
        desc=desc,
        unit="crop",
        disable=not progress,
        mininterval=1.0,  # as train.train's bar: few messages for a notebook kernel to send
    )
    results = []
    if workers == 1 or total <= 2 * CHUNK:
        for job, size in zip(jobs, sizes, strict=True):
            results.append(fn(job))
            bar.update(size)
    else:
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            for size, res in zip(sizes, pool.map(fn, jobs), strict=True):
                results.append(res)
                bar.update(size)
    bar.close()
    return results


def _concat(parts: list[dict], key: str, empty_shape, dtype) -> np.ndarray:
    return np.concatenate([p[key] for p in parts]) if parts else np.zeros(empty_shape, dtype)
