"""t-SNE: the KL objective, its gradient and the optimiser."""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Real

from scriptlab.interpret._common import check_array, check_int, check_number
from scriptlab.interpret.embedding._checks import _check_points
from scriptlab.interpret.embedding.neighbours import (
    Affinities,
    _affinities,
    _check_perplexity,
    _p_log_p,
)
from scriptlab.interpret.embedding.projection import _pca
from scriptlab.protocols import AnyArray

_MIN_GAIN = 0.01


class TSNEResult(NamedTuple):
    """What ``tsne`` returns: the map, its KL divergence, and the path taken.

    Attributes:
      embedding: float32[N, 2], the final iterate.
      kl: float32[], KL(P || Q) of the final iterate.
      kl_history: float32[n_iter], KL(P || Q) (un-exaggerated P) before each update.
      trajectory: float32[n_iter // record_every + 1, N, 2], the start, then every
        ``record_every``-th iterate.
      affinities: the input ``Affinities`` the map was fitted to.
    """

    embedding: jax.Array
    kl: jax.Array
    kl_history: jax.Array
    trajectory: jax.Array
    affinities: Affinities


# ----------------------------------------------------------------------------- the objective


def _repulsion(y: jax.Array, block_size: int) -> tuple[jax.Array, jax.Array]:
    """Z = sum_{i != j} (1 + |y_i - y_j|^2)^-1 and sum_j w_ij^2 (y_i - y_j), in row blocks.

    The force is written as y_i * sum_j w_ij^2 - sum_j w_ij^2 y_j so that, per
    block, the sums over j are one [B, N] x [N, 3] matrix product.
    """
    n = y.shape[0]
    aug = jnp.concatenate([jnp.ones((n, 1), y.dtype), y], axis=1)

    def row(yi):
        d2 = (yi[0] - y[:, 0]) ** 2 + (yi[1] - y[:, 1]) ** 2
        num = 1.0 / (1.0 + d2)
        m = (num * num) @ aug
        return num.sum(), yi * m[0] - m[1:]

    z_rows, force = jax.lax.map(row, y, batch_size=block_size)
    return z_rows.sum() - n, force  # the diagonal contributes exactly 1 per row


def _objective(aff: Affinities, y: jax.Array, exaggeration, p_log_p, block_size: int):
    """(KL(P || Q) with the un-exaggerated P, the gradient with P scaled by ``exaggeration``)."""
    nbr, c = aff.neighbors, aff.conditional
    n = y.shape[0]
    z, rep = _repulsion(y, block_size)
    # Per coordinate, [N, k] each: XLA vectorises these far better than [N, k, 2].
    y0, y1 = y[:, 0], y[:, 1]
    dx, dy = y0[:, None] - y0[nbr], y1[:, None] - y1[nbr]
    num = 1.0 / (1.0 + dx * dx + dy * dy)
    w = c * num
    # Edge i -> j carries p_{j|i} / 2N to both p_ij and p_ji: push i and pull j alike.
    flat = nbr.reshape(-1)
    attr = jnp.stack(
        [(w * d).sum(1) - jax.ops.segment_sum((w * d).reshape(-1), flat, n) for d in (dx, dy)],
        axis=1,
    ) / (2.0 * n)
    grad = 4.0 * (exaggeration * attr - rep / z)
    # sum_ij p_ij log q_ij = (1/N) sum_edges p_{j|i} log num_ij - log Z.
    kl = p_log_p - jnp.sum(c * jnp.log(num)) / n + jnp.log(z)
    return kl, grad


def kl_divergence_and_gradient(
    aff: Affinities,
    y: Real[AnyArray, "n 2"],
    *,
    exaggeration: float = 1.0,
    block_size: int = 128,
) -> tuple[Float[Array, ""], Float[Array, "n 2"]]:
    """KL(P || Q) and its exact gradient for a 2-D map ``y`` (jitted).

    Args:
      aff: input affinities from ``affinities``.
      y: float32[N, 2] map.
      exaggeration: factor on P in the gradient (the KL is always of the plain P).
      block_size: rows per block of the O(N^2) repulsion.

    Returns:
      (kl float32[], grad float32[N, 2]) with grad = 4 sum_j (e p_ij - q_ij)
      (1 + |y_i - y_j|^2)^-1 (y_i - y_j), the true gradient of the KL when e = 1.

    References: van der Maaten & Hinton 2008, eq. 5,
    https://jmlr.org/papers/v9/vandermaaten08a.html.
    """
    y = jnp.asarray(y, jnp.float32)
    if y.ndim != 2 or y.shape != (aff.neighbors.shape[0], 2):
        raise ValueError(f"y must be float32[N = {aff.neighbors.shape[0]}, 2], got shape {y.shape}")
    y = check_array("y", y)
    check_number("exaggeration", exaggeration, low=0.0, open_low=True)
    return _kl_grad_jit(aff, y, jnp.float32(exaggeration), block_size)


@functools.partial(jax.jit, static_argnames=("block_size",))
def _kl_grad_jit(aff, y, exaggeration, block_size):
    return _objective(aff, y, exaggeration, _p_log_p(aff, block_size), block_size)


# ----------------------------------------------------------------------------- t-SNE


class _OptState(NamedTuple):
    """Iterate, momentum buffer and per-coordinate gains of the t-SNE descent."""

    y: jax.Array
    update: jax.Array
    gains: jax.Array


@functools.partial(
    jax.jit,
    static_argnames=(
        "n_neighbors",
        "n_iter",
        "exaggeration_iter",
        "record_every",
        "block_size",
    ),
)
def _tsne(
    x,
    init,
    learning_rate,
    early_exaggeration,
    momentum,
    *,
    perplexity,
    n_neighbors,
    n_iter,
    exaggeration_iter,
    record_every,
    block_size,
):
    aff = _affinities(x, perplexity, n_neighbors, block_size)
    p_log_p = _p_log_p(aff, block_size)

    def step(state: _OptState, it):
        early = it < exaggeration_iter
        # Both phases start afresh (as scikit-learn and openTSNE): no carried momentum or gains.
        fresh = it == exaggeration_iter
        update = jnp.where(fresh, 0.0, state.update)
        gains = jnp.where(fresh, 1.0, state.gains)
        kl, grad = _objective(
            aff, state.y, jnp.where(early, early_exaggeration, 1.0), p_log_p, block_size
        )
        same_sign = update * grad >= 0.0
        gains = jnp.maximum(jnp.where(same_sign, gains * 0.8, gains + 0.2), _MIN_GAIN)
        mom = jnp.where(early, momentum[0], momentum[1])
        # Learning rate as openTSNE/FIt-SNE: on the gradient without its factor 4.
        update = mom * update - learning_rate * gains * grad / 4.0
        return _OptState(state.y + update, update, gains), kl

    def chunk(state, start):
        state, kls = jax.lax.scan(step, state, start + jnp.arange(record_every))
        return state, (state.y, kls)

    state = _OptState(init, jnp.zeros_like(init), jnp.ones_like(init))
    starts = jnp.arange(0, n_iter, record_every)
    state, (ys, kls) = jax.lax.scan(chunk, state, starts)
    kl, _ = _objective(aff, state.y, 1.0, p_log_p, block_size)
    trajectory = jnp.concatenate([init[None], ys], axis=0)
    return TSNEResult(state.y, kl, kls.reshape(-1), trajectory, aff)


def tsne(
    x: Real[AnyArray, "n d"],
    *,
    perplexity: float = 30.0,
    n_iter: int = 1000,
    early_exaggeration: float = 12.0,
    exaggeration_iter: int = 250,
    learning_rate: float | str = "auto",
    momentum: tuple[float, float] = (0.5, 0.8),
    init: str | Real[AnyArray, "n 2"] = "pca",
    seed: int = 0,
    n_neighbors: int | None = None,
    record_every: int = 10,
    block_size: int = 128,
) -> TSNEResult:
    """t-SNE with the exact gradient, jitted end to end, to a 2-D map.

    The whole pipeline (exact kNN search, perplexity calibration, PCA
    initialisation, both optimisation phases) is one XLA program; the optimiser
    loops are ``lax.scan``s. The input affinities live on the kNN graph (sparse),
    the repulsion is summed over all pairs in row blocks, so memory is
    O(N * (n_neighbors + block_size)): about 20 MB at N = 10,000. Time is O(N^2)
    per iteration: fine to ~10,000 points; beyond that use Barnes-Hut or FFT
    interpolation (openTSNE).

    Args:
      x: float32[N, D] points, N >= 4, all finite.
      perplexity: effective number of neighbours; 0 < perplexity < N (and
        < n_neighbors). Try more than one: the picture depends on it.
      n_iter: total iterations, including the exaggeration phase.
      early_exaggeration: factor on P for the first ``exaggeration_iter`` iterations.
      exaggeration_iter: length of the early-exaggeration phase (momentum[0]).
      learning_rate: "auto" = max(N / early_exaggeration, 200) (Belkina et al.
        2019), in the openTSNE/FIt-SNE convention; scikit-learn's equivalent
        value is a quarter of it (its "auto" is max(N / early_exaggeration / 4, 50)).
      momentum: (during exaggeration, after).
      init: "pca" (PCA scaled to std 1e-4 in the first axis, as scikit-learn
        and openTSNE), "random" (N(0, 1e-4^2), from ``seed``), or float32[N, 2].
      seed: PRNG seed for ``init="random"``; everything else is deterministic.
      n_neighbors: kNN graph size; default min(N - 1, 3 * perplexity + 1).
      record_every: store every k-th iterate in ``trajectory`` (must divide n_iter).
      block_size: rows per block of the neighbour search and the repulsion.

    Returns:
      TSNEResult(embedding [N, 2], kl [], kl_history [n_iter], trajectory
      [n_iter // record_every + 1, N, 2], affinities).

    References: van der Maaten & Hinton 2008,
    https://jmlr.org/papers/v9/vandermaaten08a.html; van der Maaten 2014,
    https://jmlr.org/papers/v15/vandermaaten14a.html; Belkina et al. 2019; Kobak &
    Berens 2019.
    """
    arr = _check_points(x, "x")
    n = arr.shape[0]
    k = _check_perplexity(n, perplexity, n_neighbors)
    for name, value in (
        ("n_iter", n_iter),
        ("record_every", record_every),
        ("block_size", block_size),
    ):
        check_int(name, value, 1)
    check_int("exaggeration_iter", exaggeration_iter, 0)
    check_number("early_exaggeration", early_exaggeration, low=0.0, open_low=True)
    if np.shape(momentum) != (2,):
        raise ValueError(f"momentum must be a pair (during exaggeration, after), got {momentum!r}")
    for m in momentum:
        check_number("momentum", m, low=0.0, high=1.0)
    if n_iter % record_every:
        raise ValueError(f"record_every must divide n_iter = {n_iter}, got {record_every}")
    if not 0 <= exaggeration_iter <= n_iter:
        raise ValueError(
            f"exaggeration_iter must be in [0, n_iter = {n_iter}], got {exaggeration_iter}"
        )
    if learning_rate == "auto":
        learning_rate = max(n / early_exaggeration, 200.0)
    elif isinstance(learning_rate, str) or not learning_rate > 0:
        raise ValueError(f"learning_rate must be 'auto' or > 0, got {learning_rate!r}")
    xj = jnp.asarray(arr, jnp.float32)
    if isinstance(init, str):
        if init == "pca":
            y0 = _pca(xj, 2).projected
            y0 = y0 / jnp.maximum(jnp.std(y0[:, 0]), 1e-12) * 1e-4
        elif init == "random":
            y0 = 1e-4 * jax.random.normal(jax.random.key(seed), (n, 2), jnp.float32)
        else:
            raise ValueError(f"init must be 'pca', 'random' or an array [N, 2], got {init!r}")
    else:
        y0 = jnp.asarray(init, jnp.float32)
        if y0.shape != (n, 2):
            raise ValueError(f"init array must have shape (N, 2) = ({n}, 2), got {y0.shape}")
        y0 = check_array("init", y0)
    return _tsne(
        xj,
        y0,
        jnp.float32(learning_rate),
        jnp.float32(early_exaggeration),
        jnp.asarray(momentum, jnp.float32),
        perplexity=jnp.float32(perplexity),
        n_neighbors=k,
        n_iter=int(n_iter),
        exaggeration_iter=int(exaggeration_iter),
        record_every=int(record_every),
        block_size=int(block_size),
    )
