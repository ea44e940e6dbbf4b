"""Detection measures (Adebayo et al. 2022) on hand-built maps, the per-crop AUC against
sklearn and a plain-loop bootstrap, and the style readout on a fake classifier."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from scriptlab.interpret import detection as D
from scriptlab.interpret import stats as S


def test_map_distance_is_zero_for_equal_maps_and_matches_scipy():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(3, 9, 10)).astype(np.float32)
    b = (a + rng.normal(size=a.shape)).astype(np.float32)
    for measure in D.MEASURES:
        np.testing.assert_allclose(D.map_distance(a, a, measure=measure), 0.0, atol=1e-5)
    ref = [1 - spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(3)]
    np.testing.assert_allclose(D.map_distance(a, b, measure="spearman"), ref, rtol=1e-4)
    ref = [1 - spearmanr(np.abs(a[i]).ravel(), np.abs(b[i]).ravel()).statistic for i in range(3)]
    np.testing.assert_allclose(D.map_distance(a, b, measure="spearman_abs"), ref, rtol=1e-4)
    # SSIM compares |maps| scaled to [0, 1]: a map and 3x its negative are the same picture
    np.testing.assert_allclose(D.map_distance(a, -3 * a), 0.0, atol=1e-5)
    # a reversed ranking is the largest Spearman distance
    np.testing.assert_allclose(D.map_distance(a, -a, measure="spearman"), 2.0, rtol=1e-5)


def test_kssd_ccm_fam_are_the_documented_comparisons():
    # relying model: mass on the left half; reference: on the right; twins move nothing
    left = np.zeros((4, 8, 8), np.float32)
    left[:, :, :4] = np.arange(32, dtype=np.float32).reshape(8, 4) + 1
    right = left[:, :, ::-1].copy()
    k = D.kssd(left, right, measure="spearman_abs")
    np.testing.assert_allclose(k, D.map_distance(left, right, measure="spearman_abs"))
    assert float(k.min()) > 1.0  # opposite halves: anti-correlated ranks
    np.testing.assert_allclose(D.ccm(right, right), 0.0, atol=1e-5)
    np.testing.assert_allclose(D.fam(right, right * 2.0), 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="measure must be one of"):
        D.kssd(left, right, measure="l2")
    with pytest.raises(ValueError, match=r"b must have shape \[4, 8, 8\]"):
        D.fam(left, right[:2])


def test_map_statistics_closed_forms():
    maps = np.zeros((3, 4, 5), np.float32)
    maps[0] = 1.0  # uniform: entropy 1
    maps[1, 2, 3] = -7.0  # one pixel: entropy 0
    masks = np.zeros((3, 4, 5), bool)
    masks[:, :2] = True  # the top two rows are ink
    np.testing.assert_allclose(
        D.map_statistic(maps, statistic="entropy"), [1.0, 0.0, 1.0], atol=1e-6
    )
    # uniform map: 10 of 20 pixels off ink; the single pixel (row 2) is off ink; zeros: chance
    np.testing.assert_allclose(D.map_statistic(maps, masks=masks), [0.5, 1.0, 0.5], atol=1e-6)
    # two equal pixels: entropy log 2 / log 20
    two = np.zeros((1, 4, 5), np.float32)
    two[0, 0, :2] = 3.0
    np.testing.assert_allclose(
        D.map_statistic(two, statistic="entropy"), [np.log(2) / np.log(20)], rtol=1e-5
    )
    with pytest.raises(ValueError, match="needs masks="):
        D.map_statistic(maps)


def test_detection_auc_matches_sklearn_and_plain_loop_bootstrap():
    rng = np.random.default_rng(1)
    flips = rng.uniform(size=80) < 0.3
    maps = rng.uniform(size=(80, 6, 6)).astype(np.float32)
    maps[flips, 0, 0] += 4.0 * rng.uniform(size=flips.sum())  # flipping crops: peakier maps
    est = D.detection_auc(flips, maps=maps, statistic="entropy", n_resamples=200, seed=3)
    h = np.asarray(D.map_statistic(maps, statistic="entropy"))
    np.testing.assert_allclose(est.value, roc_auc_score(flips, h), rtol=1e-6)
    assert float(est.value) < 0.5  # peakier maps have lower entropy
    idx = np.asarray(S.resample_indices(80, n_resamples=200, seed=3, strata=flips))
    ref = np.quantile([roc_auc_score(flips[i], h[i]) for i in idx], [0.025, 0.975])
    np.testing.assert_allclose([est.low, est.high], ref, rtol=1e-5)
    scores = rng.normal(size=80)
    np.testing.assert_allclose(
        D.detection_auc(flips.astype(int), scores=scores).value,
        roc_auc_score(flips, scores),
        rtol=1e-6,
    )
    with pytest.raises(ValueError, match="exactly one of scores="):
        D.detection_auc(flips)


class StyleOutputs(NamedTuple):
    script: jax.Array
    font: jax.Array
    embedding: jax.Array
    activations: dict


def mean_colour_reader(params, images, relu=jax.nn.relu, perturb=None):
    """A fake style classifier: font logits = mean colour per channel times a scale."""
    colour = images.mean((1, 2))
    return StyleOutputs(colour[:, :2], params["scale"] * colour, colour, {})


class LinearProbe(NamedTuple):
    weights: jax.Array

    def logits(self, features):
        return features @ self.weights


def test_style_readout_reads_the_style_head_or_a_probe():
    images = jnp.stack([jnp.full((4, 4, 3), 0.2).at[..., 1].set(0.9), jnp.full((4, 4, 3), 0.5)])
    params = {"scale": jnp.float32(5.0)}
    probs = D.style_readout(mean_colour_reader, params, images)
    expected = jax.nn.softmax(5.0 * images.mean((1, 2)), -1)
    np.testing.assert_allclose(probs, expected, rtol=1e-5)
    np.testing.assert_allclose(probs.sum(-1), 1.0, rtol=1e-6)
    assert int(probs[0].argmax()) == 1 and np.allclose(probs[1], 1 / 3, rtol=1e-5)
    u8 = (np.asarray(images) * 255).round().astype(np.uint8)
    np.testing.assert_allclose(D.style_readout(mean_colour_reader, params, u8), probs, atol=1e-3)
    w = jnp.array([[1.0, -1.0], [2.0, 0.0], [0.0, 3.0]])
    np.testing.assert_allclose(
        D.style_readout(mean_colour_reader, params, images, probe=LinearProbe(w)),
        jax.nn.softmax(images.mean((1, 2)) @ w, -1),
        rtol=1e-5,
    )
    with pytest.raises(ValueError, match="head='style' is not an output"):
        D.style_readout(mean_colour_reader, params, images, head="style")
    with pytest.raises(ValueError, match="probe must have a logits"):
        D.style_readout(mean_colour_reader, params, images, probe=w)
