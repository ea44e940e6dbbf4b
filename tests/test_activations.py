"""Activation maps, sparsity, dead filters (scriptlab.interpret.activations) and filters (filters.py)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scriptlab.interpret import activations as A
from scriptlab.interpret import filters as F
from scriptlab.model import LAYERS, build, functional

from helpers import scriptnet


@pytest.fixture(scope="module")
def net():
    model, params, apply_fn = scriptnet()
    images = jax.random.uniform(jax.random.key(1), (10, 32, 64, 3))
    return model, params, apply_fn, images


def test_activation_maps_every_layer_shape_and_values(net):
    _, params, apply_fn, images = net
    maps = A.activation_maps(
        apply_fn, params, images, batch_size=4
    )  # 10 = 4 + 4 + 2: a ragged last chunk
    expected = {
        "conv1": (16, 32, 16),
        "conv2": (16, 32, 32),
        "pool2": (8, 16, 32),
        "conv3": (8, 16, 64),
        "pool3": (4, 8, 64),
        "dense": (128,),
    }
    assert set(maps) == set(LAYERS)
    full = apply_fn(params, images).activations
    for name, shape in expected.items():
        assert maps[name].shape == (10, *shape)
        np.testing.assert_allclose(maps[name], full[name], rtol=1e-5, atol=1e-5)


def test_activation_maps_subset_and_bad_layer(net):
    _, params, apply_fn, images = net
    assert set(A.activation_maps(apply_fn, params, images, layers=("conv2",))) == {"conv2"}
    with pytest.raises(ValueError, match="unknown layer 'conv9'.*conv1"):
        A.activation_maps(apply_fn, params, images, layers=("conv9",))
    with pytest.raises(ValueError, match="images must be"):
        A.activation_maps(apply_fn, params, images[0])
    with pytest.raises(ValueError, match="batch_size"):
        A.activation_maps(apply_fn, params, images, batch_size=0)


def test_sparsity_matches_direct_count(net):
    _, params, apply_fn, images = net
    s = A.activation_sparsity(apply_fn, params, images, layers=("conv1", "dense"), batch_size=3)
    full = apply_fn(params, images).activations
    np.testing.assert_allclose(
        s["conv1"]["zero_fraction"], np.mean(np.asarray(full["conv1"]) <= 0), rtol=1e-6
    )
    np.testing.assert_allclose(
        s["conv1"]["peak"], np.asarray(full["conv1"]).max((0, 1, 2)), rtol=1e-6
    )
    assert 0.0 <= float(s["conv1"]["hoyer"]) <= 1.0


def test_hoyer_closed_forms():
    assert float(A._hoyer(jnp.ones(16))) == pytest.approx(0.0, abs=1e-6)
    assert float(A._hoyer(jnp.zeros(16).at[3].set(5.0))) == pytest.approx(1.0, abs=1e-6)


def test_sparsity_curve_equals_per_snapshot(net):
    model, params, apply_fn, images = net
    _, params2, _ = scriptnet(seed=7)
    epochs, curve = A.sparsity_curve(
        apply_fn, [(0, params), (3, params2)], images, layers=("conv2",)
    )
    assert list(epochs) == [0, 3]
    for t, p in enumerate((params, params2)):
        one = A.activation_sparsity(apply_fn, p, images, layers=("conv2",))
        np.testing.assert_allclose(
            curve["conv2"]["zero_fraction"][t], one["conv2"]["zero_fraction"], rtol=1e-6
        )
    with pytest.raises(ValueError, match="snapshots is empty"):
        A.sparsity_curve(apply_fn, [], images)


@pytest.mark.slow
def test_dead_filters_finds_hand_zeroed_channels():
    model = build(4, 3, seed=0)
    killed = [3, 7, 30]
    model.conv2.kernel.value = model.conv2.kernel.value.at[..., jnp.array(killed)].set(0.0)
    model.conv2.bias.value = model.conv2.bias.value.at[jnp.array(killed)].set(-0.1)
    params, apply_fn = functional(model)
    images = jax.random.uniform(jax.random.key(2), (50, 32, 64, 3))
    res = A.dead_filters(apply_fn, params, images, batch_size=16)
    assert list(np.flatnonzero(res.dead["conv2"])) == killed
    assert list(np.flatnonzero(res.dead["pool2"])) == killed  # pooling a blank map stays blank
    assert not np.any(res.dead["conv1"]) and not np.any(res.dead["conv3"])
    assert np.all(res.fire_rate["conv2"][np.array(killed)] == 0)
    assert "dense" not in res.dead  # spatial layers only by default
    with pytest.raises(ValueError, match="unknown spatial layer 'dense'"):
        A.dead_filters(apply_fn, params, images, layers=("dense",))


def test_feature_grid_layout():
    maps = np.arange(2 * 3 * 5, dtype=np.float32).reshape(2, 3, 5) + 1
    g = A.feature_grid(maps, columns=2, normalise="none")
    assert g.shape == (3 * 2 + 2, 2 * 3 + 1)
    np.testing.assert_array_equal(g[:2, :3], maps[..., 0])
    np.testing.assert_array_equal(g[6:8, :3], maps[..., 4])
    assert np.isnan(g[2]).all()


# --------------------------------------------------------------------------- filters
def test_conv_kernel_and_filter_images(net):
    model, params, _, _ = net
    k = F.conv_kernel(params, "conv1")
    np.testing.assert_array_equal(k, model.conv1.kernel.value)
    rgb = F.filter_images(k)
    assert rgb.shape == (16, 4, 4, 3) and rgb.min() >= 0 and rgb.max() <= 1
    # the largest |w| of each filter maps to 0 or 1, zero weight to 0.5
    assert np.allclose(np.abs(rgb - 0.5).max(axis=(1, 2, 3)), 0.5)
    assert F.filter_images(k, mode="channels").shape == (16, 3, 4, 4)
    grid = F.filter_grid(F.conv_kernel(params, "conv2"), max_in=4, max_out=5)
    assert grid.shape == (5 * 4 - 1, 4 * 4 - 1)
    with pytest.raises(ValueError, match="layer must name a conv layer.*conv1"):
        F.conv_kernel(params, "pool2")
    with pytest.raises(ValueError, match="mode='rgb' needs 3 input channels"):
        F.filter_images(F.conv_kernel(params, "conv2"))


@pytest.mark.slow
def test_noisiness_closed_forms():
    const = jnp.ones((3, 3, 2, 1))
    checker = jnp.array([[1.0, -1, 1], [-1, 1, -1], [1, -1, 1]])[:, :, None, None]
    for m in F.MEASURES:
        assert float(F.filter_noisiness(const, measure=m)[0]) == pytest.approx(0.0, abs=1e-6)
    assert float(F.filter_noisiness(checker, measure="hf")[0]) == pytest.approx(2.0, rel=1e-6)
    assert float(F.filter_noisiness(checker, measure="tv")[0]) == pytest.approx(
        np.sqrt(2.0), rel=1e-6
    )
    # white noise scores ~1 on both (large kernel for a tight estimate), and scale does not matter
    noise = jax.random.normal(jax.random.key(0), (64, 64, 1, 2))
    for m in F.MEASURES:
        v = F.filter_noisiness(noise, measure=m)
        np.testing.assert_allclose(v, 1.0, atol=0.06)
        np.testing.assert_allclose(F.filter_noisiness(7.0 * noise, measure=m), v, rtol=1e-5)
    ramp = jnp.broadcast_to(jnp.arange(9.0)[:, None], (9, 9))[:, :, None, None] + 1
    assert float(F.filter_noisiness(ramp, measure="tv")[0]) < 0.3
    with pytest.raises(ValueError, match="measure must be"):
        F.filter_noisiness(const, measure="fft")


# --------------------------------------------------------------------------- activation_change
def _loop_change(apply_fn, params, images, others, layer):
    """activation_change's two measures with plain numpy loops, one pair at a time."""
    crop, mx, my = [], [], []
    for x, y in zip(np.asarray(images), np.asarray(others), strict=True):
        a = np.asarray(apply_fn(params, x[None]).activations[layer][0], np.float64)
        b = np.asarray(apply_fn(params, y[None]).activations[layer][0], np.float64)
        size = (np.linalg.norm(a) + np.linalg.norm(b)) / 2
        crop.append(np.linalg.norm(a - b) / size if size > 0 else 0.0)
        mx.append(a.reshape(-1, a.shape[-1]).mean(0))
        my.append(b.reshape(-1, b.shape[-1]).mean(0))
    mx, my = np.array(mx), np.array(my)
    level = ((np.abs(mx) + np.abs(my)) / 2).mean(0)
    moved = np.abs(mx - my).mean(0)
    unit = np.where(level > 0, moved / np.where(level > 0, level, 1), 0.0)
    return np.array(crop), unit


def test_activation_change_matches_a_plain_loop(net):
    _, params, apply_fn, images = net
    others = jax.random.uniform(jax.random.key(2), images.shape)
    got = A.activation_change(apply_fn, params, images, others, layers=("conv1", "conv3", "dense"),
                              batch_size=4)  # fmt: skip
    assert set(got.crop) == set(got.unit) == {"conv1", "conv3", "dense"}
    for layer in got.crop:
        crop, unit = _loop_change(apply_fn, params, images, others, layer)
        np.testing.assert_allclose(got.crop[layer], crop, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got.unit[layer], unit, rtol=1e-4, atol=1e-6)
        assert got.crop[layer].shape == (10,)
        assert np.all((np.asarray(got.crop[layer]) >= 0) & (np.asarray(got.crop[layer]) <= 2))


def test_activation_change_closed_forms():
    """A model whose one 'layer' is the image itself: the measures have closed forms."""

    class Out(NamedTuple):
        activations: dict

    def apply_fn(params, x):
        return Out(activations={"id": x * params})

    x = np.full((3, 2, 2, 2), 0.5, np.float32)
    same = A.activation_change(apply_fn, 1.0, x, x)
    np.testing.assert_array_equal(same.crop["id"], 0.0)
    np.testing.assert_array_equal(same.unit["id"], 0.0)
    # y = x / 2: ||x - y|| / ((||x|| + ||y||) / 2) = (1/2) / (3/4) = 2/3, per pair and per channel
    half = A.activation_change(apply_fn, 1.0, x, x / 2)
    np.testing.assert_allclose(half.crop["id"], 2 / 3, rtol=1e-6)
    np.testing.assert_allclose(half.unit["id"], 2 / 3, rtol=1e-6)
    # against an all-zero image: the largest change, 2; a layer silent on both: 0
    zero = A.activation_change(apply_fn, 1.0, x, np.zeros_like(x))
    np.testing.assert_allclose(zero.crop["id"], 2.0, rtol=1e-6)
    silent = A.activation_change(apply_fn, 0.0, x, x / 2)
    np.testing.assert_array_equal(silent.crop["id"], 0.0)
    np.testing.assert_array_equal(silent.unit["id"], 0.0)
    # scaling the model scales nothing: the measures are relative
    big = A.activation_change(apply_fn, 7.0, x, x / 2)
    np.testing.assert_allclose(big.crop["id"], half.crop["id"], rtol=1e-6)


def test_activation_change_bad_input(net):
    _, params, apply_fn, images = net
    with pytest.raises(ValueError, match="others must have the shape of images"):
        A.activation_change(apply_fn, params, images, images[:3])
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        A.activation_change(apply_fn, params, images, images, layers=("conv9",))
    with pytest.raises(ValueError, match="others"):
        A.activation_change(apply_fn, params, images, images.astype(np.int32))
