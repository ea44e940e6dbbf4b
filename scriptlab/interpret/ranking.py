"""What do a crop's top-ranked training crops and nearest neighbours have in common with it?

Two views that rank other crops for each query crop, judged by the labels the
top k share with it:

- training-point ranking (``ranking_shares``): any influence estimator's score
  matrix [n_test, n_train] (convex-head influence, TracIn, EK-FAC, ...) ranks
  the training crops for each test crop. For a misread conflict crop, the share
  of its top k that carry its style AND the script it was wrongly read as says
  whether the estimator traces the error to the shortcut; the share's base rate
  (the same share over the whole training set) is what an uninformative
  ranking gets.
- embedding neighbours (``neighbour_shares``): the k nearest points (exact,
  Euclidean) of each query in an embedding, and the share that share its
  style against the share that share its script.

Both return ``TopKShares``: per label column and jointly (all columns at once),
next to their base rates.

References: Adebayo, Muelly, Abelson & Kim 2022 (training-point ranking judged by
the planted signal), https://arxiv.org/abs/2212.04629; Koh & Liang 2017,
https://arxiv.org/abs/1703.04730; Pruthi et al. 2020 (TracIn),
https://arxiv.org/abs/2002.08484; Cover & Hart 1967 (nearest neighbours).
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Integer, Real

from scriptlab.interpret._common import check_array, check_batch_size, check_int
from scriptlab.protocols import AnyArray


class TopKShares(NamedTuple):
    """What each query's top-k ranked points share with it.

    Attributes:
      share: float32[Q, A] share of the top k whose label column a equals the query's.
      joint: float32[Q] share of the top k that match the query in every column.
      base_rate: float32[Q, A] the same share over all N points (an uninformative ranking's).
      joint_base_rate: float32[Q] the joint share over all N points.
      indices: int32[Q, k] the top-k points of each query, best first.
    """

    share: jax.Array
    joint: jax.Array
    base_rate: jax.Array
    joint_base_rate: jax.Array
    indices: jax.Array


def _check_keys(name: str, keys, n: int, columns: int | None = None) -> jax.Array:
    """Integer labels int[n] or int[n, A], returned as int32[n, A]."""
    k = np.asarray(keys)
    if k.ndim == 1:
        k = k[:, None]
    if k.ndim != 2 or k.shape[0] != n or not np.issubdtype(k.dtype, np.integer):
        raise ValueError(
            f"{name} must be int[{n}] or int[{n}, A] labels, got {k.dtype}{list(k.shape)}"
        )
    if columns is not None and k.shape[1] != columns:
        raise ValueError(
            f"{name} must have {columns} label columns like query_keys, got {k.shape[1]}"
        )
    return jnp.asarray(k, jnp.int32)


def _check_k(k, n: int) -> int:
    k = check_int("k", k, 1)
    if k > n:
        raise ValueError(f"k must be in [1, {n}] (the number of points ranked), got {k}")
    return k


def _shares(indices, query_keys, point_keys, block_size):
    """TopKShares of given top-k indices [Q, k]; base rates one block of queries at a time."""
    match = point_keys[indices] == query_keys[:, None, :]  # [Q, k, A]

    def base(q):
        same = point_keys == q  # [N, A]
        return same.mean(0), same.all(-1).mean()

    base_rate, joint_base = jax.lax.map(base, query_keys, batch_size=block_size)
    return TopKShares(
        match.mean(1), match.all(-1).mean(1), base_rate, joint_base, indices.astype(jnp.int32)
    )


def ranking_shares(
    scores: Real[AnyArray, "q n"],
    query_keys: Integer[AnyArray, " q"] | Integer[AnyArray, "q a"],
    train_keys: Integer[AnyArray, " n"] | Integer[AnyArray, "n a"],
    *,
    k: int = 10,
    largest: bool = True,
    block_size: int = 128,
) -> TopKShares:
    """Shares of each test crop's top-k training crops that match its labels, with base rates.

    For test crop i the training crops are ranked by ``scores[i]`` (descending
    with ``largest``, ascending otherwise; ``lax.top_k``, ties to the lower
    index); ``share[i, a]`` is the fraction of the top k with
    ``train_keys[j, a] == query_keys[i, a]``, ``joint[i]`` the fraction matching
    in every column, and the base rates the same fractions over all N training
    crops. For the shortcut question pass the columns (style, script) with the
    test crop's own style and the script it was wrongly predicted as, so
    ``joint`` is the share of top-k crops carrying that style and that script.

    Args:
      scores: float[Q, N] any influence estimator's scores of N training crops
        for Q test crops (sign convention: the estimator's; choose ``largest``).
      query_keys: int[Q] or int[Q, A] labels of each test crop.
      train_keys: int[N] or int[N, A] the same label columns of each training crop.
      k: how many top crops, 1 <= k <= N.
      largest: rank by the largest scores (True) or the smallest.
      block_size: test crops ranked together.

    Returns:
      A ``TopKShares``.

    References: Adebayo, Muelly, Abelson & Kim 2022, https://arxiv.org/abs/2212.04629;
    Koh & Liang 2017; Pruthi et al. 2020.
    """
    s = check_array("scores", scores, ndim=2)
    q, n = s.shape
    qk = _check_keys("query_keys", query_keys, q)
    tk = _check_keys("train_keys", train_keys, n, qk.shape[1])
    return _ranking_shares(
        s,
        qk,
        tk,
        k=_check_k(k, n),
        largest=bool(largest),
        block_size=check_batch_size(block_size, name="block_size"),
    )


@functools.partial(jax.jit, static_argnames=("k", "largest", "block_size"))
def _ranking_shares(scores, query_keys, train_keys, *, k, largest, block_size):
    signed = scores if largest else -scores
    indices = jax.lax.map(lambda row: jax.lax.top_k(row, k)[1], signed, batch_size=block_size)
    return _shares(indices, query_keys, train_keys, block_size)


def neighbour_shares(
    queries: Real[AnyArray, "q d"],
    points: Real[AnyArray, "n d"],
    query_keys: Integer[AnyArray, " q"] | Integer[AnyArray, "q a"],
    point_keys: Integer[AnyArray, " n"] | Integer[AnyArray, "n a"],
    *,
    k: int = 10,
    exclude: Integer[AnyArray, " q"] | None = None,
    block_size: int = 128,
) -> TopKShares:
    """Shares of each query's k nearest points (exact Euclidean) that match its labels.

    ``ranking_shares`` with the ranking "nearest first" in an embedding: for
    query i the points are ranked by ||points[j] - queries[i]||^2 (ties to the
    lower index), ``exclude[i]`` (a point index, or -1 for none) is left out
    (the query itself when the queries are rows of ``points``). Pass the
    columns (style, script): ``share[:, 0]`` against ``share[:, 1]`` says
    whether the neighbourhood is organised by style or by script.

    Args:
      queries: float[Q, D] embeddings of the query crops.
      points: float[N, D] embeddings of the crops searched (training crops, say).
      query_keys: int[Q] or int[Q, A] labels of each query.
      point_keys: int[N] or int[N, A] the same label columns of each point.
      k: neighbours, 1 <= k <= N (N - 1 with ``exclude``).
      exclude: optional int[Q] a point to leave out per query, -1 for none.
      block_size: queries searched together.

    Returns:
      A ``TopKShares``; base rates count every point but the excluded one.

    References: Cover & Hart 1967; Adebayo, Muelly, Abelson & Kim 2022,
    https://arxiv.org/abs/2212.04629.
    """
    qx = check_array("queries", queries, ndim=2)
    px = check_array("points", points, shape=(None, qx.shape[1]))
    q, n = qx.shape[0], px.shape[0]
    qk = _check_keys("query_keys", query_keys, q)
    pk = _check_keys("point_keys", point_keys, n, qk.shape[1])
    if exclude is None:
        ex = jnp.full(q, -1, jnp.int32)
    else:
        ex = np.asarray(exclude)
        if (
            ex.shape != (q,)
            or not np.issubdtype(ex.dtype, np.integer)
            or ex.min() < -1
            or ex.max() >= n
        ):
            raise ValueError(
                f"exclude must be int[{q}] point indices in [-1, {n}) (-1: none), got "
                f"{ex.dtype}{list(ex.shape)}"
            )
        ex = jnp.asarray(ex, jnp.int32)
    k = _check_k(k, n - (exclude is not None))
    return _neighbour_shares(
        qx, px, qk, pk, ex, k=k, block_size=check_batch_size(block_size, name="block_size")
    )


@functools.partial(jax.jit, static_argnames=("k", "block_size"))
def _neighbour_shares(queries, points, query_keys, point_keys, exclude, *, k, block_size):
    sq = jnp.sum(points * points, axis=1)
    hi = jax.lax.Precision.HIGHEST

    def nearest(row):
        x, skip = row
        d = sq - 2.0 * jnp.matmul(points, x, precision=hi)  # ||p - x||^2 - ||x||^2
        d = jnp.where(jnp.arange(points.shape[0]) == skip, jnp.inf, d)
        return jax.lax.top_k(-d, k)[1]

    indices = jax.lax.map(nearest, (queries, exclude), batch_size=block_size)
    shares = _shares(indices, query_keys, point_keys, block_size)
    # base rates over the N - 1 points left when a query's own point is excluded
    has = (exclude >= 0)[:, None]
    same = point_keys[jnp.maximum(exclude, 0)] == query_keys  # [Q, A] the excluded point's match
    n = points.shape[0]
    base = jnp.where(has, (shares.base_rate * n - same) / (n - 1), shares.base_rate)
    joint = jnp.where(
        has[:, 0], (shares.joint_base_rate * n - same.all(-1)) / (n - 1), shares.joint_base_rate
    )
    return shares._replace(base_rate=base, joint_base_rate=joint)
