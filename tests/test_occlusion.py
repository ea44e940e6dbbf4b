"""Occlusion sensitivity (scriptlab.interpret.occlusion) against plain loops and closed forms."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scriptlab.interpret.occlusion import fill_images, occlusion, occlusion_localisation
from scriptlab.model import build, functional

from helpers import linear_apply


@pytest.fixture(scope="module")
def small():
    images = jax.random.uniform(jax.random.key(0), (2, 8, 12, 3))
    w = jax.random.normal(jax.random.key(1), (4, 8, 12, 3))
    return images, w


def _loop_reference(score, images, targets, fills, patch, stride):
    """Plain Python loops over images and windows."""
    images, fills = np.asarray(images), np.asarray(fills)
    n, h, w, _ = images.shape
    (ph, pw), (sh, sw) = patch, stride
    rows, cols = range(0, h - ph + 1, sh), range(0, w - pw + 1, sw)
    out = np.zeros((n, len(rows), len(cols)), np.float32)
    for i in range(n):
        for a, r in enumerate(rows):
            for b, c in enumerate(cols):
                x = images[i].copy()
                x[r : r + ph, c : c + pw] = fills[i, r : r + ph, c : c + pw]
                out[i, a, b] = score(x, int(targets[i]))
    return out


def test_linear_model_closed_form(small):
    images, w = small
    targets = np.array([1, 3])
    res = occlusion(
        linear_apply, {"w": w}, images, targets, patch=(3, 4), stride=(2, 3), output="logit"
    )
    base = np.einsum("nhwc,nhwc->n", images, w[targets])
    np.testing.assert_allclose(res.base, base, rtol=1e-5)
    for i in range(2):
        for a, r in enumerate(res.rows):
            for b, c in enumerate(res.cols):
                contrib = (
                    w[targets[i], r : r + 3, c : c + 4] * (0.5 - images[i, r : r + 3, c : c + 4])
                ).sum()
                np.testing.assert_allclose(
                    res.scores[i, a, b], base[i] + contrib, rtol=1e-4, atol=1e-5
                )


def test_heatmap_is_mean_drop_over_covering_windows(small):
    images, w = small
    res = occlusion(linear_apply, {"w": w}, images, 0, patch=3, stride=2, output="logit")
    drop = np.asarray(res.base)[:, None, None] - np.asarray(res.scores)
    total, count = np.zeros((2, 8, 12)), np.zeros((8, 12))
    for a, r in enumerate(np.asarray(res.rows)):
        for b, c in enumerate(np.asarray(res.cols)):
            total[:, r : r + 3, c : c + 3] += drop[:, a, b, None, None]
            count[r : r + 3, c : c + 3] += 1
    expected = np.where(count > 0, total / np.maximum(count, 1), 0.0)
    np.testing.assert_allclose(res.heatmap, expected, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("fill", ["grey", "mean", "blur"])
def test_scriptnet_against_plain_loop(fill):
    params, apply_fn = functional(build(5, 2, seed=0, image_shape=(16, 16, 3)))
    images = jax.random.uniform(jax.random.key(2), (2, 16, 16, 3))
    targets = np.array([0, 4])
    res = occlusion(apply_fn, params, images, targets, patch=5, stride=3, fill=fill, batch_size=7)
    single = jax.jit(lambda x: jax.nn.softmax(apply_fn(params, x[None]).script[0]))
    ref = _loop_reference(
        lambda x, t: float(single(x)[t]),
        images,
        targets,
        fill_images(images, fill, sigma=5 / 4),
        (5, 5),
        (3, 3),
    )
    np.testing.assert_allclose(res.scores, ref, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(
        res.base, [float(single(images[i])[targets[i]]) for i in range(2)], rtol=1e-5
    )


def test_layer_unit_target(small):
    images, w = small
    res = occlusion(linear_apply, {"w": w}, images, 0, patch=2, stride=2, layer="map", unit=(3, 5))
    covered = np.zeros((4, 6), bool)
    covered[1, 2] = True  # window at rows 2..3, cols 4..5 is the only one covering pixel (3, 5)
    x = np.asarray(images)
    for i in range(2):
        np.testing.assert_allclose(res.scores[i][~covered], x[i, 3, 5].sum(), rtol=1e-6)
        np.testing.assert_allclose(res.scores[i][covered], 1.5, rtol=1e-6)
    mx = occlusion(linear_apply, {"w": w}, images, 0, patch=2, stride=2, layer="map")
    np.testing.assert_allclose(mx.base, x.sum(-1).max((1, 2)), rtol=1e-6)


def test_fills():
    images = jax.random.uniform(jax.random.key(0), (1, 9, 9, 3))
    np.testing.assert_allclose(
        fill_images(images, "mean", sigma=1.0)[0, 4, 4], images[0].mean((0, 1)), rtol=1e-6
    )
    const = jnp.full((1, 9, 9, 3), 0.3)
    np.testing.assert_allclose(fill_images(const, "blur", sigma=1.5), const, rtol=1e-6)


def test_errors(small):
    images, w = small
    with pytest.raises(ValueError, match=r"patch must fit in the image.*\(8, 12\), got \(9, 9\)"):
        occlusion(linear_apply, {"w": w}, images, 0, patch=9)
    with pytest.raises(ValueError, match=r"stride must be >= 1, got \(0, 0\)"):
        occlusion(linear_apply, {"w": w}, images, 0, stride=0)
    with pytest.raises(ValueError, match="fill must be one of"):
        occlusion(linear_apply, {"w": w}, images, 0, fill="black")
    with pytest.raises(ValueError, match=r"targets must lie in \[0, 4\)"):
        occlusion(linear_apply, {"w": w}, images, 4)
    with pytest.raises(ValueError, match="unknown layer 'conv1'"):
        occlusion(linear_apply, {"w": w}, images, 0, layer="conv1")
    with pytest.raises(ValueError, match="unit must be a"):
        occlusion(linear_apply, {"w": w}, images, 0, layer="map", unit=(8, 0))
    with pytest.raises(ValueError, match="head must name"):
        occlusion(linear_apply, {"w": w}, images, 0, head="font")


def test_localisation_scores_positive_part():
    heat = np.zeros((1, 4, 4), np.float32)
    heat[0, 1, 1], heat[0, 2, 2] = 3.0, -5.0  # the negative pixel must not count
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 1, 1] = True
    s = occlusion_localisation(heat, masks, tolerance=0)
    assert float(s["ink_mass"][0]) == pytest.approx(1.0)
    assert float(s["pointing"][0]) == 1.0
