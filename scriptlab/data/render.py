"""Planning and rendering crops: which script and style each crop gets, and how it is drawn."""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from scriptlab import fonts
from scriptlab.data.config import CONFLICT_SPLITS, DataConfig, _bias_style
from scriptlab.words import BICAMERAL

# --------------------------------------------------------------------------- planning


def _plan(cfg: DataConfig, split: str, rng: np.random.Generator):
    """Choose (script, style, face) for every sample of a split."""
    n = cfg.sizes()[split]
    heldout = split == "heldout"
    scripts = [
        s for s in cfg.scripts if not heldout or fonts.styles_for(s, heldout=True, table=cfg.fonts)
    ]
    if split in CONFLICT_SPLITS:
        scripts = [s for s in scripts if len(_styles(cfg, s, False)) > 1]
    script_ids = np.resize(np.arange(len(scripts)), n)
    rng.shuffle(script_ids)
    styles = np.empty(n, np.int32)
    faces = np.empty(n, np.int32)
    face_index = {f: i for i, f in enumerate(fonts.table_faces(cfg.fonts))}
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
            pool = fonts.faces_for(script, style, heldout=heldout, table=cfg.fonts)
            styles[i] = cfg.styles.index(style)
            faces[i] = face_index[pool[rng.integers(len(pool))]]
    global_script = np.array([cfg.scripts.index(scripts[k]) for k in script_ids], np.int32)
    return global_script, styles, faces


def _styles(cfg: DataConfig, script: str, heldout: bool) -> list[str]:
    return [
        s for s in cfg.styles if s in fonts.styles_for(script, heldout=heldout, table=cfg.fonts)
    ]


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
      faces: int[n] face ids (into ``fonts.table_faces(cfg.fonts)``) of the chunk's crops.

    Returns:
      The chunk's ``Draws``, the same numbers the dataset was rendered from.
    """
    _check_raqm()
    rng = np.random.default_rng(np.random.SeedSequence(entropy))
    h, w = cfg.image_size
    n = len(scripts)
    table = fonts.table_faces(cfg.fonts)
    glyphs = tuple(  # the words come first: their draws depend on each face's metrics
        _draw_glyph(rng, table[faces[i]], cfg.scripts[scripts[i]], h, w) for i in range(n)
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
