"""Embedding views: PCA, an exact t-SNE written in JAX, and how good a 2-D picture is.

The essay "Understanding Convolutional Neural Networks": "A well separated
embedding space suggests that the network has learnt to discriminate between
different classes ... The most widely used method is t-SNE that requires tuning
various parameters of the algorithm and can sometimes lead to confusing
results." This module gives the pieces to look, and to check what the picture
is worth:

- ``embed``: the model's embedding (``out.embedding`` or a named activation) of a
  batch of images, computed in memory-bounded chunks.
- ``pca``: a jitted PCA, for a quick first look and for t-SNE's initialisation.
- ``tsne``: exact-gradient t-SNE, jitted end to end (neighbours, perplexity
  calibration, PCA init, optimisation): input affinities on the 3 * perplexity
  nearest neighbours (as scikit-learn's and openTSNE's defaults), the repulsion
  summed over all N^2 pairs in row blocks (never an N x N matrix), early
  exaggeration, momentum with gains, the KL divergence after every iteration and
  every k-th iterate for an animation.
- ``trustworthiness`` and ``knn_accuracy``: how faithful a 2-D map is, and how
  well labels can be read off any space (the embedding, or the map).

Where exact t-SNE stops being sensible: each iteration costs O(N^2) work and
O(N * block_size) memory, so time, not memory, is the limit (benchmarks/bench_tsne.py
measures both against scikit-learn). Beyond about 10,000 points use an
approximate gradient: Barnes-Hut (O(N log N)) or FFT-accelerated interpolation
(O(N), FIt-SNE), both in openTSNE.

References: van der Maaten & Hinton 2008 (t-SNE, momentum and gains, early
exaggeration), https://jmlr.org/papers/v9/vandermaaten08a.html; van der Maaten 2014 (kNN
input affinities), https://jmlr.org/papers/v15/vandermaaten14a.html; Belkina et al. 2019
and Kobak & Berens 2019 (learning rate N / exaggeration, PCA initialisation); Venna &
Kaski 2001 (trustworthiness).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Integer, Real

from scriptlab.interpret._common import check_array, check_int, check_number, forward_chunks
from scriptlab.protocols import AnyArray, Image

_MIN_GAIN = 0.01


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


# ----------------------------------------------------------------------------- validation


def _check_points(x: Any, name: str, *, min_points: int = 4) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [N, D], got shape {arr.shape}")
    if arr.shape[0] < min_points:
        raise ValueError(f"{name} needs at least {min_points} points, got N = {arr.shape[0]}")
    if not np.issubdtype(arr.dtype, np.number):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} contains NaN or infinite values in {bad} of {arr.shape[0]} rows")
    return arr


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


__all__ = [
    "PCA",
    "Affinities",
    "TSNEResult",
    "embed",
    "pca",
    "affinities",
    "joint_probabilities",
    "kl_divergence_and_gradient",
    "tsne",
    "trustworthiness",
    "knn_accuracy",
]
