"""The study's whole-network training-point rankers against plain loops of per-example gradients."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax.flatten_util import ravel_pytree

from scriptlab import shortcut
from scriptlab.interpret.influence import ekfac_scores, fit_ekfac, layerwise_loss

from helpers import SMALL_SHAPE, scriptnet


def _loop_dots(loss, params, train_x, train_y, test_x, test_y):
    """grad L(test_i) . grad L(train_j), one pair of single-example gradients at a time."""

    @jax.jit
    def flat(x, y):
        g = jax.grad(lambda p: loss(p, x[None], y[None])[0])(params)
        return ravel_pytree(g)[0]

    g_train = [flat(x, y) for x, y in zip(train_x, train_y, strict=True)]
    return np.array([[float(flat(x, y) @ g) for g in g_train]
                     for x, y in zip(test_x, test_y, strict=True)])  # fmt: skip


def _data(n, t, seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    x = jax.random.uniform(k[0], (n, *SMALL_SHAPE))
    xt = jax.random.uniform(k[1], (t, *SMALL_SHAPE))
    return x, jax.random.randint(k[2], (n,), 0, 4), xt, jax.random.randint(k[3], (t,), 0, 4)


@pytest.mark.slow
def test_tracin_last_is_the_gradient_dot_product_of_a_plain_loop():
    _, params, apply_fn = scriptnet(SMALL_SHAPE)
    x, y, xt, yt = _data(6, 3)
    scores, largest, note = shortcut.whole_net_scores(
        apply_fn, params, x, y, xt, yt, estimator="tracin_last", batch_size=4
    )

    def ce(p, xi, yi):
        return optax.softmax_cross_entropy_with_integer_labels(apply_fn(p, xi).script, yi)

    want = _loop_dots(ce, params, x, y, xt, yt)
    np.testing.assert_allclose(scores, want, rtol=2e-3, atol=1e-4 * np.abs(want).max())
    assert largest and note == ""


class LookupOutputs(NamedTuple):
    script: jax.Array
    activations: dict


def lookup_apply(params, images, relu=jax.nn.relu, perturb=None):
    """No NNX layers and an integer leaf: logits = x_flat @ w + onehot(ids[0]) * scale."""
    x = images.reshape(images.shape[0], -1)
    bump = params["scale"] * jax.nn.one_hot(params["ids"][0], 4)
    h = x @ params["w"]
    return LookupOutputs(jnp.tanh(h) @ params["v"] + bump, {"h": h})


def test_a_model_without_layers_gets_tracin_by_vmap_and_no_ekfac():
    k = jax.random.split(jax.random.key(3), 2)
    d = int(np.prod(SMALL_SHAPE))
    params = {"w": 0.1 * jax.random.normal(k[0], (d, 5)), "v": jax.random.normal(k[1], (5, 4)),
              "scale": jnp.float32(0.5), "ids": jnp.array([2, 1], jnp.int32)}  # fmt: skip
    x, y, xt, yt = _data(5, 2, seed=1)
    scores, largest, note = shortcut.whole_net_scores(
        lookup_apply, params, x, y, xt, yt, estimator="tracin_last", batch_size=2
    )
    floats = {k: v for k, v in params.items() if k != "ids"}

    def ce(p, xi, yi):
        logits = lookup_apply(p | {"ids": params["ids"]}, xi).script
        return optax.softmax_cross_entropy_with_integer_labels(logits, yi)

    want = _loop_dots(ce, floats, x, y, xt, yt)
    np.testing.assert_allclose(scores, want, rtol=1e-4, atol=1e-6 * np.abs(want).max())
    assert largest and "vmap" in note
    none, _, why = shortcut.whole_net_scores(lookup_apply, params, x, y, xt, yt, estimator="ekfac")
    assert none is None and "layer-wise" in why


@pytest.mark.slow
def test_ekfac_ranker_is_ekfac_influence_fitted_on_the_ranked_crops():
    _, params, apply_fn = scriptnet(SMALL_SHAPE)
    x, y, xt, yt = _data(12, 2, seed=2)
    scores, largest, _ = shortcut.whole_net_scores(
        apply_fn, params, x, y, xt, yt, estimator="ekfac", seed=5, batch_size=4
    )
    loss = layerwise_loss(apply_fn, "script")
    factors = fit_ekfac(loss, params, x, seed=5, batch_size=4)
    want = ekfac_scores(loss, params, x, y, xt, yt, factors=factors, l2=0.0, batch_size=4)
    np.testing.assert_allclose(scores, want, rtol=1e-5, atol=1e-7)
    assert not largest


def test_whole_net_scores_rejects_an_unknown_estimator():
    _, params, apply_fn = scriptnet(SMALL_SHAPE)
    x, y, xt, yt = _data(2, 1)
    with pytest.raises(ValueError, match="estimator must be one of"):
        shortcut.whole_net_scores(apply_fn, params, x, y, xt, yt, estimator="lissa")
