"""Influence functions: which training crops made this prediction.

Koh & Liang (2017) ask how the parameters, and the loss on a test point, would
change if one training point were up-weighted by a small epsilon or removed:

    I_up,loss(z, z_test) = -grad L(z_test)^T  H^-1  grad L(z)
    removing z  (epsilon = -1/n):  Delta L(z_test) ~= -I_up,loss(z, z_test) / n
                                                  =  grad L(z_test)^T H^-1 grad L(z) / n

where H is the Hessian of the training objective at its optimum. Negative
scores are *helpful* training points (up-weighting them lowers the test loss),
positive ones *harmful*.

The training objective everywhere in this module is

    J(theta; w) = (1/n) sum_i w_i loss_i(theta) + (l2 / 2) ||theta||^2

with w = 1; leave-one-out sets one w_i to 0 and keeps the 1/n (Koh & Liang's
convention, so removal is exactly epsilon = -1/n).

Building blocks, all over any params pytree:
  hvp                 Hessian-vector product, forward-over-reverse (jax.jvp of jax.grad).
  inverse_hvp         (H + damping I)^-1 v by conjugate gradients ("cg"), by
                      LiSSA's Neumann series ("lissa") or by forming and
                      Cholesky-factorising H ("exact", small models only);
                      returns an ``InverseHVPState`` with the relative residual
                      ||(H + damping I) x - v|| / ||v||, the iteration count and
                      a converged flag.
  influence_scores    I_up,loss of every training point on every test point in
                      one jitted pass: per-example gradients by vmap, chunked
                      with lax.map to bound memory.
  self_influence      grad L(z_i)^T H^-1 grad L(z_i) for every training point
                      (mislabel detection).
  loo_retrain         actual leave-one-out retraining, vmapped over the removed
                      points and warm-started from the optimum with a weight-0
                      mask on the removed example (Koh & Liang's protocol).

Two levels used by notebook 11 and benchmarks/bench_influence.py:
  (1) convex: an L2-regularised multinomial logistic regression refit on the
      frozen embeddings ``apply_fn(params, images).embedding``
      (``fit_logistic``, ``logistic_loss``); H is positive definite and the
      first-order theory is accurate.
  (2) the CNN's last layers (dense + script head of ``ScriptNet``; the conv
      trunk frozen, ``trunk_features`` / ``top_params`` / ``top_loss``). This
      part is non-convex; we use damping and the result is an approximation
      (Basu et al. 2021; Bae et al. 2022 show it tracks a proximal response
      rather than leave-one-out).

A loss function here is ``loss_fn(params, x, y) -> float32[N]``: per-example
losses of a batch (``x`` any array with a leading N axis, ``y`` int32[N]).
``cross_entropy(apply_fn, head)`` makes one from any ``apply_fn`` whose output
has a ``head`` field of logits.

References: Koh & Liang 2017 (arXiv:1703.04730); Agarwal, Bullins & Hazan 2017
(LiSSA); Pearlmutter 1994 (fast exact HVP); Basu, Pope & Feizi 2021; Bae et al.
2022; Grosse et al. 2023 (self-influence for mislabel detection).
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.flatten_util import ravel_pytree

LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]
METHODS = ("cg", "lissa", "exact")


class InverseHVPState(NamedTuple):
    """An inverse-HVP solution and its convergence record (one per right-hand side)."""

    x: Any  # pytree like v: (H + damping I)^-1 v
    residual: jax.Array  # ||(H + damping I) x - v|| / ||v||, float32[] or [T]
    iterations: jax.Array  # solver iterations used, int32[] or [T]
    converged: jax.Array  # residual <= tol, bool[] or [T]


class Influence(NamedTuple):
    """Influence scores I_up,loss[T, N] and the inverse-HVP solve behind them."""

    scores: jax.Array  # float32[T, N]: -grad L(test_t)^T H^-1 grad L(train_i)
    s_test: InverseHVPState  # x: float32[T, P] = H^-1 grad L(test_t)


class LOOResult(NamedTuple):
    """Actual leave-one-out retraining: test-loss changes and how converged each retrain is."""

    delta_test_loss: jax.Array  # float32[K, T]: L_test(theta_-i) - L_test(theta_hat)
    grad_norm: jax.Array  # float32[K]: ||grad J(theta_-i; w_-i)|| after retraining
    base_grad_norm: jax.Array  # float32[]: same for the no-removal run


# --------------------------------------------------------------------------- validation
def _check_choice(name: str, value, allowed) -> None:
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _check_xy(x, y, name: str) -> tuple[jax.Array, jax.Array]:
    xs = getattr(x, "shape", None)
    if xs is None or len(xs) < 1 or xs[0] == 0:
        raise ValueError(f"{name} inputs must be an array with a leading batch axis N >= 1, got shape {xs}")
    y = jnp.asarray(y)
    if not jnp.issubdtype(y.dtype, jnp.integer) or y.shape != (xs[0],):
        raise ValueError(f"{name} targets must be int[{xs[0]}] (one class id per input), "
                         f"got dtype {y.dtype} shape {y.shape}")
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating) and not bool(jnp.isfinite(x).all()):
        raise ValueError(f"{name} inputs contain NaN or infinite values")
    return x, y.astype(jnp.int32)


def _check_hessian(hessian, params, method):
    if hessian is None:
        return None
    p = ravel_pytree(params)[0].size
    if method != "exact":
        raise ValueError(f"hessian= is used by method='exact' only, got method={method!r}")
    if getattr(hessian, "shape", None) != (p, p):
        raise ValueError(f"hessian must be float32[{p}, {p}] (flattened params), got shape "
                         f"{getattr(hessian, 'shape', None)}")
    return jnp.asarray(hessian)


def _check_nonneg(name: str, value: float) -> None:
    if not (value >= 0 and np.isfinite(value)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


# --------------------------------------------------------------------------- losses
def cross_entropy(apply_fn: Callable, head: str = "script") -> LossFn:
    """Per-example softmax cross-entropy of ``getattr(apply_fn(params, x), head)``.

    Args:
      apply_fn: ``apply_fn(params, x)`` returning an object with a ``head`` field
        of logits float32[N, n_classes] (``scriptlab.model.functional`` gives one).
      head: the output field, e.g. "script" or "font".

    Returns:
      ``loss_fn(params, x, y) -> float32[N]``.
    """

    def loss_fn(params, x, y):
        logits = getattr(apply_fn(params, x), head)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    return loss_fn


def logistic_loss(params, x: jax.Array, y: jax.Array) -> jax.Array:
    """Multinomial logistic regression: per-example cross-entropy of x @ w + b.

    Args:
      params: {"w": float32[D, C], "b": float32[C]}.
      x: float32[N, D] features (e.g. frozen embeddings).
      y: int32[N] class ids.

    Returns:
      float32[N].
    """
    logits = x @ params["w"] + params["b"]
    return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def objective(loss_fn: LossFn, params, x, y, *, l2: float, weights=None) -> jax.Array:
    """J(theta; w) = (1/n) sum_i w_i loss_i + (l2/2) ||theta||^2 (n = len(y), whatever w is)."""
    losses = loss_fn(params, x, y)
    if weights is not None:
        losses = losses * weights
    sq = sum(jnp.vdot(p, p) for p in jax.tree.leaves(params))
    return losses.sum() / y.shape[0] + 0.5 * l2 * sq


# --------------------------------------------------------------------------- HVP and its inverse
def hvp(f: Callable[[Any], jax.Array], params, v):
    """Hessian-vector product H v of a scalar function, forward-over-reverse.

    Args:
      f: ``f(params) -> scalar``.
      params: any pytree of float arrays (the point where H is taken).
      v: a pytree like ``params``.

    Returns:
      A pytree like ``params``: d/dt grad f(params + t v) at t = 0, exact up to
      rounding, at the cost of about two gradient evaluations.

    References: Pearlmutter 1994; JAX autodiff cookbook (jvp of grad).
    """
    return jax.jvp(jax.grad(f), (params,), (v,))[1]


def _flat_matvec(f, params, damping):
    flat, unravel = ravel_pytree(params)

    def matvec(u):
        return ravel_pytree(hvp(f, params, unravel(u.astype(flat.dtype))))[0] + damping * u

    return flat, unravel, matvec


def _cg(matvec, b, *, tol, max_iter):
    """Conjugate gradients for A x = b with A symmetric positive definite (flat vectors)."""
    bnorm = jnp.linalg.norm(b)
    safe = jnp.where(bnorm > 0, bnorm, 1.0)

    def cond(c):
        _, r, _, rs, k = c
        return (jnp.sqrt(rs) > tol * safe) & (k < max_iter)

    def body(c):
        x, r, p, rs, k = c
        ap = matvec(p)
        alpha = rs / jnp.vdot(p, ap)
        x = x + alpha * p
        r = r - alpha * ap
        rs_new = jnp.vdot(r, r)
        p = r + (rs_new / rs) * p
        return x, r, p, rs_new, k + 1

    x0 = jnp.zeros_like(b)
    x, _, _, _, k = jax.lax.while_loop(cond, body, (x0, b, b, jnp.vdot(b, b), jnp.int32(0)))
    # The recursive residual drifts in float32: report the true one (one more HVP).
    res = jnp.linalg.norm(matvec(x) - b) / safe
    return x, res, k


def _power_max_eig(matvec, n, dtype, iters=30):
    """Largest |eigenvalue| of a symmetric operator by power iteration (for LiSSA's scale)."""
    u = jnp.ones((n,), dtype) / jnp.sqrt(n)

    def body(_, u):
        w = matvec(u)
        return w / (jnp.linalg.norm(w) + 1e-30)

    u = jax.lax.fori_loop(0, iters, body, u)
    return jnp.abs(jnp.vdot(u, matvec(u)))


def _lissa(matvec, b, *, scale, depth, tol):
    """Neumann series x_{j+1} = b + (I - A/scale) x_j, estimate x_j/scale (Agarwal et al. 2017).

    x_{j+1} - x_j = b - A (x_j/scale) is the residual of the current estimate,
    so the convergence check costs nothing extra.
    """
    bnorm = jnp.linalg.norm(b)
    safe = jnp.where(bnorm > 0, bnorm, 1.0)

    def cond(c):
        _, rnorm, k = c
        return (rnorm > tol * safe) & (k < depth)

    def body(c):
        x, _, k = c
        r = b - matvec(x) / scale
        return x + r, jnp.linalg.norm(r), k + 1

    x, _, k = jax.lax.while_loop(cond, body, (jnp.zeros_like(b), jnp.inf, jnp.int32(0)))
    est = x / scale
    res = jnp.linalg.norm(matvec(est) - b) / safe
    return est, res, k


def hessian_matrix(f: Callable[[Any], jax.Array], params) -> jax.Array:
    """The dense Hessian float32[P, P] of ``f`` over the flattened params (small models only)."""
    flat, unravel = ravel_pytree(params)
    return jax.hessian(lambda u: f(unravel(u)))(flat)


@functools.partial(jax.jit, static_argnames=("loss_fn", "l2"))
def _training_hessian(loss_fn, params, x, y, l2):
    return hessian_matrix(lambda p: objective(loss_fn, p, x, y, l2=l2), params)


def training_hessian(loss_fn: LossFn, params, x, y, *, l2: float) -> jax.Array:
    """The dense Hessian float32[P, P] of ``objective`` at ``params``: form it once, reuse it."""
    x, y = _check_xy(x, y, "train")
    return _training_hessian(loss_fn, params, x, y, float(l2))


def inverse_hvp(
    f: Callable[[Any], jax.Array],
    params,
    v,
    *,
    method: str = "cg",
    damping: float = 0.0,
    tol: float = 1e-5,
    max_iter: int = 500,
    scale: float | None = None,
) -> InverseHVPState:
    """(H + damping I)^-1 v for the Hessian H of ``f`` at ``params``.

    Args:
      f: ``f(params) -> scalar``, e.g. ``objective`` over the training set.
      params: pytree of float arrays.
      v: pytree like ``params``, or with an extra leading axis T on every leaf
        (T right-hand sides, solved together under vmap).
      method: "cg" (conjugate gradients; needs H + damping I positive definite,
        true for a convex objective with l2 > 0 and, near a minimum, for a
        damped non-convex one); "lissa" (Neumann series with step 1/scale,
        converges when 0 < eigenvalues < 2 scale); "exact" (forms the P x P
        Hessian with jax.hessian and Cholesky-solves; P up to a few thousand).
      damping: added to the diagonal (Koh & Liang use 0.01 for the CNN).
      tol: stop when ||(H + damping I) x - v|| <= tol ||v||.
      max_iter: iteration cap for "cg", depth for "lissa".
      scale: LiSSA step scale; None estimates 1.1 x the largest eigenvalue by
        power iteration (30 HVPs).

    Returns:
      InverseHVPState(x, residual, iterations, converged). ``residual`` is the
      true relative residual recomputed with one extra HVP (not CG's recursive
      estimate); check ``converged`` before trusting ``x``.

    References: Koh & Liang 2017 (CG and LiSSA for s_test); Agarwal et al. 2017.
    """
    _check_choice("method", method, METHODS)
    _check_nonneg("damping", damping)
    if not tol > 0:
        raise ValueError(f"tol must be > 0, got {tol!r}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be >= 1, got {max_iter!r}")
    p_leaves, p_def = jax.tree.flatten(params)
    v_leaves, v_def = jax.tree.flatten(v)
    if p_def != v_def:
        raise ValueError(f"v must have the same tree structure as params; got {v_def}, expected {p_def}")
    shapes = [(a.shape, b.shape) for a, b in zip(p_leaves, v_leaves, strict=True)]
    batched = all(vs[1:] == ps for ps, vs in shapes) and len({vs[0] for _, vs in shapes}) == 1
    if not batched and not all(vs == ps for ps, vs in shapes):
        raise ValueError(f"v leaves must have the params' shapes or [T, *shape]; got {[s[1] for s in shapes]}, "
                         f"params {[s[0] for s in shapes]}")
    return _inverse_hvp(f, params, v, method, float(damping), float(tol), int(max_iter), scale, batched)


def _inverse_hvp(f, params, v, method, damping, tol, max_iter, scale, batched):
    flat, unravel, matvec = _flat_matvec(f, params, damping)
    if batched:
        vflat = jax.vmap(lambda t: ravel_pytree(t)[0])(v)
    else:
        vflat = ravel_pytree(v)[0][None]
    x, res, k = _solve_flat(f, params, matvec, vflat, method, damping, tol, max_iter, scale)
    xs = jax.vmap(unravel)(x)
    if not batched:
        xs, res, k = jax.tree.map(lambda a: a[0], xs), res[0], k[0]
    return InverseHVPState(xs, res, k, res <= tol)


def _damped(h, damping):
    return 0.5 * (h + h.T) + damping * jnp.eye(h.shape[0], dtype=h.dtype)


def _solve_flat(f, params, matvec, vflat, method, damping, tol, max_iter, scale, hessian=None):
    """Solve (H + damping I) X = V for V float32[T, P]; returns (X, residual[T], iterations[T])."""
    if method == "exact":
        h = _damped(hessian_matrix(f, params) if hessian is None else hessian, damping)
        factor = jax.scipy.linalg.cho_factor(h)
        x = jax.scipy.linalg.cho_solve(factor, vflat.T).T
        res = jnp.linalg.norm(x @ h - vflat, axis=1) / jnp.maximum(jnp.linalg.norm(vflat, axis=1), 1e-30)
        return x, res, jnp.ones(vflat.shape[0], jnp.int32)
    if method == "cg":
        return jax.vmap(lambda b: _cg(matvec, b, tol=tol, max_iter=max_iter))(vflat)
    s = scale if scale is not None else 1.1 * _power_max_eig(matvec, vflat.shape[1], vflat.dtype)
    return jax.vmap(lambda b: _lissa(matvec, b, scale=s, depth=max_iter, tol=tol))(vflat)


# --------------------------------------------------------------------------- influence
def _example_grad(loss_fn):
    """flat grad of one example's loss: (params, x_i, y_i) -> float32[P]."""

    def g(params, xi, yi):
        return ravel_pytree(jax.grad(lambda p: loss_fn(p, xi[None], yi[None])[0])(params))[0]

    return g


def per_example_grads(loss_fn: LossFn, params, x, y, *, batch_size: int = 256) -> jax.Array:
    """Flattened per-example gradients float32[N, P] (vmap inside lax.map chunks).

    Materialises N x P numbers: for many points on a big model use
    ``influence_scores``, which contracts each chunk right away.
    """
    g = _example_grad(loss_fn)
    return jax.lax.map(lambda a: g(params, *a), (x, y), batch_size=batch_size)


@functools.partial(
    jax.jit,
    static_argnames=("loss_fn", "test_loss_fn", "method", "damping", "tol", "max_iter", "batch_size", "l2"),
)
def _influence(loss_fn, test_loss_fn, params, x, y, xt, yt, hessian, l2, method, damping, tol, max_iter,
               batch_size):
    f = functools.partial(objective, loss_fn, x=x, y=y, l2=l2)
    _, unravel, matvec = _flat_matvec(lambda p: f(p), params, damping)
    g_test = jax.lax.map(lambda a: _example_grad(test_loss_fn)(params, *a), (xt, yt), batch_size=batch_size)
    s, res, k = _solve_flat(lambda p: f(p), params, matvec, g_test, method, damping, tol, max_iter, None, hessian)
    g = _example_grad(loss_fn)
    scores = jax.lax.map(lambda a: -(s @ g(params, *a)), (x, y), batch_size=batch_size)  # [N, T]
    state = InverseHVPState(s, res, k, res <= tol)
    return scores.T, state


def influence_scores(
    loss_fn: LossFn,
    params,
    train_x,
    train_y,
    test_x,
    test_y,
    *,
    l2: float,
    test_loss_fn: LossFn | None = None,
    method: str = "cg",
    damping: float = 0.0,
    tol: float = 1e-5,
    max_iter: int = 500,
    batch_size: int = 256,
    hessian: jax.Array | None = None,
) -> Influence:
    """I_up,loss of every training point on every test point, one jitted pass.

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

    Returns:
      Influence(scores float32[T, N], s_test). scores[t, i] < 0: training point
      i helps test point t (removing it raises the test loss by about
      -scores[t, i] / N); > 0: it harms. ``s_test.x`` is float32[T, P].

    References: Koh & Liang 2017, eq. 2.
    """
    train_x, train_y = _check_xy(train_x, train_y, "train")
    test_x, test_y = _check_xy(test_x, test_y, "test")
    _check_choice("method", method, METHODS)
    _check_nonneg("l2", l2)
    _check_nonneg("damping", damping)
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
    hessian = _check_hessian(hessian, params, method)
    scores, state = _influence(loss_fn, test_loss_fn or loss_fn, params, train_x, train_y, test_x, test_y, hessian,
                               float(l2), method, float(damping), float(tol), int(max_iter), int(batch_size))
    return Influence(scores, state)


@functools.partial(jax.jit, static_argnames=("loss_fn", "l2", "damping", "batch_size"))
def _self_influence(loss_fn, params, x, y, hessian, l2, damping, batch_size):
    f = functools.partial(objective, loss_fn, x=x, y=y, l2=l2)
    h = _damped(hessian_matrix(lambda p: f(p), params) if hessian is None else hessian, damping)
    chol = jnp.linalg.cholesky(h)
    g = _example_grad(loss_fn)

    def one(a):
        z = jax.scipy.linalg.solve_triangular(chol, g(params, *a), lower=True)
        return jnp.vdot(z, z)  # g^T (L L^T)^-1 g

    return jax.lax.map(one, (x, y), batch_size=batch_size)


def self_influence(loss_fn: LossFn, params, x, y, *, l2: float, damping: float = 0.0,
                   batch_size: int = 256, hessian: jax.Array | None = None) -> jax.Array:
    """grad L(z_i)^T H^-1 grad L(z_i) for every training point (>= 0; = -I_up,loss(z_i, z_i)).

    A point whose own loss would rise most if it were left out is one the model
    had to bend towards: mislabelled examples score high. Uses the exact
    factorised Hessian (P up to a few thousand, e.g. the logistic head).

    Args:
      loss_fn, params, x, y, l2, damping, hessian: as in ``influence_scores``.
      batch_size: points per vmapped chunk.

    Returns:
      float32[N].

    References: Koh & Liang 2017, section 5.4; Grosse et al. 2023.
    """
    x, y = _check_xy(x, y, "train")
    _check_nonneg("l2", l2)
    _check_nonneg("damping", damping)
    hessian = _check_hessian(hessian, params, "exact")
    return _self_influence(loss_fn, params, x, y, hessian, float(l2), float(damping), int(batch_size))


def predicted_loo_change(scores: jax.Array, n_train: int) -> jax.Array:
    """Predicted L_test(theta_-i) - L_test(theta_hat) on removing point i: -scores / n."""
    return -jnp.asarray(scores) / n_train


# --------------------------------------------------------------------------- actual retraining
@functools.partial(
    jax.jit,
    static_argnames=("loss_fn", "test_loss_fn", "l2", "method", "steps", "lr", "momentum", "damping", "batch_size"),
)
def _loo(loss_fn, test_loss_fn, params, x, y, xt, yt, removed, hessian, l2, method, steps, lr, momentum, damping,
         batch_size):
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
        factor = jax.scipy.linalg.cho_factor(_damped(h, damping))

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


def loo_retrain(
    loss_fn: LossFn,
    params,
    train_x,
    train_y,
    test_x,
    test_y,
    removed,
    *,
    l2: float,
    test_loss_fn: LossFn | None = None,
    method: str = "newton",
    steps: int = 20,
    lr: float = 0.1,
    momentum: float = 0.9,
    damping: float = 0.0,
    hessian: jax.Array | None = None,
    batch_size: int = 8,
) -> LOOResult:
    """Actually retrain without each of ``removed``; batched, warm-started, masked.

    Every retrain starts at ``params`` (the optimum) and minimises
    J(theta; w) with w_i = 0 for its removed point (Koh & Liang's protocol).
    A run with nothing removed gets the same number of steps and is subtracted,
    so optimiser drift cancels. The retrains run in one jitted call, vmapped
    over the masks ``batch_size`` at a time (``lax.map``): no Python loop.

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

    Returns:
      LOOResult(delta_test_loss float32[K, T], grad_norm float32[K],
      base_grad_norm). Small gradient norms mean converged retrains.

    References: Koh & Liang 2017, section 5.1 (Figure 2).
    """
    train_x, train_y = _check_xy(train_x, train_y, "train")
    test_x, test_y = _check_xy(test_x, test_y, "test")
    _check_choice("method", method, ("newton", "momentum"))
    removed = jnp.asarray(removed)
    if removed.ndim != 1 or not jnp.issubdtype(removed.dtype, jnp.integer):
        raise ValueError(f"removed must be int[K] training indices, got dtype {removed.dtype} shape {removed.shape}")
    if removed.size and (int(removed.min()) < 0 or int(removed.max()) >= train_y.shape[0]):
        raise ValueError(f"removed must lie in [0, {train_y.shape[0]}), got [{int(removed.min())}, "
                         f"{int(removed.max())}]")
    _check_nonneg("l2", l2)
    d, gn, gb = _loo(loss_fn, test_loss_fn or loss_fn, params, train_x, train_y, test_x, test_y,
                     removed.astype(jnp.int32), _check_hessian(hessian, params, "exact"), float(l2), method,
                     int(steps), float(lr), float(momentum), float(damping), max(1, int(batch_size)))
    return LOOResult(d, gn, gb)


def pearson(a, b) -> float:
    """Pearson correlation of two flat arrays."""
    a = np.asarray(a, np.float64).ravel()
    b = np.asarray(b, np.float64).ravel()
    return float(np.corrcoef(a, b)[0, 1])


# --------------------------------------------------------------------------- level 1: convex head
@functools.partial(jax.jit, static_argnames=("n_classes", "l2", "steps"))
def _fit_logistic(x, y, n_classes, l2, steps):
    params = {"w": jnp.zeros((x.shape[1], n_classes), x.dtype), "b": jnp.zeros((n_classes,), x.dtype)}
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
      l2: weight of (l2/2) ||theta||^2 (weights and biases): keeps H positive definite.
      steps: Newton iterations (each forms the (D+1)C x (D+1)C Hessian).

    Returns:
      (params {"w": float32[D, C], "b": float32[C]}, grad_norm at the end).
    """
    x, y = _check_xy(features, labels, "features")
    if x.ndim != 2:
        raise ValueError(f"features must be float32[N, D], got shape {x.shape}")
    if int(y.max()) >= n_classes or int(y.min()) < 0:
        raise ValueError(f"labels must lie in [0, {n_classes}), got [{int(y.min())}, {int(y.max())}]")
    if not l2 > 0:
        raise ValueError(f"l2 must be > 0 for a strictly convex objective, got {l2!r}")
    return _fit_logistic(x.astype(jnp.float32), y, int(n_classes), float(l2), int(steps))


def embeddings(apply_fn: Callable, params, images, *, field: str = "embedding", batch_size: int = 500):
    """``apply_fn(params, images).<field>`` for many images, in chunks (frozen features).

    Args:
      apply_fn: the model's functional apply.
      params: its params.
      images: float32[N, H, W, 3] in [0, 1] or uint8[N, H, W, 3] (divided by 255).
      field: "embedding", or "pool3" etc. to read ``out.activations[field]``.
      batch_size: images per forward call.

    Returns:
      float32[N, D] (activations are flattened per image).
    """
    images = np.asarray(images)
    if images.ndim != 4 or images.shape[0] == 0:
        raise ValueError(f"images must be [N, H, W, C] with N >= 1, got shape {images.shape}")
    n = images.shape[0]
    batch_size = max(1, min(int(batch_size), n))
    pad = (-n) % batch_size
    padded = np.concatenate([images, np.repeat(images[:1], pad, 0)]) if pad else images
    chunks = jnp.asarray(padded).reshape(-1, batch_size, *images.shape[1:])
    return _embed(apply_fn, field, params, chunks)[:n]


@functools.partial(jax.jit, static_argnames=("apply_fn", "field"))
def _embed(apply_fn, field, params, chunks):
    def fwd(chunk):
        chunk = chunk.astype(jnp.float32) / 255.0 if chunk.dtype == jnp.uint8 else chunk
        out = apply_fn(params, chunk)
        feat = getattr(out, field) if field in getattr(out, "_fields", ()) else out.activations[field]
        return feat.reshape(feat.shape[0], -1)

    parts = jax.lax.map(fwd, chunks)
    return parts.reshape(-1, parts.shape[-1])


# --------------------------------------------------------------------------- level 2: last layers of ScriptNet
def top_params(params) -> dict:
    """The dense layer and both heads of a ScriptNet params tree, as plain arrays.

    The conv trunk is left out (frozen); ``top_loss`` runs these on
    ``embeddings(apply_fn, params, images, field="pool3")``.
    """
    def lin(name):
        return {"kernel": jnp.asarray(params[name]["kernel"][...]), "bias": jnp.asarray(params[name]["bias"][...])}

    return {"dense": lin("dense"), "script_head": lin("script_head"), "font_head": lin("font_head")}


class TopOutputs(NamedTuple):
    """Logits of the top layers of ScriptNet (same field names as model.Outputs)."""

    script: jax.Array
    font: jax.Array
    embedding: jax.Array


def top_apply(top, feats: jax.Array) -> TopOutputs:
    """ScriptNet from the flattened pool3 features up: dense + ReLU, script and font heads (eval mode)."""
    from scriptlab.model import rms_normalise  # the font head reads the RMS-normalised embedding

    emb = jax.nn.relu(feats @ top["dense"]["kernel"] + top["dense"]["bias"])
    script = emb @ top["script_head"]["kernel"] + top["script_head"]["bias"]
    font = rms_normalise(emb) @ top["font_head"]["kernel"] + top["font_head"]["bias"]
    return TopOutputs(script, font, emb)


def top_loss(head: str = "script") -> LossFn:
    """Per-example cross-entropy of ``top_apply`` on one head ("script" or "font")."""
    _check_choice("head", head, ("script", "font"))
    return cross_entropy(top_apply, head)


def refine(loss_fn: LossFn, params, x, y, *, l2: float, steps: int = 300, lr: float = 0.05,
           momentum: float = 0.9):
    """Full-batch heavy-ball descent on ``objective`` to bring trained params to a stationary point.

    Influence functions assume theta_hat minimises the objective; a network
    trained with SGD, dropout and AdamW is not there yet. Returns (params, grad_norm).
    """
    x, y = _check_xy(x, y, "train")
    return _refine(loss_fn, params, x, y, float(l2), int(steps), float(lr), float(momentum))


@functools.partial(jax.jit, static_argnames=("loss_fn", "l2", "steps", "lr", "momentum"))
def _refine(loss_fn, params, x, y, l2, steps, lr, momentum):
    grad_j = jax.grad(lambda p: objective(loss_fn, p, x, y, l2=l2))

    def step(c, _):
        p, vel = c
        vel = jax.tree.map(lambda v, g: momentum * v - lr * g, vel, grad_j(p))
        return (jax.tree.map(jnp.add, p, vel), vel), None

    (p, _), _ = jax.lax.scan(step, (params, jax.tree.map(jnp.zeros_like, params)), None, length=steps)
    return p, optax.global_norm(grad_j(p))


# --------------------------------------------------------------------------- mislabel detection
def detection_curve(ranking, flipped, fractions) -> np.ndarray:
    """Fraction of flipped labels found when checking the top ``fractions`` of a ranking.

    Args:
      ranking: int[N] training indices, most suspicious first.
      flipped: bool[N], which labels were corrupted.
      fractions: float[F] in [0, 1], fractions of the data checked.

    Returns:
      float[F]: found / total flipped.
    """
    ranking = np.asarray(ranking)
    flipped = np.asarray(flipped, bool)
    hits = np.concatenate([[0], np.cumsum(flipped[ranking])])
    k = np.round(np.asarray(fractions) * len(ranking)).astype(int)
    return hits[k] / max(int(flipped.sum()), 1)


def flip_labels(labels, n_classes: int, fraction: float, *, seed: int = 0):
    """Give a random ``fraction`` of labels a different random class. Returns (new labels, flipped mask)."""
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)
    new = labels.copy()
    new[idx] = (labels[idx] + rng.integers(1, n_classes, len(idx))) % n_classes
    mask = np.zeros(len(labels), bool)
    mask[idx] = True
    return new, mask


# --------------------------------------------------------------------------- cached results
def results_path(name: str) -> Path:
    """Where a cached validation result lives: $SCRIPTLAB_CACHE/influence/<name>.json."""
    from scriptlab.data import cache_dir

    return cache_dir() / "influence" / f"{name}.json"


def save_result(name: str, result: dict) -> Path:
    """Write a JSON-serialisable dict (numbers, lists, strings) to the influence cache."""
    p = results_path(name)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(result, indent=1, default=lambda a: np.asarray(a).tolist()))
    return p


def load_result(name: str) -> dict | None:
    """A cached validation result, or None if absent or unreadable."""
    p = results_path(name)
    try:
        return json.loads(p.read_text())
    except (OSError, ValueError):
        return None
