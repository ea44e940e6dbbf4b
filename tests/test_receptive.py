"""Receptive fields (analytic vs empirical) and top-activating patches (scriptlab.interpret.receptive)."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scriptlab.interpret import receptive as R
from scriptlab.model import ScriptNet, build, functional


def _units(rf):
    h, w = rf.shape
    return [(0, 0), (h - 1, w - 1), (h // 2, w // 2), (0, w - 1), (min(1, h - 1), min(2, w - 1))]


def _check_all(model, image_hw):
    rfs = R.receptive_fields(model.geometry(), image_hw)
    f = R.trunk_fn(model)
    acts = jax.eval_shape(f, jax.ShapeDtypeStruct((1, *image_hw, 3), jnp.float32))
    for name, rf in rfs.items():
        assert acts[name].shape[1:3] == rf.shape, name
        units = _units(rf)
        masks = R.empirical_receptive_field(
            f, (*image_hw, 3), name, [u[0] for u in units], [u[1] for u in units]
        )
        for (i, j), mask in zip(units, masks, strict=True):
            box = tuple(int(v) for v in R.receptive_box(rf, i, j, image_hw))
            assert R.support_box(mask) == box, (name, i, j)
            assert mask.sum() == (box[2] - box[0]) * (box[3] - box[1])  # dense inside the box


def test_scriptnet_analytic_values():
    rfs = R.receptive_fields(ScriptNet.geometry(), (32, 64))
    assert [rfs[k].size[0] for k in rfs] == [4, 8, 10, 18, 22]
    assert [rfs[k].jump[0] for k in rfs] == [2, 2, 4, 4, 8]
    assert [rfs[k].left[0] for k in rfs] == [-1, -3, -3, -7, -7]
    assert rfs["pool3"].start == (3.5, 3.5) and rfs["pool3"].shape == (4, 8)


def test_scriptnet_analytic_matches_empirical():
    _check_all(build(3, 2, seed=0, image_shape=(16, 24, 3)), (16, 24))


class _Conv(NamedTuple):
    kernel: jax.Array
    stride: int

    def __call__(self, x):
        return jax.lax.conv_general_dilated(
            x, self.kernel, (self.stride,) * 2, "SAME", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )


class _Geo(NamedTuple):
    name: str
    kernel: int
    stride: int
    padding: str


class _OddNet:
    """Even kernels and strided SAME convs on odd sizes: XLA's asymmetric SAME padding."""

    def __init__(self):
        keys = jax.random.split(jax.random.key(0), 3)
        self.c1 = _Conv(jax.random.normal(keys[0], (4, 4, 3, 4)), 2)
        self.c2 = _Conv(jax.random.normal(keys[1], (3, 3, 4, 4)), 2)
        self.c3 = _Conv(jax.random.normal(keys[2], (2, 2, 4, 4)), 1)

    @staticmethod
    def geometry():
        return (
            _Geo("c1", 4, 2, "SAME"),
            _Geo("p1", 3, 1, "SAME"),
            _Geo("c2", 3, 2, "SAME"),
            _Geo("p2", 2, 2, "VALID"),
            _Geo("c3", 2, 1, "SAME"),
        )

    def trunk(self, images, *, linear=True):
        """Its own stack (``trunk_fn(model)`` calls it): linear convs and sum pools per geometry."""
        assert linear
        x, acts = images, {}
        for g in self.geometry():
            if hasattr(self, g.name):
                x = getattr(self, g.name)(x)
            else:
                window, stride = (1, g.kernel, g.kernel, 1), (1, g.stride, g.stride, 1)
                x = jax.lax.reduce_window(x, 0.0, jax.lax.add, window, stride, g.padding)
            acts[g.name] = x
        return acts


def test_odd_geometry_analytic_matches_empirical():
    _check_all(_OddNet(), (19, 23))


def test_receptive_fields_bad_input():
    with pytest.raises(ValueError, match="padding must be 'SAME' or 'VALID'"):
        R.receptive_fields([_Geo("x", 3, 1, "FULL")], (8, 8))
    with pytest.raises(ValueError, match="stride must be >= 1"):
        R.receptive_fields([_Geo("x", 3, 0, "SAME")], (8, 8))


@pytest.fixture(scope="module")
def net():
    params, apply_fn = functional(build(3, 2, seed=0, image_shape=(16, 32, 3)))
    images = jax.random.uniform(jax.random.key(3), (23, 16, 32, 3))
    return params, apply_fn, images


def test_top_activating_matches_brute_force(net):
    params, apply_fn, images = net
    top = R.top_activating(apply_fn, params, images, "conv2", k=5, batch_size=8)
    acts = np.asarray(apply_fn(params, images).activations["conv2"])  # [N, h, w, C]
    n, h, w, c = acts.shape
    flat = acts.reshape(n, h * w, c)
    peak = flat.max(1)  # [N, C]
    for ch in range(c):  # reference: plain loops
        order = np.argsort(-peak[:, ch], kind="stable")[:5]
        np.testing.assert_allclose(top.value[ch], peak[order, ch], rtol=1e-5)
        for q in range(5):
            i = int(top.index[ch, q])
            assert acts[i, int(top.row[ch, q]), int(top.col[ch, q]), ch] == pytest.approx(
                peak[i, ch], rel=1e-5
            )
    assert top.index.shape == (c, 5)


def test_top_activating_errors(net):
    params, apply_fn, images = net
    with pytest.raises(ValueError, match="unknown spatial layer 'conv7'"):
        R.top_activating(apply_fn, params, images, "conv7")
    with pytest.raises(ValueError, match="k must be an integer in"):
        R.top_activating(apply_fn, params, images, "conv1", k=24)


def test_receptive_crops_are_image_slices():
    images = jax.random.uniform(jax.random.key(0), (3, 16, 32, 3))
    rf = R.receptive_fields(ScriptNet.geometry(), (16, 32))["conv2"]  # size 8, jump 2, left -3
    crops = R.receptive_crops(
        images, rf, jnp.array([[2, 0]]), jnp.array([[4, 0]]), jnp.array([[5, 0]]), fill=-1.0
    )
    assert crops.shape == (1, 2, 8, 8, 3)
    np.testing.assert_array_equal(crops[0, 0], images[2, 5:13, 7:15])  # rows -3+8.., cols -3+10..
    np.testing.assert_array_equal(crops[0, 1, 3:, 3:], images[0, :5, :5])
    assert np.all(np.asarray(crops[0, 1, :3]) == -1.0)


def test_label_purity():
    labels = np.array([0, 0, 1, 2, 2, 2])
    np.testing.assert_allclose(
        R.label_purity(labels, np.array([[0, 1, 2], [3, 4, 5]]), 3), [2 / 3, 1.0]
    )
    assert 1 / 3 <= R.purity_chance(labels, 3, 3, draws=200) <= 1.0


def test_unit_shares_matches_a_plain_loop():
    rng = np.random.default_rng(0)
    n, c, k, q = 12, 5, 3, 4
    value = np.sort(rng.random((c, k)) + 0.1, axis=1)[:, ::-1]
    value[2] = 0.0  # a dead channel: never picked
    top = R.TopPatches(rng.integers(0, n, (c, k)), value, np.zeros((c, k)), np.zeros((c, k)))
    peaks = rng.random((q, c))
    qk = rng.integers(0, 3, (q, 2))
    pk = rng.integers(0, 3, (n, 2))
    out = R.unit_shares(peaks, top, qk, pk, units=2)
    for i in range(q):  # reference: plain loops
        drive = [peaks[i, ch] / value[ch, 0] if value[ch, 0] > 0 else -1.0 for ch in range(c)]
        best = sorted(range(c), key=lambda ch: -drive[ch])[:2]
        assert list(out.units[i]) == best and 2 not in best
        imgs = [j for ch in best for j in top.index[ch]]
        for a in range(2):
            assert out.share[i, a] == pytest.approx(np.mean([pk[j, a] == qk[i, a] for j in imgs]))
            assert out.base_rate[i, a] == pytest.approx(np.mean(pk[:, a] == qk[i, a]))
    one = R.unit_shares(peaks, top, qk[:, 0], pk[:, 0])  # 1-d labels: one column
    assert one.share.shape == (q, 1) and one.units.shape == (q, 1)


def test_unit_shares_errors():
    top = R.TopPatches(np.zeros((3, 2), int), np.ones((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match=r"peaks must be float\[Q, 3\]"):
        R.unit_shares(np.ones((2, 4)), top, np.zeros(2, int), np.zeros(5, int))
    with pytest.raises(ValueError, match="point_keys must be int"):
        R.unit_shares(np.ones((2, 3)), top, np.zeros(2, int), np.zeros((5, 2), int))
    with pytest.raises(ValueError, match="units must be"):
        R.unit_shares(np.ones((2, 3)), top, np.zeros(2, int), np.zeros(5, int), units=4)
