import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scriptlab import model
from scriptlab.data import style_twins
from scriptlab.interpret import stats
from scriptlab.reliance import Reliance, reliance, style_reliance
from scriptlab.twins import Twins

N_CLASSES = 5
SLOTS = ("sans", "serif", "mono", "hand", "display", "heldout")


@dataclasses.dataclass(frozen=True)
class PixelModel:
    """A fake ApplyFn whose script logits are a one-hot of a code written into pixel (0, 0).

    Channel 0 of pixel (0, 0) holds 40 * style, channel 1 holds 40 * script: ``reads="style"``
    is a model that relies on style only, ``reads="script"`` one that never does.
    """

    reads: str

    def __call__(self, params, images, **_):
        channel = 0 if self.reads == "style" else 1
        code = jnp.round(images[:, 0, 0, channel] * 255 / 40).astype(jnp.int32)
        logits = 5.0 * jax.nn.one_hot(code % N_CLASSES, N_CLASSES) + params
        n = images.shape[0]
        return model.Outputs(logits, jnp.zeros((n, 2)), jnp.zeros((n, 3)), {})


def _coded_twins(n: int, seed: int = 0):
    """Synthetic crops and twins: crop i has script s_i and style t_i; slot k shows style k."""
    rng = np.random.default_rng(seed)
    script = rng.integers(0, N_CLASSES, n).astype(np.int32)
    style = rng.integers(0, 5, n).astype(np.int32)
    valid = rng.random((n, len(SLOTS))) < 0.8
    slot_style = np.broadcast_to(np.arange(len(SLOTS)) % 5, (n, len(SLOTS)))
    own = valid & (slot_style == style[:, None]) & (np.arange(len(SLOTS)) < 5)
    images = np.zeros((n, len(SLOTS), 8, 8, 3), np.uint8)
    images[..., 0, 0, 0] = 40 * slot_style
    images[..., 0, 0, 1] = 40 * script[:, None]
    images[~valid] = 0
    crops = np.zeros((n, 8, 8, 3), np.uint8)
    crops[:, 0, 0, 0], crops[:, 0, 0, 1] = 40 * style, 40 * script
    twins = Twins(
        images=images,
        masks=np.zeros((n, len(SLOTS), 8, 8), bool),
        valid=valid,
        own=own,
        style=np.where(valid, slot_style, -1).astype(np.int32),
        family=np.zeros((n, len(SLOTS)), np.int32),
        face=np.zeros((n, len(SLOTS)), np.int32),
        script=script,
        text=np.array(["w"] * n),
        index=np.arange(n),
        slots=SLOTS,
        families=("f",),
    )
    return crops, twins


def test_a_model_that_reads_only_style_flips_on_every_swap():
    crops, twins = _coded_twins(200)
    r = reliance(PixelModel("style"), jnp.zeros(N_CLASSES), crops, twins)
    swapped = twins.valid & ~twins.own
    # a swap to another style changes the code unless both styles are equal mod 5
    # (the held-out slot shows style 0): the prediction flips exactly when the style differs
    crop_style = crops[:, 0, 0, 0] // 40
    differs = twins.style != crop_style[:, None]
    assert np.array_equal(r.flip, swapped & differs)
    shares = style_reliance(r)
    for key in ("sans", "serif", "mono", "hand", "display", "any"):
        assert shares[key].share == 1.0, key
        assert shares[key].low == pytest.approx(1.0, abs=1e-6), key  # float32 resample means
    assert np.isnan(r.twin_logit[~twins.valid]).all()


def test_a_model_that_reads_only_the_script_never_flips():
    crops, twins = _coded_twins(200)
    r = reliance(PixelModel("script"), jnp.zeros(N_CLASSES), crops, twins)
    assert not r.flip.any()
    assert np.allclose(r.d_logit[twins.valid], 0) and np.allclose(r.d_prob[twins.valid], 0)
    shares = style_reliance(r)
    assert all(s.share == 0.0 and s.high == pytest.approx(0.0, abs=1e-6) for s in shares.values())
    assert shares["any"].n == int((twins.valid & ~twins.own)[:, :5].any(1).sum())


def _loop_reference(apply_fn, params, crops, twins):
    """Reliance one image at a time: the plain-loop reference."""

    forward = jax.jit(lambda x: apply_fn(params, x).script[0])  # one image at a time

    def read(image, script):
        logits = np.asarray(forward(jnp.asarray(image[None]) / 255.0))
        p = np.exp(logits - logits.max())
        p /= p.sum()
        return logits[script], p[script], int(logits.argmax())

    n, s = twins.valid.shape
    rows = [read(c, t) for c, t in zip(crops, twins.script, strict=True)]
    logit, prob, pred = (np.array(col) for col in zip(*rows, strict=True))
    tl, tp, tpred = np.full((n, s), np.nan), np.full((n, s), np.nan), np.full((n, s), -1)
    flip = np.zeros((n, s), bool)
    for i in range(n):
        for k in range(s):
            if twins.valid[i, k]:
                tl[i, k], tp[i, k], tpred[i, k] = read(twins.images[i, k], twins.script[i])
                flip[i, k] = not twins.own[i, k] and tpred[i, k] != pred[i]
    return logit, prob, pred, tl, tp, tpred, flip


def test_reliance_matches_a_plain_loop_on_coded_twins():
    crops, twins = _coded_twins(40, seed=2)
    params = jnp.asarray([0.3, -1.0, 2.0, 0.0, 4.5])  # logits that are not one-hot
    r = reliance(PixelModel("style"), params, crops, twins, batch_size=16)
    logit, prob, pred, tl, tp, tpred, flip = _loop_reference(
        PixelModel("style"), params, crops, twins
    )
    np.testing.assert_allclose(r.logit, logit, rtol=1e-6)
    np.testing.assert_allclose(r.prob, prob, rtol=1e-5)
    np.testing.assert_allclose(r.twin_logit, tl, rtol=1e-6)
    np.testing.assert_allclose(r.twin_prob, tp, rtol=1e-5)
    np.testing.assert_array_equal(r.pred, pred)
    np.testing.assert_array_equal(r.twin_pred, tpred)
    np.testing.assert_array_equal(r.flip, flip)


@pytest.mark.slow
def test_reliance_matches_a_plain_loop_on_real_twins(smoke):
    net = model.build(len(smoke.scripts), len(smoke.styles), seed=3)
    params, apply_fn = model.functional(net)
    index = np.array([0, 9, 33, 60])
    twins = style_twins(smoke, "conflict", index, cache=False)
    crops = smoke.conflict.images[index]
    r = reliance(apply_fn, params, crops, twins, batch_size=7)
    logit, prob, pred, tl, tp, tpred, flip = _loop_reference(apply_fn, params, crops, twins)
    np.testing.assert_allclose(r.logit, logit, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.prob, prob, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(r.pred, pred)
    np.testing.assert_allclose(r.twin_logit, tl, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(r.twin_prob, tp, rtol=1e-4, atol=1e-6)
    np.testing.assert_array_equal(r.twin_pred, tpred)
    np.testing.assert_array_equal(r.flip, flip)
    np.testing.assert_allclose(r.d_logit, tl - logit[:, None], rtol=1e-4, atol=1e-4)
    # the crop's own face is the crop: its reading is the crop's
    own = np.broadcast_to(r.logit[:, None], twins.own.shape)[twins.own]
    np.testing.assert_allclose(r.twin_logit[twins.own], own, rtol=1e-5, atol=1e-5)


def test_style_reliance_pools_seeds_and_matches_a_loop_bootstrap():
    crops, twins = _coded_twins(120, seed=1)
    style = reliance(PixelModel("style"), jnp.zeros(N_CLASSES), crops, twins)
    script = reliance(PixelModel("script"), jnp.zeros(N_CLASSES), crops, twins)
    pooled = style_reliance([style, script], n_resamples=500, seed=4)
    assert pooled["any"].share == pytest.approx(0.5)
    # the reference: per crop the mean over the two models; every crop resampled, the share
    # taken over the resampled crops that have a swapped twin, one resample at a time
    rows = style.swapped[:, :5].any(1)
    per_crop = (style.flip[:, :5].any(1) + script.flip[:, :5].any(1)) / 2
    idx = np.asarray(stats.resample_indices(len(per_crop), n_resamples=500, seed=4))
    means = [sum(per_crop[j] for j in row if rows[j]) / sum(rows[j] for j in row) for row in idx]
    low, high = np.quantile(means, [0.025, 0.975])
    assert pooled["any"].low == pytest.approx(low, abs=1e-6)
    assert pooled["any"].high == pytest.approx(high, abs=1e-6)
    assert pooled["any"].n == rows.sum()
    assert style_reliance([style, script], n_resamples=500, seed=4) == pooled  # deterministic


def test_reliance_bad_arguments():
    crops, twins = _coded_twins(10)
    fn, params = PixelModel("style"), jnp.zeros(N_CLASSES)
    with pytest.raises(ValueError, match="twins must be"):
        reliance(fn, params, crops, crops)
    with pytest.raises(ValueError, match="images must be the twins' crops"):
        reliance(fn, params, crops[:5], twins)
    big = twins._replace(script=twins.script + N_CLASSES)
    with pytest.raises(ValueError, match="script head has 5 classes"):
        reliance(fn, params, crops, big)
    r = reliance(fn, params, crops, twins)
    with pytest.raises(ValueError, match="same crops"):
        style_reliance([r, r._replace(slots=SLOTS[:-1] + ("x",))])
    with pytest.raises(ValueError, match="non-empty sequence"):
        style_reliance([])
    assert isinstance(r, Reliance)
