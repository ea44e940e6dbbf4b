"""What whole-network influence estimates: leave-k-out retraining and the proximal Bregman response.

On a deep network the influence function does not predict retraining from
scratch well: the initialisation and the batch order move a test loss by
more than removing a few points does, and the network sits at no exact
optimum. Bae et al. (2022) show that what it does estimate is the proximal
Bregman response function (PBRF): for removed points R, the minimiser of

    Q_R(theta) = (1/N) sum_i D(f_i(theta), f_i(theta_s))
                 - (1/N) sum_{r in R} L_r(theta) + (damping / 2) ||theta - theta_s||^2

started from the trained theta_s, with D the Bregman divergence of the loss in
output space (for softmax cross-entropy, KL(softmax f_i(theta_s) ||
softmax f_i(theta))). Q_R's gradient vanishes at theta_s except for the
removed points' term, so nothing moves without a removal, and its
linearisation there is the damped Gauss-Newton influence,
sum_r grad L_test^T (G + damping I)^-1 grad L_r / N: what EK-FAC approximates.

Two references, each batched over removal sets:

- ``leave_out_retrain``: train with each set's points at weight 0, from a given
  start and one seeded batch order shared by every set; the same run with
  nothing removed is subtracted, so the noise every set shares cancels. Run it
  at two seeds to measure the noise that does not (the noise floor).
- ``pbrf``: minimise Q_R from theta_s for each set, by mini-batch heavy-ball
  descent.

Both use ``lr`` with a cosine decay to 0 over the run and heavy-ball
momentum, and report each run's final full-batch gradient norm. The steps are
a Python loop over a jitted step, as ``train.train``'s are (a ``lax.scan``
of convolutions is far slower on XLA:CPU), and the sets' runs follow one
another: vmapping M parameter sets turns every convolution into a grouped
one, which ran about 10x slower per image on XLA:CPU (measured on ScriptNet).

References: Bae, Ng, Lo, Ghassemi & Grosse 2022, "If Influence Functions are the
Answer, Then What is the Question?", https://arxiv.org/abs/2209.05364; Koh & Liang
2017, section 5.1, https://arxiv.org/abs/1703.04730.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Integer, Shaped

from scriptlab.interpret._common import (
    check_indices,
    check_int,
    check_nonneg,
    check_steps,
    check_xy,
)
from scriptlab.interpret.influence.layers import as_float
from scriptlab.interpret.influence.losses import LossFn
from scriptlab.protocols import AnyArray

_CHUNK = 256  # rows per jitted chunk of the final full-batch gradients and test losses


class RetrainResult(NamedTuple):
    """Test-loss changes of M retrains, one per removal set, and how converged each run is.

    Attributes:
      delta_test_loss: float32[M, T]: L_test(theta_R) - L_test(reference), the reference
        being the run with nothing removed (``leave_out_retrain``) or theta_s (``pbrf``).
      grad_norm: float32[M]: the full-batch gradient norm of each run's own objective at
        its end.
      base_grad_norm: float32[]: the same for the reference (0 for ``pbrf``, whose
        objective is stationary at theta_s).
      base_params: the reference's parameters: the model trained with nothing removed
        (``leave_out_retrain``), or theta_s (``pbrf``).
    """

    delta_test_loss: jax.Array
    grad_norm: jax.Array
    base_grad_norm: jax.Array
    base_params: Any


def _check_sets(removed, n: int, min_sets: int = 1) -> np.ndarray:
    """int[M, k] training indices, one row per removal set (k >= 1, M >= min_sets)."""
    sets = check_indices("removed", removed, n, what="training points")
    if sets.ndim != 2 or sets.shape[0] < min_sets or sets.shape[1] < 1:
        raise ValueError(
            f"removed must be int[M, k] (M removal sets of k training indices), got shape "
            f"{sets.shape}"
        )
    return sets


def _order(n: int, batch_size: int, epochs: int, seed: int) -> np.ndarray:
    """int32[S, B]: ``epochs`` seeded permutations of range(n), cut into whole batches."""
    rng = np.random.default_rng(seed)
    per = n // batch_size
    return np.concatenate(
        [rng.permutation(n)[: per * batch_size].reshape(per, batch_size) for _ in range(epochs)]
    ).astype(np.int32)


def _check_run(train, test, removed, epochs, batch_size, lr, momentum, seed, min_sets):
    """The checks both references share; returns (train, test, int[M, k] sets, batch order)."""
    train, test = check_xy(*train, "train"), check_xy(*test, "test")
    n = train[1].shape[0]
    sets = _check_sets(removed, n, min_sets)
    epochs = check_int("epochs", epochs, 1)
    batch_size = check_int("batch_size", batch_size, 1, n + 1)
    check_steps(epochs, lr, momentum)
    return train, test, sets, _order(n, batch_size, epochs, check_int("seed", seed))


def _rate(lr: float, step: int, total: int) -> float:
    return lr * 0.5 * (1.0 + math.cos(math.pi * step / total))


def _heavy_ball(objective, params, velocity, lr, momentum, *args):
    g = jax.grad(objective)(params, *args)
    velocity = jax.tree.map(lambda v, d: momentum * v - lr * d, velocity, g)
    return jax.tree.map(jnp.add, params, velocity), velocity


def _sq_norm(tree) -> jax.Array:
    return sum(jnp.sum(leaf**2) for leaf in jax.tree.leaves(tree))


# ----------------------------------------------------------------------------- leave-k-out


def _masked_objective(loss_fn, params, x, y, w, l2):
    """sum_b w_b L_b / sum_b w_b + l2/2 ||theta||^2 (a batch whose rows are all removed: 0)."""
    total = jnp.sum(w * loss_fn(params, as_float(x), y))
    return total / jnp.maximum(jnp.sum(w), 1.0) + 0.5 * l2 * _sq_norm(params)


@functools.partial(jax.jit, static_argnames=("loss_fn",), donate_argnums=(1, 2))
def _retrain_step(loss_fn, params, velocity, x, y, mask, idx, lr, momentum, l2):
    xb, yb, wb = x[idx], y[idx], mask[idx]
    return _heavy_ball(
        lambda q: _masked_objective(loss_fn, q, xb, yb, wb, l2), params, velocity, lr, momentum
    )


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _losses(loss_fn, params, x, y):
    return loss_fn(params, as_float(x), y)


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _masked_grad_sum(loss_fn, params, x, y, w):
    """sum_i w_i grad L_i over one chunk."""
    return jax.grad(lambda q: jnp.sum(w * loss_fn(q, as_float(x), y)))(params)


def _full_grad_norm(loss_fn, params, x, y, mask, l2) -> float:
    """|| grad of (sum_i w_i L_i / sum_i w_i + l2/2 ||theta||^2) || over every row."""
    total = jax.tree.map(lambda p: l2 * p, params)
    scale = 1.0 / max(float(mask.sum()), 1.0)
    for start in range(0, y.shape[0], _CHUNK):
        rows = slice(start, start + _CHUNK)
        part = _masked_grad_sum(loss_fn, params, x[rows], y[rows], mask[rows])
        total = jax.tree.map(lambda t, g: t + scale * g, total, part)
    return float(jnp.sqrt(_sq_norm(total)))


def _descend(step, params, order, lr, *args):
    """``step`` over the seeded batches with the cosine-decayed rate; params are not donated."""
    p = jax.tree.map(jnp.array, params)  # a copy: the steps donate their inputs
    v = jax.tree.map(jnp.zeros_like, p)
    for s, idx in enumerate(order):
        p, v = step(p, v, idx, _rate(lr, s, len(order)), *args)
    return p


def leave_out_retrain(
    loss_fn: LossFn,
    params,
    train_x: Shaped[AnyArray, " n *input"],
    train_y: Integer[AnyArray, " n"],
    test_x: Shaped[AnyArray, " t *input"],
    test_y: Integer[AnyArray, " t"],
    removed: Integer[AnyArray, "m k"],
    *,
    epochs: int,
    batch_size: int = 64,
    lr: float = 0.05,
    momentum: float = 0.9,
    l2: float = 0.0,
    seed: int = 0,
) -> RetrainResult:
    """Train once per removal set with its points at weight 0, and once with nothing removed.

    Every run starts at ``params`` (an initialisation for retraining from scratch,
    or a trained model for Koh & Liang's warm start) and takes the same seeded
    batches: ``epochs`` permutations of the N rows, ``N // batch_size`` whole
    batches each. A removed row keeps its place in its batch at weight 0, and
    each batch's loss is the mean over its remaining rows, so the runs differ
    only in what was removed. The run with nothing removed is the reference
    ``delta_test_loss`` is measured from. Steps are heavy-ball gradient descent
    with ``lr`` decayed to 0 by a cosine; the M + 1 runs share one compiled step.

    Args:
      loss_fn: per-example losses, ``loss_fn(params, x, y) -> float32[B]`` (e.g.
        ``layerwise_loss(apply_fn)``; a static jit argument, so pass the same object
        to reuse the compiled step). uint8 inputs are divided by 255.
      params: the starting parameters.
      train_x, train_y: the N training points; test_x, test_y: the T test points.
      removed: int[M, k]: M removal sets of k training indices each (a repeated
        index is removed once); M = 0 trains the reference alone (``base_params``).
      epochs: passes over the data; batch_size: rows per step (<= N).
      lr, momentum: heavy-ball step size (peak of the cosine) and momentum in [0, 1).
      l2: L2 weight of the objective.
      seed: the batch order.

    Returns:
      RetrainResult(delta_test_loss float32[M, T], grad_norm float32[M],
      base_grad_norm, base_params): each run's final full-batch gradient norm says
      how far from a stationary point it stopped.
    """
    (train_x, train_y), (test_x, test_y), sets, order = _check_run(
        (train_x, train_y), (test_x, test_y), removed, epochs, batch_size, lr, momentum, seed, 0
    )
    check_nonneg("l2", l2)
    masks = np.ones((sets.shape[0] + 1, train_y.shape[0]), np.float32)  # the last removes nothing
    masks[np.repeat(np.arange(sets.shape[0]), sets.shape[1]), sets.ravel()] = 0.0

    def step(p, v, idx, rate, mask):
        return _retrain_step(loss_fn, p, v, train_x, train_y, mask, idx, rate, momentum, l2)

    losses, gnorms = [], []
    for mask in map(jnp.asarray, masks):
        p = _descend(step, params, order, float(lr), mask)
        losses.append(_losses(loss_fn, p, test_x, test_y))
        gnorms.append(_full_grad_norm(loss_fn, p, train_x, train_y, mask, l2))
    losses = jnp.stack(losses)
    return RetrainResult(
        losses[:-1] - losses[-1], jnp.asarray(gnorms[:-1]), jnp.asarray(gnorms[-1]), p
    )


# ----------------------------------------------------------------------------- PBRF


def _logits(apply_fn, head, params, x):
    return getattr(apply_fn(params, as_float(x)), head)


def _pbrf_objective(apply_fn, head, params, anchor, p_s, xb, rx, ry, rw, weight, damping):
    """Q_R on one batch: mean KL(p_s || softmax f(theta)) - weight sum_r rw_r L_r + prox."""
    log_q = jax.nn.log_softmax(_logits(apply_fn, head, params, xb))
    kl = jnp.mean(jnp.sum(p_s * (jnp.log(jnp.maximum(p_s, 1e-30)) - log_q), -1))
    removed = jnp.sum(
        rw
        * optax.softmax_cross_entropy_with_integer_labels(_logits(apply_fn, head, params, rx), ry)
    )
    prox = _sq_norm(jax.tree.map(jnp.subtract, params, anchor))
    return kl - weight * removed + 0.5 * damping * prox


@functools.partial(jax.jit, static_argnames=("apply_fn", "head"))
def _loss(apply_fn, head, params, x, y):
    return optax.softmax_cross_entropy_with_integer_labels(_logits(apply_fn, head, params, x), y)


@functools.partial(jax.jit, static_argnames=("apply_fn", "head"), donate_argnums=(2, 3))
def _pbrf_step(apply_fn, head, params, velocity, anchor, x, rx, ry, rw, idx, lr, momentum, wd):
    weight, damping = wd
    xb = x[idx]
    p_s = jax.nn.softmax(_logits(apply_fn, head, anchor, xb))
    return _heavy_ball(
        lambda q: _pbrf_objective(apply_fn, head, q, anchor, p_s, xb, rx, ry, rw, weight, damping),
        params, velocity, lr, momentum,
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("apply_fn", "head"))
def _pbrf_grad(apply_fn, head, params, anchor, x, rx, ry, rw, weight, damping):
    """grad of sum_i KL_i over one chunk of x, plus (``weight`` != 0) the removal and prox terms."""
    p_s = jax.nn.softmax(_logits(apply_fn, head, anchor, x))

    def q(th):
        log_q = jax.nn.log_softmax(_logits(apply_fn, head, th, x))
        kl = jnp.sum(p_s * (jnp.log(jnp.maximum(p_s, 1e-30)) - log_q))
        ce = optax.softmax_cross_entropy_with_integer_labels(_logits(apply_fn, head, th, rx), ry)
        prox = _sq_norm(jax.tree.map(jnp.subtract, th, anchor))
        return kl - weight * jnp.sum(rw * ce) + 0.5 * damping * prox

    return jax.grad(q)(params)


def pbrf(
    apply_fn: Callable,
    params,
    train_x: Shaped[AnyArray, " n *input"],
    train_y: Integer[AnyArray, " n"],
    test_x: Shaped[AnyArray, " t *input"],
    test_y: Integer[AnyArray, " t"],
    removed: Integer[AnyArray, "m k"],
    *,
    damping: float,
    epochs: int,
    head: str = "script",
    batch_size: int = 64,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight: float | None = None,
    seed: int = 0,
) -> RetrainResult:
    """The proximal Bregman response to removing each set: what damped influence estimates.

    For each removal set R, minimises Q_R (the module docstring) from theta_s =
    ``params`` by heavy-ball descent on seeded mini-batches (``epochs`` passes,
    cosine-decayed ``lr``); the divergence term is sampled by the batch, the
    removed points' term is exact at every step. The M runs share one compiled step.

    Args:
      apply_fn: ``apply_fn(params, x)`` with a field ``head`` of logits float32[B, C]
        (a ScriptNet ``Functional``); a static jit argument.
      params: theta_s, the trained parameters.
      train_x, train_y: the N training points (the labels are used only for the removed
        ones: the divergence term compares outputs); test_x, test_y: the T test points.
      removed: int[M, k]: M removal sets of k training indices each.
      damping: the proximity weight (the influence prediction's damping), >= 0.
      epochs, batch_size, lr, momentum, seed: the optimiser, as in ``leave_out_retrain``.
      head: the logits field, "script" for ScriptNet's task.
      weight: the removed points' weight in Q_R; None: 1/N (removal). A small weight
        divided out gives the response's derivative, the influence itself.

    Returns:
      RetrainResult(delta_test_loss float32[M, T] = L_test(theta_R) - L_test(theta_s),
      grad_norm float32[M] of Q_R at each run's end, base_grad_norm 0, base_params
      theta_s).

    References: Bae et al. 2022, section 4, https://arxiv.org/abs/2209.05364.
    """
    if not isinstance(head, str) or not head or head.startswith("_"):
        raise ValueError(f"head must name a logits field of apply_fn's output, got {head!r}")
    (train_x, train_y), (test_x, test_y), sets, order = _check_run(
        (train_x, train_y), (test_x, test_y), removed, epochs, batch_size, lr, momentum, seed, 1
    )
    check_nonneg("damping", damping)
    n = train_y.shape[0]
    weight = 1.0 / n if weight is None else weight
    check_nonneg("weight", weight)
    rx, ry = train_x[jnp.asarray(sets)], train_y[jnp.asarray(sets)]
    # A repeated index is removed once: only its first place in the set carries weight.
    first = np.array([[j == list(row).index(i) for j, i in enumerate(row)] for row in sets])
    rw = jnp.asarray(first, jnp.float32)
    wd = (jnp.float32(weight), jnp.float32(damping))

    def step(p, v, idx, rate, rxm, rym, rwm):
        return _pbrf_step(
            apply_fn, head, p, v, params, train_x, rxm, rym, rwm, idx, rate, momentum, wd
        )

    base = _loss(apply_fn, head, params, test_x, test_y)
    delta, gnorm = [], []
    for rxm, rym, rwm in zip(rx, ry, rw, strict=True):
        p = _descend(step, params, order, float(lr), rxm, rym, rwm)
        delta.append(_loss(apply_fn, head, p, test_x, test_y) - base)
        # The full gradient of Q_R: the chunks' KL sums / N, the removal and prox terms once.
        total = None
        for start in range(0, n, _CHUNK):
            once = n if start == 0 else 0.0  # the removal and prox terms, scaled by N once
            part = _pbrf_grad(
                apply_fn, head, p, params, train_x[start : start + _CHUNK], rxm, rym, rwm,
                wd[0] * once, wd[1] * once,
            )  # fmt: skip
            total = part if total is None else jax.tree.map(jnp.add, total, part)
        gnorm.append(float(jnp.sqrt(_sq_norm(total))) / n)
    return RetrainResult(jnp.stack(delta), jnp.asarray(gnorm), jnp.float32(0.0), params)
