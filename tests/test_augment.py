"""Style augmentation: each function's contract, and the geometric ones against references.

References: a plain numpy max-filter loop (stroke), the closed-form position of a
sheared pixel (shear), scipy.ndimage.affine_transform (affine warps).
"""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import ndimage

from scriptlab import augment as A

KEY = jax.random.key(0)
H, W = 32, 64


def crops(n=6, seed=0) -> np.ndarray:
    """uint8[n, H, W, 3]: smooth backgrounds with a bar of 'ink', dark-on-light and the reverse."""
    rng = np.random.default_rng(seed)
    bg = rng.uniform(0, 1, (n, 1, 1, 3))
    ink = np.where(bg.mean(-1, keepdims=True) > 0.5, 0.1, 0.9) * np.ones((1, 1, 1, 3))
    x = np.broadcast_to(bg, (n, H, W, 3)).copy()
    x[:, 10:22, 20:24] = ink
    x[:, 14:17, 24:44] = ink
    x = x + rng.normal(0, 0.03, x.shape)
    return np.round(np.clip(x, 0, 1) * 255).astype(np.uint8)


# (function, its strength at a moderate setting)
FUNCTIONS = [
    (A.stroke, 2),
    (A.shear, 0.5),
    (A.elastic, 2.0),
    (A.affine, 1.0),
    (A.colour, 1.0),
]
IDS = [f.__name__ for f, _ in FUNCTIONS]


def as_float(x):
    return jnp.asarray(x, jnp.float32) / 255.0


@pytest.mark.parametrize("fn,strength", FUNCTIONS, ids=IDS)
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_shape_dtype_range(fn, strength, dtype):
    x = crops() if dtype == "uint8" else as_float(crops())
    out = jax.jit(fn, static_argnums=2)(KEY, x, strength)
    assert out.shape == x.shape and out.dtype == x.dtype
    out = np.asarray(out)
    if dtype == "float32":
        assert np.isfinite(out).all() and out.min() >= 0.0 and out.max() <= 1.0
    assert not np.array_equal(out, np.asarray(x))


@pytest.mark.parametrize("fn,strength", FUNCTIONS, ids=IDS)
def test_same_key_same_crops_other_key_other_crops(fn, strength):
    x = as_float(crops())
    a, b = fn(KEY, x, strength), fn(KEY, x, strength)
    c = fn(jax.random.key(1), x, strength)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("fn,strength", FUNCTIONS, ids=IDS)
def test_each_crop_draws_its_own_amounts(fn, strength):
    """Two copies of one crop in a batch come out different (one key per crop, not per batch)."""
    x = as_float(np.repeat(crops(1), 2, axis=0))
    out = np.asarray(fn(KEY, x, strength))
    assert not np.array_equal(out[0], out[1])


@pytest.mark.parametrize("fn", [f for f, _ in FUNCTIONS], ids=IDS)
@pytest.mark.parametrize("dtype", ["uint8", "float32"])
def test_strength_zero_is_the_identity_bit_for_bit(fn, dtype):
    x = crops() if dtype == "uint8" else as_float(crops())
    out = fn(KEY, x, 0)
    assert out.dtype == x.dtype
    np.testing.assert_array_equal(np.asarray(out), np.asarray(x))


def test_augment_identity_returns_its_input():
    x = as_float(crops())
    assert A.augment(KEY, x, A.Augment()) is x


def test_augment_composes_and_is_deterministic():
    x = crops()
    run = jax.jit(A.augment, static_argnums=2)
    a = run(KEY, x, A.STYLE_AUGMENT)
    # a second compilation of the same program (a new, equal config) gives the same bits
    np.testing.assert_array_equal(a, run(KEY, x, dataclasses.replace(A.STYLE_AUGMENT)))
    assert a.shape == x.shape and a.dtype == np.uint8
    assert not np.array_equal(a, run(jax.random.key(1), x, A.STYLE_AUGMENT))
    # one field on: a change of that kind only (colour alone keeps every pixel's place,
    # so a grey crop stays grey only under the geometric ones)
    grey = np.repeat(crops()[..., :1], 3, -1)
    warped = np.asarray(A.augment(KEY, grey, A.Augment(shear=0.5, affine=1.0, elastic=2.0)))
    np.testing.assert_array_equal(warped[..., 0], warped[..., 1])
    assert not np.array_equal(warped, grey)


def max_filter_loop(x: np.ndarray, k: int) -> np.ndarray:
    """Plain loops: each pixel the max of its (k+1)-square window, anchored as ``stroke`` anchors
    it (steps alternate down-right and up-left: rows/cols [-(k // 2), k - k // 2]), edges clamped."""
    h, w = x.shape
    out = np.empty_like(x)
    lo, hi = -(k // 2), k - k // 2
    for r in range(h):
        for c in range(w):
            rows = np.clip(np.arange(r + lo, r + hi + 1), 0, h - 1)
            cols = np.clip(np.arange(c + lo, c + hi + 1), 0, w - 1)
            out[r, c] = x[np.ix_(rows, cols)].max()
    return out


@pytest.mark.parametrize("k", [1, 2, 3])
def test_dilation_matches_a_max_filter_loop(k):
    """Bright ink on a black background: the ordering is the grey value, so dilation by k is a
    (k+1)-square max filter and erosion the min filter."""
    rng = np.random.default_rng(k)
    ink = np.where(rng.uniform(size=(H, W)) < 0.08, rng.uniform(0.2, 1.0, (H, W)), 0.0)
    x = jnp.asarray(np.repeat(ink[None, ..., None], 3, -1), jnp.float32)
    dilated = np.asarray(A.stroke_width(x, k))[0, ..., 0]
    np.testing.assert_array_equal(dilated, max_filter_loop(ink.astype(np.float32), k))
    eroded = np.asarray(A.stroke_width(x, -k))[0, ..., 0]
    np.testing.assert_array_equal(eroded, -max_filter_loop(-ink.astype(np.float32), k))


def test_stroke_thickens_dark_ink_on_light_and_light_on_dark():
    """The ink grows whichever way round: the crop's coverage of ink-coloured pixels rises."""
    x = as_float(crops(8))
    ink_colour = x[:, 15, 21]
    near_ink = lambda y: (jnp.abs(y - ink_colour[:, None, None]).max(-1) < 0.15).mean((1, 2))
    thick, thin = A.stroke_width(x, 2), A.stroke_width(x, -1)
    assert (near_ink(thick) > 1.5 * near_ink(x)).all()
    assert (near_ink(thin) < 0.8 * near_ink(x)).all()


def test_shear_moves_a_pixel_where_the_closed_form_says():
    """Output (r, c) reads input (r, c + s (r - (H - 1) / 2)): a pixel at (r, c0) lands on
    c0 - s (r - (H - 1) / 2), split between the two nearest columns by distance."""
    s = 0.5
    for r, c0 in ((3, 30), (27, 30), (15, 10)):  # shifts -6.25, 5.75, -0.25: bilinear spread
        img = np.zeros((1, H, W, 3), np.float32)
        img[0, r, c0] = 1.0
        out = np.asarray(A.affine_warp(img, np.array([[[1.0, 0.0], [s, 1.0]]]), np.zeros((1, 2))))[
            0, ..., 0
        ]
        dc = s * (r - (H - 1) / 2)
        # bilinear: the pixel spreads over the two columns around c0 - dc, weights by distance
        want = np.zeros((H, W), np.float32)
        target = c0 - dc
        lo = int(np.floor(target))
        want[r, lo] = 1 - (target - lo)
        want[r, lo + 1] = target - lo
        np.testing.assert_allclose(out, want, atol=1e-6)


def test_shear_of_a_whole_pixel_shift_is_exact():
    """Integer displacements: a bright pixel moves whole, with no interpolation spread."""
    img = np.zeros((1, 5, 9, 1), np.float32)  # centre row 2
    img[0, 0, 4] = 1.0  # row 0: offset -2, s = 1 reads column c - 2, so the pixel lands at 6
    img[0, 4, 4] = 0.5  # row 4: offset +2, lands at 2
    out = np.asarray(A.affine_warp(img, np.array([[[1.0, 0.0], [1.0, 1.0]]]), np.zeros((1, 2))))
    want = np.zeros((5, 9), np.float32)
    want[0, 6], want[4, 2] = 1.0, 0.5
    np.testing.assert_array_equal(out[0, ..., 0], want)


def test_affine_warp_matches_scipy():
    """scipy.ndimage.affine_transform (order 1, mode 'nearest') samples the input at
    matrix @ o + offset for output o: ours with offset = c + t - A c."""
    x = as_float(crops(3))
    rng = np.random.default_rng(0)
    angles = rng.uniform(-0.3, 0.3, 3)
    scales = rng.uniform(0.8, 1.2, 3)
    mats = np.stack([[[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]] for a in angles])
    mats = mats / scales[:, None, None]
    mats[1] = mats[1] @ np.array([[1.0, 0.0], [0.4, 1.0]])  # a shear composed in
    shifts = rng.uniform(-3, 3, (3, 2))
    ours = np.asarray(A.affine_warp(x, jnp.asarray(mats, jnp.float32), jnp.asarray(shifts)))
    centre = np.array([(H - 1) / 2, (W - 1) / 2])
    for i in range(3):
        offset = centre + shifts[i] - mats[i] @ centre
        for ch in range(3):
            ref = ndimage.affine_transform(
                np.asarray(x[i, ..., ch], np.float64), mats[i], offset, order=1, mode="nearest"
            )
            np.testing.assert_allclose(ours[i, ..., ch], ref, atol=2e-5)


def test_elastic_field_is_smooth_and_of_the_asked_size():
    field = np.asarray(A._elastic_field(KEY, (H, W), 2.0))
    assert field.shape == (H, W, 2)
    np.testing.assert_allclose(np.sqrt((field**2).mean((0, 1))), 2.0, rtol=1e-4)
    # smooth: neighbouring displacements differ far less than the field varies
    step = np.abs(np.diff(field, axis=1)).mean()
    assert step < 0.25 * field.std()


def test_elastic_with_a_constant_field_is_a_shift():
    """A field of whole pixels everywhere moves the crop like an integer shift (edges repeated)."""
    x = as_float(crops(1))[0]
    field = jnp.broadcast_to(jnp.array([1.0, -2.0]), (H, W, 2))
    out = np.asarray(A._warp(x, jnp.eye(2), jnp.zeros(2), field))
    rows = np.clip(np.arange(H) + 1, 0, H - 1)
    cols = np.clip(np.arange(W) - 2, 0, W - 1)
    np.testing.assert_array_equal(out, np.asarray(x)[np.ix_(rows, cols)])


def test_colour_keeps_the_pixels_in_place():
    """Colour changes are per pixel plus smooth fields: the ink stays where it was and still
    stands apart from the background in brightness."""
    x = as_float(crops(4))
    out = np.asarray(A.colour(KEY, x, 1.0))
    ink = np.zeros((H, W), bool)
    ink[10:22, 20:24] = ink[14:17, 24:44] = True
    lum = out.mean(-1)
    assert (np.abs(lum[:, ink].mean(1) - lum[:, ~ink].mean(1)) > 0.1).all()


@pytest.mark.parametrize(
    "field,value",
    [
        ("stroke", -1),
        ("stroke", A.MAX_STROKE + 1),
        ("stroke", 1.5),
        ("shear", 2.0),
        ("elastic", -0.1),
        ("affine", float("nan")),
        ("colour", 1.5),
    ],
)
def test_augment_rejects_bad_fields_by_name(field, value):
    with pytest.raises(ValueError, match=field):
        A.Augment(**{field: value})


def test_bad_images_are_named():
    with pytest.raises(ValueError, match="images must have shape"):
        A.shear(KEY, np.zeros((H, W, 3), np.float32), 0.3)
    with pytest.raises(ValueError, match="3 channels"):
        A.colour(KEY, np.zeros((2, H, W, 1), np.float32), 0.3)
    with pytest.raises(ValueError, match="dtype"):
        A.elastic(KEY, np.zeros((2, H, W, 3), np.int32), 1.0)
    with pytest.raises(ValueError, match="strength"):
        A.affine(KEY, np.zeros((2, H, W, 3), np.float32), 3.0)


def test_config_round_trips_through_a_dict():
    cfg = A.STYLE_AUGMENT
    assert A.Augment(**dataclasses.asdict(cfg)) == cfg
    assert hash(cfg) == hash(A.Augment(**dataclasses.asdict(cfg)))  # static under jit
    assert A.Augment().is_identity and not cfg.is_identity
