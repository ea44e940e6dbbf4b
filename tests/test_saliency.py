"""Saliency methods against finite differences, closed forms and hand computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from scriptlab.interpret import saliency as S

from helpers import SMALL_SHAPE, ToyOutputs, linear_apply, scriptnet


def tiny_relu_apply(params, images, relu=jax.nn.relu, perturb=None):
    """One hidden ReLU layer over the flattened 1x2x1 image."""
    x = images.reshape(images.shape[0], -1)
    h = relu(x @ params["w1"].T)
    return ToyOutputs(h @ params["w2"].T, {"hidden": h})


TINY = {
    "w1": jnp.array([[1.0, -1.0], [2.0, 1.0], [-1.0, 1.0]]),
    "w2": jnp.array([[1.0, -1.0, 2.0], [0.5, 0.5, 0.5]]),
}
TINY_X = jnp.array([1.0, 0.5]).reshape(1, 1, 2, 1)


@pytest.fixture(scope="module")
def small_net():
    _, params, apply_fn = scriptnet(SMALL_SHAPE)
    images = jax.random.uniform(jax.random.key(1), (3, *SMALL_SHAPE))
    return apply_fn, params, images, jnp.array([0, 1, 3])


def test_gradient_matches_finite_differences(small_net):
    apply_fn, params, images, targets = small_net
    grads = S.vanilla_gradient(apply_fn, params, images, targets, reduce="none")
    assert grads.shape == images.shape
    with jax.enable_x64(True):  # central differences in float64, independent of autodiff
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x64 = jnp.asarray(images, jnp.float64)

        def f(x):
            return jnp.take_along_axis(apply_fn(p64, x).script, targets[:, None], 1)[:, 0]

        eps = 1e-5
        for d in range(3):  # three random unit directions per image
            v = jax.random.normal(jax.random.key(10 + d), images.shape, jnp.float64)
            v = v / jnp.sqrt((v**2).sum((1, 2, 3), keepdims=True))
            fd = (f(x64 + eps * v) - f(x64 - eps * v)) / (2 * eps)
            analytic = (np.asarray(grads, np.float64) * np.asarray(v)).sum((1, 2, 3))
            np.testing.assert_allclose(analytic, fd, rtol=1e-3, atol=1e-5)


def test_gradient_simonyan_reduction_is_max_abs_over_channels(small_net):
    apply_fn, params, images, targets = small_net
    raw = S.vanilla_gradient(apply_fn, params, images, targets, reduce="none")
    maps = S.vanilla_gradient(apply_fn, params, images, targets)
    assert maps.shape == images.shape[:3]
    np.testing.assert_allclose(maps, np.abs(np.asarray(raw)).max(-1), rtol=1e-6)


def test_linear_model_gradient_and_gradient_x_input_closed_form():
    w = jax.random.normal(jax.random.key(0), (2, 4, 5, 3))
    x = jax.random.uniform(jax.random.key(1), (3, 4, 5, 3))
    t = jnp.array([1, 0, 1])
    g = S.vanilla_gradient(linear_apply, {"w": w}, x, t, reduce="none")
    np.testing.assert_allclose(g, w[t], rtol=1e-6)
    gx = S.gradient_x_input(linear_apply, {"w": w}, x, t)
    np.testing.assert_allclose(gx, (w[t] * x).sum(-1), rtol=1e-5, atol=1e-6)


def test_integrated_gradients_linear_model_is_exact():
    w = jax.random.normal(jax.random.key(0), (2, 4, 5, 3))
    x = jax.random.uniform(jax.random.key(1), (2, 4, 5, 3))
    ig = S.integrated_gradients(
        linear_apply, {"w": w}, x, 1, steps=3, baseline="gray", reduce="none"
    )
    np.testing.assert_allclose(ig, w[1] * (x - 0.5), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_integrated_gradients_completeness_within_one_percent(small_net):
    apply_fn, params, images, targets = small_net
    for baseline in ("black", "blur"):
        ig = S.integrated_gradients(apply_fn, params, images, targets, steps=512, baseline=baseline)
        total, delta = S.completeness_gap(apply_fn, params, images, targets, ig, baseline=baseline)
        np.testing.assert_allclose(total, delta, rtol=1e-2, atol=1e-3)
    # Too few steps is visibly off on a ReLU net: the check can fail.
    ig1 = S.integrated_gradients(apply_fn, params, images, targets, steps=1)
    total1, delta1 = S.completeness_gap(apply_fn, params, images, targets, ig1)
    assert np.abs(np.asarray(total1 - delta1)).max() > 1e-2 * np.abs(np.asarray(delta1)).max()


def test_ig_chunking_does_not_change_the_answer(small_net):
    apply_fn, params, images, targets = small_net
    a = S.integrated_gradients(apply_fn, params, images, targets, steps=12, samples_per_call=12)
    b = S.integrated_gradients(apply_fn, params, images, targets, steps=12, samples_per_call=4)
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


def test_guided_backprop_and_deconvnet_hand_computed():
    # pre-activations W1 x = [0.5, 2.5, -0.5]; dS_0/dh = w2[0] = [1, -1, 2]
    # gradient: mask [1, 1, 0] -> [1, -1, 0] -> W1^T = [-1, -2]
    # guided:   keep x>0 and g>0 -> [1, 0, 0] -> W1^T = [1, -1]
    # deconv:   relu(g) -> [1, 0, 2]          -> W1^T = [-1, 1]
    kw = dict(reduce="sum")
    grad = S.vanilla_gradient(tiny_relu_apply, TINY, TINY_X, 0, **kw)
    guided = S.guided_backprop(tiny_relu_apply, TINY, TINY_X, 0, **kw)
    deconv = S.deconvnet(tiny_relu_apply, TINY, TINY_X, 0, **kw)
    np.testing.assert_allclose(grad[0, 0], [-1.0, -2.0])
    np.testing.assert_allclose(guided[0, 0], [1.0, -1.0])
    np.testing.assert_allclose(deconv[0, 0], [-1.0, 1.0])


def test_relu_rules_forward_is_relu():
    x = jnp.linspace(-2, 2, 9)
    np.testing.assert_array_equal(S.guided_relu(x), jax.nn.relu(x))
    np.testing.assert_array_equal(S.deconv_relu(x), jax.nn.relu(x))


def cam_toy_apply(params, images, relu=jax.nn.relu, perturb=None):
    """A = relu(a_k * x + b_k) (1x1 conv, 2 channels); S_c = sum_k v_ck sum_hw A^2 / 2."""
    act = relu(images * params["a"] + params["b"])  # [N, H, W, 2]
    if perturb and "conv" in perturb:
        act = act + perturb["conv"]
    return ToyOutputs(0.5 * jnp.einsum("nhwk,ck->nc", act**2, params["v"]), {"conv": act})


def test_grad_cam_hand_computed():
    params = {
        "a": jnp.array([1.0, -2.0]),
        "b": jnp.array([0.1, 1.5]),
        "v": jnp.array([[1.0, 0.5], [-1.0, 2.0]]),
    }
    x = jax.random.uniform(jax.random.key(3), (2, 3, 4, 1))
    for c in (0, 1):
        cam = S.grad_cam(cam_toy_apply, params, x, c, layer="conv")
        act = np.maximum(np.asarray(x) * np.asarray(params["a"]) + np.asarray(params["b"]), 0)
        grad = np.asarray(params["v"][c]) * act  # dS/dA
        alpha = grad.mean(axis=(1, 2), keepdims=True)
        expected = np.maximum((alpha * act).sum(-1), 0)
        np.testing.assert_allclose(cam, expected, rtol=1e-5, atol=1e-6)


def test_grad_cam_on_scriptnet_upsamples_and_is_nonnegative(small_net):
    apply_fn, params, images, targets = small_net
    cam = S.grad_cam(apply_fn, params, images, targets, layer="conv2")
    assert cam.shape == images.shape[:3]
    assert bool((cam >= 0).all()) and bool(jnp.isfinite(cam).all())


def test_smoothgrad_zero_noise_is_gradient_and_is_deterministic(small_net):
    apply_fn, params, images, targets = small_net
    g = S.vanilla_gradient(apply_fn, params, images, targets)
    sg0 = S.smoothgrad(apply_fn, params, images, targets, n_samples=4, noise=0.0)
    np.testing.assert_allclose(sg0, g, rtol=1e-5, atol=1e-7)
    a = S.smoothgrad(apply_fn, params, images, targets, n_samples=4, key=jax.random.key(7))
    b = S.smoothgrad(
        apply_fn, params, images, targets, n_samples=4, key=jax.random.key(7), samples_per_call=2
    )
    np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-7)
    assert not np.allclose(a, g)


def test_all_methods_shape_and_no_recompile(small_net):
    apply_fn, params, images, targets = small_net
    # options shared with the tests above, so the jit cache is reused
    options = {
        "smoothgrad": {"n_samples": 4},
        "integrated_gradients": {"steps": 12},
        "grad_cam": {"layer": "conv2"},
    }
    for method in S.METHODS:
        kw = options.get(method, {})
        m = S.saliency(apply_fn, params, images, targets, method=method, **kw)
        assert m.shape == images.shape[:3] and bool(jnp.isfinite(m).all()), method
    size = S._gradient_map._cache_size()
    S.vanilla_gradient(apply_fn, params, images * 0.99, targets[::-1])  # stays in [0, 1]
    assert S._gradient_map._cache_size() == size


def test_font_head_is_selectable(small_net):
    apply_fn, params, images, _ = small_net
    m = S.vanilla_gradient(apply_fn, params, images, 2, head="font")
    assert m.shape == images.shape[:3]
    with pytest.raises(ValueError, match="targets must lie in \\[0, 3\\)"):
        S.vanilla_gradient(apply_fn, params, images, 3, head="font")


@pytest.mark.parametrize(
    "images, targets, match",
    [
        (jnp.zeros((8, 16, 3)), 0, "rank 4"),
        (jnp.zeros((2, 8, 16, 4)), 0, "channel count"),
        (jnp.zeros((2, 8, 16, 3)), 4, r"targets must lie in \[0, 4\), got values in \[4, 4\]"),
        (jnp.zeros((2, 8, 16, 3)), jnp.array([0, -1]), "targets must lie"),
        (jnp.zeros((2, 8, 16, 3)), jnp.array([0, 1, 2]), "one per image"),
        (jnp.zeros((2, 8, 16, 3)).at[1, 2, 3, 0].set(jnp.nan), 0, "NaN"),
    ],
)
def test_bad_input_raises_clear_errors(small_net, images, targets, match):
    apply_fn, params, _, _ = small_net
    with pytest.raises(ValueError, match=match):
        S.vanilla_gradient(apply_fn, params, images, targets)


def test_bad_options_raise(small_net):
    apply_fn, params, images, targets = small_net
    with pytest.raises(ValueError, match="method must be one of"):
        S.saliency(apply_fn, params, images, targets, method="lime")
    with pytest.raises(ValueError, match="head='style'"):
        S.vanilla_gradient(apply_fn, params, images, targets, head="style")
    with pytest.raises(ValueError, match="layer='conv9'"):
        S.grad_cam(apply_fn, params, images, targets, layer="conv9")
    with pytest.raises(ValueError, match="baseline must be one of"):
        S.integrated_gradients(apply_fn, params, images, targets, baseline="pink")
    with pytest.raises(ValueError, match="reduce must be one of"):
        S.vanilla_gradient(apply_fn, params, images, targets, reduce="mean")


def test_font_head_gradients_are_true_by_default(small_net):
    # ScriptNet's font head sits behind gradient_flip (backward -lam * g) during training;
    # apply_fn's default lam=None applies no flip, lam=-1 is the identity, lam=1 negates.
    import functools

    apply_fn, params, images, _ = small_net
    g_true = S.vanilla_gradient(apply_fn, params, images, 1, head="font", reduce="none")
    g_ident = S.vanilla_gradient(
        functools.partial(apply_fn, lam=-1.0), params, images, 1, head="font", reduce="none"
    )
    g_flip = S.vanilla_gradient(
        functools.partial(apply_fn, lam=1.0), params, images, 1, head="font", reduce="none"
    )
    np.testing.assert_allclose(g_ident, g_true, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(g_flip, -g_true, rtol=1e-5, atol=1e-7)
    v = jax.random.normal(jax.random.key(5), images.shape)
    v = v / jnp.sqrt((v**2).sum((1, 2, 3), keepdims=True))
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x64, v64 = jnp.asarray(images, jnp.float64), jnp.asarray(v, jnp.float64)
        eps = 1e-5
        fd = (
            apply_fn(p64, x64 + eps * v64).font[:, 1] - apply_fn(p64, x64 - eps * v64).font[:, 1]
        ) / (2 * eps)
    np.testing.assert_allclose(
        (np.asarray(g_true) * np.asarray(v)).sum((1, 2, 3)), fd, rtol=1e-3, atol=1e-5
    )
