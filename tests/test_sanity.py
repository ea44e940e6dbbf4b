"""Sanity-check similarity measures against scipy / plain loops; randomisation
cascade on parameter pytrees; localisation scores on hand-built maps."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.stats import spearmanr

from scriptlab.interpret import localisation as L
from scriptlab.interpret import sanity as Z

from helpers import SMALL_SHAPE, scriptnet


def test_spearman_matches_scipy_with_and_without_ties():
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 6, 7)).astype(np.float32)
    b = (a + rng.normal(size=a.shape)).astype(np.float32)
    b[1] = np.round(b[1])  # many ties
    a[2] = np.maximum(a[2], 0)  # ReLU-like zeros, as in Grad-CAM maps
    ours = np.asarray(Z.spearman(jnp.asarray(a), jnp.asarray(b)))
    ref = [spearmanr(a[i].ravel(), b[i].ravel()).statistic for i in range(5)]
    np.testing.assert_allclose(ours, ref, rtol=1e-4, atol=1e-5)


def test_spearman_ranks_ties_by_their_average():
    # [3, 1, 3, 2] ranks [3.5, 1, 3.5, 2] (average method, as scipy): r = -1 / sqrt(4.5 * 5)
    a = jnp.array([[3.0, 1.0, 3.0, 2.0]])
    b = jnp.array([[1.0, 2.0, 3.0, 4.0]])
    np.testing.assert_allclose(Z.spearman(a, b), [-1 / np.sqrt(4.5 * 5)], rtol=1e-6)


def ssim_loop(a, b, win=7):
    """Plain-loop SSIM over valid windows (reference for the vectorised one)."""
    c1, c2, n = 0.01**2, 0.03**2, win * win
    vals = []
    for i in range(a.shape[0] - win + 1):
        for j in range(a.shape[1] - win + 1):
            pa, pb = a[i : i + win, j : j + win].ravel(), b[i : i + win, j : j + win].ravel()
            ua, ub = pa.mean(), pb.mean()
            va, vb = pa.var(ddof=1), pb.var(ddof=1)
            cab = ((pa - ua) * (pb - ub)).sum() / (n - 1)
            vals.append(
                ((2 * ua * ub + c1) * (2 * cab + c2)) / ((ua**2 + ub**2 + c1) * (va + vb + c2))
            )
    return np.mean(vals)


def test_ssim_matches_plain_loop_and_identity():
    rng = np.random.default_rng(1)
    a = rng.uniform(size=(2, 12, 15)).astype(np.float32)
    b = np.clip(a + 0.2 * rng.normal(size=a.shape), 0, 1).astype(np.float32)
    ours = np.asarray(Z.ssim(jnp.asarray(a), jnp.asarray(b)))
    np.testing.assert_allclose(ours, [ssim_loop(a[i].astype(np.float64), b[i].astype(np.float64)) for i in range(2)],
                               rtol=1e-3)  # fmt: skip
    np.testing.assert_allclose(Z.ssim(jnp.asarray(a), jnp.asarray(a)), 1.0, rtol=1e-5)
    assert float(Z.ssim(jnp.asarray(a[:1]), jnp.asarray(1 - a[:1]))[0]) < 0


def test_cascade_replaces_exactly_the_named_layers_cumulatively():
    _, params, _ = scriptnet(SMALL_SHAPE)
    _, fresh, _ = scriptnet(SMALL_SHAPE, seed=1)
    stages = Z.cascading_randomisation(params, fresh)
    assert [s for s, _ in stages] == ["original", "heads", "dense", "conv3", "conv2", "conv1"]
    _, at_conv3 = stages[3]
    for layer, expect_fresh in [("script_head", True), ("font_head", True), ("dense", True), ("conv3", True),
                                ("conv2", False), ("conv1", False)]:  # fmt: skip
        source = fresh if expect_fresh else params
        np.testing.assert_array_equal(
            at_conv3[layer]["kernel"].value, source[layer]["kernel"].value
        )
    with pytest.raises(ValueError, match=r"layers \['conv7'\] are not in params"):
        Z.randomise_layers(params, fresh, ("conv7",))


def test_cascading_check_rows_and_identity_stage():
    _, model_params, apply_fn = scriptnet(SMALL_SHAPE)
    images = jax.random.uniform(jax.random.key(0), (3, 8, 16, 3))
    # "re-initialising" with the same weights must leave every map unchanged
    same = Z.cascading_check(apply_fn, model_params, model_params, images, 1, methods=("gradient", "guided_backprop"),
                             cascade=(("heads", ("script_head", "font_head")), ("dense", ("dense",))))  # fmt: skip
    assert len(same["rows"]) == 4 and same["maps"]["gradient"].shape == (3, 3, 8, 16)
    for row in same["rows"]:
        assert row["spearman_abs"] > 0.999 and row["ssim"] > 0.999, row
    _, fresh, _ = scriptnet(SMALL_SHAPE, seed=1)
    changed = Z.cascading_check(apply_fn, model_params, fresh, images, 1, methods=("gradient",))
    assert changed["stages"] == ["heads", "dense", "conv3", "conv2", "conv1"]
    assert changed["rows"][-1]["spearman_abs"] < 0.9
    v = Z.verdicts(changed["rows"], [{"method": "gradient", "spearman_abs": 0.9}])
    assert v[0]["method"] == "gradient" and v[0]["data_pass"] is False and v[0]["passes"] is False


def test_localisation_scores_hand_built():
    masks = np.zeros((3, 4, 5), bool)
    masks[:, 1, 1:3] = True  # 2 ink pixels of 20
    maps = np.zeros((3, 4, 5), np.float32)
    maps[0, 1, 1] = 3.0  # all mass on ink, peak on ink
    maps[0, 3, 4] = -1.0  # sign ignored
    maps[1, 3, 4] = 1.0  # peak far from ink
    maps[2, 2, 3] = 1.0  # peak diagonal to ink: a hit with tolerance 1
    s0 = L.localisation_scores(maps, masks, tolerance=0)
    np.testing.assert_allclose(s0["ink_mass"], [0.75, 0.0, 0.0])
    np.testing.assert_allclose(s0["ink_fraction"], [0.1] * 3)
    np.testing.assert_array_equal(s0["pointing"], [1.0, 0.0, 0.0])
    s1 = L.localisation_scores(maps, masks, tolerance=1)
    np.testing.assert_array_equal(s1["pointing"], [1.0, 0.0, 1.0])
    np.testing.assert_allclose(s1["pointing_chance"], [12 / 20] * 3)  # 3x4 block around the ink
    # an all-zero map sits at chance, a ValueError names bad shapes
    np.testing.assert_allclose(
        L.localisation_scores(np.zeros((1, 4, 5)), masks[:1])["ink_mass"], [0.1]
    )
    with pytest.raises(ValueError, match="masks must be"):
        L.localisation_scores(maps, masks[:, :3])
    with pytest.raises(ValueError, match="tolerance"):
        L.localisation_scores(maps, masks, tolerance=-1)


def test_localisation_table_rows():
    _, params, apply_fn = scriptnet(SMALL_SHAPE)
    images = jax.random.uniform(jax.random.key(0), (2, 8, 16, 3))
    masks = np.zeros((2, 8, 16), bool)
    masks[:, 2:6, 3:12] = True
    rows = L.localisation_table(
        apply_fn, params, images, masks, 0, methods=("gradient", "grad_cam"), model="m"
    )
    assert [r["method"] for r in rows] == ["gradient", "grad_cam"]
    for r in rows:
        assert r["model"] == "m" and 0 <= r["ink_mass"] <= 1
        np.testing.assert_allclose(r["chance"], 36 / 128)
        np.testing.assert_allclose(r["lift"], r["ink_mass"] / r["chance"])


def test_localisation_rows_against_plain_numpy():
    rng = np.random.default_rng(0)
    masks = rng.random((3, 6, 7)) < 0.3
    maps = {"a": rng.normal(size=(3, 6, 7)).astype(np.float32), "b": np.zeros((3, 6, 7))}
    rows = L.localisation_rows(maps, masks, tolerance=0, model="m")
    assert [(r["model"], r["method"]) for r in rows] == [("m", "a"), ("m", "b")]
    mag = np.abs(maps["a"]).reshape(3, -1)
    ink = masks.reshape(3, -1)
    mass = np.mean([(mag[i] * ink[i]).sum() / mag[i].sum() for i in range(3)])
    np.testing.assert_allclose(rows[0]["ink_mass"], mass, rtol=1e-5)
    np.testing.assert_allclose(rows[0]["pointing"], np.mean(ink[np.arange(3), mag.argmax(1)]))
    # an all-zero map scores exactly chance, and points nowhere
    np.testing.assert_allclose(rows[1]["lift"], 1.0, rtol=1e-6)
    assert rows[1]["pointing"] == 0.0
    with pytest.raises(ValueError, match="maps must be a non-empty dict"):
        L.localisation_rows(maps["a"], masks)
