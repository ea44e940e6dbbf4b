"""Loss functions and the training objective that influence functions differentiate.

A loss function is ``loss_fn(params, x, y) -> float32[N]``: per-example losses
of a batch (``x`` any array with a leading N axis, ``y`` int32[N]). The
training objective everywhere in the package is

    J(theta; w) = (1/n) sum_i w_i loss_i(theta) + (l2 / 2) ||theta||^2

with w = 1; leave-one-out sets one w_i to 0 and keeps the 1/n (Koh & Liang's
convention, so removal is exactly epsilon = -1/n).

References: Koh & Liang 2017, https://arxiv.org/abs/1703.04730.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.flatten_util import ravel_pytree

from scriptlab.interpret._common import check_array
from scriptlab.protocols import LayerwiseLoss

LossFn = Callable[[Any, jax.Array, jax.Array], jax.Array]


def cross_entropy(apply_fn: Callable, head: str = "script") -> LossFn:
    """Per-example softmax cross-entropy of ``getattr(apply_fn(params, x), head)``.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn`` (or any callable whose output
        has a ``head`` field of logits float32[N, n_classes]).
      head: the output field, e.g. "script" or "font".

    Returns:
      ``loss_fn(params, x, y) -> float32[N]``.
    """

    def loss_fn(params, x, y):
        out = apply_fn(params, x)
        if not isinstance(head, str) or head.startswith("_") or not hasattr(out, head):
            fields = getattr(out, "_fields", None)
            raise ValueError(
                f"head must name a logits field of apply_fn's output {fields}, got {head!r}"
            )
        logits = getattr(out, head)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    return loss_fn


@jax.jit  # called eagerly too (a notebook's test losses): one program, not one per operation
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


def objective(loss_fn: LossFn, params, x, y, *, l2, weights=None) -> jax.Array:
    """J(theta; w) = (1/n) sum_i w_i loss_i + (l2/2) ||theta||^2 (n = len(y), whatever w is).

    ``l2`` may be a traced scalar: a sweep over it does not recompile.
    """
    losses = loss_fn(params, x, y)
    if weights is not None:
        check_array("weights", weights, shape=(y.shape[0],))  # finite, one per example
        losses = losses * weights
    sq = sum(jnp.vdot(p, p) for p in jax.tree.leaves(params))
    return losses.sum() / y.shape[0] + 0.5 * l2 * sq


def example_grad(loss_fn: LossFn):
    """The flat gradient of one example's loss: ``g(params, x_i, y_i) -> float32[P]``."""

    def g(params, xi, yi):
        return ravel_pytree(jax.grad(lambda p: loss_fn(p, xi[None], yi[None])[0])(params))[0]

    return g


def gradient_products(loss_fn: LossFn):
    """(grads, dots, sq_norms) for batches of per-example gradients of ``loss_fn``.

    ``grads(params, x[B], y[B])`` returns some representation of the B
    gradients, ``dots(u, v) -> float32[B_u, B_v]`` their pairwise dot products
    and ``sq_norms(u) -> float32[B]`` their squared norms. A
    ``scriptlab.protocols.LayerwiseLoss`` keeps dense layers factored (one
    matmul per layer); any other loss gets flat float32[B, P] gradients by
    ``vmap`` of ``example_grad``.
    """
    if isinstance(loss_fn, LayerwiseLoss):
        return loss_fn.layer_grads, loss_fn.grad_dots, loss_fn.grad_sq_norms
    g = jax.vmap(example_grad(loss_fn), in_axes=(None, 0, 0))
    return g, lambda u, v: u @ v.T, lambda u: jnp.sum(u**2, axis=1)


def map_chunks(fn, xs, batch_size: int, *args):
    """``fn(*args, chunk)`` over the leading axis of the pytree ``xs``, ``batch_size`` at a time.

    ``fn`` is jitted and takes and returns whole chunks (leading axis B); the
    last chunk is zero-padded to B (one compilation) and the padding cut off.
    The loop over chunks is in Python on purpose: the same per-chunk program
    under ``lax.map`` ran 2.6x slower on XLA:CPU (while-loop bodies lose
    intra-op parallelism; measured on ScriptNet's layer-wise gradients).
    """
    leaves, treedef = jax.tree.flatten(xs)
    leaves = [jnp.asarray(a) for a in leaves]  # on the device once, not once per chunk
    n = leaves[0].shape[0]
    b = min(int(batch_size), n)
    # The slicing, padding and joining run as a few small jitted programs whatever the number
    # of chunks and leaves (op by op they compiled two to four programs per leaf).
    full = n - n % b
    outs = [fn(*args, jax.tree.unflatten(treedef, _rows(leaves, i, b))) for i in range(0, full, b)]
    if full < n:  # the last chunk, zero-padded to b rows
        outs.append(fn(*args, jax.tree.unflatten(treedef, _last_rows(leaves, full, b))))
    # Rows past n are the last chunk's padding. An output with one row per chunk (a chunk's
    # sum) keeps all its rows: there are never more chunks than n.
    return _join_rows(outs, n)


@functools.partial(jax.jit, static_argnums=2)
def _rows(leaves, start, b):
    return [jax.lax.dynamic_slice_in_dim(a, start, b) for a in leaves]


@functools.partial(jax.jit, static_argnums=(1, 2))
def _last_rows(leaves, start, b):
    pad = lambda a: ((0, b - a.shape[0]),) + ((0, 0),) * (a.ndim - 1)  # noqa: E731
    return [jnp.pad(a[start:], pad(a[start:])) for a in leaves]


@functools.partial(jax.jit, static_argnums=1)
def _join_rows(outs, n):
    return jax.tree.map(lambda *a: jnp.concatenate(a)[:n], *outs)
