import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
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


# --------------------------------------------------------------------------- the layer table
def _receptive_fields_match(model, image_hw):
    """Every spatial layer: the analytic receptive field of three units is their empirical one."""
    from scriptlab.interpret import receptive as R

    rfs = R.receptive_fields(model.geometry(), image_hw)
    f = R.trunk_fn(model)
    acts = jax.eval_shape(f, jax.ShapeDtypeStruct((1, *image_hw, 3), jnp.float32))
    assert set(rfs) == set(acts)
    for name, rf in rfs.items():
        assert acts[name].shape[1:3] == rf.shape, name
        h, w = rf.shape
        units = [(0, 0), (h // 2, w // 2), (h - 1, w - 1)]
        masks = R.empirical_receptive_field(
            f, (*image_hw, 3), name, [u[0] for u in units], [u[1] for u in units]
        )
        for (i, j), mask in zip(units, masks, strict=True):
            box = tuple(int(v) for v in R.receptive_box(rf, i, j, image_hw))
            rows, cols = np.nonzero(mask)
            assert (rows.min(), cols.min(), rows.max() + 1, cols.max() + 1) == box, (name, i, j)


def test_a_fourth_conv_block_reaches_every_view():
    """One more entry in ``channels`` adds conv4 + pool4 to the modules, taps, geometry and cost."""
    from scriptlab.model import ScriptNet, functional

    model = ScriptNet(4, 3, channels=(8, 16, 16, 32), hidden=24, rngs=nnx.Rngs(0))
    names = ["conv1", "conv2", "pool2", "conv3", "pool3", "conv4", "pool4", "dense"]
    assert [row.name for row in model.layers] == names
    params, apply_fn = functional(model)
    assert sorted(params.to_pure_dict()) == sorted(
        ["conv1", "conv2", "conv3", "conv4", "dense", "script_head", "font_head"]
    )
    out = apply_fn(params, jax.random.uniform(jax.random.key(1), (2, 32, 64, 3)))
    assert list(out.activations) == names  # the taps, in forward order
    assert out.activations["pool4"].shape == (2, 2, 4, 32)
    assert out.embedding.shape == (2, 24) and out.script.shape == (2, 4)
    assert [g.name for g in model.geometry()] == names[:-1]
    # by hand: output grid x kernel area x in x out x 2 per conv; 2 x weights per dense layer
    convs = [
        16 * 32 * 16 * 3 * 8,  # conv1: 4x4 stride 2 on 32x64
        16 * 32 * 9 * 8 * 16,
        8 * 16 * 9 * 16 * 16,
        4 * 8 * 9 * 16 * 32,
    ]
    dense = (2 * 4 * 32) * 24 + 24 * 4 + 24 * 3
    assert model.cost()["flops_per_image"] == 2 * (sum(convs) + dense)
    weights = 16 * 3 * 8 + 9 * 8 * 16 + 9 * 16 * 16 + 9 * 16 * 32 + dense
    assert model.cost()["params"] == weights + (8 + 16 + 16 + 32) + (24 + 4 + 3)
    _derived_views_follow(model)


def _derived_views_follow(model):
    """The trunk, the top-layer view and the layer-wise view read the model's own table."""
    from scriptlab.interpret import influence as inf
    from scriptlab.interpret import receptive as R
    from scriptlab.model import functional, standardise

    params, apply_fn = functional(model)
    x = jax.random.uniform(jax.random.key(1), (2, *model.image_shape))
    out = apply_fn(params, x)
    trunk = model.trunk(standardise(x))  # the forward pass's own stack, bit for bit
    assert list(trunk) == [r.name for r in model.layers if r.kind != "dense"]
    for name, act in trunk.items():
        np.testing.assert_array_equal(act, out.activations[name])
    assert list(R.trunk_fn(model)(x)) == list(trunk)
    dense = model.layers[-1].name
    view = inf.top_layers(apply_fn, params, x, dense)
    assert list(view.params(params)) == [dense, "script_head", "font_head"]  # call order
    got = view(view.params(params), view.features(params, x))
    np.testing.assert_allclose(got.script, out.script, rtol=1e-5, atol=1e-6)
    convs = [r.name for r in model.layers if r.kind in ("conv", "dense")]
    layers = inf.layerwise_loss(apply_fn, "script").layers(params, x)
    assert [layer.name for layer in layers] == [*convs, "script_head"]


def test_a_table_given_row_by_row_builds_that_network():
    from scriptlab.model import LayerSpec, ScriptNet

    table = (
        LayerSpec("stem", "conv", 6, 5, 1, "SAME"),
        LayerSpec("down", "pool", 0, 2, 2, "VALID"),
        LayerSpec("wide", "conv", 12, 3, 2, "SAME"),
        LayerSpec("embed", "dense", 16),
    )
    model = ScriptNet(3, 2, layers=table, image_shape=(16, 16, 3), rngs=nnx.Rngs(0))
    assert [g.name for g in model.geometry()] == ["stem", "down", "wide"]
    flops = 16 * 16 * 25 * 3 * 6 + 4 * 4 * 9 * 6 * 12 + (4 * 4 * 12) * 16 + 16 * 3 + 16 * 2
    assert model.cost()["flops_per_image"] == 2 * flops
    with pytest.raises(ValueError, match="divisible by 4"):
        ScriptNet(3, 2, layers=table, image_shape=(18, 16, 3), rngs=nnx.Rngs(0))


@pytest.mark.slow
def test_the_geometry_of_a_variant_is_its_empirical_receptive_field():
    """geometry() and trunk_fn of two variants agree with the gradients' support."""
    from scriptlab.model import LayerSpec, ScriptNet

    deeper = ScriptNet(4, 3, channels=(8, 16, 16, 32), rngs=nnx.Rngs(0))
    _receptive_fields_match(deeper, (32, 64))
    table = (
        LayerSpec("stem", "conv", 6, 5, 1, "SAME"),
        LayerSpec("down", "pool", 0, 2, 2, "VALID"),
        LayerSpec("wide", "conv", 12, 3, 2, "SAME"),
        LayerSpec("embed", "dense", 16),
    )
    variant = ScriptNet(3, 2, layers=table, image_shape=(16, 16, 3), rngs=nnx.Rngs(0))
    _receptive_fields_match(variant, (16, 16))
    _derived_views_follow(variant)


@pytest.mark.parametrize(
    "rows, match",
    [
        ((("a", "conv", 4, 3, 1, "SAME"), ("a", "dense", 8)), "distinct names"),
        (
            (("a", "conv", 4, 3, 1, "SAME"), ("p", "pool", 0, 3, 2, "VALID"), ("d", "dense", 8)),
            "2x2",
        ),
        ((("a", "conv", 4, 3, 1, "SAME"),), "end in exactly one dense"),
        ((("a", "norm", 4, 3, 1, "SAME"), ("d", "dense", 8)), "kind 'norm'"),
        ((("a", "conv", 4, 3, 1, "SAME"), ("script_head", "dense", 8)), "taken by a head"),
    ],
)
def test_a_bad_layer_table_is_named(rows, match):
    from scriptlab.model import ScriptNet

    with pytest.raises(ValueError, match=match):
        ScriptNet(3, 2, layers=rows, image_shape=(16, 16, 3), rngs=nnx.Rngs(0))


def test_the_default_table_is_the_documented_scriptnet():
    from scriptlab.model import CONV_LAYERS, ScriptNet

    assert LAYERS == ("conv1", "conv2", "pool2", "conv3", "pool3", "dense")
    assert CONV_LAYERS == ("conv1", "conv2", "conv3")
    assert ScriptNet.geometry() == scriptnet()[0].geometry()
    assert [(g.kernel, g.stride) for g in ScriptNet.geometry()] == [
        (4, 2),
        (3, 1),
        (2, 2),
        (3, 1),
        (2, 2),
    ]
