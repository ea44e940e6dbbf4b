"""PCA, and a model's embedding in chunks (``embed``)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Real

from scriptlab.interpret._common import check_int, forward_chunks
from scriptlab.interpret.embedding._checks import _check_points
from scriptlab.protocols import AnyArray, Image


class PCA(NamedTuple):
    """A fitted PCA: the projection, the principal axes and the variance they explain.

    Attributes:
      projected: float32[N, n_components], the centred data on the principal axes.
      components: float32[n_components, D], the principal axes as unit rows.
      explained_variance_ratio: float32[n_components], each axis's share of the variance.
      mean: float32[D], the mean subtracted before projecting.
    """

    projected: jax.Array
    components: jax.Array
    explained_variance_ratio: jax.Array
    mean: jax.Array


# ----------------------------------------------------------------------------- embeddings


def embed(
    apply_fn: Callable[..., Any],
    params: Any,
    images: Image[AnyArray, "n h w c"],
    *,
    layer: str | None = None,
    batch_size: int = 256,
) -> Float[Array, "n d"]:
    """The model's representation of each image, computed in chunks.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn``; ``out.embedding`` (or
        ``out.activations[layer]``) is read.
      params: the model parameters (any pytree).
      images: float32[N, H, W, C] in [0, 1], or uint8[N, H, W, C] (divided by
        255 chunk by chunk).
      layer: None for ``out.embedding``; otherwise another output field or a
        name in ``out.activations``, flattened to [N, -1].
      batch_size: images per forward pass (bounds memory; the result does not
        depend on it).

    Returns:
      float32[N, D].
    """
    return forward_chunks(apply_fn, params, images, layer=layer, batch_size=batch_size)


@functools.partial(jax.jit, static_argnames=("n_components",))
def _pca(x: jax.Array, n_components: int) -> PCA:
    mean = x.mean(0)
    xc = x - mean
    u, s, vt = jnp.linalg.svd(xc, full_matrices=False)
    # Sign convention (as scikit-learn's svd_flip on V): the largest |loading| is positive.
    signs = jnp.sign(vt[jnp.arange(vt.shape[0]), jnp.argmax(jnp.abs(vt), axis=1)])
    signs = jnp.where(signs == 0, 1.0, signs)
    vt = vt * signs[:, None]
    var = s**2
    ratio = var / jnp.maximum(var.sum(), 1e-30)
    comps = vt[:n_components]
    return PCA(xc @ comps.T, comps, ratio[:n_components], mean)


def pca(x: Real[AnyArray, "n d"], *, n_components: int = 2) -> PCA:
    """Principal component analysis by a thin SVD of the centred data (jitted).

    Args:
      x: float32[N, D].
      n_components: how many leading axes to keep (<= min(N, D)).

    Returns:
      PCA(projected [N, n_components], components [n_components, D],
      explained_variance_ratio [n_components], mean [D]). Signs are fixed so that
      the largest loading of each axis is positive (deterministic pictures).

    References: Pearson 1901; Hotelling 1933.
    """
    arr = _check_points(x, "x", min_points=2)
    check_int("n_components", n_components)
    if not 1 <= n_components <= min(arr.shape):
        raise ValueError(
            f"n_components must be in [1, min(N, D) = {min(arr.shape)}], got {n_components}"
        )
    return _pca(jnp.asarray(arr, jnp.float32), n_components)
