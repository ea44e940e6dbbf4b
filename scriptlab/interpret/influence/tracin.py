"""TracIn: influence as the learning-rate-weighted gradient agreement over training checkpoints.

    TracInCP(z, z_test) = sum_c lr_c  grad L(z_test; theta_c) . grad L(z; theta_c)

over saved checkpoints theta_c (the zoo's epoch snapshots, ``zoo.load_epochs``).
It needs no Hessian and no optimum, only first-order gradients, so it covers
every parameter of the network, conv trunk included. Positive scores are
proponents (a gradient step on z lowered the test loss), negative ones
opponents: the opposite sign of ``influence_scores`` (I_up,loss < 0 helps).
The derivation is for SGD; with Adam (the zoo's optimiser) the weights lr_c
are the schedule's step sizes and the preconditioner is ignored, as in the
paper's own experiments.

References: Pruthi, Liu, Kale & Sundararajan 2020, "Estimating Training Data
Influence by Tracing Gradient Descent", https://arxiv.org/abs/2002.08484.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Integer, PyTree, Shaped

from scriptlab.interpret._common import check_array, check_batch_size, check_xy
from scriptlab.interpret.influence.losses import LossFn, gradient_products, map_chunks
from scriptlab.protocols import AnyArray, LayerwiseLoss


def _check_checkpoints(checkpoints, learning_rates):
    if isinstance(checkpoints, (str, bytes)) or not isinstance(checkpoints, Sequence):
        raise ValueError(
            f"checkpoints must be a sequence of params pytrees, got {type(checkpoints).__name__}"
        )
    if len(checkpoints) == 0:
        raise ValueError("checkpoints must hold at least one params pytree, got an empty sequence")
    structure = jax.tree.structure(checkpoints[0])
    for i, c in enumerate(checkpoints):
        if jax.tree.structure(c) != structure:
            raise ValueError(
                f"checkpoints[{i}] has tree structure {jax.tree.structure(c)}, "
                f"expected that of checkpoints[0] {structure}"
            )
    lrs = np.asarray(check_array("learning_rates", learning_rates, shape=(len(checkpoints),)))
    if (lrs < 0).any():
        raise ValueError(f"learning_rates must be >= 0, got {lrs}")
    return [float(r) for r in lrs]


def _check_loss(loss_fn, params, x) -> None:
    """A layer-wise loss checks its head and layers here, before anything is jitted."""
    if isinstance(loss_fn, LayerwiseLoss):
        loss_fn.layers(params, x)


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _test_grads(loss_fn, params, xt, yt):
    return gradient_products(loss_fn)[0](params, xt, yt)


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _dots(loss_fn, params, g_test, chunk):
    g, dot, _ = gradient_products(loss_fn)
    return dot(g(params, *chunk), g_test)


@functools.partial(jax.jit, static_argnames=("loss_fn",))
def _sq_norms(loss_fn, params, chunk):
    g, _, sq_norm = gradient_products(loss_fn)
    return sq_norm(g(params, *chunk))


def tracin_scores(
    loss_fn: LossFn | LayerwiseLoss,
    checkpoints: Sequence[PyTree],
    train_x: Shaped[AnyArray, " n *input"],
    train_y: Integer[AnyArray, " n"],
    test_x: Shaped[AnyArray, " t *input"],
    test_y: Integer[AnyArray, " t"],
    *,
    learning_rates: Sequence[float] | Float[AnyArray, " checkpoints"],
    test_loss_fn: LossFn | None = None,
    batch_size: int = 64,
) -> Float[Array, "t n"]:
    """TracInCP of every training point on every test point: one jitted pass per checkpoint.

    Per-example gradients are computed ``batch_size`` at a time by one jitted
    program (``losses.gradient_products``: layer-wise for a
    ``scriptlab.protocols.LayerwiseLoss``, else vmap; ``losses.map_chunks``) and contracted
    with the test gradients right away, so memory is about (batch_size + T) x P,
    never N x P. Every checkpoint reuses the same compiled program.

    The leading arguments are every estimator's (``influence_scores``, ``ekfac_scores``):
    ``(loss_fn, params, train_x, train_y, test_x, test_y)``, with the C checkpoints in
    the place of ``params``.

    Args:
      loss_fn: per-example loss ``loss_fn(params, x, y) -> float32[N]``; for the
        whole network pass a ``scriptlab.protocols.LayerwiseLoss``,
        ``layerwise_loss(apply_fn, head)`` (the same loss as ``cross_entropy(apply_fn,
        head)`` over the nnx.Conv / nnx.Linear parameters, 15x faster per-example
        gradients on ScriptNet).
      checkpoints: C params pytrees of one structure (``[p for _, p in zoo.load_epochs(...)]``).
      train_x, train_y: training inputs [N, ...] and int[N] targets.
      test_x, test_y: test inputs [T, ...] and int[T] targets.
      learning_rates: float[C] >= 0, the step size in force at each checkpoint
        (``scriptlab.train.epoch_learning_rates`` for a zoo model's snapshots).
      test_loss_fn: loss on the test points; default ``loss_fn``.
      batch_size: examples per vmapped chunk.

    Returns:
      float32[T, N]; > 0 for proponents (helpful), < 0 for opponents.

    References: Pruthi et al. 2020, eq. 3 (TracInCP), https://arxiv.org/abs/2002.08484.
    """
    train_x, train_y = check_xy(train_x, train_y, "train")
    test_x, test_y = check_xy(test_x, test_y, "test")
    batch_size = check_batch_size(batch_size)
    lrs = _check_checkpoints(checkpoints, learning_rates)
    _check_loss(loss_fn, checkpoints[0], train_x)
    total = jnp.zeros((test_y.shape[0], train_y.shape[0]), jnp.float32)
    for params, lr in zip(checkpoints, lrs, strict=True):  # C checkpoints, a handful
        g_test = _test_grads(test_loss_fn or loss_fn, params, test_x, test_y)
        dots = map_chunks(
            functools.partial(_dots, loss_fn), (train_x, train_y), batch_size, params, g_test
        )
        total = total + lr * dots.T
    return total


def tracin_self_influence(
    loss_fn: LossFn | LayerwiseLoss,
    checkpoints: Sequence[PyTree],
    x: Shaped[AnyArray, " n *input"],
    y: Integer[AnyArray, " n"],
    *,
    learning_rates: Sequence[float] | Float[AnyArray, " checkpoints"],
    batch_size: int = 64,
) -> Float[Array, " n"]:
    """sum_c lr_c ||grad L(z_i; theta_c)||^2 for every training point (mislabel ranking).

    Args: as in ``tracin_scores``.

    Returns:
      float32[N] >= 0; high for points the model kept being pulled towards.

    References: Pruthi et al. 2020, section 4.1 (self-influence finds mislabelled
    examples), https://arxiv.org/abs/2002.08484.
    """
    x, y = check_xy(x, y, "train")
    batch_size = check_batch_size(batch_size)
    lrs = _check_checkpoints(checkpoints, learning_rates)
    _check_loss(loss_fn, checkpoints[0], x)
    total = jnp.zeros(y.shape[0], jnp.float32)
    for params, lr in zip(checkpoints, lrs, strict=True):
        total = total + lr * map_chunks(
            functools.partial(_sq_norms, loss_fn), (x, y), batch_size, params
        )
    return total
