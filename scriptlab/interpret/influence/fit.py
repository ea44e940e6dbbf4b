"""Bringing a model to the optimum the theory assumes: the convex logistic head and refinement.

Level (1) of notebook 11: an L2-regularised multinomial logistic regression
refit on frozen features (``embeddings``), where H is positive definite and
the first-order theory is accurate. ``refine`` brings any trained params to a
stationary point of the objective by full-batch heavy-ball descent.

References: Koh & Liang 2017, https://arxiv.org/abs/1703.04730; Basu, Pope & Feizi 2021,
https://arxiv.org/abs/2006.14651.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from scriptlab.interpret._common import check_int, check_nonneg, check_steps, check_xy
from scriptlab.interpret.embedding import embed
from scriptlab.interpret.influence.losses import LossFn, logistic_loss, objective


@functools.partial(jax.jit, static_argnames=("n_classes", "steps"))
def _fit_logistic(x, y, n_classes, l2, steps):
    params = {
        "w": jnp.zeros((x.shape[1], n_classes), x.dtype),
        "b": jnp.zeros((n_classes,), x.dtype),
    }
    flat0, unravel = ravel_pytree(params)

    def jfun(u):
        return objective(logistic_loss, unravel(u), x, y, l2=l2)

    def newton(u, _):
        h = jax.hessian(jfun)(u)
        g = jax.grad(jfun)(u)
        du = jax.scipy.linalg.solve(0.5 * (h + h.T), g, assume_a="pos")
        # Backtracking on {1, 1/2, 1/4, ...}: the first step from zero can overshoot.
        ts = 0.5 ** jnp.arange(8.0)
        vals = jax.vmap(lambda t: jfun(u - t * du))(ts)
        t = ts[jnp.argmax(vals <= jfun(u))]
        return u - t * du, None

    u, _ = jax.lax.scan(newton, flat0, None, length=steps)
    return unravel(u), jnp.linalg.norm(jax.grad(jfun)(u))


def fit_logistic(features, labels, *, n_classes: int, l2: float = 1e-2, steps: int = 8):
    """Fit the L2-regularised multinomial logistic regression by damped Newton.

    Args:
      features: float32[N, D] (e.g. ``embeddings(apply_fn, params, images)``).
      labels: int[N] in [0, n_classes).
      n_classes: number of classes C.
      l2: weight of (l2/2) ||theta||^2 (weights and biases): keeps H positive
        definite. Traced: a sweep over it compiles once.
      steps: Newton iterations (each forms the (D+1)C x (D+1)C Hessian).

    Returns:
      (params {"w": float32[D, C], "b": float32[C]}, grad_norm at the end).
    """
    x, y = check_xy(features, labels, "features")
    if x.ndim != 2:
        raise ValueError(f"features must be float32[N, D], got shape {x.shape}")
    if int(y.max()) >= n_classes or int(y.min()) < 0:
        raise ValueError(
            f"labels must lie in [0, {n_classes}), got [{int(y.min())}, {int(y.max())}]"
        )
    if not (l2 > 0 and math.isfinite(l2)):
        raise ValueError(f"l2 must be > 0 and finite for a strictly convex objective, got {l2!r}")
    check_int("steps", steps, 1)
    return _fit_logistic(x.astype(jnp.float32), y, int(n_classes), float(l2), int(steps))


def embeddings(
    apply_fn: Callable, params, images, *, field: str = "embedding", batch_size: int = 500
):
    """Frozen features ``apply_fn(params, images).<field>`` for many images: ``embedding.embed``.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn``.
      params: its params.
      images: float32[N, H, W, 3] in [0, 1] or uint8[N, H, W, 3] (divided by 255).
      field: "embedding", or "pool3" etc. to read ``out.activations[field]``.
      batch_size: images per chunk (the result does not depend on it).

    Returns:
      float32[N, D] (activations are flattened per image).
    """
    layer = None if field == "embedding" else field
    return embed(apply_fn, params, images, layer=layer, batch_size=batch_size)


def refine(
    loss_fn: LossFn,
    params,
    x,
    y,
    *,
    l2: float,
    steps: int = 300,
    lr: float = 0.05,
    momentum: float = 0.9,
):
    """Full-batch heavy-ball descent on ``objective`` to bring trained params to a stationary point.

    Influence functions assume theta_hat minimises the objective; a network
    trained with SGD, dropout and AdamW is not there yet. ``l2``, ``lr`` and
    ``momentum`` are traced. Returns (params, grad_norm).
    """
    x, y = check_xy(x, y, "train")
    check_nonneg("l2", l2)
    check_steps(steps, lr, momentum)
    return _refine(loss_fn, params, x, y, float(l2), int(steps), float(lr), float(momentum))


@functools.partial(jax.jit, static_argnames=("loss_fn", "steps"))
def _refine(loss_fn, params, x, y, l2, steps, lr, momentum):
    grad_j = jax.grad(lambda p: objective(loss_fn, p, x, y, l2=l2))

    def step(c, _):
        p, vel = c
        vel = jax.tree.map(lambda v, g: momentum * v - lr * g, vel, grad_j(p))
        return (jax.tree.map(jnp.add, p, vel), vel), None

    (p, _), _ = jax.lax.scan(
        step, (params, jax.tree.map(jnp.zeros_like, params)), None, length=steps
    )
    return p, optax.global_norm(grad_j(p))
