"""Style augmentation: random changes to a crop's look that leave its script readable.

Each function maps ``(key, images, strength) -> images`` for a batch of crops,
``float[N, H, W, C]`` in [0, 1] or ``uint8[N, H, W, C]`` in [0, 255] (C = 3 for
``colour``), and returns the same shape, dtype and range. Every image draws its
own amounts from its own key (``jax.vmap`` over ``jax.random.split(key, N)``),
so a batch is augmented in one jitted program and the same key gives the same
crops. A strength of 0 returns ``images`` itself, bit for bit. Strengths are
static Python numbers (they decide which ops are traced).

- ``stroke``: thicker or thinner ink (grey-level dilation or erosion ordered by
  each pixel's distance from the crop's background colour, so dark-on-light,
  light-on-dark and coloured ink all grow as ink).
- ``shear``: slant (a horizontal shear about the crop's centre row).
- ``elastic``: a smooth random displacement field (Simard et al. 2003).
- ``affine``: small rotation, scale and translation.
- ``colour``: channel permutation, inversion, grey, contrast and brightness, a
  smooth added texture and pixel noise.

``augment(key, images, Augment(...))`` composes them: one resampling for
shear, affine and elastic together (one interpolation blurs less than three),
then stroke, then colour. Stroke comes after the resampling: before it, XLA
fuses the morphology into the resampling's gathers and recomputes it per read
(4.8x the time of the two apart, measured on CPU). ``STYLE_AUGMENT`` is the suggested "on" setting.

References: Simard, Steinkraus & Platt 2003 (elastic distortion, "Best practices
for convolutional neural networks applied to visual document analysis");
Serra 1982 (morphology; ordering vectors by a scalar for colour images).
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math

import jax
import jax.numpy as jnp

from scriptlab.validation import check_int, check_number

# The bounds the config checks: past them the script stops being readable in a 32x64 crop.
MAX_STROKE = 3  # pixels of stroke width added or removed
MAX_SHEAR = 1.0  # |tan(slant)|
MAX_ELASTIC = 4.0  # RMS displacement in pixels
MAX_AFFINE = 1.0  # a fraction of MAX_ROTATION, MAX_LOG_SCALE and MAX_SHIFT

# What affine strength 1 means.
MAX_ROTATION = math.radians(20.0)
MAX_LOG_SCALE = 0.2  # scale in [exp(-0.2), exp(0.2)] = [0.82, 1.22]
MAX_SHIFT = 0.1  # of the crop's height (rows) and width (columns)
ELASTIC_SIGMA = 3.0  # pixels: smoothness of the displacement field (Simard: 4 at 29x29)
_LUMA = (0.299, 0.587, 0.114)


@dataclasses.dataclass(frozen=True)
class Augment:
    """How strongly each style augmentation acts (all 0: the identity).

    Attributes:
      stroke: int in [0, MAX_STROKE]: each crop's stroke width changes by k pixels,
        k uniform in {-stroke, ..., stroke} (negative: thinner).
      shear: in [0, MAX_SHEAR]: slant factor uniform in [-shear, shear].
      elastic: in [0, MAX_ELASTIC]: RMS displacement of a smooth random field, pixels.
      affine: in [0, MAX_AFFINE]: rotation, log scale and shift uniform in
        +-affine times MAX_ROTATION, MAX_LOG_SCALE and MAX_SHIFT.
      colour: in [0, 1]: probability of a channel permutation, half of it of an
        inversion and of grey; contrast, brightness, texture and noise amplitudes
        scale with it.
    """

    stroke: int = 0
    shear: float = 0.0
    elastic: float = 0.0
    affine: float = 0.0
    colour: float = 0.0

    def __post_init__(self):
        """Every field checked (a config read back from JSON included).

        Raises:
          ValueError: naming the field, the value and what is allowed.
        """
        object.__setattr__(self, "stroke", check_int("stroke", self.stroke, 0, MAX_STROKE + 1))
        for name, high in (
            ("shear", MAX_SHEAR),
            ("elastic", MAX_ELASTIC),
            ("affine", MAX_AFFINE),
            ("colour", 1.0),
        ):
            object.__setattr__(
                self, name, check_number(name, getattr(self, name), low=0.0, high=high)
            )

    @property
    def is_identity(self) -> bool:
        """True when every strength is 0 (``augment`` then returns its input)."""
        return self == Augment()


# Visibly another style, still readable: see docs/benchmarks.md (bench_augment) for its cost.
STYLE_AUGMENT = Augment(stroke=1, shear=0.3, elastic=1.0, affine=0.5, colour=0.5)


def augment(key: jax.Array, images: jax.Array, cfg: Augment) -> jax.Array:
    """All of ``cfg``'s augmentations, each image with its own draws.

    Args:
      key: a PRNG key.
      images: float[N, H, W, C] in [0, 1] or uint8[N, H, W, C].
      cfg: the strengths (static).

    Returns:
      The augmented crops: same shape, dtype and range; ``images`` itself when
      ``cfg.is_identity``.
    """
    if not isinstance(cfg, Augment):
        raise ValueError(f"cfg must be an Augment, got {type(cfg).__name__}")
    _check_images(images, colour=cfg.colour > 0)
    if cfg.is_identity:
        return images
    return _augment_batch(key, images, cfg)


@functools.partial(jax.jit, static_argnums=2)
def _augment_batch(key, images, cfg: Augment):
    """``augment``'s program: one compilation per (shape, dtype, cfg), inlined inside a jit."""

    def one(x, key):
        k_s, k_w, k_c = jax.random.split(key, 3)
        if cfg.shear or cfg.affine or cfg.elastic:
            ka, ks, ke = jax.random.split(k_w, 3)
            matrix = jnp.eye(2)
            if cfg.affine:
                matrix, shift = _affine_draw(ka, x.shape[:2], cfg.affine)
            else:
                shift = jnp.zeros(2)
            if cfg.shear:
                matrix = _shear_matrix(ks, cfg.shear) @ matrix
            field = _elastic_field(ke, x.shape[:2], cfg.elastic) if cfg.elastic else None
            x = _warp(x, matrix, shift, field)
        if cfg.stroke:
            x = _stroke_one(k_s, x, cfg.stroke)
        if cfg.colour:
            x = _colour_one(k_c, x, cfg.colour)
        return x

    return _per_image(images, one, key)


def stroke(key: jax.Array, images: jax.Array, width: int) -> jax.Array:
    """Thicker or thinner ink: k pixels, k uniform in {-width, ..., width} per crop.

    Grey-level morphology with a (|k|+1)-square structuring element (k 2x2 steps,
    anchored alternately down-right and up-left so the ink does not drift), on
    pixels ordered by their distance from the crop's background colour (the
    mean of its border pixels: the renderer keeps the ink off the border): dilation takes each window's
    farthest pixel, colour and all, erosion its nearest.

    Args:
      key: a PRNG key.
      images: float[N, H, W, C] in [0, 1] or uint8[N, H, W, C].
      width: int in [0, MAX_STROKE].

    Returns:
      The crops, same shape and dtype.
    """
    width = check_int("width", width, 0, MAX_STROKE + 1)
    _check_images(images)
    if width == 0:
        return images
    return _augment_batch(key, images, Augment(stroke=width))


def stroke_width(images: jax.Array, k: int) -> jax.Array:
    """Every crop's ink ``k`` pixels thicker (k < 0: thinner): ``stroke``'s deterministic core.

    Args:
      images: float[N, H, W, C] in [0, 1] or uint8[N, H, W, C].
      k: int in [-MAX_STROKE, MAX_STROKE].
    """
    k = check_int("k", k, -MAX_STROKE, MAX_STROKE + 1)
    _check_images(images)
    if k == 0:
        return images
    return _stroke_width_batch(images, k)


@functools.partial(jax.jit, static_argnums=1)
def _stroke_width_batch(images, k: int):
    one = lambda x, _: _morph_steps(x, abs(k), 1 if k > 0 else -1)[-1]
    return _per_image(images, one, jax.random.key(0))  # the key is unused


def shear(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
    """Slant: each crop sheared horizontally about its centre row by s ~ U(-strength, strength).

    Output pixel (r, c) reads the input at (r, c + s (r - (H - 1) / 2)),
    bilinear, with the border pixels repeated outside the crop.

    Args:
      key: a PRNG key.
      images: float[N, H, W, C] in [0, 1] or uint8[N, H, W, C].
      strength: in [0, MAX_SHEAR].
    """
    return _one_op(key, images, "shear", strength, MAX_SHEAR)


def elastic(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
    """Elastic distortion: a Gaussian-blurred (sigma ``ELASTIC_SIGMA``) random
    displacement field scaled to an RMS of ``strength`` pixels, bilinear resampling.

    Args:
      key: a PRNG key.
      images: float[N, H, W, C] in [0, 1] or uint8[N, H, W, C].
      strength: RMS displacement in pixels, in [0, MAX_ELASTIC].

    References: Simard, Steinkraus & Platt 2003.
    """
    return _one_op(key, images, "elastic", strength, MAX_ELASTIC)


def affine(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
    """Small affine warps: rotation, scale and shift about the crop's centre.

    Per crop: angle ~ U(+-strength MAX_ROTATION), log scale ~ U(+-strength
    MAX_LOG_SCALE), shift ~ U(+-strength MAX_SHIFT) of the height and width.
    See ``affine_warp`` for the sampling.

    Args:
      key: a PRNG key.
      images: float[N, H, W, C] in [0, 1] or uint8[N, H, W, C].
      strength: in [0, MAX_AFFINE].
    """
    return _one_op(key, images, "affine", strength, MAX_AFFINE)


def affine_warp(images: jax.Array, matrices: jax.Array, shifts: jax.Array) -> jax.Array:
    """Resample each crop through an affine map about its centre (the deterministic core).

    Output pixel p = (row, col) reads the input at ``A (p - c) + c + t``, where c
    is the centre ((H - 1) / 2, (W - 1) / 2): bilinear, the border pixels
    repeated outside the crop (scipy.ndimage's order=1, mode="nearest").

    Args:
      images: float[N, H, W, C] in [0, 1] or uint8[N, H, W, C].
      matrices: float[N, 2, 2] A, acting on (row, col).
      shifts: float[N, 2] t in pixels (row, col).
    """
    _check_images(images)
    n = images.shape[0]
    if matrices.shape != (n, 2, 2) or shifts.shape != (n, 2):
        raise ValueError(
            f"matrices and shifts must have shapes ({n}, 2, 2) and ({n}, 2), got "
            f"{matrices.shape} and {shifts.shape}"
        )
    return _affine_warp_batch(images, matrices, shifts)


@jax.jit
def _affine_warp_batch(images, matrices, shifts):
    one = lambda x, _, a, t: _warp(x, a, t)
    return _per_image(images, one, jax.random.key(0), matrices, shifts)  # the key is unused


def colour(key: jax.Array, images: jax.Array, strength: float) -> jax.Array:
    """Colour and texture beyond the renderer's.

    Per crop, with probabilities and amplitudes scaled by ``strength`` = s:
    channels permuted (probability s) or, with probability s / 2, made grey
    (the original's luma), then inverted (s / 2);
    contrast about the mean times exp(U(+-0.5 s)); brightness + U(+-0.2 s); a
    smooth texture (blurred noise, std up to 0.1 s) and grey pixel noise (std
    up to 0.05 s); clipped to [0, 1].

    Args:
      key: a PRNG key.
      images: float[N, H, W, 3] in [0, 1] or uint8[N, H, W, 3].
      strength: in [0, 1].
    """
    return _one_op(key, images, "colour", strength, 1.0, colour=True)


# ---- per image (x: float32[H, W, C] in [0, 1]) ----


def _stroke_one(key, x, width: int):
    k = jax.random.randint(key, (), -width, width + 1)
    # selects, not a stacked gather: under vmap k differs per crop, and XLA fuses the selects
    out = x
    for sign in (1, -1):
        for j, version in enumerate(_morph_steps(x, width, sign), start=1):
            out = jnp.where(k == sign * j, version, out)
    return out


def _morph_steps(x, width: int, sign: int):
    """[x dilated (sign 1) or eroded (sign -1) by 1, ..., width pixels]: 2x2 window steps."""
    # the mean of the border ring: the renderer keeps the ink off it (a median, which a word
    # touching the border would not move, costs a sort: 150 ms per 64 crops on 2 CPU cores)
    ring = jnp.concatenate([x[0], x[-1], x[1:-1, 0], x[1:-1, -1]])
    background = ring.mean(0)
    score = sign * jnp.sum((x - background) ** 2, axis=-1)
    versions = []
    for i in range(width):
        x, score = _window_max(x, score, 1 if i % 2 == 0 else -1)
        versions.append(x)
    return versions


def _window_max(pix, score, direction: int):
    """Each pixel takes the highest-scoring pixel of its 2x2 window (towards ``direction``);
    ties go to the first of (0, 0), (0, 1), (1, 0), (1, 1)."""
    h, w = score.shape
    pad = ((0, 1), (0, 1)) if direction > 0 else ((1, 0), (1, 0))
    p = jnp.pad(pix, (*pad, (0, 0)), mode="edge")
    s = jnp.pad(score, pad, mode="edge")
    best_p, best_s = pix, score  # offset (0, 0) of either anchoring is the pixel itself
    if direction < 0:
        best_p, best_s = p[:h, :w], s[:h, :w]
    for dy, dx in ((0, 1), (1, 0), (1, 1)):
        cand_s = s[dy : dy + h, dx : dx + w]
        better = cand_s > best_s
        best_p = jnp.where(better[..., None], p[dy : dy + h, dx : dx + w], best_p)
        best_s = jnp.where(better, cand_s, best_s)
    return best_p, best_s


def _shear_matrix(key, strength: float):
    s = jax.random.uniform(key, (), minval=-strength, maxval=strength)
    return jnp.array([[1.0, 0.0], [s, 1.0]])


def _affine_draw(key, shape, strength: float):
    ka, ks, kt = jax.random.split(key, 3)
    angle = jax.random.uniform(ka, (), minval=-1.0, maxval=1.0) * strength * MAX_ROTATION
    scale = jnp.exp(jax.random.uniform(ks, (), minval=-1.0, maxval=1.0) * strength * MAX_LOG_SCALE)
    shift = jax.random.uniform(kt, (2,), minval=-1.0, maxval=1.0) * strength * MAX_SHIFT
    cos, sin = jnp.cos(angle), jnp.sin(angle)
    # sampling through the inverse map: output = scale * rotation of the input
    matrix = jnp.array([[cos, -sin], [sin, cos]]) / scale
    return matrix, shift * jnp.array(shape, jnp.float32)


def _gaussian_matrix(n: int, coarse: int, sigma: float):
    """float32[n, coarse]: Gaussian weights (std ``sigma`` pixels) from n pixels to ``coarse``
    evenly spread grid points, each row summing to 1."""
    points = (jnp.arange(coarse) + 0.5) * n / coarse - 0.5
    g = jnp.exp(-0.5 * ((jnp.arange(n)[:, None] - points[None, :]) / sigma) ** 2)
    return g / g.sum(1, keepdims=True)


def _smooth_noise(key, shape, channels: int):
    """float32[H, W, channels]: white noise on a grid of one point per 2 x 2 pixels, spread by a
    Gaussian of std ELASTIC_SIGMA (a quarter of the draws of full-resolution noise), each
    channel scaled to unit RMS."""
    h, w = shape
    ch, cw = (h + 1) // 2, (w + 1) // 2
    noise = jax.random.normal(key, (channels, ch, cw))
    smooth = (
        _gaussian_matrix(h, ch, ELASTIC_SIGMA) @ noise @ _gaussian_matrix(w, cw, ELASTIC_SIGMA).T
    )
    rms = jnp.sqrt(jnp.mean(smooth**2, axis=(1, 2), keepdims=True))
    return jnp.moveaxis(smooth / rms, 0, -1)


def _elastic_field(key, shape, strength: float):
    """float32[H, W, 2]: a displacement (rows, cols) of RMS ``strength`` per component."""
    return _smooth_noise(key, shape, 2) * strength


def _warp(x, matrix, shift, field=None):
    """x resampled at A (p - c) + c + t (+ field(p)), bilinear, edges repeated."""
    h, w, _ = x.shape
    centre = jnp.array([(h - 1) / 2, (w - 1) / 2])
    grid = jnp.stack(jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij"), -1)
    src = (grid - centre) @ matrix.T + centre + shift
    if field is not None:
        src = src + field
    return _bilinear(x, src[..., 0], src[..., 1])


def _bilinear(x, rows, cols):
    """x[rows, cols] interpolated bilinearly; coordinates outside are clamped to the edge."""
    h, w, _ = x.shape
    rows = jnp.clip(rows, 0, h - 1)
    cols = jnp.clip(cols, 0, w - 1)
    r0 = jnp.clip(jnp.floor(rows), 0, h - 2).astype(jnp.int32)
    c0 = jnp.clip(jnp.floor(cols), 0, w - 2).astype(jnp.int32)
    fr = (rows - r0)[..., None]
    fc = (cols - c0)[..., None]
    top = x[r0, c0] * (1 - fc) + x[r0, c0 + 1] * fc
    bottom = x[r0 + 1, c0] * (1 - fc) + x[r0 + 1, c0 + 1] * fc
    return top * (1 - fr) + bottom * fr


def _colour_one(key, x, strength: float):
    kp, kperm, ki, kg, kc, kb, kt, kts, kn, kns = jax.random.split(key, 10)
    # grey is the original's luma: a permutation first could bring ink and background to one
    # luma (the renderer only keeps their lumas apart in the drawn channel order)
    grey = jnp.repeat((x @ jnp.array(_LUMA))[..., None], 3, axis=-1)
    # one of the 6 orders by index (jax.random.permutation sorts)
    permuted = x[
        ..., jnp.array(list(itertools.permutations(range(3))))[jax.random.randint(kperm, (), 0, 6)]
    ]
    x = jnp.where(jax.random.uniform(kp) < strength, permuted, x)
    x = jnp.where(jax.random.uniform(kg) < strength / 2, grey, x)
    x = jnp.where(jax.random.uniform(ki) < strength / 2, 1.0 - x, x)
    mean = x.mean()
    contrast = jnp.exp(jax.random.uniform(kc, minval=-0.5, maxval=0.5) * strength)
    brightness = jax.random.uniform(kb, minval=-0.2, maxval=0.2) * strength
    x = (x - mean) * contrast + mean + brightness
    texture = _smooth_noise(kt, x.shape[:2], x.shape[-1])
    x = x + texture * jax.random.uniform(kts, maxval=0.1 * strength)
    # grey pixel noise: a third of the draws of per-channel noise
    noise = jax.random.normal(kn, x.shape[:2])[..., None] * jax.random.uniform(
        kns, maxval=0.05 * strength
    )
    return jnp.clip(x + noise, 0.0, 1.0)


# ---- batches ----


def _one_op(key, images, field: str, strength, high: float, *, colour: bool = False):
    """One augmentation alone at a checked ``strength`` (the input itself at 0)."""
    strength = check_number("strength", strength, low=0.0, high=high)
    _check_images(images, colour=colour)
    if strength == 0:
        return images
    return _augment_batch(key, images, Augment(**{field: strength}))


def _check_images(images, *, colour: bool = False) -> None:
    shape = tuple(getattr(images, "shape", ()))
    dtype = getattr(images, "dtype", None)
    if len(shape) != 4 or min(shape[1:3], default=0) < 2:
        raise ValueError(f"images must have shape [N, H, W, C] with H, W >= 2, got shape {shape}")
    if colour and shape[3] != 3:
        raise ValueError(f"colour augmentation needs 3 channels (RGB), got shape {shape}")
    if dtype is None or not (jnp.issubdtype(dtype, jnp.floating) or dtype == jnp.uint8):
        raise ValueError(f"images must be float in [0, 1] or uint8, got dtype {dtype}")


def _per_image(images, fn, key, *rows):
    """vmap ``fn(x, key, *row)`` over the crops as float32 in [0, 1], one key per crop.

    Args:
      images: float[N, H, W, C] in [0, 1] or uint8[N, H, W, C].
      fn: (float32[H, W, C], key, *row) -> float32[H, W, C].
      key: a PRNG key, split into one per crop.
      *rows: arrays with one row per crop.

    Returns:
      fn's crops clipped to [0, 1], in ``images``' dtype (uint8: rounded).
    """
    x = images.astype(jnp.float32)
    if images.dtype == jnp.uint8:
        x = x / 255.0
    out = jnp.clip(jax.vmap(fn)(x, jax.random.split(key, images.shape[0]), *rows), 0.0, 1.0)
    if images.dtype == jnp.uint8:
        return jnp.round(out * 255.0).astype(jnp.uint8)
    return out.astype(images.dtype)
