"""I_pert,loss: how a training image's pixels move the loss on a test point (Koh & Liang 2017, sec. 2.2).

    I_pert,loss(z, z_test)^T = -grad_theta L(z_test)^T H^-1 grad_x grad_theta L(z)
                             = -grad_x [ s_test . grad_theta L(x, y) ],  s_test = H^-1 grad L(z_test)

Replacing training crop x by x + delta changes the test loss by about
I_pert,loss . delta / n (n training points): the pixels of a training crop
that most raise a test crop's loss. The inner product is one forward-mode
derivative (``jax.jvp`` of the loss along s_test), the outer gradient one
reverse pass, batched over training crops: no Hessian over pixels.

References: Koh & Liang 2017, section 2.2 and eq. 3, https://arxiv.org/abs/1703.04730.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree
from jaxtyping import Array, Float, Integer, Shaped

from scriptlab.interpret._common import check_batch_size, check_images, check_xy
from scriptlab.interpret.influence.layers import as_float
from scriptlab.interpret.influence.losses import LossFn, map_chunks
from scriptlab.protocols import AnyArray


def _as_tree_batch(s_test, params):
    """s_test as a params-shaped pytree with a leading T axis (from [T, P], [P], or pytrees)."""
    flat, unravel = ravel_pytree(params)
    if hasattr(s_test, "ndim"):  # an array, not a pytree
        s = jnp.asarray(s_test)
        if s.ndim == 1:
            s = s[None]
        if s.ndim != 2 or s.shape[1] != flat.size:
            raise ValueError(
                f"s_test must be float32[T, {flat.size}] (flattened params, e.g. "
                f"influence_scores(...).s_test.x) or a params pytree, got shape {s.shape}"
            )
        return jax.vmap(unravel)(s)
    p_leaves, p_def = jax.tree.flatten(params)
    s_leaves, s_def = jax.tree.flatten(s_test)
    if p_def != s_def:
        raise ValueError(f"s_test must have the tree structure of params {p_def}, got {s_def}")
    if all(a.shape == b.shape for a, b in zip(s_leaves, p_leaves, strict=True)):
        return jax.tree.map(lambda a: a[None], s_test)
    if not all(a.shape[1:] == b.shape for a, b in zip(s_leaves, p_leaves, strict=True)):
        raise ValueError(
            "s_test leaves must have the params' shapes, or [T, *shape] (ekfac_s_test); got "
            f"{[a.shape for a in s_leaves]}"
        )
    return s_test


@functools.partial(jax.jit, static_argnames=("loss_fn", "apply_fn", "field"))
def _pert_chunk(loss_fn, apply_fn, field, params, trunk, s_test, chunk):
    x, y = chunk

    def inner(xs, s):  # s_test . grad_theta sum_i L(theta; x_i, y_i): one jvp
        if apply_fn is not None:
            out = apply_fn(trunk, as_float(xs))
            xs = out.embedding if field == "embedding" else out.activations[field]
            xs = xs.reshape(xs.shape[0], -1)
        return jax.jvp(lambda p: loss_fn(p, xs, y).sum(), (params,), (s,))[1]

    x = as_float(x)
    # examples are independent, so the gradient of the sum is each crop's own gradient
    g = jax.vmap(lambda s: jax.grad(inner)(x, s))(s_test)  # [T, B, ...]
    return jnp.moveaxis(-g, 1, 0)


def perturbation_influence(
    loss_fn: LossFn,
    params,
    s_test,
    train_x: Shaped[AnyArray, " n *input"],
    train_y: Integer[AnyArray, " n"],
    *,
    apply_fn: Callable | None = None,
    trunk_params=None,
    field: str = "embedding",
    batch_size: int = 64,
) -> Float[Array, "n t *input"]:
    """I_pert,loss of every training input on T test points: -grad_x [s_test . grad_theta L(x, y)].

    Args:
      loss_fn: per-example loss ``loss_fn(params, inputs, y) -> float32[N]``.
        For the whole network: ``cross_entropy(apply_fn, head)`` (or
        ``layerwise_loss(apply_fn, head)``) on images. For a head on frozen features:
        ``logistic_loss``, with ``apply_fn``/``trunk_params`` below so that the
        derivative reaches the pixels through the frozen trunk.
      params: the parameters s_test lives on (the whole net, or the head).
      s_test: H^-1 grad L(z_test) for T test points: float32[T, P] flat
        (``influence_scores(...).s_test.x``), a params pytree with a leading T
        axis (``ekfac_s_test``), or one params pytree.
      train_x: the training inputs to differentiate: images float32[N, H, W, 3]
        in [0, 1] or uint8 (with ``apply_fn``, or a whole-network loss).
      train_y: int[N] their labels.
      apply_fn, trunk_params: optional frozen trunk: the loss sees
        ``apply_fn(trunk_params, images).<field>`` (flattened) as its inputs.
      field: "embedding", or an activation name ("pool3") of the trunk.
      batch_size: training crops per jitted chunk.

    Returns:
      float32[N, T, *input shape]: the direction in input space along which a
      training crop most raises each test loss (Delta L_test ~= I_pert . delta / n).

    References: Koh & Liang 2017, section 2.2, https://arxiv.org/abs/1703.04730.
    """
    if apply_fn is not None or train_x.ndim == 4:
        train_x = check_images(train_x, name="train_x", keep_uint8=True)
    train_x, train_y = check_xy(train_x, train_y, "train")
    batch_size = check_batch_size(batch_size)
    if apply_fn is not None and trunk_params is None:
        raise ValueError("apply_fn needs trunk_params (the frozen trunk's params), got None")
    s = _as_tree_batch(s_test, params)
    fn = functools.partial(_pert_chunk, loss_fn, apply_fn, field)
    return map_chunks(fn, (train_x, train_y), batch_size, params, trunk_params, s)
