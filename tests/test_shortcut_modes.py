"""The shortcut-removal modes: conditional flip, group-balanced sampling, group DRO."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scriptlab import train
from scriptlab.model import ScriptNet, functional


def _net(conditional):
    return ScriptNet(
        3,
        4,
        channels=(4, 4, 4),
        hidden=8,
        image_shape=(16, 16, 3),
        conditional=conditional,
        rngs=nnx.Rngs(0),
    )


def test_conditional_font_head_reads_the_given_script():
    net = _net(True)
    x = jax.random.uniform(jax.random.key(1), (5, 16, 16, 3))
    scripts = jnp.array([0, 1, 2, 1, 0])
    out = net(x, font_script=scripts)
    h = out.embedding
    h = h / (jnp.sqrt(jnp.mean(h**2, -1, keepdims=True)) + 1e-3)
    full = (h @ net.font_head.kernel.value + net.font_head.bias.value).reshape(5, 3, 4)
    np.testing.assert_allclose(out.font, full[jnp.arange(5), scripts], rtol=1e-5, atol=1e-6)
    # without labels it reads the predicted script's head
    pred = jnp.argmax(out.script, -1)
    np.testing.assert_allclose(net(x).font, full[jnp.arange(5), pred], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_conditional_flip_vjp_reverses_only_the_trunk_gradient():
    # d(font loss)/d(trunk) through the flip is -lam times the ordinary gradient, while
    # the per-script font heads themselves get the ordinary gradient.
    net = _net(True)
    graphdef, params, rest = nnx.split(net, nnx.Param, ...)
    x = jax.random.uniform(jax.random.key(2), (6, 16, 16, 3))
    scripts, styles = jnp.array([0, 1, 2, 0, 1, 2]), jnp.array([0, 1, 2, 3, 0, 1])

    def font_loss(p, lam):
        m = nnx.merge(graphdef, p, rest, copy=True)
        logits = m(x, lam=lam, font_script=scripts).font
        return -jnp.mean(jax.nn.log_softmax(logits)[jnp.arange(6), styles])

    grad = jax.jit(jax.grad(font_loss), static_argnums=1)  # op by op this took half a minute
    plain = grad(params, None)
    flipped = grad(params, 0.7)
    for name in ("conv1", "conv2", "conv3", "dense"):
        np.testing.assert_allclose(
            flipped[name]["kernel"].value, -0.7 * plain[name]["kernel"].value, rtol=1e-4, atol=1e-7
        )
    np.testing.assert_allclose(
        flipped["font_head"]["kernel"].value, plain["font_head"]["kernel"].value, rtol=1e-6
    )
    assert np.abs(plain["conv1"]["kernel"].value).max() > 0
    # a script's head only receives gradient from that script's crops
    only0 = jax.jit(
        jax.grad(
            lambda p: (
                font_loss(p, None) * 0
                + jnp.sum(
                    nnx.merge(graphdef, p, rest, copy=True)(x[:1], font_script=scripts[:1]).font
                )
            )
        )
    )(params)
    g = np.asarray(only0["font_head"]["kernel"].value).reshape(8, 3, 4)
    assert np.abs(g[:, 0]).max() > 0 and np.all(g[:, 1:] == 0)


def test_balanced_probabilities_give_every_group_the_same_mass():
    groups = np.array([0] * 90 + [1] * 7 + [5] * 3)
    p = train.balanced_probabilities(groups)
    assert p.shape == (100,) and abs(p.sum() - 1) < 1e-12
    for g in (0, 1, 5):
        assert abs(p[groups == g].sum() - 1 / 3) < 1e-12
    with pytest.raises(ValueError, match="groups must be"):
        train.balanced_probabilities(np.zeros((2, 2), int))


def test_group_ids_are_unique_per_cell():
    s, t = np.meshgrid(np.arange(10), np.arange(5), indexing="ij")
    g = train.group_ids(s.ravel(), t.ravel(), 5)
    assert sorted(g) == list(range(50))


def test_dro_update_is_exponentiated_gradient_on_present_groups():
    w = jnp.array([0.25, 0.25, 0.25, 0.25])
    losses = jnp.array([1.0, 2.0, 0.0, 5.0])
    present = jnp.array([True, True, True, False])
    new = train.dro_update(w, losses, present, 0.5)
    raw = 0.25 * np.exp(0.5 * np.array([1.0, 2.0, 0.0, 0.0]))
    np.testing.assert_allclose(new, raw / raw.sum(), rtol=1e-6)
    assert abs(float(new.sum()) - 1) < 1e-6


def test_balanced_sampling_draws_groups_equally(smoke):
    groups = train.group_ids(smoke.train.script, smoke.train.style, len(smoke.styles))
    p = train.balanced_probabilities(groups)
    draws = np.random.default_rng(0).choice(len(groups), 200_000, p=p)
    freq = np.bincount(groups[draws]) / 200_000
    present = np.unique(groups)
    np.testing.assert_allclose(freq[present], 1 / len(present), atol=0.004)


@pytest.mark.parametrize("mode", ["cdann", "balanced", "groupdro"])
@pytest.mark.slow
def test_new_modes_train_deterministically_and_restore(smoke, mode, tmp_path):
    cfg = train.make_train_config(mode=mode, preset="smoke", epochs=1, batch_size=32)
    a = train.train(cfg, smoke, progress=False)
    b = train.train(cfg, smoke, progress=False)
    for x, y in zip(
        jax.tree.leaves(functional(a.model)[0]),
        jax.tree.leaves(functional(b.model)[0]),
        strict=True,
    ):
        assert np.array_equal(x, y)
    train.save(a, tmp_path)
    r = train.restore(tmp_path, cfg, smoke)
    assert r.model.conditional == (mode == "cdann")
    p, f = functional(r.model)
    q, g = functional(a.model)
    out, ref = train.predict(f, p, smoke.test.images), train.predict(g, q, smoke.test.images)
    assert out[1].shape == (len(smoke.test), len(smoke.styles))
    for x, y in zip(out, ref, strict=True):
        np.testing.assert_array_equal(x, y)


def test_dro_eta_is_validated():
    with pytest.raises(ValueError, match="dro_eta"):
        train.make_train_config(mode="groupdro", dro_eta=float("nan"))
