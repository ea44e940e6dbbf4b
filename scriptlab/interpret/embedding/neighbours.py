"""Nearest neighbours and the t-SNE input affinities (perplexity calibration)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jaxtyping import Array, Float, Real

from scriptlab.interpret._common import check_int
from scriptlab.interpret.embedding._checks import _check_points
from scriptlab.protocols import AnyArray


class Affinities(NamedTuple):
    """Conditional input affinities p_{j|i} on each point's k nearest neighbours.

    Attributes:
      neighbors: int32[N, k], nearest first, self excluded.
      conditional: float32[N, k], p_{j|i}; each row sums to 1.
      beta: float32[N], Gaussian precision 1 / (2 sigma_i^2) on squared distances.
      entropy: float32[N], achieved entropy of each row in nats (target: log perplexity).
    """

    neighbors: jax.Array
    conditional: jax.Array
    beta: jax.Array
    entropy: jax.Array


# ----------------------------------------------------------------------------- neighbours


def _sq_distances_to(xi: jax.Array, x: jax.Array, sq: jax.Array) -> jax.Array:
    """Squared Euclidean distances from one point to all, clipped at 0 (float32 cancellation)."""
    return jnp.maximum(sq + xi @ xi - 2.0 * (x @ xi), 0.0)


def _nearest(x: jax.Array, k: int, block_size: int) -> tuple[jax.Array, jax.Array]:
    """k nearest neighbours of every point (self excluded): (sq distances, indices), [N, k]."""
    n = x.shape[0]
    sq = jnp.sum(x * x, axis=1)

    def row(args):
        xi, i = args
        d = _sq_distances_to(xi, x, sq).at[i].set(jnp.inf)
        neg, idx = jax.lax.top_k(-d, k)
        return -neg, idx.astype(jnp.int32)

    return jax.lax.map(row, (x, jnp.arange(n)), batch_size=block_size)


def _row_entropy(d: jax.Array, beta: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Entropy (nats) and probabilities of exp(-beta d) / sum; d is shifted so min(d) = 0."""
    w = jnp.exp(-beta[:, None] * d)
    s = w.sum(1)
    p = w / s[:, None]
    return jnp.log(s) + beta * jnp.sum(d * p, axis=1), p


def _calibrate(sq_dist: jax.Array, perplexity: float, n_steps: int = 64):
    """Vectorised bisection on log(beta) so that every row has entropy log(perplexity)."""
    d = sq_dist - sq_dist[:, :1]  # nearest first: shifting by the minimum keeps exp() <= 1
    target = jnp.log(perplexity)
    scale = jnp.maximum(d.mean(1), 1e-12)
    lo = jnp.log(1e-8 / scale)  # entropy ~ log k here
    hi = jnp.log(1e8 / scale)  # entropy ~ log(#ties at the minimum) here

    def step(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        h, _ = _row_entropy(d, jnp.exp(mid))
        too_flat = h > target  # entropy falls as beta grows
        return jnp.where(too_flat, mid, lo), jnp.where(too_flat, hi, mid)

    lo, hi = jax.lax.fori_loop(0, n_steps, step, (lo, hi))
    beta = jnp.exp(0.5 * (lo + hi))
    h, p = _row_entropy(d, beta)
    return p, beta, h


def _default_neighbors(n: int, perplexity: float) -> int:
    return min(n - 1, int(3.0 * perplexity + 1))


def _check_perplexity(n: int, perplexity: float, n_neighbors: int | None) -> int:
    if not perplexity > 0:
        raise ValueError(f"perplexity must be > 0, got {perplexity}")
    if perplexity >= n:
        raise ValueError(f"perplexity must be < the number of points N = {n}, got {perplexity}")
    k = _default_neighbors(n, perplexity) if n_neighbors is None else int(n_neighbors)
    if not 1 <= k <= n - 1:
        raise ValueError(f"n_neighbors must be in [1, N - 1 = {n - 1}], got {k}")
    if perplexity >= k:
        raise ValueError(
            f"perplexity must be < n_neighbors = {k} (an entropy of log(perplexity) "
            f"cannot be reached on {k} neighbours), got {perplexity}"
        )
    return k


@functools.partial(jax.jit, static_argnames=("n_neighbors", "block_size"))
def _affinities(x, perplexity, n_neighbors, block_size):
    sq_dist, idx = _nearest(x, n_neighbors, block_size)
    p, beta, h = _calibrate(sq_dist, perplexity)
    return Affinities(idx, p, beta, h)


def affinities(
    x: Real[AnyArray, "n d"],
    *,
    perplexity: float = 30.0,
    n_neighbors: int | None = None,
    block_size: int = 128,
) -> Affinities:
    """Conditional Gaussian affinities p_{j|i} with per-point bandwidths (jitted).

    Each point's precision beta_i is found by a bisection on log(beta), run for
    all points at once, so that the entropy of p_{.|i} equals log(perplexity).

    Args:
      x: float32[N, D] points.
      perplexity: the effective number of neighbours (0 < perplexity < n_neighbors).
      n_neighbors: neighbours kept per point; default min(N - 1, 3 * perplexity + 1)
        (scikit-learn's and openTSNE's choice). N - 1 gives the dense, exact P.
      block_size: rows per chunk of the exact neighbour search (memory
        O(block_size * N)).

    Returns:
      Affinities(neighbors int32[N, k], conditional float32[N, k], beta float32[N],
      entropy float32[N]).

    References: van der Maaten & Hinton 2008,
    https://jmlr.org/papers/v9/vandermaaten08a.html; van der Maaten 2014,
    https://jmlr.org/papers/v15/vandermaaten14a.html.
    """
    arr = _check_points(x, "x")
    k = _check_perplexity(arr.shape[0], perplexity, n_neighbors)
    check_int("block_size", block_size, 1)
    return _affinities(jnp.asarray(arr, jnp.float32), jnp.float32(perplexity), k, block_size)


def joint_probabilities(aff: Affinities) -> Float[Array, "n n"]:
    """The dense symmetric P, p_ij = (p_{j|i} + p_{i|j}) / 2N, float32[N, N]: small N only."""
    n = aff.neighbors.shape[0]
    rows = jnp.repeat(jnp.arange(n), aff.neighbors.shape[1])
    c = (
        jnp.zeros((n, n), jnp.float32)
        .at[rows, aff.neighbors.reshape(-1)]
        .add(aff.conditional.reshape(-1))
    )
    return (c + c.T) / (2.0 * n)


def _p_log_p(aff: Affinities, block_size: int) -> jax.Array:
    """sum_ij p_ij log p_ij of the symmetric P without forming it (the KL's constant part).

    Ordered pair (i, j) is in P's support if i -> j or j -> i is a kNN edge; every
    edge i -> j whose reverse is missing stands for two ordered pairs.
    """
    nbr, c = aff.neighbors, aff.conditional
    n = nbr.shape[0]

    def row(args):
        i, nbr_i, c_i = args
        back = nbr[nbr_i] == i  # [k, k]: does j list i?
        rev = jnp.sum(jnp.where(back, c[nbr_i], 0.0), axis=1)
        p = (c_i + rev) / (2.0 * n)
        weight = jnp.where(back.any(1), 1.0, 2.0)
        return jnp.sum(weight * jnp.where(p > 0, p * jnp.log(jnp.maximum(p, 1e-37)), 0.0))

    return jax.lax.map(row, (jnp.arange(n), nbr, c), batch_size=block_size).sum()
