"""Actual leave-one-out retraining, to check what the influence scores predict.

Every retrain starts at the optimum and minimises the masked objective
J(theta; w) with w_i = 0 for its removed point (Koh & Liang's protocol),
vmapped over the removed points.

References: Koh & Liang 2017, section 5.1 (Figure 2), https://arxiv.org/abs/1703.04730.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from scriptlab.interpret._common import (
    check_array,
    check_choice,
    check_hessian,
    check_nonneg,
    check_steps,
    check_xy,
)
from scriptlab.interpret.influence.losses import LossFn, example_grad, objective
from scriptlab.interpret.influence.options import InfluenceOptions, resolve_options
from scriptlab.interpret.influence.solvers import damped_hessian

LOO_METHODS = ("newton", "momentum")


class LOOResult(NamedTuple):
    """Actual leave-one-out retraining: test-loss changes and how converged each retrain is.

    Attributes:
      delta_test_loss: float32[K, T]: L_test(theta_-i) - L_test(theta_hat).
      grad_norm: float32[K]: ||grad J(theta_-i; w_-i)|| after retraining.
      base_grad_norm: float32[]: the same for the no-removal run.
    """

    delta_test_loss: jax.Array
    grad_norm: jax.Array
    base_grad_norm: jax.Array


@functools.partial(
    jax.jit, static_argnames=("loss_fn", "test_loss_fn", "method", "steps", "batch_size")
)
def _loo(
    loss_fn,
    test_loss_fn,
    params,
    x,
    y,
    xt,
    yt,
    removed,
    hessian,
    l2,
    method,
    steps,
    lr,
    momentum,
    damping,
    batch_size,
):
    n = y.shape[0]
    flat0, unravel = ravel_pytree(params)

    def jfun(u, w):
        return objective(loss_fn, unravel(u), x, y, l2=l2, weights=w)

    grad_j = jax.grad(jfun)
    if method == "newton":
        # Chord Newton: the damped Hessian at theta_hat is factorised once and
        # reused; the gradient of the masked objective is exact, so the fixed
        # point is the true leave-one-out minimiser whatever the preconditioner.
        h = jax.hessian(lambda u: jfun(u, jnp.ones(n)))(flat0) if hessian is None else hessian
        factor = jax.scipy.linalg.cho_factor(damped_hessian(h, damping))

        def step(u, w):
            return u - jax.scipy.linalg.cho_solve(factor, grad_j(u, w))
    else:

        def step(c, w):
            u, vel = c
            vel = momentum * vel - lr * grad_j(u, w)
            return u + vel, vel

    def retrain(w):
        init = flat0 if method == "newton" else (flat0, jnp.zeros_like(flat0))
        out = jax.lax.fori_loop(0, steps, lambda _, c: step(c, w), init)
        u = out if method == "newton" else out[0]
        # Differences in float32 lose digits; subtracting per-point losses keeps them.
        return test_loss_fn(unravel(u), xt, yt), jnp.linalg.norm(grad_j(u, w))

    masks = jnp.ones((removed.shape[0] + 1, n)).at[jnp.arange(removed.shape[0]), removed].set(0.0)
    # One masked retrain per row (the last row removes nothing), vmapped batch_size at a time.
    losses, gnorm = jax.lax.map(retrain, masks, batch_size=batch_size)
    return losses[:-1] - losses[-1], gnorm[:-1], gnorm[-1]


def _check_removed(removed, n: int) -> jax.Array:
    removed = jnp.asarray(removed)
    if removed.ndim != 1 or not jnp.issubdtype(removed.dtype, jnp.integer):
        raise ValueError(
            f"removed must be int[K] training indices, got dtype {removed.dtype} shape {removed.shape}"
        )
    if removed.size and (int(removed.min()) < 0 or int(removed.max()) >= n):
        raise ValueError(
            f"removed must lie in [0, {n}), got [{int(removed.min())}, {int(removed.max())}]"
        )
    return removed.astype(jnp.int32)


def loo_retrain(
    loss_fn: LossFn,
    params,
    train_x,
    train_y,
    test_x,
    test_y,
    removed,
    *,
    l2: float | None = None,
    test_loss_fn: LossFn | None = None,
    method: str = "newton",
    steps: int = 20,
    lr: float = 0.1,
    momentum: float = 0.9,
    damping: float = 0.0,
    hessian: jax.Array | None = None,
    batch_size: int = 8,
    options: InfluenceOptions | None = None,
    precision: str = "float32",
) -> LOOResult:
    """Actually retrain without each of ``removed``; batched, warm-started, masked.

    Every retrain starts at ``params`` (the optimum) and minimises
    J(theta; w) with w_i = 0 for its removed point (Koh & Liang's protocol).
    A run with nothing removed gets the same number of steps and is subtracted,
    so optimiser drift cancels. The retrains run in one jitted call, vmapped
    over the masks ``batch_size`` at a time (``lax.map``): no Python loop.
    ``l2``, ``lr``, ``momentum`` and ``damping`` are traced.

    Args:
      loss_fn, params, train_x, train_y, test_x, test_y, l2, test_loss_fn: as in
        ``influence_scores``.
      removed: int[K] training indices to leave out, one retrain each.
      method: "newton" (chord Newton with the Hessian at ``params`` factorised
        once; small convex models; converges to the exact LOO minimiser) or
        "momentum" (full-batch heavy-ball gradient descent; any model).
      steps: iterations per retrain.
      lr, momentum: heavy-ball step size and momentum ("momentum" only).
      damping: added to the Newton Hessian ("newton" only).
      hessian: optional precomputed Hessian at ``params`` ("newton" only).
      batch_size: retrains vmapped together (memory: batch_size x P parameters).
      options: ``InfluenceOptions`` in place of l2, damping, test_loss_fn, hessian.
      precision: "float32", or "float64" for a reference: in float32 changes
        below about 1e-6 of the loss come out as exactly 0 (run under
        ``jax.enable_x64``; results are numpy float64).

    Returns:
      LOOResult(delta_test_loss float32[K, T], grad_norm float32[K],
      base_grad_norm). Small gradient norms mean converged retrains.

    References: Koh & Liang 2017, section 5.1 (Figure 2),
    https://arxiv.org/abs/1703.04730.
    """
    l2, damping, test_loss_fn, hessian = resolve_options(
        options, l2=l2, damping=damping, test_loss_fn=test_loss_fn, hessian=hessian
    )
    check_choice("precision", precision, ("float32", "float64"))
    train_x, train_y = check_xy(train_x, train_y, "train")
    test_x, test_y = check_xy(test_x, test_y, "test")
    check_choice("method", method, LOO_METHODS)
    removed = _check_removed(removed, train_y.shape[0])
    check_nonneg("l2", l2)
    check_steps(steps, lr, momentum)
    check_nonneg("damping", damping)
    hessian = check_hessian(hessian, params, "exact")
    args = (params, train_x, test_x, hessian)
    static = (float(l2), method, int(steps), float(lr), float(momentum), float(damping))
    if precision == "float32":
        return LOOResult(
            *_loo(
                loss_fn,
                test_loss_fn or loss_fn,
                *_order(args, train_y, test_y, removed),
                *static,
                max(1, int(batch_size)),
            )
        )
    with jax.enable_x64(True):
        args = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), args)
        out = _loo(
            loss_fn,
            test_loss_fn or loss_fn,
            *_order(args, train_y, test_y, removed),
            *static,
            max(1, int(batch_size)),
        )
        return LOOResult(*(np.asarray(o, np.float64) for o in out))


def _order(args, train_y, test_y, removed):
    params, train_x, test_x, hessian = args
    return params, train_x, train_y, test_x, test_y, removed, hessian


@functools.partial(jax.jit, static_argnames=("loss_fn", "test_loss_fn"))
def _newton_change(loss_fn, test_loss_fn, params, x, y, xt, yt, removed, hessian, l2, damping):
    n = y.shape[0]
    flat, unravel = ravel_pytree(params)
    h = (
        jax.hessian(lambda u: objective(loss_fn, unravel(u), x, y, l2=l2))(flat)
        if hessian is None
        else hessian
    )
    h = damped_hessian(h, damping)
    g_test = jax.vmap(lambda a, b: example_grad(test_loss_fn)(params, a, b))(xt, yt)  # [T, P]
    g = example_grad(loss_fn)

    def one(i):
        own = jax.hessian(lambda u: loss_fn(unravel(u), x[i][None], y[i][None])[0])(flat)
        dtheta = jnp.linalg.solve(h - own / n, g(params, x[i], y[i])) / n
        return g_test @ dtheta

    return jax.lax.map(one, removed)


def predicted_loo_change_newton(
    loss_fn: LossFn,
    params,
    train_x,
    train_y,
    test_x,
    test_y,
    removed,
    *,
    l2: float | None = None,
    test_loss_fn: LossFn | None = None,
    damping: float = 0.0,
    hessian: jax.Array | None = None,
    options: InfluenceOptions | None = None,
) -> jax.Array:
    """Predicted L_test(theta_-i) - L_test(theta_hat) with the removed point's own Hessian taken out.

    The first-order prediction -I_up,loss / n uses H, the Hessian of the
    full objective. Removing z_i also removes its curvature: one Newton step
    on the leave-one-out objective from theta_hat gives
    Delta theta = (H - H_i / n)^-1 grad L(z_i) / n, with H_i the Hessian of z_i's
    own loss. This corrects the first-order prediction's one-sided
    shrinkage (notebook 11's convex head: slope 1.18-1.31 -> about 1.0).
    Forms P x P matrices: small models (the convex head) only.

    Args: as in ``loo_retrain`` (``removed`` int[K]).

    Returns:
      float32[K, T], comparable to ``loo_retrain(...).delta_test_loss``.

    References: Koh & Liang 2017, appendix (the Newton step behind eq. 2);
    Koh, Ang, Teo & Liang 2019 (second-order group influence),
    https://arxiv.org/abs/1905.13289.
    """
    l2, damping, test_loss_fn, hessian = resolve_options(
        options, l2=l2, damping=damping, test_loss_fn=test_loss_fn, hessian=hessian
    )
    train_x, train_y = check_xy(train_x, train_y, "train")
    test_x, test_y = check_xy(test_x, test_y, "test")
    removed = _check_removed(removed, train_y.shape[0])
    check_nonneg("l2", l2)
    check_nonneg("damping", damping)
    return _newton_change(
        loss_fn,
        test_loss_fn or loss_fn,
        params,
        train_x,
        train_y,
        test_x,
        test_y,
        removed,
        check_hessian(hessian, params, "exact"),
        float(l2),
        float(damping),
    )


def slope(predicted, actual) -> float:
    """Least-squares slope of actual on predicted through the origin (1: no bias)."""
    check_array("predicted", predicted)
    check_array("actual", actual)
    p = np.asarray(predicted, np.float64).ravel()
    a = np.asarray(actual, np.float64).ravel()
    if p.size != a.size:
        raise ValueError(
            f"predicted and actual must hold as many values, got {p.size} and {a.size}"
        )
    return float(p @ a / max(p @ p, 1e-300))


def pearson(a, b) -> float:
    """Pearson correlation of two flat arrays (predicted against actual changes)."""
    check_array("a", a)  # finite; the values below keep their own precision
    check_array("b", b)
    if np.size(a) != np.size(b):
        raise ValueError(
            f"a and b must hold as many values, got shapes {np.shape(a)} and {np.shape(b)}"
        )
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])
