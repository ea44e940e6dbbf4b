"""The reshape max-pool against independent references: values and gradients, ties included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scriptlab.model import _max_pool


def _nnx_pool(x):
    return nnx.max_pool(x, (2, 2), strides=(2, 2))


def _reduce_window_pool(x):
    return jax.lax.reduce_window(x, -jnp.inf, jax.lax.max, (1, 2, 2, 1), (1, 2, 2, 1), "VALID")


def _tied(seed=0):
    """Random images with many ties: zeros (as after a ReLU) and values on a coarse grid."""
    x = jax.random.normal(jax.random.key(seed), (2, 8, 12, 3))
    return jnp.where(x < 0.3, 0.0, jnp.round(x * 2) / 2)


@pytest.mark.parametrize("ref", [_nnx_pool, _reduce_window_pool])
def test_values_and_gradients_match_the_reference_with_ties(ref):
    x = _tied()
    g = jax.random.normal(jax.random.key(1), (2, 4, 6, 3))
    np.testing.assert_array_equal(_max_pool(x), ref(x))
    np.testing.assert_array_equal(jax.vjp(_max_pool, x)[1](g)[0], jax.vjp(ref, x)[1](g)[0])


def test_a_tied_window_sends_its_whole_gradient_to_the_first_maximum():
    windows = jnp.array(
        [
            [[0.0, 0.0], [0.0, 0.0]],
            [[1.0, 2.0], [2.0, 0.0]],
            [[1.0, 0.0], [3.0, 3.0]],
            [[5.0, 1.0], [2.0, 4.0]],
        ]
    )  # [4, 2, 2]: all tied, a tie at (0,1)/(1,0), a tie on the bottom row, no tie
    x = windows[:, :, :, None]  # four 2x2 images, one channel
    dx = jax.grad(lambda x: _max_pool(x).sum())(x)[..., 0]
    expect = jnp.array(
        [
            [[1.0, 0.0], [0.0, 0.0]],
            [[0.0, 1.0], [0.0, 0.0]],
            [[0.0, 0.0], [1.0, 0.0]],
            [[1.0, 0.0], [0.0, 0.0]],
        ]
    )
    np.testing.assert_array_equal(dx, expect)


def test_gradient_is_one_hot_per_window_and_composes_with_jit_and_vmap():
    x = _tied(2)
    dx = jax.jit(jax.grad(lambda x: _max_pool(x).sum()))(x)
    per_window = dx.reshape(2, 4, 2, 6, 2, 3).sum(axis=(2, 4))
    np.testing.assert_array_equal(per_window, jnp.ones_like(per_window))
    per_image = jax.vmap(jax.grad(lambda xi: _max_pool(xi[None]).sum()))(x)
    np.testing.assert_array_equal(per_image, dx)


@pytest.mark.parametrize("ref", [_nnx_pool, _reduce_window_pool])
def test_forward_mode_and_hessian_vector_products_match_the_reference(ref):
    x = _tied(3)
    t = jax.random.normal(jax.random.key(4), x.shape)
    np.testing.assert_array_equal(jax.jvp(_max_pool, (x,), (t,))[1], jax.jvp(ref, (x,), (t,))[1])

    def hvp(pool):  # jvp of grad through the pool: what influence functions need
        f = lambda z: jnp.sum(jnp.sin(pool(z)) ** 2)
        return jax.jvp(jax.grad(f), (x,), (t,))[1]

    np.testing.assert_allclose(hvp(_max_pool), hvp(ref), rtol=1e-6, atol=1e-6)
