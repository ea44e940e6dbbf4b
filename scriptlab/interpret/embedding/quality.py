"""How faithful a map is: trustworthiness and k-nearest-neighbour accuracy."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Integer, Real

from scriptlab.interpret._common import check_int
from scriptlab.interpret.embedding._checks import _check_points
from scriptlab.interpret.embedding.neighbours import _sq_distances_to
from scriptlab.protocols import AnyArray

# ----------------------------------------------------------------------------- quality


@functools.partial(jax.jit, static_argnames=("n_neighbors", "block_size"))
def _trustworthiness(x, y, n_neighbors, block_size):
    n = x.shape[0]
    sqx = jnp.sum(x * x, 1)

    def row(args):
        xi, yi, i = args
        dx = _sq_distances_to(xi, x, sqx).at[i].set(jnp.inf)
        dy = jnp.sum((yi - y) ** 2, axis=1).at[i].set(jnp.inf)
        _, near_y = jax.lax.top_k(-dy, n_neighbors)
        # Rank in the input space = 1 + how many points are strictly closer.
        rank = 1 + jnp.sum(dx[None, :] < dx[near_y][:, None], axis=1)
        return jnp.sum(jnp.maximum(rank - n_neighbors, 0))

    penalty = jax.lax.map(row, (x, y, jnp.arange(n)), batch_size=block_size).sum()
    k = n_neighbors
    return 1.0 - 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0)) * penalty


def trustworthiness(
    x: Real[AnyArray, "n d"],
    y: Real[AnyArray, "n e"],
    *,
    n_neighbors: int = 5,
    block_size: int = 128,
) -> Float[Array, ""]:
    """How far the map's neighbours are from being true neighbours (1 = perfect).

    T(k) = 1 - 2 / (N k (2N - 3k - 1)) sum_i sum_{j in U_i} (r(i, j) - k), where
    U_i are the k nearest neighbours of i in the map that are not among its k
    nearest in the input, and r(i, j) is j's rank among i's input-space neighbours.
    Computed in row blocks without sorting (ranks by counting), O(N^2 k).

    Args:
      x: float32[N, D] input points.
      y: float32[N, d] their map.
      n_neighbors: k, with k < N / 2.
      block_size: rows per block.

    Returns:
      float32[] in [0, 1]; matches sklearn.manifold.trustworthiness.

    References: Venna & Kaski 2001.
    """
    ax, ay = _check_points(x, "x", min_points=2), _check_points(y, "y", min_points=2)
    check_int("n_neighbors", n_neighbors, 1)
    check_int("block_size", block_size, 1)
    if ax.shape[0] != ay.shape[0]:
        raise ValueError(
            f"x and y must have the same number of rows, got {ax.shape[0]} and {ay.shape[0]}"
        )
    if not 1 <= n_neighbors < ax.shape[0] / 2:
        raise ValueError(
            f"n_neighbors must be in [1, N / 2 = {ax.shape[0] / 2}), got {n_neighbors}"
        )
    return _trustworthiness(
        jnp.asarray(ax, jnp.float32),
        jnp.asarray(ay, jnp.float32),
        int(n_neighbors),
        int(block_size),
    )


@functools.partial(jax.jit, static_argnames=("k", "n_classes", "balanced", "block_size"))
def _knn_accuracy(x, labels, groups, k, n_classes, balanced, block_size):
    n = x.shape[0]
    sq = jnp.sum(x * x, 1)
    # Votes are weighted 1 + tiny * closeness so a tie goes to the nearer class.
    weight = 1.0 + 1e-3 * (k - jnp.arange(k)) / k

    def row(args):
        xi, i = args
        d = _sq_distances_to(xi, x, sq)
        d = jnp.where(groups == groups[i], d, jnp.inf).at[i].set(jnp.inf)
        neg, near = jax.lax.top_k(-d, k)
        votes = jnp.zeros(n_classes).at[labels[near]].add(jnp.where(neg > -jnp.inf, weight, 0.0))
        return jnp.argmax(votes) == labels[i]

    hits = jax.lax.map(row, (x, jnp.arange(n)), batch_size=block_size).astype(jnp.float32)
    if not balanced:
        return hits.mean()
    count = jax.ops.segment_sum(jnp.ones(n), labels, n_classes)
    recall = jax.ops.segment_sum(hits, labels, n_classes) / jnp.maximum(count, 1.0)
    return jnp.sum(jnp.where(count > 0, recall, 0.0)) / jnp.sum(count > 0)


def knn_accuracy(
    x: Real[AnyArray, "n d"],
    labels: Integer[AnyArray, " n"],
    *,
    k: int = 10,
    groups: Integer[AnyArray, " n"] | None = None,
    balanced: bool = False,
    block_size: int = 128,
) -> Float[Array, ""]:
    """Leave-one-out k-nearest-neighbour accuracy of ``labels`` in the space ``x``.

    Each point is classified by the majority label of its k nearest other points
    (Euclidean; ties to the class of the nearer neighbours). High accuracy means
    the labels can be read off the geometry: use it on the embedding and on the
    2-D map to see how much the picture keeps.

    Args:
      x: float32[N, D] points (an embedding, or a 2-D map).
      labels: int[N] class ids >= 0.
      k: neighbours that vote (1 <= k < N).
      groups: optional int[N]; neighbours are then searched only within a point's
        own group (e.g. font style within script: what script identity cannot
        explain). A group with k or fewer other points votes with what it has.
      balanced: report the mean per-class recall (chance = 1 / #classes) instead
        of the plain accuracy (chance = the majority class's share).
      block_size: rows per block.

    Returns:
      float32[] in [0, 1].

    References: Cover & Hart 1967; van der Maaten et al. 2009 (as a map quality measure).
    """
    arr = _check_points(x, "x", min_points=2)
    n = arr.shape[0]
    lab = np.asarray(labels)
    if lab.shape != (n,) or not np.issubdtype(lab.dtype, np.integer):
        raise ValueError(f"labels must be int[N = {n}], got {lab.dtype}{list(lab.shape)}")
    if lab.min() < 0:
        raise ValueError(f"labels must be >= 0, got minimum {lab.min()}")
    grp = np.zeros(n, np.int32) if groups is None else np.asarray(groups)
    k = check_int("k", k, 1)
    if grp.shape != (n,) or not np.issubdtype(grp.dtype, np.integer):
        raise ValueError(f"groups must be int[N = {n}] or None, got {grp.dtype}{list(grp.shape)}")
    if not 1 <= k < n:
        raise ValueError(f"k must be in [1, N - 1 = {n - 1}], got {k}")
    return _knn_accuracy(
        jnp.asarray(arr, jnp.float32),
        jnp.asarray(lab, jnp.int32),
        jnp.asarray(grp, jnp.int32),
        int(k),
        int(lab.max()) + 1,
        bool(balanced),
        int(block_size),
    )
