"""Influence scores I_up,loss of every training point on every test point (Koh & Liang 2017, eq. 2).

    I_up,loss(z, z_test) = -grad L(z_test)^T  H^-1  grad L(z)
    removing z  (epsilon = -1/n):  Delta L(z_test) ~= -I_up,loss(z, z_test) / n

where H is the Hessian of the training objective (``losses.objective``) at its
optimum. Negative scores are *helpful* training points (up-weighting them
lowers the test loss), positive ones *harmful*.

References: Koh & Liang 2017, https://arxiv.org/abs/1703.04730.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
from jaxtyping import Array, Float, Integer, Real, Shaped

from scriptlab.interpret._common import (
    check_array,
    check_batch_size,
    check_choice,
    check_hessian,
    check_int,
    check_nonneg,
    check_number,
    check_xy,
    map_rows,
)
from scriptlab.interpret.influence.losses import LossFn, example_grad, objective
from scriptlab.interpret.influence.options import InfluenceOptions, resolve_options
from scriptlab.interpret.influence.solvers import METHODS, InverseHVPState, flat_matvec, solve_flat
from scriptlab.protocols import AnyArray


class Influence(NamedTuple):
    """Influence scores I_up,loss[T, N] and the inverse-HVP solve behind them.

    Attributes:
      scores: float32[T, N]: -grad L(test_t)^T H^-1 grad L(train_i).
      s_test: the solve; ``s_test.x`` is float32[T, P] = H^-1 grad L(test_t).
    """

    scores: jax.Array
    s_test: InverseHVPState


def per_example_grads(
    loss_fn: LossFn,
    params,
    x: Shaped[AnyArray, " n *input"],
    y: Integer[AnyArray, " n"],
    *,
    batch_size: int = 256,
) -> Float[Array, "n p"]:
    """Flattened per-example gradients float32[N, P] (vmap inside lax.map chunks).

    Materialises N x P numbers: for many points on a big model use
    ``influence_scores``, which contracts each chunk right away.
    """
    x, y = check_xy(x, y, "train")
    batch_size = check_batch_size(batch_size)
    g = example_grad(loss_fn)
    return map_rows(lambda a: g(params, *a), (x, y), batch_size=batch_size)


@functools.partial(
    jax.jit, static_argnames=("loss_fn", "test_loss_fn", "method", "max_iter", "batch_size")
)
def _influence(
    loss_fn,
    test_loss_fn,
    params,
    x,
    y,
    xt,
    yt,
    hessian,
    l2,
    method,
    damping,
    tol,
    max_iter,
    batch_size,
):
    f = functools.partial(objective, loss_fn, x=x, y=y, l2=l2)
    _, _, matvec = flat_matvec(lambda p: f(p), params, damping)
    g_test = map_rows(
        lambda a: example_grad(test_loss_fn)(params, *a), (xt, yt), batch_size=batch_size
    )
    s, res, k = solve_flat(
        lambda p: f(p), params, matvec, g_test, method, damping, tol, max_iter, None, hessian
    )
    g = example_grad(loss_fn)
    scores = map_rows(lambda a: -(s @ g(params, *a)), (x, y), batch_size=batch_size)  # [N, T]
    return scores.T, InverseHVPState(s, res, k, res <= tol)


def influence_scores(
    loss_fn: LossFn,
    params,
    train_x: Shaped[AnyArray, " n *input"],
    train_y: Integer[AnyArray, " n"],
    test_x: Shaped[AnyArray, " t *input"],
    test_y: Integer[AnyArray, " t"],
    *,
    l2: float | None = None,
    test_loss_fn: LossFn | None = None,
    method: str = "cg",
    damping: float = 0.0,
    tol: float = 1e-5,
    max_iter: int = 500,
    batch_size: int = 256,
    hessian: Float[AnyArray, "p p"] | None = None,
    options: InfluenceOptions | None = None,
) -> Influence:
    """I_up,loss of every training point on every test point, one jitted pass.

    ``l2``, ``damping`` and ``tol`` are traced (a sweep over them compiles once);
    ``method``, ``max_iter`` and ``batch_size`` fix the program.

    Args:
      loss_fn: per-example training loss ``loss_fn(params, x, y) -> float32[N]``
        (``cross_entropy(apply_fn, "script")``, ``logistic_loss``, ``top_loss``).
      params: the trained parameters (ideally a minimum of ``objective``).
      train_x, train_y: training inputs [N, ...] and int32[N] targets.
      test_x, test_y: test inputs [T, ...] and int32[T] targets.
      l2: the objective's L2 weight (makes H positive definite for a convex model).
      test_loss_fn: loss on the test points; default ``loss_fn``. Pass the font
        head's loss to ask which training crops (trained on scripts) moved the
        font prediction.
      method, damping, tol, max_iter: the inverse-HVP solve, see ``inverse_hvp``.
      batch_size: training points per vmapped chunk (memory: batch_size x P).
      hessian: optional precomputed float32[P, P] Hessian of the objective
        (``training_hessian``) for method="exact": pass it when scoring many test
        points one call at a time (a widget), so H is formed once.
      options: ``InfluenceOptions(l2, damping, test_loss_fn, hessian)`` in
        place of those four keywords (the same tuple goes to ``loo_retrain``).

    Returns:
      Influence(scores float32[T, N], s_test). scores[t, i] < 0: training point
      i helps test point t (removing it raises the test loss by about
      -scores[t, i] / N); > 0: it harms. ``s_test.x`` is float32[T, P].

    References: Koh & Liang 2017, eq. 2, https://arxiv.org/abs/1703.04730.
    """
    l2, damping, test_loss_fn, hessian = resolve_options(
        options, l2=l2, damping=damping, test_loss_fn=test_loss_fn, hessian=hessian
    )
    train_x, train_y = check_xy(train_x, train_y, "train")
    test_x, test_y = check_xy(test_x, test_y, "test")
    check_choice("method", method, METHODS)
    check_nonneg("l2", l2)
    check_nonneg("damping", damping)
    check_batch_size(batch_size)
    check_number("tol", tol, low=0.0, open_low=True)
    check_int("max_iter", max_iter, 1)
    hessian = check_hessian(hessian, params, method)
    scores, state = _influence(
        loss_fn,
        test_loss_fn or loss_fn,
        params,
        train_x,
        train_y,
        test_x,
        test_y,
        hessian,
        float(l2),
        method,
        float(damping),
        float(tol),
        int(max_iter),
        int(batch_size),
    )
    return Influence(scores, state)


def predicted_loo_change(scores: Real[AnyArray, "*shape"], n_train: int) -> Float[Array, "*shape"]:
    """Predicted L_test(theta_-i) - L_test(theta_hat) on removing point i: -scores / n."""
    check_int("n_train", n_train, 1)
    return -check_array("scores", scores) / n_train
