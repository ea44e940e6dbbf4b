"""Faithfulness curves (scriptlab.interpret.faithfulness) against closed forms and plain loops."""

import beartype
import jax
import jax.numpy as jnp
import jaxtyping
import numpy as np
import pytest

from scriptlab.interpret import faithfulness as F
from scriptlab.interpret._common import gaussian_blur
from scriptlab.interpret.saliency import gradient_x_input, make_baseline
from scriptlab.model import build, functional

from helpers import SMALL_SHAPE, linear_apply

NEIGHBOURS = {
    (-1, -1): 0.5, (-1, 0): 1.0, (-1, 1): 0.5, (0, -1): 1.0,
    (0, 1): 1.0, (1, -1): 0.5, (1, 0): 1.0, (1, 1): 0.5,
}  # fmt: skip


@pytest.fixture(scope="module")
def linear():
    """A linear model whose target logits only have positive pixel contributions."""
    images = jax.random.uniform(jax.random.key(0), (2, 6, 8, 3), minval=0.05, maxval=1.0)
    w = jax.random.uniform(jax.random.key(1), (3, 6, 8, 3), minval=0.1, maxval=1.0)
    return {"w": w}, images, np.array([0, 2])


@pytest.fixture(scope="module")
def net():
    params, apply_fn = functional(build(4, 3, seed=0, image_shape=SMALL_SHAPE))
    images = jax.random.uniform(jax.random.key(2), (2, *SMALL_SHAPE))
    maps = jax.random.normal(jax.random.key(3), (2, *SMALL_SHAPE[:2]))
    return params, apply_fn, images, np.array([1, 3]), maps


def _trapezoid(y, x):
    return float(np.sum((y[1:] + y[:-1]) / 2 * np.diff(x)))


def _contributions(params, images, targets):
    """Per-pixel logit contributions sum_c w_tc x_c: float64[N, H*W]."""
    w = np.asarray(params["w"], np.float64)[targets]
    return (w * np.asarray(images, np.float64)).sum(-1).reshape(len(targets), -1)


# --------------------------------------------------------------------------- (a) linear model
def test_linear_deletion_matches_the_hand_computed_curve(linear):
    params, images, targets = linear
    gxi = gradient_x_input(linear_apply, params, images, targets)  # exact: w_t * x, summed
    res = F.deletion_curve(linear_apply, params, images, targets, gxi, steps=7, output="logit")
    p = 6 * 8
    counts = np.arange(7) * p // 6
    np.testing.assert_allclose(res.fractions, counts / p)
    for i, contrib in enumerate(_contributions(params, images, targets)):
        top = np.concatenate([[0.0], np.cumsum(np.sort(contrib)[::-1])])
        expected = contrib.sum() - top[counts]
        np.testing.assert_allclose(res.scores[i], expected, rtol=1e-5, atol=1e-5)
        assert float(res.auc[i]) == pytest.approx(_trapezoid(expected, counts / p), rel=1e-5)


def test_linear_deletion_falls_monotonically_and_fastest(linear):
    params, images, targets = linear
    gxi = gradient_x_input(linear_apply, params, images, targets)
    kw = dict(steps=13, output="logit")
    best = F.deletion_curve(linear_apply, params, images, targets, gxi, **kw)
    assert np.all(np.diff(np.asarray(best.scores), axis=1) <= 1e-5)
    np.testing.assert_allclose(best.scores[:, -1], 0.0, atol=1e-5)  # black baseline: logit 0
    for seed in range(4):
        other = F.random_maps(images, seed=seed)
        res = F.deletion_curve(linear_apply, params, images, targets, other, **kw)
        assert np.all(np.asarray(res.scores) >= np.asarray(best.scores) - 1e-4)
        assert np.all(np.asarray(res.auc) > np.asarray(best.auc))


def test_linear_insertion_rises_fastest_and_matches_closed_form(linear):
    params, images, targets = linear
    gxi = gradient_x_input(linear_apply, params, images, targets)
    kw = dict(steps=9, output="logit", baseline="black")
    best = F.insertion_curve(linear_apply, params, images, targets, gxi, **kw)
    counts = np.arange(9) * 48 // 8
    for i, contrib in enumerate(_contributions(params, images, targets)):
        top = np.concatenate([[0.0], np.cumsum(np.sort(contrib)[::-1])])
        np.testing.assert_allclose(best.scores[i], top[counts], rtol=1e-5, atol=1e-5)
    worst = F.insertion_curve(linear_apply, params, images, targets, -gxi, **kw)
    assert np.all(np.asarray(best.auc) > np.asarray(worst.auc))


def test_maps_with_channels_are_reduced_by_the_stated_rule(linear):
    params, images, targets = linear
    full = gradient_x_input(linear_apply, params, images, targets, reduce="none")
    for rule, summed in [("sum", full.sum(-1)), ("max_abs", jnp.abs(full).max(-1))]:
        a = F.deletion_curve(linear_apply, params, images, targets, full, reduce=rule, steps=5)
        b = F.deletion_curve(linear_apply, params, images, targets, summed, steps=5)
        np.testing.assert_array_equal(a.scores, b.scores)


# --------------------------------------------------------------------------- (b) plain loops
def _loop_curve(single, images, targets, maps, fills, steps, insert=False, morf=True):
    """Plain Python loops over images and steps: stable sort, then one forward per step."""
    images, fills, maps = np.asarray(images), np.asarray(fills), np.asarray(maps)
    n, h, w, _ = images.shape
    out = np.zeros((n, steps), np.float32)
    for i in range(n):
        flat = maps[i].ravel()
        order = np.argsort(-flat if morf else flat, kind="stable")
        for k in range(steps):
            changed = np.zeros(h * w, bool)
            changed[order[: k * h * w // (steps - 1)]] = True
            changed = changed.reshape(h, w, 1)
            x = np.where(changed, images[i], fills[i]) if insert else None
            x = np.where(changed, fills[i], images[i]) if not insert else x
            out[i, k] = single(x, int(targets[i]))
    return out


def test_deletion_and_insertion_match_a_plain_loop(net):
    params, apply_fn, images, targets, maps = net
    forward = jax.jit(lambda x: jax.nn.softmax(apply_fn(params, x[None]).script[0]))

    def single(x, t):
        return float(forward(x)[t])

    black = np.zeros_like(np.asarray(images))
    blur = make_baseline(images, "blur", blur_sigma=4.0)
    dele = F.deletion_curve(apply_fn, params, images, targets, maps, steps=6, batch_size=5)
    ins = F.insertion_curve(apply_fn, params, images, targets, maps, steps=6, batch_size=5)
    ref_del = _loop_curve(single, images, targets, maps, black, 6)
    ref_ins = _loop_curve(single, images, targets, maps, blur, 6, insert=True)
    np.testing.assert_allclose(dele.scores, ref_del, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(ins.scores, ref_ins, rtol=1e-4, atol=1e-6)
    frac = np.arange(6) * 128 // 5 / 128
    for i in range(2):
        assert float(dele.auc[i]) == pytest.approx(_trapezoid(ref_del[i], frac), rel=1e-4)
        assert float(ins.auc[i]) == pytest.approx(_trapezoid(ref_ins[i], frac), rel=1e-4)


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_matches_a_plain_loop_of_imputations(net, order):
    params, apply_fn, images, targets, maps = net
    forward = jax.jit(lambda x: jax.nn.softmax(apply_fn(params, x[None]).script[0]))
    res = F.road_curve(
        apply_fn, params, images, targets, maps, order=order, steps=5, noise=0.0, batch_size=3
    )
    x, m = np.asarray(images), np.asarray(maps)
    for i in range(2):
        order_i = np.argsort(-m[i].ravel() if order == "morf" else m[i].ravel(), kind="stable")
        for k in range(5):
            removed = np.zeros(128, bool)
            removed[order_i[: k * 128 // 4]] = True
            filled = F.road_impute(x[i : i + 1], removed.reshape(1, 8, 16), noise=0.0)
            expected = float(forward(filled[0])[targets[i]])
            assert float(res.scores[i, k]) == pytest.approx(expected, rel=1e-4, abs=1e-6)
            assert bool(res.correct[i, k]) == (int(forward(filled[0]).argmax()) == targets[i])


# --------------------------------------------------------------------------- (c) imputation
def _dense_imputation(image, removed):
    """The same linear system built entry by entry and solved densely in float64 (numpy)."""
    h, w, c = image.shape
    idx = np.flatnonzero(removed)
    var = -np.ones(h * w, int)
    var[idx] = np.arange(idx.size)
    a, b = np.zeros((idx.size, idx.size)), np.zeros((idx.size, c))
    for e, p in enumerate(idx):
        r, col = divmod(p, w)
        for (dy, dx), weight in NEIGHBOURS.items():
            rr, cc = r + dy, col + dx
            if 0 <= rr < h and 0 <= cc < w:
                a[e, e] += weight
                if removed[rr, cc]:
                    a[e, var[rr * w + cc]] -= weight
                else:
                    b[e] += weight * image[rr, cc]
    out = image.reshape(-1, c).astype(np.float64)
    out[idx] = np.linalg.solve(a, b)
    return out.reshape(h, w, c)


def test_imputation_reproduces_a_linear_ramp_inside_the_image():
    """A linear function is harmonic for the 8-neighbour mean, so an interior hole is refilled exactly."""
    yy, xx = np.mgrid[0:16, 0:24].astype(np.float32)
    ramp = np.stack([0.1 + 0.03 * xx, 0.05 + 0.05 * yy, 0.2 + 0.01 * xx + 0.02 * yy], -1)
    hole = (yy > 0) & (yy < 15) & (xx > 0) & (xx < 23)  # all but the frame
    scattered = np.random.default_rng(0).random((16, 24)) < 0.6
    removed = np.stack([hole, scattered & hole])
    out = F.road_impute(np.stack([ramp, ramp]), removed, noise=0.0)
    np.testing.assert_allclose(out, np.stack([ramp, ramp]), atol=2e-5)


def test_imputation_agrees_with_a_dense_solve():
    rng = np.random.default_rng(1)
    image = rng.random((12, 20, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:12, 0:20]
    masks = np.stack(
        [
            rng.random((12, 20)) < 0.8,  # scattered, touching the border
            xx < 18,  # one wide hole with two known columns
            ~((yy == 5) & (xx == 7)),  # everything but one pixel
        ]
    )
    out = F.road_impute(np.stack([image] * 3), masks, noise=0.0)
    for i in range(3):
        ref = np.clip(_dense_imputation(image.astype(np.float64), masks[i]), 0.0, 1.0)
        np.testing.assert_allclose(out[i], ref, atol=2e-4)


def test_imputation_has_converged_at_the_default_stopping_rule():
    """On a 32 x 64 crop with 95 % removed in one smooth blob (a slow case for CG), the
    default stopping rule (relative residual 1e-5, at most ROAD_ITERATIONS steps) agrees
    with 512 full steps, and every removed pixel is its neighbours' weighted mean."""
    rng = np.random.default_rng(2)
    image = rng.random((1, 32, 64, 3)).astype(np.float32)
    blob = np.asarray(F.random_maps(image, seed=0))
    blob = np.asarray(gaussian_blur(jnp.asarray(blob)[..., None], 6.0))[..., 0]
    removed = blob > np.quantile(blob, 0.05)
    a = F.road_impute(image, removed, noise=0.0)
    b = F.road_impute(image, removed, noise=0.0, tol=0.0, iterations=512)
    np.testing.assert_allclose(a, b, atol=1e-4)
    early = F.road_impute(image, removed, noise=0.0, tol=0.0, iterations=20)
    assert np.abs(np.asarray(early) - np.asarray(b)).max() > 1e-2  # 20 steps are not enough
    u = np.asarray(a[0], np.float64)
    pad = np.pad(u, ((1, 1), (1, 1), (0, 0)))
    ones = np.pad(np.ones((32, 64, 1)), ((1, 1), (1, 1), (0, 0)))
    num = sum(wt * pad[1 + dy : 33 + dy, 1 + dx : 65 + dx] for (dy, dx), wt in NEIGHBOURS.items())
    den = sum(wt * ones[1 + dy : 33 + dy, 1 + dx : 65 + dx] for (dy, dx), wt in NEIGHBOURS.items())
    residual = np.abs(u - num / den)[removed[0]]
    assert residual.max() < 1e-4


def test_imputation_noise_and_edge_cases():
    image = np.full((1, 8, 8, 3), 0.4, np.float32)
    removed = np.zeros((1, 8, 8), bool)
    removed[0, 2:6, 2:6] = True
    noisy = np.asarray(F.road_impute(image, removed, noise=0.05, seed=3))
    np.testing.assert_array_equal(noisy[~removed], image[~removed])  # known pixels untouched
    assert np.std(noisy[removed] - 0.4) == pytest.approx(0.05, rel=0.3)
    np.testing.assert_array_equal(noisy, F.road_impute(image, removed, noise=0.05, seed=3))
    assert not np.array_equal(noisy, F.road_impute(image, removed, noise=0.05, seed=4))
    everything = F.road_impute(image, np.ones((1, 8, 8), bool), noise=0.0)
    np.testing.assert_allclose(everything, 0.5)  # no boundary: grey
    nothing = F.road_impute(image, np.zeros((1, 8, 8), bool), noise=0.3)
    np.testing.assert_array_equal(nothing, image)


# --------------------------------------------------------------------------- (d) orders
def test_morf_and_lerf_on_the_linear_model(linear):
    params, images, targets = linear
    gxi = gradient_x_input(linear_apply, params, images, targets)
    kw = dict(steps=9, output="logit", noise=0.0)
    morf = F.road_curve(linear_apply, params, images, targets, gxi, order="morf", **kw)
    lerf = F.road_curve(linear_apply, params, images, targets, gxi, order="lerf", **kw)
    chance = F.road_curve(linear_apply, params, images, targets, F.random_maps(images), **kw)
    assert np.all(np.asarray(morf.auc) < np.asarray(chance.auc))
    assert np.all(np.asarray(chance.auc) < np.asarray(lerf.auc))
    np.testing.assert_allclose(morf.scores[:, 0], lerf.scores[:, 0])  # both start clean
    np.testing.assert_allclose(morf.scores[:, -1], lerf.scores[:, -1])  # and end grey
    flipped = F.road_curve(linear_apply, params, images, targets, -gxi, order="morf", **kw)
    np.testing.assert_array_equal(flipped.scores, lerf.scores)  # no ties: LeRF(m) = MoRF(-m)


def test_road_logit_is_the_linear_model_of_the_imputed_image(linear):
    params, images, targets = linear
    maps = F.random_maps(images, seed=5)
    res = F.road_curve(
        linear_apply, params, images, targets, maps, order="lerf", steps=4, output="logit", noise=0
    )
    ranks = np.asarray(F.pixel_ranks(maps, order="lerf"))
    for k, n_k in enumerate(np.arange(4) * 48 // 3):
        filled = F.road_impute(images, ranks < n_k, noise=0.0)
        logits = np.einsum("nhwc,nhwc->n", filled, np.asarray(params["w"])[targets])
        np.testing.assert_allclose(res.scores[:, k], logits, rtol=1e-5)


# --------------------------------------------------------------------------- (e) contracts
def test_ties_keep_raster_order_in_both_directions():
    maps = np.array([[[0.0, 1.0, 1.0], [-0.0, 1.0, 2.0]]], np.float32)
    np.testing.assert_array_equal(F.pixel_ranks(maps, order="morf"), [[[4, 1, 2], [5, 3, 0]]])
    np.testing.assert_array_equal(F.pixel_ranks(maps, order="lerf"), [[[0, 2, 3], [1, 4, 5]]])


def test_pixel_counts_schedule():
    np.testing.assert_array_equal(F.pixel_counts(10, 4), [0, 3, 6, 10])
    np.testing.assert_array_equal(F.pixel_counts(2048, 20)[[0, 1, -1]], [0, 107, 2048])


def test_shapes_determinism_and_one_compilation(net):
    params, apply_fn, images, targets, maps = net
    other_params, other_fn = functional(build(4, 3, seed=1, image_shape=SMALL_SHAPE))
    before = F._curve._cache_size()
    a = F.road_curve(apply_fn, params, images, targets, maps, steps=4, seed=7, batch_size=3)
    b = F.road_curve(apply_fn, params, images, targets, maps, steps=4, seed=7, batch_size=3)
    c = F.road_curve(other_fn, other_params, images, targets, maps, steps=4, seed=7, batch_size=3)
    assert F._curve._cache_size() == before + 1  # one program for both models
    assert a.fractions.shape == (4,) and a.scores.shape == a.correct.shape == (2, 4)
    assert a.auc.shape == a.accuracy_auc.shape == (2,) and a.correct.dtype == jnp.bool_
    for x, y in zip(a, b, strict=True):
        np.testing.assert_array_equal(x, y)
    assert not np.allclose(a.scores, c.scores)
    d = F.road_curve(apply_fn, params, images, targets, maps, steps=4, seed=8, batch_size=3)
    assert not np.array_equal(a.scores[:, 1:-1], d.scores[:, 1:-1])  # the noise is seeded


def test_reference_maps():
    images = jnp.zeros((3, 4, 5, 3))
    r = F.random_maps(images, seed=1)
    assert r.shape == (3, 4, 5)
    np.testing.assert_array_equal(r[:2], F.random_maps(images[:2], seed=1))  # batch-independent
    assert not np.array_equal(r, F.random_maps(images, seed=2))
    masks = np.random.default_rng(0).random((3, 4, 5)) < 0.3
    ink = np.asarray(F.ink_maps(masks))
    ranks = np.asarray(F.pixel_ranks(ink))
    for i in range(3):
        assert ranks[i][masks[i]].max() < ranks[i][~masks[i]].min()  # ink first


def test_faithfulness_rows(linear):
    params, images, targets = linear
    masks = np.asarray(images).mean(-1) < 0.5
    maps = {
        "random": F.random_maps(images),
        "ink": F.ink_maps(masks),
        "zeros": jnp.zeros((2, 6, 8)),
    }
    rows = F.faithfulness_rows(linear_apply, params, images, targets, maps, steps=3, model="m")
    assert [r["method"] for r in rows] == ["random", "ink", "zeros"]
    assert all(r["model"] == "m" for r in rows)
    curve = F.road_curve(linear_apply, params, images, targets, maps["ink"], order="lerf", steps=3)
    assert rows[1]["road_lerf"] == pytest.approx(float(curve.auc.mean()))
    assert rows[0]["road_gap"] == pytest.approx(rows[0]["road_lerf"] - rows[0]["road_morf"])


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (
            dict(maps=np.zeros((2, 6, 7))),
            r"maps must be float32\[N, H, W\].*\[2, 6, 8\].*\(2, 6, 7\)",
        ),
        (dict(maps=np.full((2, 6, 8), np.nan)), "maps contains NaN"),
        (dict(steps=1), "steps must be an integer >= 2, got 1"),
        (dict(steps=2.5), "steps must be an integer >= 2, got 2.5"),
        (dict(reduce="none"), r"reduce must be one of \('sum'"),
        (dict(output="prob"), "output must be one of"),
        (dict(targets=np.array([0, 3])), r"targets must lie in \[0, 3\), got values in \[0, 3\]"),
        (dict(head="font"), "head must name"),
        (dict(batch_size=0), "batch_size must be an integer >= 1, got 0"),
        (dict(baseline="pink"), "baseline must be one of"),
        (dict(baseline=np.full((6, 8, 3), 2.0)), r"baseline must lie in \[0, 1\]"),
        (dict(images=np.zeros((2, 6, 8, 3), np.int32)), "images must be float"),
    ],
)
def test_bad_input_is_a_clear_error(linear, kwargs, match):
    params, images, targets = linear
    call = dict(
        apply_fn=linear_apply, params=params, images=images, targets=targets,
        maps=np.zeros((2, 6, 8)),
    )  # fmt: skip
    call.update(kwargs)
    before = F._curve._cache_size()
    with pytest.raises(ValueError, match=match):
        F.deletion_curve(**call)
    assert F._curve._cache_size() == before  # rejected before tracing


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        (dict(order="most"), r"order must be one of \('morf', 'lerf'\), got 'most'"),
        (dict(noise=-0.1), "noise must be a finite number >= 0.0, got -0.1"),
        (dict(seed=-1), "seed must be an integer >= 0, got -1"),
        (dict(iterations=0), "iterations must be an integer >= 1, got 0"),
    ],
)
def test_bad_road_input_is_a_clear_error(linear, kwargs, match):
    params, images, targets = linear
    with pytest.raises(ValueError, match=match):
        F.road_curve(linear_apply, params, images, targets, np.zeros((2, 6, 8)), **kwargs)


def test_bad_masks_are_a_clear_error():
    images = np.zeros((2, 6, 8, 3), np.float32)
    with pytest.raises(ValueError, match=r"removed must be bool\[2, 6, 8\], got dtype float32"):
        F.road_impute(images, np.zeros((2, 6, 8), np.float32))
    with pytest.raises(ValueError, match=r"removed must be bool\[2, 6, 8\], got shape \(2, 6\)"):
        F.road_impute(images, np.zeros((2, 6), bool))
    with pytest.raises(ValueError, match=r"masks must be bool\[N, H, W\], got shape \(6, 8\)"):
        F.ink_maps(np.zeros((6, 8), bool))
    with pytest.raises(ValueError, match="maps must be a non-empty dict"):
        F.faithfulness_rows(linear_apply, {}, images, 0, {})


def test_public_functions_match_their_jaxtyping_shapes(linear):
    params, images, targets = linear
    maps = np.zeros((2, 6, 8), np.float32)
    checked = jaxtyping.jaxtyped(typechecker=beartype.beartype)
    checked(F.deletion_curve)(linear_apply, params, images, targets, maps, steps=3)
    checked(F.road_impute)(images, np.zeros((2, 6, 8), bool), iterations=2)
    checked(F.pixel_ranks)(maps)
    checked(F.random_maps)(images)
    checked(F.ink_maps)(np.zeros((2, 6, 8), bool))
