import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from scriptlab.model import LAYERS, gradient_flip

from helpers import scriptnet


@pytest.fixture(scope="module")
def net():
    model, params, apply_fn = scriptnet()
    images = jax.random.uniform(jax.random.key(0), (5, 32, 64, 3))
    return model, params, apply_fn, images


def test_flip_forward_is_identity_and_backward_is_minus_lam_g():
    x = jnp.arange(6.0).reshape(2, 3)
    g = jnp.linspace(-1, 1, 6).reshape(2, 3)
    for lam in (0.0, 0.5, 2.0):
        y, vjp = jax.vjp(gradient_flip, x, jnp.float32(lam))
        assert np.array_equal(y, x)
        dx, dlam = vjp(g)
        np.testing.assert_allclose(dx, -lam * g)
        assert float(dlam) == 0.0


def test_flip_check_grads_reverse_mode():
    # check_grads compares reverse-mode against finite differences of the forward;
    # the flip's forward is the identity, so with lam = -1 its VJP is the identity too.
    f = lambda x: jnp.sin(gradient_flip(x, jnp.float32(-1.0)))
    check_grads(f, (jnp.array([0.3, -1.2, 2.0]),), order=1, modes=["rev"])


def test_flip_composes_with_jit_vmap_grad_and_never_recompiles():
    traces = []

    @jax.jit
    def loss(x, lam):
        traces.append(1)
        return jnp.sum(gradient_flip(x, lam) ** 2)

    x = jnp.ones((4, 3))
    for lam in (0.1, 0.7, 1.3):
        g = jax.grad(loss)(x, jnp.float32(lam))
        np.testing.assert_allclose(g, -lam * 2 * x, rtol=1e-6)
    per = jax.vmap(jax.grad(lambda r, lam: jnp.sum(gradient_flip(r, lam) ** 2)), (0, None))(
        x, jnp.float32(0.5)
    )
    np.testing.assert_allclose(per, -0.5 * 2 * x, rtol=1e-6)
    assert len(traces) == 1


@pytest.mark.slow
def test_lam_zero_leaves_trunk_gradient_untouched_by_font_head(net):
    model, params, apply_fn, images = net
    y_script, y_font = jnp.array([0, 1, 2, 3, 0]), jnp.array([2, 1, 0, 2, 1])

    def both(p):
        out = apply_fn(p, images, lam=0.0)
        ce = lambda z, y: -jnp.mean(jax.nn.log_softmax(z)[jnp.arange(len(y)), y])
        return ce(out.script, y_script) + ce(out.font, y_font)

    def script_only(p):
        out = apply_fn(p, images, lam=0.0)
        return -jnp.mean(jax.nn.log_softmax(out.script)[jnp.arange(5), y_script])

    g_both, g_script = jax.jit(jax.grad(both))(params), jax.jit(jax.grad(script_only))(params)
    for name in ("conv1", "conv2", "conv3", "dense"):
        np.testing.assert_allclose(
            g_both[name]["kernel"].value, g_script[name]["kernel"].value, rtol=1e-5, atol=1e-7
        )
    assert np.abs(g_both["font_head"]["kernel"].value).sum() > 0


def test_functional_outputs_and_named_activations(net):
    model, params, apply_fn, images = net
    out = jax.jit(apply_fn)(params, images)
    assert (
        out.script.shape == (5, 4) and out.font.shape == (5, 3) and out.embedding.shape == (5, 128)
    )
    assert sorted(out.activations) == sorted(LAYERS)
    assert out.activations["conv1"].shape[:3] == (5, 16, 32)
    assert out.activations["pool3"].shape[:3] == (5, 4, 8)


@pytest.mark.slow
def test_image_gradient_matches_finite_differences(net):
    _, params, apply_fn, images = net
    f = lambda x: apply_fn(params, x[None]).script[0, 1]
    x = images[0].astype(jnp.float64) if jax.config.jax_enable_x64 else images[0]
    g = jax.grad(f)(x)
    rng = np.random.default_rng(0)
    v = rng.normal(size=x.shape)
    v = jnp.asarray(v / np.linalg.norm(v), jnp.float32)
    eps = 1e-3
    fd = (f(x + eps * v) - f(x - eps * v)) / (2 * eps)
    np.testing.assert_allclose(jnp.vdot(g, v), fd, rtol=2e-2, atol=2e-3)


def test_vmap_over_images_matches_batch(net):
    _, params, apply_fn, images = net
    single = jax.vmap(lambda x: apply_fn(params, x[None]).script[0])(images)
    np.testing.assert_allclose(single, apply_fn(params, images).script, rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_hessian_vector_product_wrt_params_matches_finite_differences(net):
    _, params, apply_fn, images = net
    # softplus keeps the loss smooth between max-pool switches; in float64 a step of 1e-5
    # crosses none, so central differences of the gradient are an accurate reference
    # (in float32 a step large enough to beat rounding crosses them: 90% off at 1e-3)
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        images = jnp.asarray(images, jnp.float64)
        loss = lambda p: jnp.mean(apply_fn(p, images, relu=jax.nn.softplus).script ** 2)
        keys = iter(jax.random.split(jax.random.key(1), 64))
        v = jax.tree.map(lambda a: jax.random.normal(next(keys), a.shape, jnp.float64), params)
        norm = jnp.sqrt(sum(jnp.sum(x**2) for x in jax.tree.leaves(v)))
        v = jax.tree.map(lambda a: a / norm, v)
        # jitted: op by op, the float64 jvp-of-grad took about a minute
        hvp = jax.jit(lambda p, u: jax.jvp(jax.grad(loss), (p,), (u,))[1])(params, v)
        grad = jax.jit(jax.grad(loss))
        eps = 1e-5
        plus = grad(jax.tree.map(lambda a, b: a + eps * b, params, v))
        minus = grad(jax.tree.map(lambda a, b: a - eps * b, params, v))
        fd = jax.tree.map(lambda a, b: (a - b) / (2 * eps), plus, minus)
        a = np.concatenate([np.ravel(x) for x in jax.tree.leaves(hvp)])
        b = np.concatenate([np.ravel(x) for x in jax.tree.leaves(fd)])
    assert np.linalg.norm(a - b) < 1e-6 * np.linalg.norm(b)


def test_perturb_gives_gradient_wrt_a_layer(net):
    _, params, apply_fn, images = net
    acts = apply_fn(params, images).activations["conv3"]
    g = jax.grad(lambda d: apply_fn(params, images, perturb={"conv3": d}).script[:, 0].sum())(
        jnp.zeros_like(acts)
    )
    assert g.shape == acts.shape and np.abs(g).sum() > 0


def test_cost_counts_parameters_and_flops(net):
    model = net[0]
    cost = model.cost()
    c1 = 16 * 32 * 16 * 3 * 16 * 2  # 4x4 stride-2 stem
    c2 = 16 * 32 * 9 * 16 * 32 * 2
    c3 = 8 * 16 * 9 * 32 * 64 * 2
    dense = 2 * (4 * 8 * 64 * 128) + 2 * 128 * 4 + 2 * 128 * 3
    assert cost["flops_per_image"] == c1 + c2 + c3 + dense
    n = (
        (16 * 3 * 16 + 16)
        + (9 * 16 * 32 + 32)
        + (9 * 32 * 64 + 64)
        + (2048 * 128 + 128)
        + (128 * 4 + 4)
        + (128 * 3 + 3)
    )
    assert cost["params"] == n
