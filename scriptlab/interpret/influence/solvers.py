"""Hessian-vector products and (H + damping I)^-1 v: conjugate gradients, LiSSA, Cholesky.

All over any params pytree. ``hvp`` is forward-over-reverse (``jax.jvp`` of
``jax.grad``); the solvers work on the flattened parameters, vmapped over
right-hand sides, and report the true relative residual
||(H + damping I) x - v|| / ||v||, the iteration count and a converged flag.

References: Pearlmutter 1994 (fast exact HVP); Koh & Liang 2017 (CG and LiSSA for
s_test), https://arxiv.org/abs/1703.04730; Agarwal, Bullins & Hazan 2017 (LiSSA),
https://arxiv.org/abs/1602.03943.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from scriptlab.interpret._common import (
    check_array,
    check_choice,
    check_int,
    check_nonneg,
    check_number,
    check_xy,
)
from scriptlab.interpret.influence.losses import LossFn, objective

METHODS = ("cg", "lissa", "exact")


class InverseHVPState(NamedTuple):
    """An inverse-HVP solution and its convergence record (one per right-hand side).

    Attributes:
      x: pytree like v: (H + damping I)^-1 v.
      residual: ||(H + damping I) x - v|| / ||v||, float32[] or [T].
      iterations: solver iterations used, int32[] or [T].
      converged: residual <= tol, bool[] or [T].
    """

    x: Any
    residual: jax.Array
    iterations: jax.Array
    converged: jax.Array


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
    if jax.tree.structure(v) != jax.tree.structure(params):
        raise ValueError(
            f"v must have the tree structure of params; got {jax.tree.structure(v)}, "
            f"expected {jax.tree.structure(params)}"
        )
    for leaf in jax.tree.leaves(v):
        check_array("v", leaf)
    return jax.jvp(jax.grad(f), (params,), (v,))[1]


def flat_matvec(f, params, damping):
    """(flat params float32[P], unravel, u -> (H + damping I) u on flat vectors)."""
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


def largest_eigenvalue(matvec, n: int, dtype, iters: int = 30) -> jax.Array:
    """Largest |eigenvalue| of a symmetric operator on float[n] by power iteration (LiSSA's scale)."""
    check_int("iters", iters, 1)
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


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _training_hessian(loss_fn, params, x, y, l2):
    return hessian_matrix(lambda p: objective(loss_fn, p, x, y, l2=l2), params)


def training_hessian(loss_fn: LossFn, params, x, y, *, l2: float) -> jax.Array:
    """The dense Hessian float32[P, P] of ``objective`` at ``params``: form it once, reuse it.

    ``l2`` is traced: a sweep over it compiles once.
    """
    x, y = check_xy(x, y, "train")
    check_nonneg("l2", l2)
    return _training_hessian(loss_fn, params, x, y, float(l2))


def damped_hessian(h: jax.Array, damping) -> jax.Array:
    """The symmetrised Hessian plus damping on the diagonal: 0.5 (H + H^T) + damping I."""
    check_number("damping", damping, low=0.0)
    return _damped(h, damping)


@jax.jit
def _damped(h, damping):
    return 0.5 * (h + h.T) + damping * jnp.eye(h.shape[0], dtype=h.dtype)


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

    References: Koh & Liang 2017 (CG and LiSSA for s_test),
    https://arxiv.org/abs/1703.04730; Agarwal et al. 2017,
    https://arxiv.org/abs/1602.03943.
    """
    check_choice("method", method, METHODS)
    check_nonneg("damping", damping)
    check_number("tol", tol, low=0.0, open_low=True)
    check_int("max_iter", max_iter, 1)
    if scale is not None:
        check_number("scale", scale, low=0.0, open_low=True)
    for leaf in jax.tree.leaves(v):
        check_array("v", leaf)
    p_leaves, p_def = jax.tree.flatten(params)
    v_leaves, v_def = jax.tree.flatten(v)
    if p_def != v_def:
        raise ValueError(
            f"v must have the same tree structure as params; got {v_def}, expected {p_def}"
        )
    shapes = [(a.shape, b.shape) for a, b in zip(p_leaves, v_leaves, strict=True)]
    batched = all(vs[1:] == ps for ps, vs in shapes) and len({vs[0] for _, vs in shapes}) == 1
    if not batched and not all(vs == ps for ps, vs in shapes):
        raise ValueError(
            f"v leaves must have the params' shapes or [T, *shape]; got {[s[1] for s in shapes]}, "
            f"params {[s[0] for s in shapes]}"
        )
    return _inverse_hvp(
        f, params, v, method, float(damping), float(tol), int(max_iter), scale, batched
    )


def _inverse_hvp(f, params, v, method, damping, tol, max_iter, scale, batched):
    _, unravel, matvec = flat_matvec(f, params, damping)
    if batched:
        vflat = jax.vmap(lambda t: ravel_pytree(t)[0])(v)
    else:
        vflat = ravel_pytree(v)[0][None]
    x, res, k = solve_flat(f, params, matvec, vflat, method, damping, tol, max_iter, scale)
    xs = jax.vmap(unravel)(x)
    if not batched:
        xs, res, k = jax.tree.map(lambda a: a[0], xs), res[0], k[0]
    return InverseHVPState(xs, res, k, res <= tol)


def solve_flat(f, params, matvec, vflat, method, damping, tol, max_iter, scale, hessian=None):
    """Solve (H + damping I) X = V for V float32[T, P]; returns (X, residual[T], iterations[T])."""
    if method == "exact":
        h = damped_hessian(hessian_matrix(f, params) if hessian is None else hessian, damping)
        factor = jax.scipy.linalg.cho_factor(h)
        x = jax.scipy.linalg.cho_solve(factor, vflat.T).T
        res = jnp.linalg.norm(x @ h - vflat, axis=1) / jnp.maximum(
            jnp.linalg.norm(vflat, axis=1), 1e-30
        )
        return x, res, jnp.ones(vflat.shape[0], jnp.int32)
    if method == "cg":
        return jax.vmap(lambda b: _cg(matvec, b, tol=tol, max_iter=max_iter))(vflat)
    s = (
        scale
        if scale is not None
        else 1.1 * largest_eigenvalue(matvec, vflat.shape[1], vflat.dtype)
    )
    return jax.vmap(lambda b: _lissa(matvec, b, scale=s, depth=max_iter, tol=tol))(vflat)
