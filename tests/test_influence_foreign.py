"""TracIn and EK-FAC on NNX networks that are not ScriptNet (issue 28, section 1).

Two CNNs written here, each with its own head name: the Flax MNIST tutorial's
network (1-channel 28x28, conv-relu-avgpool twice, dense, dense; narrower than
the tutorial so a test stays small) and a small ResNet (BatchNorm in
evaluation mode, GELU, strided and dilated convs, explicit, reflect and
circular padding, a conv without bias, residual adds, global average pooling,
LayerNorm, a head named ``logits``). The references are independent of the
layer view: ``jax.grad`` of each example's loss, plain Python loops, and the
exact Gauss-Newton matrix from ``jax.jacobian`` of the logits.
"""

import dataclasses
import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.flatten_util import ravel_pytree

from scriptlab.interpret import influence as inf
from scriptlab.interpret.influence import ekfac as ek
from scriptlab.interpret.influence import layers as L


@dataclasses.dataclass(frozen=True, eq=False)
class Apply:
    """A pure ``apply_fn(params, x)`` of an NNX model in evaluation mode (hashes by identity)."""

    graphdef: nnx.GraphDef
    rest: nnx.State

    def __call__(self, params, x, **_):
        return nnx.merge(self.graphdef, params, self.rest)(x)


def split(make, seed=0):
    """(params, apply_fn) of the model ``make()`` builds, in evaluation mode, numpy-initialised.

    The model is built abstractly and filled from numpy (fan-in scaled kernels;
    biases, BatchNorm running statistics and norm scales away from 0 / 1, so
    evaluation mode matters): jitting nnx's own initialisers compiles for tens
    of seconds on a loaded 2-core machine.
    """
    abstract = nnx.eval_shape(make)
    graphdef, state = nnx.split(abstract)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        keys = [str(getattr(k, "key", getattr(k, "name", k))) for k in path]
        name = [k for k in keys if k != "value"][-1]
        shape = leaf.shape
        if name == "kernel":
            value = rng.normal(size=shape) / np.sqrt(np.prod(shape[:-1]))
        elif name == "var":
            value = rng.uniform(0.5, 2.0, shape)
        elif name == "scale":
            value = rng.uniform(0.5, 1.5, shape)
        else:  # bias, mean
            value = rng.normal(size=shape) * 0.2
        return jnp.asarray(value, leaf.dtype)

    model = nnx.merge(graphdef, jax.tree_util.tree_map_with_path(fill, state))
    model.eval()
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return params, Apply(graphdef, rest)


class Digits(NamedTuple):
    """The MNIST network's output: one field, not called ``script``."""

    digit: jax.Array


class Logits(NamedTuple):
    """The ResNet's output."""

    logits: jax.Array


class Scores(NamedTuple):
    """The one-layer model's output."""

    scores: jax.Array


class Y(NamedTuple):
    """The one-conv model's output."""

    y: jax.Array


class MnistCNN(nnx.Module):
    """The Flax MNIST tutorial's CNN (conv-relu-avgpool x2, dense-relu, dense), narrower."""

    def __init__(self, *, rngs: nnx.Rngs, width=(4, 6), hidden=12):
        self.conv1 = nnx.Conv(1, width[0], kernel_size=(3, 3), rngs=rngs)
        self.conv2 = nnx.Conv(width[0], width[1], kernel_size=(3, 3), rngs=rngs)
        self.linear1 = nnx.Linear(7 * 7 * width[1], hidden, rngs=rngs)
        self.linear2 = nnx.Linear(hidden, 10, rngs=rngs)

    def __call__(self, x):
        pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        x = pool(nnx.relu(self.conv1(x)))
        x = pool(nnx.relu(self.conv2(x)))
        x = x.reshape(x.shape[0], -1)
        return Digits(self.linear2(nnx.relu(self.linear1(x))))


class Block(nnx.Module):
    """A residual block: conv-BN-GELU, conv-BN, plus a (strided 1x1) shortcut, GELU."""

    def __init__(self, cin, cout, stride, *, padding, rngs):
        self.conv_a = nnx.Conv(cin, cout, (3, 3), strides=stride, padding=padding, rngs=rngs)
        self.bn_a = nnx.BatchNorm(cout, rngs=rngs)
        self.conv_b = nnx.Conv(cout, cout, (3, 3), kernel_dilation=2, use_bias=False, rngs=rngs)
        self.bn_b = nnx.BatchNorm(cout, rngs=rngs)
        self.shortcut = (
            nnx.Conv(cin, cout, (1, 1), strides=stride, rngs=rngs) if stride > 1 else None
        )

    def __call__(self, x):
        h = nnx.gelu(self.bn_a(self.conv_a(x)))
        h = self.bn_b(self.conv_b(h))
        return nnx.gelu(h + (x if self.shortcut is None else self.shortcut(x)))


class ResNet(nnx.Module):
    """A small ResNet: strided stem with explicit padding, two blocks, GAP, LayerNorm, ``logits``."""

    def __init__(self, *, rngs: nnx.Rngs, n_classes=5):
        self.stem = nnx.Conv(3, 4, (3, 3), strides=2, padding=1, rngs=rngs)
        self.blocks = nnx.List(
            [
                Block(4, 4, 1, padding="REFLECT", rngs=rngs),
                Block(4, 6, 2, padding="CIRCULAR", rngs=rngs),
            ]
        )
        self.norm = nnx.LayerNorm(6, rngs=rngs)
        self.head = nnx.Linear(6, n_classes, rngs=rngs)

    def __call__(self, x):
        x = nnx.gelu(self.stem(x))
        for block in self.blocks:
            x = block(x)
        return Logits(self.head(self.norm(x.mean(axis=(1, 2)))))


MODELS = {
    "mnist": (lambda seed: MnistCNN(rngs=nnx.Rngs(seed)), (28, 28, 1), "digit", 10),
    "resnet": (lambda seed: ResNet(rngs=nnx.Rngs(seed)), (12, 12, 3), "logits", 5),
}


@functools.lru_cache
def _model(name, seed=0):
    build, shape, head, n_classes = MODELS[name]
    params, apply_fn = split(lambda: build(0), seed)
    return params, apply_fn, head


def _data(name, n, seed):
    _, shape, _, n_classes = MODELS[name]
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.uniform(size=(n, *shape)), jnp.float32)
    return x, jnp.asarray(rng.integers(0, n_classes, n), jnp.int32)


def _tracked_mask(params, layers):
    """bool[P] over ravel_pytree(params): True on the kernels and biases of the tracked layers."""
    leaves = jax.tree.leaves(params)
    tracked = {layer.kernel for layer in layers} | {layer.bias for layer in layers}
    parts = [np.full(np.size(a), i in tracked) for i, a in enumerate(leaves)]
    return np.concatenate(parts)


@functools.lru_cache
def _grad_fn(apply_fn, head):
    loss = inf.cross_entropy(apply_fn, head)
    return jax.jit(
        lambda p, xi, yi: ravel_pytree(jax.grad(lambda q: loss(q, xi[None], yi[None])[0])(p))[0]
    )


def _ref_grads(params, apply_fn, head, x, y, mask):
    """float64[N, P]: each example's jax.grad, zero off the tracked layers."""
    g = np.stack([np.asarray(_grad_fn(apply_fn, head)(params, x[i], y[i])) for i in range(len(y))])
    return np.where(mask, g, 0.0).astype(np.float64)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_layers_are_found_in_call_order_and_named_by_their_params_path(name):
    params, apply_fn, head = _model(name)
    x, _ = _data(name, 2, 0)
    names = [layer.name for layer in inf.layerwise_loss(apply_fn, head).layers(params, x)]
    want = {
        "mnist": ["conv1", "conv2", "linear1", "linear2"],
        "resnet": [
            "stem",
            "blocks.0.conv_a",
            "blocks.0.conv_b",
            "blocks.1.conv_a",
            "blocks.1.conv_b",
            "blocks.1.shortcut",
            "head",
        ],
    }[name]
    assert names == want


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_layer_gradients_equal_jax_grad_of_each_example(name):
    params, apply_fn, head = _model(name)
    x, y = _data(name, 3, 1)
    loss = inf.layerwise_loss(apply_fn, head)
    mask = _tracked_mask(params, loss.layers(params, x))
    want = _ref_grads(params, apply_fn, head, x, y, mask)
    got = np.asarray(loss.example_grads(params, x, y))
    scale = np.abs(want).max()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-5 * scale)
    assert (got[:, ~mask] == 0).all()  # normalisation parameters are held fixed
    u = loss.layer_grads(params, x, y)
    np.testing.assert_allclose(loss.grad_dots(u, u), want @ want.T, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(loss.grad_sq_norms(u), (want**2).sum(1), rtol=1e-4, atol=1e-6)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_tracin_equals_the_plain_loop_over_checkpoints(name):
    params, apply_fn, head = _model(name)
    ckpts = [_model(name, seed)[0] for seed in (1, 2)]
    lrs = np.array([0.2, 0.05])
    x, y = _data(name, 5, 2)
    xt, yt = _data(name, 2, 3)
    loss = inf.layerwise_loss(apply_fn, head)
    mask = _tracked_mask(params, loss.layers(params, x))
    got = inf.tracin_scores(loss, ckpts, x, y, xt, yt, learning_rates=lrs, batch_size=2)
    got_self = inf.tracin_self_influence(loss, ckpts, x, y, learning_rates=lrs, batch_size=2)
    want, want_self = np.zeros((2, 5)), np.zeros(5)
    for p, lr in zip(ckpts, lrs, strict=True):
        g = _ref_grads(p, apply_fn, head, x, y, mask)
        gt = _ref_grads(p, apply_fn, head, xt, yt, mask)
        for t in range(2):
            for i in range(5):
                want[t, i] += lr * gt[t] @ g[i]
        for i in range(5):
            want_self[i] += lr * g[i] @ g[i]
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    np.testing.assert_allclose(got_self, want_self, rtol=1e-4)


def _logits_of_layer(apply_fn, head, params, layers, layer, x):
    """logits(M): the model's logits as a function of one layer's matrix [d_in (+ 1), out]."""
    own = {layer.kernel, layer.bias}

    def f(m):
        new = jax.tree.leaves(L.matrices_to_params(params, {layer.name: m}, layers, ()))
        old, treedef = jax.tree.flatten(params)
        p = jax.tree.unflatten(
            treedef, [n if i in own else o for i, (n, o) in enumerate(zip(new, old, strict=True))]
        )
        return L.output_field(apply_fn(p, x), head)

    return f


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_ekfac_eigenvalues_are_the_exact_gauss_newton_diagonal_of_every_layer(name):
    """labels="expected" makes the correction exact: Lambda = diag((Q_A x Q_S)^T GN_l (Q_A x Q_S)),
    GN_l = (1/n) sum_n J_n^T (diag p - p p^T) J_n with J_n from jax.jacobian of the logits."""
    params, apply_fn, head = _model(name)
    x, _ = _data(name, 4, 4)
    loss = inf.layerwise_loss(apply_fn, head)
    layers = loss.layers(params, x)
    f = inf.fit_ekfac(loss, params, x, labels="expected", batch_size=3)
    assert sorted(f.eigenvalues) == sorted(layer.name for layer in layers)
    p = np.asarray(jax.nn.softmax(L.output_field(apply_fn(params, x), head)), np.float64)
    fisher = np.stack([np.diag(q) - np.outer(q, q) for q in p])
    for layer in layers:
        m0 = L.params_to_matrices(params, layers)[layer.name]
        jac = jax.jacobian(_logits_of_layer(apply_fn, head, params, layers, layer, x))(m0)
        rot = np.einsum(
            "ij,ncio,op->ncjp", f.q_a[layer.name], np.asarray(jac, np.float64), f.q_s[layer.name]
        )
        want = np.einsum("ncjp,ncd,ndjp->jp", rot, fisher, rot) / len(x)
        np.testing.assert_allclose(
            f.eigenvalues[layer.name], want, rtol=2e-3, atol=1e-6 * want.max(), err_msg=layer.name
        )


def _dense_ekfac_inverse(f, params, layers, lam):
    """The EK-FAC (GN + lam I)^-1 as a dense matrix over ravel_pytree(params), block by block."""
    flat, unravel = ravel_pytree(params)

    def apply(u):
        mats = L.params_to_matrices(unravel(u), layers)
        out = {
            k: ek.precondition(f.q_a[k], f.q_s[k], f.eigenvalues[k], v[None], lam)[0]
            for k, v in mats.items()
        }
        return ravel_pytree(L.matrices_to_params(params, out, layers, ()))[0]

    return np.asarray(jax.vmap(apply)(jnp.eye(flat.size, dtype=jnp.float32)), np.float64).T


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODELS))
def test_ekfac_scores_s_test_and_self_influence_use_one_inverse(name):
    params, apply_fn, head = _model(name)
    x, y = _data(name, 5, 5)
    xt, yt = _data(name, 2, 6)
    loss = inf.layerwise_loss(apply_fn, head)
    layers = loss.layers(params, x)
    mask = _tracked_mask(params, layers)
    f = inf.fit_ekfac(loss, params, x, labels="sampled", seed=1, batch_size=4)
    hinv = _dense_ekfac_inverse(f, params, layers, 0.05)
    g = _ref_grads(params, apply_fn, head, x, y, mask)
    gt = _ref_grads(params, apply_fn, head, xt, yt, mask)
    kw = dict(factors=f, l2=0.0, damping=0.05)
    want = -gt @ hinv @ g.T
    scores = inf.ekfac_scores(loss, params, x, y, xt, yt, batch_size=4, **kw)
    np.testing.assert_allclose(scores, want, rtol=2e-3, atol=1e-5 * np.abs(want).max())
    s = inf.ekfac_s_test(loss, params, xt, yt, **kw)
    flat_s = np.asarray(jax.vmap(lambda t: ravel_pytree(t)[0])(s))
    want_s = gt @ hinv.T
    np.testing.assert_allclose(flat_s, want_s, rtol=2e-3, atol=1e-5 * np.abs(want_s).max())
    si = inf.ekfac_self_influence(loss, params, x, y, batch_size=4, **kw)
    np.testing.assert_allclose(si, np.einsum("np,pq,nq->n", g, hinv, g), rtol=2e-3)


class OneLayer(nnx.Module):
    """Multinomial logistic regression on the flattened image: one nnx.Linear, head ``scores``."""

    def __init__(self, d, c, *, rngs):
        self.linear = nnx.Linear(d, c, rngs=rngs)

    def __call__(self, x):
        return Scores(self.linear(x.reshape(x.shape[0], -1)))


@pytest.mark.slow
def test_ekfac_is_the_damped_inverse_gauss_newton_of_a_one_layer_model_on_one_example():
    """One dense layer and one example: GN = a a^T (x) (diag p - p p^T) is a Kronecker product, so
    EK-FAC (expected labels) is exact and s_test = (GN + lambda I)^-1 g, the closed form."""
    params, apply_fn = split(lambda: OneLayer(2 * 3 * 1, 4, rngs=nnx.Rngs(0)))
    params = jax.tree.map(lambda a: a * 3.0, params)  # confident predictions: a curved loss
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.uniform(size=(1, 2, 3, 1)), jnp.float32)
    y = jnp.asarray([2], jnp.int32)
    loss = inf.layerwise_loss(apply_fn, "scores")
    f = inf.fit_ekfac(loss, params, x, labels="expected")
    flat, unravel = ravel_pytree(params)
    jac = np.asarray(jax.jacobian(lambda u: apply_fn(unravel(u), x).scores[0])(flat), np.float64)
    p = np.asarray(jax.nn.softmax(apply_fn(params, x).scores[0]), np.float64)
    ggn = jac.T @ (np.diag(p) - np.outer(p, p)) @ jac
    g = np.asarray(ravel_pytree(jax.grad(lambda q: loss(q, x, y)[0])(params))[0], np.float64)
    for lam in (0.1, 0.01):
        s = inf.ekfac_s_test(loss, params, x, y, factors=f, l2=0.0, damping=lam)
        want = np.linalg.solve(ggn + lam * np.eye(flat.size), g)
        np.testing.assert_allclose(ravel_pytree(s)[0][None][0], want, rtol=2e-3, atol=1e-5)


class OneConv(nnx.Module):
    """One conv (the geometry under test), global average pooling and a dense head ``y``."""

    def __init__(self, cin, conv_kwargs, *, rngs):
        self.conv = nnx.Conv(cin, 4, rngs=rngs, **conv_kwargs)
        self.out = nnx.Linear(4, 4, rngs=rngs)

    def __call__(self, x):
        h = jnp.tanh(self.conv(x))
        return Y(self.out(h.reshape(h.shape[0], -1, 4).mean(1)))


GEOMETRIES = {
    "same-stride2": ((7, 9, 2), dict(kernel_size=(3, 3), strides=2)),
    "valid": ((7, 9, 2), dict(kernel_size=(2, 3), padding="VALID")),
    "pairs-dilated": ((7, 9, 2), dict(kernel_size=(3, 2), padding=((2, 0), (1, 1)), kernel_dilation=(1, 2))),
    "circular": ((6, 5, 2), dict(kernel_size=(3, 3), padding="CIRCULAR")),
    "reflect-nobias": ((6, 5, 2), dict(kernel_size=(4, 4), padding="REFLECT", use_bias=False)),
    "1d-causal": ((9, 2), dict(kernel_size=(3,), padding="CAUSAL", kernel_dilation=2)),
    "3d": ((4, 5, 4, 1), dict(kernel_size=(2, 2, 2), strides=(1, 2, 1))),
}  # fmt: skip


@pytest.mark.parametrize("geometry", sorted(GEOMETRIES))
def test_conv_patches_honour_the_layers_own_geometry(geometry):
    shape, kwargs = GEOMETRIES[geometry]
    params, apply_fn = split(lambda: OneConv(shape[-1], kwargs, rngs=nnx.Rngs(1)), seed=1)
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.uniform(size=(3, *shape)), jnp.float32)
    y = jnp.asarray([0, 3, 1], jnp.int32)
    loss = inf.layerwise_loss(apply_fn, "y")
    got = loss.example_grads(params, x, y)
    ref = inf.cross_entropy(apply_fn, "y")
    want = jax.vmap(
        lambda xi, yi: ravel_pytree(jax.grad(lambda q: ref(q, xi[None], yi[None])[0])(params))[0]
    )(x, y)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)


def test_unsupported_layers_and_heads_are_refused_by_name():
    params, apply_fn = split(
        lambda: OneConv(4, dict(kernel_size=(3, 3), feature_group_count=2), rngs=nnx.Rngs(0))
    )
    x = jnp.zeros((2, 5, 5, 4))
    with pytest.raises(ValueError, match=r"layer 'conv'.*feature_group_count=2"):
        inf.layerwise_loss(apply_fn, "y").layers(params, x)
    params, apply_fn, head = _model("resnet")
    x, y = _data("resnet", 2, 0)
    with pytest.raises(ValueError, match="head='script'"):
        inf.fit_ekfac(inf.layerwise_loss(apply_fn, "script"), params, x)
    with pytest.raises(ValueError, match="LayerwiseLoss"):
        inf.fit_ekfac(inf.cross_entropy(apply_fn, head), params, x)
    loss = inf.layerwise_loss(apply_fn, head)
    f = inf.fit_ekfac(loss, params, x, batch_size=2)
    with pytest.raises(ValueError, match="l2 must be given"):
        inf.ekfac_scores(loss, params, x, y, x, y, factors=f)


# --------------------------------------------------------------------------- the top-layer view
@pytest.mark.parametrize(
    "name, first, above",
    [("mnist", "linear1", ["linear1", "linear2"]), ("resnet", "head", ["head"])],
)
def test_top_layers_are_the_model_above_the_cut_and_their_gradient_is_jax_grad(name, first, above):
    params, apply_fn, head = _model(name)
    x, y = _data(name, 5, 1)
    view = inf.top_layers(apply_fn, params, x, first)
    top = view.params(params)
    assert list(top) == above
    feats = view.features(params, x)
    model = nnx.merge(apply_fn.graphdef, params, apply_fn.rest)
    if name == "mnist":  # the flattened second pool, written out here
        pool = functools.partial(nnx.avg_pool, window_shape=(2, 2), strides=(2, 2))
        h = pool(nnx.relu(model.conv2(pool(nnx.relu(model.conv1(x))))))
        want = h.reshape(5, -1)
    else:  # LayerNorm of the global average pool
        h = nnx.gelu(model.stem(x))
        for block in model.blocks:
            h = block(h)
        want = model.norm(h.mean(axis=(1, 2)))
    np.testing.assert_allclose(feats, want, rtol=1e-5, atol=1e-6)
    out = getattr(view(top, feats), head)
    np.testing.assert_allclose(out, getattr(apply_fn(params, x), head), rtol=1e-5, atol=1e-6)
    # the view's loss gradient is the whole model's, on the layers above the cut
    loss = inf.top_loss(view, head)
    got = jax.grad(lambda t: loss(t, feats, y).sum())(top)
    full = jax.grad(lambda p: inf.cross_entropy(apply_fn, head)(p, x, y).sum())(params)
    for layer in above:
        module = functools.reduce(getattr, layer.split("."), full)
        np.testing.assert_allclose(
            got[layer]["kernel"], module["kernel"][...], rtol=1e-4, atol=1e-6
        )
        np.testing.assert_allclose(got[layer]["bias"], module["bias"][...], rtol=1e-4, atol=1e-6)
    res = inf.influence_scores(loss, top, feats, y, feats[:2], y[:2], l2=1e-2, damping=0.01)
    assert res.scores.shape == (2, 5) and bool(jnp.isfinite(res.scores).all())


def test_a_cut_that_a_connection_bypasses_or_no_layer_is_refused():
    params, apply_fn, _ = _model("resnet")
    x, _ = _data("resnet", 2, 0)
    with pytest.raises(ValueError, match="around the cut"):  # the shortcut skips conv_b
        inf.top_layers(apply_fn, params, x, "blocks.1.conv_b")
    with pytest.raises(ValueError, match="first must be one of"):
        inf.top_layers(apply_fn, params, x, "nope")
    view = inf.top_layers(apply_fn, params, x, "head")
    with pytest.raises(ValueError, match="feats must be"):
        view(view.params(params), jnp.zeros((2, 7)))
