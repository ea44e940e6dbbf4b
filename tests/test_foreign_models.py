"""Every public ``scriptlab.interpret`` transform on three Flax NNX CNNs that are not ScriptNet.

The models are written as a newcomer would and wrapped with ``scriptlab.wrap.wrap``:

- ``MnistCNN``: the Flax MNIST tutorial's network (narrower): 1-channel 28x28,
  two conv + average-pool stages, a dense layer, one logits head;
- ``ResNet``: BatchNorm in evaluation mode (non-trivial running statistics),
  GELU, a strided block with a projection shortcut, global average pooling and a
  head named "label" in a dict;
- ``OddNet``: 2-channel 15x21 images, VALID strided convs, LayerNorm, no pooling,
  and two heads in a NamedTuple.

The gradient methods are checked against ``jax.grad`` of the unwrapped model;
other results against plain-loop or numpy references. ``test_every_public_callable_is_covered``
fails when ``scriptlab.interpret`` exports a callable that no test here covers
and that is not on the commented exclusion list.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import scriptlab.interpret as I
from scriptlab.interpret import classviz, saliency
from scriptlab.wrap import wrap

COVERED: set[str] = set()


def covers(*names: str):
    """Register the ``scriptlab.interpret`` names a test exercises."""

    def mark(test):
        COVERED.update(names)
        return test

    return mark


# --------------------------------------------------------------------------- the models
def _tap(acts: dict, perturb, name: str, x: jax.Array) -> jax.Array:
    """Record activation ``name``, after adding ``perturb[name]`` (the ApplyFn contract)."""
    if perturb and name in perturb:
        x = x + perturb[name]
    acts[name] = x
    return x


class MnistCNN(nnx.Module):
    """The Flax MNIST tutorial's CNN with fewer channels: conv, avg pool, conv, avg pool, dense."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(1, 4, kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(4, 8, kernel_size=(3, 3), rngs=rngs)
        self.linear1 = nnx.Linear(7 * 7 * 8, 32, rngs=rngs)
        self.linear2 = nnx.Linear(32, 10, rngs=rngs)

    def __call__(self, x, *, relu=nnx.relu, perturb=None):
        acts: dict = {}
        x = _tap(acts, perturb, "conv1", relu(self.conv1(x)))
        x = _tap(acts, perturb, "pool1", nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2)))
        x = _tap(acts, perturb, "conv2", relu(self.conv2(x)))
        x = _tap(acts, perturb, "pool2", nnx.avg_pool(x, window_shape=(2, 2), strides=(2, 2)))
        x = _tap(acts, perturb, "linear1", relu(self.linear1(x.reshape(x.shape[0], -1))))
        return self.linear2(x), acts


class Block(nnx.Module):
    """A ResNet basic block: conv-BN-GELU-conv-BN plus a (projected) shortcut, then GELU."""

    def __init__(self, c_in: int, c_out: int, stride: int, *, rngs: nnx.Rngs):
        self.conv_a = nnx.Conv(c_in, c_out, (3, 3), strides=stride, rngs=rngs)
        self.bn_a = nnx.BatchNorm(c_out, rngs=rngs)
        self.conv_b = nnx.Conv(c_out, c_out, (3, 3), rngs=rngs)
        self.bn_b = nnx.BatchNorm(c_out, rngs=rngs)
        self.project = nnx.Conv(c_in, c_out, (1, 1), strides=stride, rngs=rngs)

    def __call__(self, x):
        h = nnx.gelu(self.bn_a(self.conv_a(x)))
        return nnx.gelu(self.bn_b(self.conv_b(h)) + self.project(x))


class ResNet(nnx.Module):
    """A small ResNet: stem, a block, a strided block, global average pooling, a "label" head."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.stem = nnx.Conv(3, 4, (3, 3), rngs=rngs)
        self.stem_bn = nnx.BatchNorm(4, rngs=rngs)
        self.block1 = Block(4, 4, 1, rngs=rngs)
        self.block2 = Block(4, 8, 2, rngs=rngs)
        self.head = nnx.Linear(8, 5, rngs=rngs)

    def __call__(self, x, *, perturb=None):
        acts: dict = {}
        x = _tap(acts, perturb, "stem", nnx.gelu(self.stem_bn(self.stem(x))))
        x = _tap(acts, perturb, "block1", self.block1(x))
        x = _tap(acts, perturb, "block2", self.block2(x))
        pooled = _tap(acts, perturb, "pool", x.mean(axis=(1, 2)))
        return {"label": self.head(pooled)}, acts


class Heads(NamedTuple):
    """OddNet's two heads.

    Attributes:
      kind: float32[N, 4] logits.
      tint: float32[N, 3] logits.
    """

    kind: jax.Array
    tint: jax.Array


class OddNet(nnx.Module):
    """2-channel 15x21 inputs, VALID strided convs, LayerNorm, no pooling, two heads."""

    def __init__(self, *, rngs: nnx.Rngs):
        self.conv1 = nnx.Conv(2, 6, (3, 3), strides=2, padding="VALID", rngs=rngs)
        self.norm = nnx.LayerNorm(6, rngs=rngs)
        self.conv2 = nnx.Conv(6, 8, (3, 3), padding="VALID", rngs=rngs)
        self.dense = nnx.Linear(5 * 8 * 8, 16, rngs=rngs)
        self.kind = nnx.Linear(16, 4, rngs=rngs)
        self.tint = nnx.Linear(16, 3, rngs=rngs)

    def __call__(self, x, *, relu=nnx.relu, perturb=None):
        acts: dict = {}
        x = _tap(acts, perturb, "conv1", relu(self.norm(self.conv1(x))))
        x = _tap(acts, perturb, "conv2", relu(self.conv2(x)))
        x = _tap(acts, perturb, "dense", relu(self.dense(x.reshape(x.shape[0], -1))))
        return Heads(self.kind(x), self.tint(x)), acts


class Geo(NamedTuple):
    """One layer of a receptive-field chain, written by hand for each model."""

    name: str
    kernel: int
    stride: int
    padding: str


@dataclasses.dataclass(frozen=True)
class Spec:
    """One foreign architecture and what the tests need to know about it."""

    name: str
    make: Callable[..., nnx.Module]
    image_shape: tuple[int, int, int]
    head: str
    n_classes: int
    layer: str  # a spatial layer for Grad-CAM, top-k patches, class models of a channel
    geometry: tuple[Geo, ...]  # the longest path to `layer`, for receptive fields
    cascade: tuple  # top-down re-initialisation stages for the sanity check
    relu: bool  # whether __call__ declares relu= (guided backprop, deconvnet)


SPECS = (
    Spec(
        "mnist",
        MnistCNN,
        (28, 28, 1),
        "logits",
        10,
        "conv2",
        (
            Geo("conv1", 3, 1, "SAME"),
            Geo("pool1", 2, 2, "VALID"),
            Geo("conv2", 3, 1, "SAME"),
            Geo("pool2", 2, 2, "VALID"),
        ),
        (("dense", ("linear1", "linear2")), ("conv2", ("conv2",)), ("conv1", ("conv1",))),
        True,
    ),
    Spec(
        "resnet",
        ResNet,
        (16, 16, 3),
        "label",
        5,
        "block2",
        (
            Geo("stem", 3, 1, "SAME"),
            Geo("block1_a", 3, 1, "SAME"),
            Geo("block1", 3, 1, "SAME"),
            Geo("block2_a", 3, 2, "SAME"),
            Geo("block2", 3, 1, "SAME"),
        ),
        (
            ("head", ("head",)),
            ("block2", ("block2",)),
            ("block1", ("block1",)),
            ("stem", ("stem", "stem_bn")),
        ),
        False,
    ),
    Spec(
        "oddnet",
        OddNet,
        (15, 21, 2),
        "tint",
        3,
        "conv2",
        (Geo("conv1", 3, 2, "VALID"), Geo("conv2", 3, 1, "VALID")),
        (("heads", ("kind", "tint", "dense")), ("conv2", ("conv2",)), ("conv1", ("conv1", "norm"))),
        True,
    ),
)


class Case(NamedTuple):
    """A built foreign model: the spec, the eval-mode model, its wrap, and data."""

    spec: Spec
    model: nnx.Module
    params: object
    apply_fn: Callable
    random_params: object
    images: jax.Array
    targets: jax.Array


def _randomise_batch_stats(model: nnx.Module, key) -> None:
    """Give every BatchNorm running statistics far from (0, 1), so evaluation mode matters."""
    for _, module in nnx.iter_graph(model):
        if isinstance(module, nnx.BatchNorm):
            k1, k2, key = jax.random.split(key, 3)
            module.mean.value = 0.3 * jax.random.normal(k1, module.mean.value.shape)
            module.var.value = jax.random.uniform(k2, module.var.value.shape, minval=0.5, maxval=2)


# every test over a foreign model compiles its methods afresh: slow on a 2-core CPU
@pytest.fixture(
    scope="module", params=[pytest.param(s, id=s.name, marks=pytest.mark.slow) for s in SPECS]
)
def case(request) -> Case:
    spec = request.param
    model = spec.make(rngs=nnx.Rngs(0))
    _randomise_batch_stats(model, jax.random.key(1))
    params, apply_fn = wrap(model)
    random_params, _ = wrap(spec.make(rngs=nnx.Rngs(1)))
    model.eval()  # the reference: the same model called directly in evaluation mode
    images = jax.random.uniform(jax.random.key(2), (3, *spec.image_shape))
    targets = jnp.arange(3) % spec.n_classes
    return Case(spec, model, params, apply_fn, random_params, images, targets)


# --------------------------------------------------------------------------- references
def _head(out, name: str) -> jax.Array:
    heads = out[0]
    if isinstance(heads, dict):
        return heads[name]
    return getattr(heads, name) if hasattr(heads, "_fields") else heads


def _ref_grad(c: Case, x, t, **kwargs):
    """d logit_t / d image of one image float32[H, W, C], by jax.grad of the unwrapped model."""
    return jax.grad(lambda im: _head(c.model(im[None], **kwargs), c.spec.head)[0, t])(x)


def _ref_grads(c: Case, images=None, **kwargs) -> np.ndarray:
    images = c.images if images is None else images
    return np.stack(
        [_ref_grad(c, x, int(t), **kwargs) for x, t in zip(images, c.targets, strict=True)]
    )


def _close(got, want, rtol=2e-4):
    got, want = np.asarray(got), np.asarray(want)
    np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * np.abs(want).max() + 1e-7)


# --------------------------------------------------------------------------- wrap
def test_wrap_hashes_by_value_and_runs_in_eval_mode(case):
    c = case
    _, again = wrap(c.spec.make(rngs=nnx.Rngs(5)))
    _, other = wrap(c.spec.make(rngs=nnx.Rngs(5)), embedding=next(iter(c.model(c.images)[1])))
    if c.spec.name == "resnet":  # running statistics are part of the function, by value
        assert again != c.apply_fn
        _randomise_batch_stats(again_model := c.spec.make(rngs=nnx.Rngs(5)), jax.random.key(1))
        assert wrap(again_model)[1] == c.apply_fn
    else:
        assert again == c.apply_fn and hash(again) == hash(c.apply_fn)
    assert other != again
    out = c.apply_fn(c.params, c.images)
    ref = c.model(c.images)
    np.testing.assert_array_equal(getattr(out, c.spec.head), _head(ref, c.spec.head))
    assert list(out.activations) == list(ref[1])
    assert out.embedding.ndim == 2 and out.embedding.shape[0] == 3


def test_wrap_refuses_options_the_model_does_not_declare():
    params, apply_fn = wrap(ResNet(rngs=nnx.Rngs(0)))
    images = jnp.zeros((1, 16, 16, 3))
    with pytest.raises(TypeError, match="does not accept relu="):
        apply_fn(params, images, relu=jax.nn.relu)
    with pytest.raises(ValueError, match="relu"):
        I.guided_backprop(apply_fn, params, images, 0, head="label")
    params, apply_fn = wrap(Tiny())  # no perturb=: Grad-CAM says so before tracing
    with pytest.raises(ValueError, match="perturb="):
        I.grad_cam(apply_fn, params, jnp.zeros((1, 2, 2, 1)), 0, head="logits", layer="conv")
    with pytest.raises(ValueError, match="must be an nnx.Module"):
        wrap(lambda x: x)


class Tiny(nnx.Module):
    """One 1x1 conv on 2x2 images; ``returns`` picks what __call__ gives back."""

    def __init__(self, returns: str = "pair", heads=None):
        self.conv = nnx.Conv(1, 2, (1, 1), rngs=nnx.Rngs(0))
        self.returns, self.heads = returns, heads

    def __call__(self, x):
        h = self.conv(x)
        if self.returns == "logits":
            return h.mean((1, 2))
        heads = {name: h.mean((1, 2)) for name in self.heads or ("logits",)}
        return heads, ({"conv": h} if self.returns == "pair" else {})


@pytest.mark.parametrize(
    "model, match",
    [
        (Tiny("logits"), "must return \\(heads, activations\\)"),
        (Tiny("no activations"), "no activation None for out.embedding"),
        (Tiny(heads=("class",)), "must be Python identifiers"),
        (Tiny(heads=("activations",)), "not 'activations'"),
    ],
)
def test_wrap_says_what_a_model_must_return(model, match):
    params, apply_fn = wrap(model)
    with pytest.raises(TypeError, match=match):
        apply_fn(params, jnp.zeros((1, 2, 2, 1)))


def test_wrap_reads_an_embedding_head_or_a_named_activation():
    x = jnp.ones((1, 2, 2, 1))
    params, apply_fn = wrap(Tiny(heads=("logits", "embedding")))
    out = apply_fn(params, x)
    assert out._fields == ("logits", "embedding", "activations")
    params, apply_fn = wrap(Tiny(), embedding="conv")
    np.testing.assert_array_equal(
        apply_fn(params, x).embedding, Tiny()(x)[1]["conv"].reshape(1, -1)
    )
    with pytest.raises(TypeError, match="no activation 'nope'"):
        wrap(Tiny(), embedding="nope")[1](params, x)


def test_wrap_leaves_the_callers_model_in_train_mode():
    model = ResNet(rngs=nnx.Rngs(0))
    wrap(model)
    assert model.stem_bn.use_running_average is False


def test_wrapped_methods_compile_once_per_architecture():
    # two wraps of one architecture share one compilation of a jitted method
    traces = []
    images = jnp.full((2, 28, 28, 1), 0.5)
    for seed in (0, 1):
        params, apply_fn = wrap(MnistCNN(rngs=nnx.Rngs(seed)))
        before = saliency._gradient_map._cache_size()
        I.vanilla_gradient(apply_fn, params, images, 0, head="logits")
        traces.append(saliency._gradient_map._cache_size() - before)
    assert traces[1] == 0


# --------------------------------------------------------------------------- saliency
@covers("vanilla_gradient", "gradient_x_input", "SALIENCY_METHODS")
def test_gradient_and_gradient_x_input_match_jax_grad(case):
    c = case
    g = _ref_grads(c)
    head = c.spec.head
    _close(
        I.vanilla_gradient(c.apply_fn, c.params, c.images, c.targets, head=head), np.abs(g).max(-1)
    )
    _close(
        I.vanilla_gradient(c.apply_fn, c.params, c.images, c.targets, head=head, reduce="none"), g
    )
    _close(
        I.gradient_x_input(c.apply_fn, c.params, c.images, c.targets, head=head),
        (g * np.asarray(c.images)).sum(-1),
    )
    for method in I.SALIENCY_METHODS:
        if method in ("guided_backprop", "deconvnet") and not c.spec.relu:
            continue
        kw = {"layer": c.spec.layer} if method == "grad_cam" else {}
        kw |= {"n_samples": 2} if method == "smoothgrad" else {}
        kw |= {"steps": 2} if method == "integrated_gradients" else {}
        maps = saliency.saliency(
            c.apply_fn, c.params, c.images, c.targets, method=method, head=head, **kw
        )
        assert maps.shape == c.images.shape[:3] and bool(jnp.isfinite(maps).all()), method


@covers("integrated_gradients", "completeness_gap")
def test_integrated_gradients_match_a_plain_loop_riemann_sum(case):
    c = case
    steps = 4
    ig = I.integrated_gradients(
        c.apply_fn, c.params, c.images, c.targets, head=c.spec.head, steps=steps, reduce="none"
    )
    baseline = jnp.zeros_like(c.images)
    total = np.zeros(c.images.shape, np.float32)
    for k in range(steps):  # midpoint rule, one jax.grad per step
        alpha = (k + 0.5) / steps
        total += _ref_grads(c, baseline + alpha * (c.images - baseline))
    _close(ig, total / steps * np.asarray(c.images - baseline))
    summed, gap = I.completeness_gap(
        c.apply_fn, c.params, c.images, c.targets, ig.sum(-1), head=c.spec.head
    )
    scale = float(jnp.abs(ig).sum())  # the sums cancel: compare on the attributions' scale
    np.testing.assert_allclose(summed, ig.reshape(3, -1).sum(-1), rtol=0, atol=1e-5 * scale)
    want = _head(c.model(c.images), c.spec.head) - _head(c.model(baseline), c.spec.head)
    _close(gap, want[jnp.arange(3), c.targets], rtol=1e-3)


@covers("smoothgrad")
def test_smoothgrad_matches_a_plain_loop_with_the_same_noise(case):
    c = case
    n, noise, key = 3, 0.2, jax.random.key(4)
    sg = I.smoothgrad(
        c.apply_fn,
        c.params,
        c.images,
        c.targets,
        head=c.spec.head,
        n_samples=n,
        noise=noise,
        key=key,
        reduce="none",
    )
    x = np.asarray(c.images)
    sigma = noise * (x.max(axis=(1, 2, 3)) - x.min(axis=(1, 2, 3)))[:, None, None, None]
    total = np.zeros(x.shape, np.float32)
    for k in jax.random.split(key, n):  # one noisy batch per key, as the library draws it
        total += _ref_grads(c, x + sigma * np.asarray(jax.random.normal(k, x.shape)))
    _close(sg, total / n, rtol=1e-3)


class _Rules:
    """Guided-backprop and deconvnet ReLUs written here, independently of saliency.py's."""

    @staticmethod
    @jax.custom_vjp
    def guided(x):
        return jnp.maximum(x, 0)

    @staticmethod
    @jax.custom_vjp
    def deconv(x):
        return jnp.maximum(x, 0)


_Rules.guided.defvjp(lambda x: (jnp.maximum(x, 0), x), lambda x, g: (g * (x > 0) * (g > 0),))
_Rules.deconv.defvjp(lambda x: (jnp.maximum(x, 0), None), lambda _, g: (jnp.maximum(g, 0),))


@covers("guided_backprop", "deconvnet")
def test_guided_backprop_and_deconvnet_match_hand_written_rules(case):
    c = case
    args = (c.apply_fn, c.params, c.images, c.targets)
    if not c.spec.relu:  # a GELU network has no ReLU to swap: a clear error, not a wrong map
        for method in (I.guided_backprop, I.deconvnet):
            with pytest.raises(ValueError, match="relu="):
                method(*args, head=c.spec.head)
        return
    for method, rule in ((I.guided_backprop, _Rules.guided), (I.deconvnet, _Rules.deconv)):
        want = _ref_grads(c, relu=rule)
        _close(method(*args, head=c.spec.head, reduce="none"), want)
    assert not np.allclose(
        I.guided_backprop(*args, head=c.spec.head), I.vanilla_gradient(*args, head=c.spec.head)
    )


@covers("grad_cam")
def test_grad_cam_matches_the_hand_formula(case):
    c = case
    layer, h, w = c.spec.layer, *c.spec.image_shape[:2]
    cams = I.grad_cam(c.apply_fn, c.params, c.images, c.targets, head=c.spec.head, layer=layer)
    for x, t, cam in zip(c.images, c.targets, cams, strict=True):
        act = c.model(x[None])[1][layer][0]

        def score(delta, x=x, t=t):
            return _head(c.model(x[None], perturb={layer: delta[None]}), c.spec.head)[0, t]

        g = jax.grad(score)(jnp.zeros_like(act))
        want = jax.nn.relu((act * g.mean(axis=(0, 1))).sum(-1))
        _close(cam, jax.image.resize(want, (h, w), method="bilinear"), rtol=1e-4)
    with pytest.raises(ValueError, match="must be spatial"):
        I.grad_cam(
            c.apply_fn,
            c.params,
            c.images,
            c.targets,
            head=c.spec.head,
            layer=list(c.model(c.images)[1])[-1],
        )


# --------------------------------------------------------------------------- occlusion
@covers("occlusion_map", "Occlusion", "occlusion_localisation")
def test_occlusion_matches_a_plain_loop(case):
    c = case
    h, w, _ = c.spec.image_shape
    patch = (h // 3, w // 3)
    occ = I.occlusion_map(
        c.apply_fn,
        c.params,
        c.images,
        c.targets,
        head=c.spec.head,
        patch=patch,
        stride=patch,
        output="logit",
    )
    assert isinstance(occ, I.Occlusion) and occ.scores.shape == (3, 3, 3)
    for i, (x, t) in enumerate(zip(np.asarray(c.images), c.targets, strict=True)):
        for a, r in enumerate(range(0, h - patch[0] + 1, patch[0])):
            for b, q in enumerate(range(0, w - patch[1] + 1, patch[1])):
                hidden = x.copy()
                hidden[r : r + patch[0], q : q + patch[1]] = 0.5
                want = _head(c.model(hidden[None]), c.spec.head)[0, t]
                _close(occ.scores[i, a, b], want, rtol=1e-5)
    unit = I.occlusion_map(
        c.apply_fn,
        c.params,
        c.images,
        0,
        layer=c.spec.layer,
        patch=patch,
        stride=patch,
        output="logit",
    )
    assert unit.scores.shape == (3, 3, 3) and bool(jnp.isfinite(unit.heatmap).all())
    masks = jax.random.bernoulli(jax.random.key(3), 0.3, c.images.shape[:3])
    scores = I.occlusion_localisation(occ.heatmap, masks)
    assert set(scores) >= {"ink_mass", "pointing"} and scores["ink_mass"].shape == (3,)


# --------------------------------------------------------------------------- activations and filters
@covers(
    "activation_maps",
    "activation_sparsity",
    "sparsity_curve",
    "dead_filters",
    "DeadFilters",
    "feature_grid",
)
def test_activations_match_the_unwrapped_model(case):
    c = case
    ref = c.model(c.images)[1]
    maps = I.activation_maps(c.apply_fn, c.params, c.images)
    assert set(maps) == set(ref)
    for name in ref:
        _close(maps[name], ref[name], rtol=1e-5)
    stats = I.activation_sparsity(c.apply_fn, c.params, c.images)
    for name in ref:
        _close(stats[name]["zero_fraction"], np.mean(np.asarray(ref[name]) <= 0), rtol=1e-6)
    spatial = [k for k, v in ref.items() if v.ndim == 4]
    dead = I.dead_filters(c.apply_fn, c.params, c.images, threshold=0.01)
    assert isinstance(dead, I.DeadFilters) and set(dead.dead) == set(spatial)
    for name in spatial:
        peak = np.asarray(ref[name]).max(axis=(0, 1, 2))
        _close(dead.peak[name], peak, rtol=1e-5)
        np.testing.assert_array_equal(dead.dead[name], peak <= 0.01)
    epochs, curve = I.sparsity_curve(c.apply_fn, [(0, c.random_params), (3, c.params)], c.images)
    assert list(epochs) == [0, 3]
    for name in ref:
        _close(curve[name]["hoyer"][1], stats[name]["hoyer"], rtol=1e-5)
    grid = I.feature_grid(maps[spatial[0]][0], columns=2)
    assert grid.ndim == 2 and np.isfinite(grid).any()


@covers("activation_change", "ActivationChange")
def test_activation_change_matches_numpy_on_the_unwrapped_model(case):
    c = case
    others = c.images[::-1]  # each image paired with another
    ref_x, ref_y = c.model(c.images)[1], c.model(others)[1]
    change = I.activation_change(c.apply_fn, c.params, c.images, others, batch_size=3)
    assert isinstance(change, I.ActivationChange) and set(change.crop) == set(ref_x)
    for name in ref_x:
        a = np.asarray(ref_x[name], np.float64).reshape(len(others), -1)
        b = np.asarray(ref_y[name], np.float64).reshape(len(others), -1)
        scale = (np.linalg.norm(a, axis=1) + np.linalg.norm(b, axis=1)) / 2
        want = np.linalg.norm(a - b, axis=1) / np.where(scale > 0, scale, 1.0)
        _close(change.crop[name], want, rtol=1e-4)
        ch = np.shape(ref_x[name])[-1]  # a channel's mean over positions (none for dense)
        ma = np.asarray(ref_x[name], np.float64).reshape(len(others), -1, ch).mean(1)
        mb = np.asarray(ref_y[name], np.float64).reshape(len(others), -1, ch).mean(1)
        den = ((np.abs(ma) + np.abs(mb)) / 2).mean(0)
        unit = np.abs(ma - mb).mean(0) / np.where(den > 0, den, 1.0)
        _close(change.unit[name], unit, rtol=1e-4)
    same = I.activation_change(c.apply_fn, c.params, c.images, c.images)
    assert all(float(np.max(v)) < 1e-5 for v in same.crop.values())  # up to float rounding


@covers("conv_kernel", "filter_images", "filter_grid", "filter_noisiness")
def test_filters_of_every_conv_layer(case):
    c = case
    tree = nnx.state(c.model, nnx.Param).to_pure_dict()
    paths = [
        ".".join(str(k.key) for k in path[:-1])
        for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]
        if path[-1].key == "kernel" and leaf.ndim == 4
    ]
    assert paths
    for path in paths:
        kernel = I.conv_kernel(c.params, path)
        want = tree
        for key in path.split("."):
            want = want[key]
        np.testing.assert_array_equal(kernel, want["kernel"])
        k_h, k_w, c_in, c_out = kernel.shape
        assert I.filter_images(kernel, mode="channels").shape == (c_out, c_in, k_h, k_w)
        assert I.filter_grid(kernel, max_in=2, max_out=3).ndim == 2
        if min(k_h, k_w) >= 2:
            assert I.filter_noisiness(kernel).shape == (c_out,)
    first = I.conv_kernel(c.params, paths[0])
    if first.shape[2] in (1, 3):  # a grey or colour first layer shows as images
        images = I.filter_images(first)
        assert images.shape == (first.shape[3], *first.shape[:2], 3)
        np.testing.assert_array_equal(images[..., 0], images[..., -1 if first.shape[2] == 1 else 0])
    with pytest.raises(ValueError, match="allowed: .*" + paths[-1].replace(".", r"\.")):
        I.conv_kernel(c.params, "no_such_layer")


# --------------------------------------------------------------------------- class models
@covers("class_model", "ClassModel")
def test_class_model_climbs_on_any_channel_count(case):
    c = case
    shape, head = c.spec.image_shape, c.spec.head
    r = I.class_model(
        c.apply_fn,
        c.params,
        objective=("head", head),
        image_shape=shape,
        targets=[0, 1],
        steps=12,
        lr=0.05,
    )
    assert isinstance(r, I.ClassModel) and r.images.shape == (2, *shape)
    assert float(r.images.min()) >= 0 and float(r.images.max()) <= 1
    assert float(r.scores[-1].mean()) > float(r.scores[0].mean())
    # the recorded score is the model's own logit of the image before each step
    final = classviz.final_scores(c.apply_fn, c.params, r, head=head)
    assert final.shape == (2, c.spec.n_classes)
    for param, grey in (("pixel", True), ("fourier", False)):  # each compiles: two of the four
        r = I.class_model(
            c.apply_fn,
            c.params,
            objective=("layer", c.spec.layer, 1),
            image_shape=shape,
            steps=3,
            parametrisation=param,
            grayscale=grey,
        )
        assert r.images.shape == (1, *shape) and bool(jnp.isfinite(r.images).all())
        if grey:  # one channel, shown on all of the model's channels
            np.testing.assert_array_equal(r.images[..., 0], r.images[..., -1])
    wrong = (*shape[:2], shape[2] + 1)
    with pytest.raises(ValueError, match="image_shape"):
        I.class_model(c.apply_fn, c.params, objective=("head", head), image_shape=wrong)


# --------------------------------------------------------------------------- receptive fields
@covers(
    "receptive_fields", "ReceptiveField", "empirical_receptive_field", "receptive_box", "trunk_fn"
)
def test_analytic_receptive_fields_match_the_gradient_support(case):
    c = case
    h, w, _ = c.spec.image_shape
    fields = I.receptive_fields(c.spec.geometry, (h, w))
    assert all(isinstance(f, I.ReceptiveField) for f in fields.values())
    # ReLUs would cut the support; a model without relu= (GELU) has none to undo
    features = I.trunk_fn(c.apply_fn, c.params, linear=c.spec.relu)
    x = c.images[:2]
    linear = {"relu": lambda v: v} if c.spec.relu else {}
    want = c.model(x, **linear)[1]
    assert list(features(x)) == list(want)
    for name, act in features(x).items():
        _close(act, want[name], rtol=1e-5)

    shapes = {k: v.shape for k, v in jax.eval_shape(features, c.images[:1]).items()}
    tapped = [g.name for g in c.spec.geometry if g.name in shapes]
    assert tapped
    for name in tapped:
        rf = fields[name]
        assert rf.shape == shapes[name][1:3]
        rows = np.array([0, rf.shape[0] // 2, rf.shape[0] - 1])
        cols = np.array([0, rf.shape[1] // 2, rf.shape[1] - 1])
        support = I.empirical_receptive_field(features, c.spec.image_shape, name, rows, cols)
        boxes = np.stack(I.receptive_box(rf, rows, cols, (h, w)), axis=1)
        for mask, box in zip(support, boxes, strict=True):
            ys, xs = np.nonzero(mask)
            assert (ys.min(), xs.min(), ys.max() + 1, xs.max() + 1) == tuple(box), name


@covers("top_activating", "TopPatches", "receptive_crops", "label_purity")
def test_top_activating_patches_match_numpy(case):
    c = case
    layer = c.spec.layer
    top = I.top_activating(c.apply_fn, c.params, c.images, layer, k=2)
    assert isinstance(top, I.TopPatches)
    act = np.asarray(c.model(c.images)[1][layer])  # [N, h, w, C]
    n, _, w_act, ch = act.shape
    flat = act.reshape(n, -1, ch)
    peak = flat.max(1)  # [N, C]
    order = np.argsort(-peak, axis=0, kind="stable")[:2].T  # [C, 2]
    np.testing.assert_array_equal(top.index, order)
    where = flat.argmax(1)[order, np.arange(ch)[:, None]]
    np.testing.assert_array_equal(top.row * w_act + top.col, where)
    _close(top.value, np.take_along_axis(peak.T, order, axis=1), rtol=1e-5)
    rf = I.receptive_fields(c.spec.geometry, c.spec.image_shape[:2])[layer]
    crops = I.receptive_crops(c.images, rf, top.index, top.row, top.col)
    assert crops.shape == (ch, 2, *rf.size, c.spec.image_shape[2])
    labels = np.arange(n) % 2
    purity = I.label_purity(labels, top.index, 2)
    np.testing.assert_array_equal(purity, (labels[order] == labels[order][:, :1]).mean(1))


# --------------------------------------------------------------------------- localisation and sanity
@covers("localisation_scores", "localisation_table", "localisation_rows")
def test_localisation_table_on_every_method(case):
    c = case
    masks = jax.random.bernoulli(jax.random.key(3), 0.3, c.images.shape[:3])
    methods = tuple(
        m for m in I.SALIENCY_METHODS if c.spec.relu or m not in ("guided_backprop", "deconvnet")
    )
    options = {m: {"head": c.spec.head} for m in methods}
    options["grad_cam"]["layer"] = c.spec.layer
    options["smoothgrad"]["n_samples"] = 2
    options["integrated_gradients"]["steps"] = 2
    rows = I.localisation_table(
        c.apply_fn,
        c.params,
        c.images,
        masks,
        c.targets,
        methods=methods,
        options=options,
        model=c.spec.name,
    )
    assert [r["method"] for r in rows] == list(methods)
    grad = I.vanilla_gradient(c.apply_fn, c.params, c.images, c.targets, head=c.spec.head)
    scores = I.localisation_scores(grad, masks, tolerance=1)
    assert rows[0]["ink_mass"] == pytest.approx(float(scores["ink_mass"].mean()), rel=1e-6)
    assert I.localisation_rows({"gradient": grad}, masks)[0]["ink_mass"] == rows[0]["ink_mass"]


@covers("cascading_check", "data_randomisation_check", "verdicts", "spearman", "ssim")
def test_sanity_checks_with_the_models_own_layers(case):
    c = case
    methods = ("gradient", "grad_cam")
    options = {
        "gradient": {"head": c.spec.head},
        "grad_cam": {"head": c.spec.head, "layer": c.spec.layer},
    }
    args = (c.apply_fn, c.params, c.random_params, c.images, c.targets)
    out = I.cascading_check(*args, methods=methods, cascade=c.spec.cascade, options=options)
    assert out["stages"] == [label for label, _ in c.spec.cascade]
    grad = I.vanilla_gradient(c.apply_fn, c.params, c.images, c.targets, head=c.spec.head)
    np.testing.assert_array_equal(out["maps"]["gradient"][0], grad)
    # every layer re-initialised: the last stage is the random model's map
    fresh = I.vanilla_gradient(c.apply_fn, c.random_params, c.images, c.targets, head=c.spec.head)
    _close(out["maps"]["gradient"][-1], fresh, rtol=1e-6)
    data = I.data_randomisation_check(*args, methods=methods, options=options)
    np.testing.assert_array_equal(data["maps"]["gradient"][1], fresh)
    stage = c.spec.cascade[0][0]
    table = I.verdicts(out["rows"], data["rows"], stage=stage)
    assert [v["method"] for v in table] == list(methods)
    assert I.spearman(grad, grad) == pytest.approx(1.0) and I.ssim(grad, grad).shape == (3,)
    with pytest.raises(ValueError, match="cascade="):
        I.cascading_check(*args, methods=("gradient",), options=options)


# --------------------------------------------------------------------------- embeddings
@covers(
    "embed",
    "pca",
    "PCA",
    "affinities",
    "Affinities",
    "joint_probabilities",
    "kl_divergence_and_gradient",
    "tsne",
    "TSNEResult",
    "trustworthiness",
    "knn_accuracy",
)
def test_embedding_views_of_the_models_representation(case):
    c = case
    images = jax.random.uniform(jax.random.key(6), (24, *c.spec.image_shape))
    emb = I.embed(c.apply_fn, c.params, images, batch_size=7)
    acts = c.model(images)[1]
    want = acts[list(acts)[-1]].reshape(24, -1)
    _close(emb, want, rtol=1e-5)
    by_layer = I.embed(c.apply_fn, c.params, images, layer=c.spec.layer)
    _close(by_layer, acts[c.spec.layer].reshape(24, -1), rtol=1e-5)
    logits = I.embed(c.apply_fn, c.params, images, layer=c.spec.head)
    _close(logits, _head(c.model(images), c.spec.head), rtol=1e-5)
    p = I.pca(emb, n_components=2)
    assert isinstance(p, I.PCA)
    aff = I.affinities(emb, perplexity=5.0)
    assert isinstance(aff, I.Affinities)
    joint = I.joint_probabilities(aff)
    assert float(joint.sum()) == pytest.approx(1.0, rel=1e-5)
    kl, grad = I.kl_divergence_and_gradient(aff, p.projected)
    assert grad.shape == (24, 2) and np.isfinite(float(kl))
    result = I.tsne(emb, perplexity=5.0, n_iter=40, exaggeration_iter=20, record_every=10)
    assert isinstance(result, I.TSNEResult) and result.embedding.shape == (24, 2)
    assert 0.0 <= float(I.trustworthiness(emb, result.embedding, n_neighbors=3)) <= 1.0
    labels = np.arange(24) % 3
    assert 0.0 <= float(I.knn_accuracy(emb, labels, k=3)) <= 1.0


# --------------------------------------------------------------------------- faithfulness, TCAV
@covers(
    "layer_gradients",
    "deletion_curve",
    "insertion_curve",
    "road_curve",
    "FaithfulnessCurve",
    "faithfulness_rows",
    "random_maps",
    "tcav_test",
    "TCAVResult",
    "style_readout",
)
def test_faithfulness_and_tcav_on_the_models_heads_and_layers(case):
    c = case
    head, layer = c.spec.head, c.spec.layer
    grads = I.layer_gradients(c.apply_fn, c.params, c.images, c.targets, layer=layer, head=head)
    for x, t, got in zip(c.images, c.targets, grads, strict=True):
        act = c.model(x[None])[1][layer][0]

        def score(delta, x=x, t=t):
            return _head(c.model(x[None], perturb={layer: delta[None]}), head)[0, t]

        _close(got, jax.grad(score)(jnp.zeros_like(act)).reshape(-1), rtol=1e-4)
    maps = I.vanilla_gradient(c.apply_fn, c.params, c.images, c.targets, head=head)
    probs = jax.nn.softmax(_head(c.model(c.images), head))[jnp.arange(3), c.targets]
    for curve in (I.deletion_curve, I.insertion_curve, I.road_curve):
        result = curve(c.apply_fn, c.params, c.images, c.targets, maps, head=head, steps=3)
        assert isinstance(result, I.FaithfulnessCurve) and bool(jnp.isfinite(result.scores).all())
        clean = result.scores[:, -1] if curve is I.insertion_curve else result.scores[:, 0]
        _close(clean, probs, rtol=1e-5)
    reference = {"gradient": maps, "random": I.random_maps(c.images)}
    rows = I.faithfulness_rows(
        c.apply_fn, c.params, c.images, c.targets, reference, head=head, steps=3
    )
    assert len(rows) == len(reference)  # one row of AUCs per map
    readout = I.style_readout(c.apply_fn, c.params, c.images, head=head)
    _close(readout, jax.nn.softmax(_head(c.model(c.images), head)), rtol=1e-5)
    pool = jax.random.uniform(jax.random.key(8), (6, *c.spec.image_shape))
    result = I.tcav_test(
        c.apply_fn,
        c.params,
        c.images,
        c.targets,
        {"bright": 0.5 + pool / 2},
        pool,
        layers=layer,
        head=head,
        n_random=2,
        random_size=2,
        steps=5,
    )
    assert isinstance(result, I.TCAVResult)


# --------------------------------------------------------------------------- coverage
def _is_influence(obj) -> bool:
    return getattr(obj, "__module__", "").startswith("scriptlab.interpret.influence")


EXCLUDED: set[str] = set()  # every public transform runs on the foreign models
# Training-data attribution (scriptlab.interpret.influence: influence_scores, hvp, ...) is
# covered on foreign models by tests/test_influence_foreign.py; _is_influence excludes it here.


def _takes_a_model(obj) -> bool:
    try:
        return "apply_fn" in inspect.signature(obj).parameters
    except (TypeError, ValueError):
        return False


def test_every_public_callable_is_covered():
    public = {name for name in I.__all__ if callable(getattr(I, name))}
    influence = {name for name in public if _is_influence(getattr(I, name))}
    # Functions of arrays alone (statistics, map distances, rankings, result types) never see
    # the model, so its architecture cannot break them; every callable taking apply_fn must be
    # covered here (many array-only ones are, through the tests above).
    arrays_only = {name for name in public if not _takes_a_model(getattr(I, name))}
    missing = sorted(public - COVERED - EXCLUDED - influence - arrays_only)
    assert not missing, f"public transforms with no foreign-model test: {missing}"
    stale = sorted((COVERED | EXCLUDED) - set(I.__all__))
    assert not stale, f"covered or excluded names that scriptlab.interpret does not export: {stale}"
    assert all(inspect.isfunction(t) for n, t in globals().items() if n.startswith("test_"))


# --------------------------------------------------------------------------- the docs page
@pytest.mark.slow
def test_own_model_page_runs():
    # docs/own_model.md's code blocks, in order, in one namespace: the page cannot rot
    page = (Path(__file__).resolve().parents[1] / "docs" / "own_model.md").read_text()
    blocks = re.findall(r"^```python\n(.*?)^```", page, re.S | re.M)
    assert len(blocks) >= 5
    namespace: dict = {}
    exec(compile("\n".join(blocks), "docs/own_model.md", "exec"), namespace)
    maps, rows = namespace["maps"], namespace["rows"]
    assert set(maps) == set(I.SALIENCY_METHODS) and len(rows) == len(I.SALIENCY_METHODS)
    assert all(m.shape == (8, 28, 28) and bool(jnp.isfinite(m).all()) for m in maps.values())
    assert namespace["cm"].images.shape == (2, 28, 28, 1)
