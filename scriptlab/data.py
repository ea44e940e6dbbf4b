"""The multi-script text-crop dataset, with font style as a labelled nuisance.

Each crop shows one real word in one of ten scripts, drawn with a pip-installed
font (``scriptlab.fonts``) through Pillow's raqm layout, so Arabic and Hebrew run
right-to-left and Devanagari and Thai are shaped. Nuisances: font style (the
label the unlearning experiment fights), font family and weight, text colour,
background colour and texture, position, scale, small rotation, blur and noise.

Splits:
  train, val, test  in-distribution; a fraction ``rho`` of each script is drawn
                    from that script's assigned style (``BIAS``), the rest
                    uniformly from its other styles (Kim et al. 2019).
  conflict          style never the script's assigned style.
  heldout           font families never seen in train/val/test/conflict.
  val_conflict      a second bias-conflicting split, for choosing hyperparameters of
                    shortcut-removal methods without looking at ``conflict``.

The same config and seed give byte-identical arrays whatever the number of
worker processes: each chunk of 256 crops has its own seed.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import hashlib
import json
import os
import re
import time
import warnings
import zipfile
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import NamedTuple

import numpy as np

from scriptlab import fonts
from scriptlab.fonts import SCRIPTS, STYLES, check_name
from scriptlab.words import BICAMERAL

DATA_VERSION = 1
CHUNK = 256
# val_conflict comes last: each split draws from its own seed, so appending it left the
# other splits' bytes unchanged.
SPLITS = ("train", "val", "test", "conflict", "heldout", "val_conflict")
CONFLICT_SPLITS = ("conflict", "val_conflict")

# The style each script is drawn in a fraction rho of the time in train/val/test.
# Latin/Cyrillic/Greek share many letter shapes, so a style shortcut pays there.
BIAS: dict[str, str] = {
    "latin": "hand",
    "cyrillic": "serif",
    "greek": "mono",
    "arabic": "serif",
    "hebrew": "display",
    "devanagari": "hand",
    "thai": "display",
    "chinese": "sans",
    "japanese": "display",
    "korean": "sans",
}

PRESETS: dict[str, dict] = {
    "smoke": dict(
        n_train=600, n_val=150, n_test=150, n_conflict=150, n_heldout=150, n_val_conflict=150
    ),
    "workshop": dict(
        n_train=30_000,
        n_val=1_500,
        n_test=2_000,
        n_conflict=2_000,
        n_heldout=2_000,
        n_val_conflict=2_000,
    ),
    "full": dict(
        n_train=60_000,
        n_val=6_000,
        n_test=10_000,
        n_conflict=10_000,
        n_heldout=10_000,
        n_val_conflict=6_000,
    ),
}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Everything that determines the dataset's bytes."""

    preset: str = "workshop"
    seed: int = 0
    rho: float = 0.9
    image_size: tuple[int, int] = (32, 64)
    n_train: int = 30_000
    n_val: int = 1_500
    n_test: int = 2_000
    n_conflict: int = 2_000
    n_heldout: int = 2_000
    n_val_conflict: int = 2_000
    scripts: tuple[str, ...] = SCRIPTS
    styles: tuple[str, ...] = STYLES

    def sizes(self) -> dict[str, int]:
        return {s: getattr(self, f"n_{s}") for s in SPLITS}

    def key(self) -> str:
        """Content address: a hash of the config, the data version and the font table."""
        import PIL

        blob = json.dumps(
            {
                "config": dataclasses.asdict(self),
                "version": DATA_VERSION,
                "pillow": PIL.__version__,
                "faces": [list(f) for f in fonts.FACES],
                # the bytes of the files used, so a changed font package is a new dataset
                "font_files": fonts.file_digests(
                    f
                    for f in fonts.FACES
                    if f.style in self.styles and set(f.scripts) & set(self.scripts)
                ),
                "bias": BIAS,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_config(preset: str = "workshop", seed: int = 0, **overrides) -> DataConfig:
    """Build and validate a DataConfig from a preset name plus overrides.

    Raises:
      ValueError: naming the argument, the value and what is allowed.
    """
    check_name("preset", preset, tuple(PRESETS))
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    for name in overrides:
        if name not in fields:
            raise ValueError(f"unknown config field {name!r}; allowed: {', '.join(sorted(fields))}")
    cfg = DataConfig(preset=preset, seed=int(seed), **{**PRESETS[preset], **overrides})
    if not 0.0 <= cfg.rho <= 1.0 or not np.isfinite(cfg.rho):
        raise ValueError(f"rho must be in [0, 1], got {cfg.rho!r}")
    h, w = cfg.image_size
    if h < 16 or w < 16 or h % 8 or w % 8:
        raise ValueError(
            f"image_size must be (H, W) with H, W >= 16 and divisible by 8, got {cfg.image_size}"
        )
    for split, n in cfg.sizes().items():
        if n < 0:
            raise ValueError(f"n_{split} must be >= 0, got {n}")
    if not cfg.scripts:
        raise ValueError("scripts must name at least two scripts, got an empty set")
    if not cfg.styles:
        raise ValueError(f"styles must name at least one style; allowed: {', '.join(STYLES)}")
    for s in cfg.scripts:
        check_name("script", s, SCRIPTS)
    for s in cfg.styles:
        check_name("style", s, STYLES)
    if len(cfg.scripts) < 2:
        raise ValueError(f"scripts must name at least two scripts, got {cfg.scripts}")
    for s in cfg.scripts:  # every script needs at least one covered style in the training pool
        if not [st for st in cfg.styles if st in fonts.styles_for(s)]:
            fonts.faces_for(s, cfg.styles[0])  # raises FontCoverageError naming the cell
    return cfg


class Split(NamedTuple):
    """One split: images, ink masks and labels, all row-aligned.

    Attributes:
      images: uint8[N, H, W, 3]
      masks: bool[N, H, W]: glyph ink before blur and noise
      script: int32[N], index into Dataset.scripts
      style: int32[N], index into Dataset.styles
      family: int32[N], index into Dataset.families
      text: str[N]
      color: uint8[N, 3] text colour
    """

    images: np.ndarray
    masks: np.ndarray
    script: np.ndarray
    style: np.ndarray
    family: np.ndarray
    text: np.ndarray
    color: np.ndarray

    def __len__(self) -> int:
        return len(self.script)

    def take(self, idx) -> Split:
        """Rows ``idx`` of every field."""
        return Split(*(a[idx] for a in self))


@dataclasses.dataclass(frozen=True)
class Dataset:
    """All splits plus the label names; ids index into ``scripts``/``styles``/``families``."""

    config: DataConfig
    splits: dict[str, Split]
    scripts: tuple[str, ...]
    styles: tuple[str, ...]
    families: tuple[str, ...]
    seconds: float = 0.0  # generation time (0 when loaded from cache)

    def split(self, name: str) -> Split:
        check_name("split", name, SPLITS)
        return self.splits[name]

    train = property(lambda self: self.splits["train"])
    val = property(lambda self: self.splits["val"])
    test = property(lambda self: self.splits["test"])
    conflict = property(lambda self: self.splits["conflict"])
    heldout = property(lambda self: self.splits["heldout"])
    val_conflict = property(lambda self: self.splits["val_conflict"])

    @property
    def key(self) -> str:
        return self.config.key()

    def bias_style(self, script: str) -> int:
        """Style id a script is biased towards."""
        return self.styles.index(_bias_style(self.config, script))


def as_float(images) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] (works on numpy or jax arrays)."""
    return images.astype(np.float32) / np.float32(255.0)


# --------------------------------------------------------------------------- planning


def _bias_style(cfg: DataConfig, script: str) -> str:
    styles = [s for s in cfg.styles if s in fonts.styles_for(script)]
    return BIAS[script] if BIAS[script] in styles else styles[0]


def _plan(cfg: DataConfig, split: str, rng: np.random.Generator):
    """Choose (script, style, face) for every sample of a split."""
    n = cfg.sizes()[split]
    heldout = split == "heldout"
    scripts = [s for s in cfg.scripts if not heldout or fonts.styles_for(s, heldout=True)]
    if split in CONFLICT_SPLITS:
        scripts = [s for s in scripts if len(_styles(cfg, s, False)) > 1]
    script_ids = np.resize(np.arange(len(scripts)), n)
    rng.shuffle(script_ids)
    styles = np.empty(n, np.int32)
    faces = np.empty(n, np.int32)
    face_index = {f: i for i, f in enumerate(fonts.FACES)}
    for k, script in enumerate(scripts):
        idx = np.flatnonzero(script_ids == k)
        own = _styles(cfg, script, heldout)
        biased = _bias_style(cfg, script)
        others = [s for s in own if s != biased] or [biased]
        if split in ("train", "val", "test"):
            n_biased = int(round(cfg.rho * len(idx)))
            chosen = [biased] * n_biased + list(rng.choice(others, len(idx) - n_biased))
            chosen = rng.permutation(np.array(chosen, dtype=object))
        elif split in CONFLICT_SPLITS:
            chosen = rng.choice(others, len(idx))
        else:
            chosen = rng.choice(own, len(idx))
        for i, style in zip(idx, chosen, strict=True):
            pool = fonts.faces_for(script, style, heldout=heldout)
            styles[i] = cfg.styles.index(style)
            faces[i] = face_index[pool[rng.integers(len(pool))]]
    global_script = np.array([cfg.scripts.index(scripts[k]) for k in script_ids], np.int32)
    return global_script, styles, faces


def _styles(cfg: DataConfig, script: str, heldout: bool) -> list[str]:
    return [s for s in cfg.styles if s in fonts.styles_for(script, heldout=heldout)]


# --------------------------------------------------------------------------- rendering


@functools.lru_cache(maxsize=4096)
def _font(face: fonts.Face, size: int):
    from PIL import ImageFont

    font = ImageFont.truetype(str(fonts.font_path(face)), size, layout_engine=ImageFont.Layout.RAQM)
    if face.weight is not None:
        axes = font.get_variation_axes()
        values = [face.weight if a["name"] in (b"Weight", "Weight") else a["default"] for a in axes]
        font.set_variation_by_axes(values)
    return font


def _check_raqm() -> None:
    from PIL import features

    if not features.check("raqm"):
        raise RuntimeError(
            "Pillow was built without libraqm, so Arabic, Hebrew, Devanagari and Thai "
            "cannot be shaped correctly; install a Pillow wheel from PyPI (they bundle "
            "raqm) or your system's libraqm"
        )


class Glyph(NamedTuple):
    """One crop's word and its placement, as drawn for the crop's own face.

    Attributes:
      text: the word.
      size: the font size in pixels.
      box: (left, top, width, height) of the word's ink box before rotation, in pixels.
      angle: the rotation in degrees (counter-clockwise, about the crop's centre).
      face: the face it was drawn for.
      origin: (x, y) where Pillow draws the word in that face.
    """

    text: str
    size: int
    box: tuple[int, int, int, int]
    angle: float
    face: fonts.Face
    origin: tuple[int, int]


def _draw_glyph(rng, face: fonts.Face, script: str, h: int, w: int) -> Glyph:
    """Draw one crop's word, size, position and rotation for ``face``."""
    words = fonts.words_for(face, script)
    for _ in range(16):
        text = words[rng.integers(len(words))]
        if script in BICAMERAL and rng.random() < 0.3:
            text = text[:1].upper() + text[1:]
        size = int(rng.integers(int(0.45 * h), int(0.75 * h) + 1))
        left, top, right, bottom = _font(face, size).getbbox(text)
        tw, th = right - left, bottom - top
        if tw > w - 2 or th > h - 2:
            size = int(size * min((w - 2) / tw, (h - 2) / th))
            if size < 0.3 * h:
                continue
            left, top, right, bottom = _font(face, size).getbbox(text)
            tw, th = right - left, bottom - top
            if tw > w - 2 or th > h - 2:
                continue
        break
    else:
        raise RuntimeError(f"no word of {script} fits a {h}x{w} crop in {face.family}")
    x = int(rng.integers(1, w - tw))
    y = int(rng.integers(1, h - th))
    angle = float(rng.uniform(-5, 5))
    return Glyph(text, size, (x, y, tw, th), angle, face, (x - left, y - top))


def _settled_box(face: fonts.Face, size: int, text: str) -> tuple[int, int, int, int]:
    """``text``'s ink box, measured after one throwaway measurement.

    The first box a freshly made variable-font object measures can be a pixel off the
    later ones (FreeType; seen with Noto Serif 500 at 15 px), so a single measurement
    would depend on which fonts the process loaded before.
    """
    font = _font(face, size)
    font.getbbox(text)
    return font.getbbox(text)


def glyph_alpha(face: fonts.Face, glyph: Glyph, h: int, w: int) -> np.ndarray:
    """Draw ``glyph``'s word in ``face`` as an 8-bit coverage image, uint8[H, W].

    In the face ``glyph`` was drawn for, the word goes where the dataset drew it: the
    crop's own glyph image, bit for bit. In another face it is set at ``glyph.size``
    (shrunk only as far as needed for the face's ink box to fit inside the crop with a
    one-pixel margin), its ink box centred where ``glyph.box`` is centred (then moved
    the least to stay inside that margin). Either way it is rotated by ``glyph.angle``.
    """
    from PIL import Image, ImageDraw

    size, origin = glyph.size, glyph.origin
    if face != glyph.face:
        left, top, right, bottom = _settled_box(face, size, glyph.text)
        while size > 1 and (right - left > w - 2 or bottom - top > h - 2):
            size -= 1  # another face can be wider or taller at the same size
            left, top, right, bottom = _settled_box(face, size, glyph.text)
        tw, th = right - left, bottom - top
        x0, y0, tw0, th0 = glyph.box
        x = min(max(x0 + (tw0 - tw) // 2, 1), max(w - 1 - tw, 1))
        y = min(max(y0 + (th0 - th) // 2, 1), max(h - 1 - th, 1))
        origin = (x - left, y - top)
    img = Image.new("L", (w, h), 0)
    ImageDraw.Draw(img).text(origin, glyph.text, font=_font(face, size), fill=255)
    img = img.rotate(glyph.angle, resample=Image.BILINEAR)
    return np.asarray(img)


def _bilinear_matrix(n_out: int, n_in: int) -> np.ndarray:
    pos = np.linspace(0, n_in - 1, n_out)
    lo = np.minimum(np.floor(pos).astype(int), n_in - 2)
    frac = pos - lo
    m = np.zeros((n_out, n_in), np.float32)
    m[np.arange(n_out), lo] = 1 - frac
    m[np.arange(n_out), lo + 1] = frac
    return m


def _luma(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _blur(img: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    """Per-image separable Gaussian blur (5 taps), vectorised over the batch."""
    taps = np.arange(-2, 3, dtype=np.float32)
    k = np.exp(-0.5 * (taps[None] / np.maximum(sigma[:, None], 1e-3)) ** 2)
    k /= k.sum(1, keepdims=True)
    for axis in (1, 2):
        pad = [(0, 0)] * img.ndim
        pad[axis] = (2, 2)
        p = np.pad(img, pad, mode="edge")
        length = img.shape[axis]
        img = sum(
            k[:, t, None, None, None] * np.take(p, np.arange(t, t + length), axis=axis)
            for t in range(5)
        )
    return img


class Draws(NamedTuple):
    """A chunk's random draws: everything about its crops except the font (row-aligned).

    Attributes:
      glyphs: one ``Glyph`` per crop (word, size, position, rotation).
      background: float64[n, H, W, 3] background colour + gradient + texture.
      color: float32[n, 3] text colour in [0, 1].
      sigma: float32[n] blur standard deviation in pixels.
      noise: float64[n, H, W, 3] additive pixel noise.
    """

    glyphs: tuple[Glyph, ...]
    background: np.ndarray
    color: np.ndarray
    sigma: np.ndarray
    noise: np.ndarray

    def take(self, idx) -> Draws:
        """Rows ``idx`` (int array) of every field."""
        return Draws(tuple(self.glyphs[i] for i in idx), *(a[idx] for a in self[1:]))


def draw_chunk(cfg: DataConfig, entropy, scripts, faces) -> Draws:
    """Replay one chunk's random draws (the dataset's, number for number).

    Args:
      cfg: the dataset config.
      entropy: the chunk's seed (``chunk_entropy``).
      scripts: int[n] script ids (into ``cfg.scripts``) of the chunk's crops.
      faces: int[n] face ids (into ``fonts.FACES``) of the chunk's crops.

    Returns:
      The chunk's ``Draws``, the same numbers the dataset was rendered from.
    """
    _check_raqm()
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    h, w = cfg.image_size
    n = len(scripts)
    glyphs = tuple(  # the words come first: their draws depend on each face's metrics
        _draw_glyph(rng, fonts.FACES[faces[i]], cfg.scripts[scripts[i]], h, w) for i in range(n)
    )
    bg = rng.uniform(0, 1, (n, 3)).astype(np.float32)
    cand = rng.uniform(0, 1, (n, 16, 3)).astype(np.float32)
    ok = np.abs(_luma(cand) - _luma(bg)[:, None]) > 0.35
    first = np.where(ok.any(1), ok.argmax(1), -1)
    fg = np.where((first >= 0)[:, None], cand[np.arange(n), np.maximum(first, 0)], 1 - bg)
    fg = np.where((first >= 0)[:, None], fg, np.round(1 - _luma(bg))[:, None].repeat(3, 1))

    yy, xx = np.meshgrid(np.linspace(-0.5, 0.5, h), np.linspace(-0.5, 0.5, w), indexing="ij")
    theta = rng.uniform(0, 2 * np.pi, n)
    grad_amp = rng.uniform(0, 0.25, n)
    gradient = grad_amp[:, None, None] * (
        np.cos(theta)[:, None, None] * xx + np.sin(theta)[:, None, None] * yy
    )
    coarse = rng.normal(0, 1, (n, 5, 9)) * rng.uniform(0, 0.08, n)[:, None, None]
    texture = np.einsum("hi,nij,wj->nhw", _bilinear_matrix(h, 5), coarse, _bilinear_matrix(w, 9))
    background = bg[:, None, None, :] + (gradient + texture)[..., None]
    sigma = rng.uniform(0, 0.9, n).astype(np.float32)
    noise = rng.normal(0, 1, (n, h, w, 3)) * rng.uniform(0, 0.05, n)[:, None, None, None]
    return Draws(glyphs, background, fg, sigma, noise)


def paint(alpha: np.ndarray, draws: Draws) -> np.ndarray:
    """Composite glyph coverage onto the drawn backgrounds, then blur and add noise.

    Args:
      alpha: uint8[n, H, W] glyph coverage (``glyph_alpha``), row-aligned with ``draws``.
      draws: the crops' ``Draws``.

    Returns:
      uint8[n, H, W, 3] crops.
    """
    a = alpha.astype(np.float32)[..., None] / 255.0
    img = draws.background * (1 - a) + draws.color[:, None, None, :] * a
    img = _blur(img.astype(np.float32), draws.sigma)
    img = img + draws.noise
    return np.round(np.clip(img, 0, 1) * 255).astype(np.uint8)


def _render_chunk(job) -> dict[str, np.ndarray]:
    """Render one chunk of planned samples (runs in a worker process)."""
    cfg, entropy, scripts, faces = job
    h, w = cfg.image_size
    draws = draw_chunk(cfg, entropy, scripts, faces)
    alpha = np.empty((len(scripts), h, w), np.uint8)
    for i, glyph in enumerate(draws.glyphs):  # Pillow draws one string at a time
        alpha[i] = glyph_alpha(fonts.FACES[faces[i]], glyph, h, w)
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
      face int32[N] into ``fonts.FACES``).
    """
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, SPLITS.index(split), 0]))
    return _plan(cfg, split, rng)


def chunk_entropy(cfg: DataConfig, split: str, chunk: int) -> list[int]:
    """The seed of chunk ``chunk`` (crops ``chunk * CHUNK`` onwards) of ``split``."""
    return [cfg.seed, SPLITS.index(split), chunk + 1]


def _generate(cfg: DataConfig, workers: int | None, progress: bool) -> Dataset:
    _check_raqm()
    t0 = time.perf_counter()
    family_ids = {f: i for i, f in enumerate(fonts.FAMILIES)}
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
            family=np.array([family_ids[fonts.FACES[f].family] for f in face], np.int32),
            text=_concat(parts, "text", (0,), str),
            color=_concat(parts, "color", (0, 3), np.uint8),
        )
    return Dataset(cfg, splits, cfg.scripts, cfg.styles, fonts.FAMILIES, time.perf_counter() - t0)


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


# --------------------------------------------------------------------------- caching


def cache_dir() -> Path:
    """Where datasets and models are cached: $SCRIPTLAB_CACHE or ~/.cache/scriptlab."""
    root = os.environ.get("SCRIPTLAB_CACHE") or Path.home() / ".cache" / "scriptlab"
    return Path(root)


_TEMPORARY = re.compile(r"\.(\d+)\.tmp(\.npz)?$")


def write_atomic(path: Path, blob: bytes) -> None:
    """Write ``blob`` through a unique temporary file and rename it: no reader sees half a file.

    A symbolic link at ``path`` is refused rather than followed out of its folder.
    """
    if path.is_symlink():
        raise ValueError(f"refusing to write through the symbolic link {path}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def clean_temporaries(folder: Path) -> None:
    """Delete the temporary files of killed writers in ``folder`` (their process is gone)."""
    for tmp in folder.glob("*.tmp*") if folder.is_dir() else ():
        match = _TEMPORARY.search(tmp.name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _save(ds: Dataset, path: Path) -> None:
    arrays = {
        f"{split}/{field}": v for split, s in ds.splits.items() for field, v in s._asdict().items()
    }
    arrays["key"] = np.array(ds.config.key())  # whose file this is (a legacy file has none)
    arrays["digest"] = np.array(_digest(arrays))
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")  # unique: writers may race
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load(cfg: DataConfig, path: Path) -> Dataset:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    digest = str(arrays.pop("digest"))
    if digest != _digest(arrays):
        raise ValueError(f"checksum mismatch in {path}")
    key = str(arrays.pop("key", cfg.key()))
    if key != cfg.key():
        raise ValueError(f"{path} holds dataset {key}, not this config's {cfg.key()}")
    splits = {
        split: Split(**{f: arrays[f"{split}/{f}"] for f in Split._fields}) for split in SPLITS
    }
    _check_schema(cfg, splits, path)
    return Dataset(cfg, splits, cfg.scripts, cfg.styles, fonts.FAMILIES)


def _check_schema(cfg: DataConfig, splits: dict[str, Split], path: Path) -> None:
    """Every split has this config's size, image size, dtypes and label ranges."""
    h, w = cfg.image_size
    for split, s in splits.items():
        n = cfg.sizes()[split]
        want = {
            "images": (np.uint8, (n, h, w, 3)),
            "masks": (np.bool_, (n, h, w)),
            "script": (np.int32, (n,)),
            "style": (np.int32, (n,)),
            "family": (np.int32, (n,)),
            "color": (np.uint8, (n, 3)),
        }
        for field, (dtype, shape) in want.items():
            a = getattr(s, field)
            if a.dtype != dtype or a.shape != shape:
                raise ValueError(
                    f"{path}: {split}/{field} is {a.dtype}{list(a.shape)}, this config needs "
                    f"{np.dtype(dtype)}{list(shape)}"
                )
        if s.text.shape != (n,) or s.text.dtype.kind != "U":
            raise ValueError(f"{path}: {split}/text must be str[{n}], got {s.text.dtype}")
        for field, size in (("script", len(cfg.scripts)), ("style", len(cfg.styles))):
            a = getattr(s, field)
            if n and (a.min() < 0 or a.max() >= size):
                raise ValueError(f"{path}: {split}/{field} labels outside [0, {size})")


def dataset_path(cfg: DataConfig) -> Path:
    return cache_dir() / "data" / f"{cfg.preset}-{cfg.seed}-{cfg.key()}.npz"


def load(
    preset: str = "workshop",
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: bool = True,
    cache: bool = True,
    **overrides,
) -> Dataset:
    """The dataset for a preset and seed: from the on-disk cache, or generated and cached.

    Args:
      preset: "smoke" (seconds, for tests), "workshop" (the notebooks'), or "full".
      seed: the same seed gives byte-identical arrays.
      workers: render processes (default: all cores).
      progress: show a tqdm bar while rendering.
      cache: read/write the content-addressed cache ($SCRIPTLAB_CACHE/data).
      **overrides: DataConfig fields (rho, n_train, scripts, styles, image_size, ...).

    A truncated or corrupt cache file is reported, deleted and regenerated.
    """
    cfg = make_config(preset, seed, **overrides)
    path = dataset_path(cfg)
    if not cache:
        return _generate(cfg, workers, progress)
    if (ds := _try_load(cfg, path)) is not None:
        return ds
    with cache_lock(path) as writable:
        # another process may have rendered it while this one waited for the lock
        if (ds := _try_load(cfg, path)) is not None:
            return ds
        clean_temporaries(path.parent)
        ds = _generate(cfg, workers, progress)
        try:
            if not writable:
                raise PermissionError("no lock could be taken")
            _save(ds, path)
        except OSError as err:
            warnings.warn(
                f"dataset cache {path.parent} is read-only ({err}); not cached", stacklevel=2
            )
    return ds


def _try_load(cfg: DataConfig, path: Path) -> Dataset | None:
    """The cached dataset, or None (a damaged file is reported and removed)."""
    if not path.exists():
        return None
    try:
        return _load(cfg, path)
    except (ValueError, OSError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as err:
        warnings.warn(f"dataset cache {path} is unreadable ({err}); regenerating", stacklevel=3)
        with contextlib.suppress(OSError):  # a read-only cache keeps it
            path.unlink(missing_ok=True)
    return None


@contextlib.contextmanager
def cache_lock(path: Path):
    """Hold an exclusive lock on ``path``'s cache entry; yields False when the cache is read-only.

    Writers of one entry (datasets, zoo models) take it in turn, so two processes
    asking for the same entry produce it once. A cache folder that cannot be
    written (a read-only mount) is still read: no lock is needed to read files
    that are only ever replaced atomically.
    """
    import fcntl

    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a")  # noqa: SIM115 (held across the yield)
    except OSError:
        yield False
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- summaries


def counts(ds: Dataset) -> dict[str, dict[str, dict[str, int]]]:
    """Sample counts per split x script x style."""
    out = {}
    for split, s in ds.splits.items():
        table = np.zeros((len(ds.scripts), len(ds.styles)), int)
        np.add.at(table, (s.script, s.style), 1)
        out[split] = {
            sc: {st: int(table[i, j]) for j, st in enumerate(ds.styles) if table[i, j]}
            for i, sc in enumerate(ds.scripts)
        }
    return out


def bias_fraction(ds: Dataset, split: str = "train") -> dict[str, float]:
    """Per script, the fraction of samples drawn in the script's assigned style."""
    s = ds.split(split)
    out = {}
    for i, name in enumerate(ds.scripts):
        sel = s.script == i
        if sel.any():
            out[name] = float(np.mean(s.style[sel] == ds.bias_style(name)))
    return out


def summary(ds: Dataset, seconds: float | None = None) -> dict:
    """A JSON-able description: classes, font table, counts, rho, timing."""
    seconds = ds.seconds if seconds is None else seconds
    total = sum(len(s) for s in ds.splits.values())
    return {
        "preset": ds.config.preset,
        "seed": ds.config.seed,
        "key": ds.key,
        "image_size": list(ds.config.image_size),
        "rho": ds.config.rho,
        "scripts": list(ds.scripts),
        "styles": list(ds.styles),
        "bias": {s: _bias_style(ds.config, s) for s in ds.scripts},
        "fonts": fonts.font_table(),
        "sizes": {k: len(v) for k, v in ds.splits.items()},
        "counts": counts(ds),
        "bias_fraction_train": bias_fraction(ds),
        "seconds": round(seconds, 3),
        "crops_per_second": round(total / seconds, 1) if seconds else None,
    }


def sample_grid(ds: Dataset, *, splits=("test", "conflict")) -> list[list[int | None]]:
    """For each (script, style) cell, the (split, index) of one example, or None."""
    grid = []
    for i in range(len(ds.scripts)):
        row = []
        for j in range(len(ds.styles)):
            hit = None
            for split in splits:
                s = ds.split(split)
                idx = np.flatnonzero((s.script == i) & (s.style == j))
                if len(idx):
                    hit = (split, int(idx[0]))
                    break
            row.append(hit)
        grid.append(row)
    return grid


# --------------------------------------------------------------------------- style twins

_TWINS = ("Twins", "style_twins", "twins_path")


def __getattr__(name: str):
    # scriptlab.twins builds on this module, so its names are re-exported lazily:
    # ``from scriptlab.data import style_twins`` works without an import cycle.
    if name in _TWINS:
        from scriptlab import twins

        return getattr(twins, name)
    raise AttributeError(f"module 'scriptlab.data' has no attribute {name!r}")
