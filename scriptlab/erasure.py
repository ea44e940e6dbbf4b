"""Post-hoc linear concept erasure: LEACE, in closed form.

LEACE (Belrose et al. 2023) is the affine map ``r(x) = x - W+ P W (x - mean)``
with ``W`` the whitening matrix of the features (``Sigma_xx^(-1/2)``, pseudo-
inverse on a rank-deficient covariance), ``W+`` its pseudo-inverse and ``P``
the orthogonal projection onto the column space of ``W Sigma_xz``, the
whitened cross-covariance of the features with the one-hot concept. After it,
the features' cross-covariance with the concept is exactly zero, so no linear
classifier beats a constant predictor on the concept (on the distribution the
eraser was fitted on), and among all maps with that property it moves the
features least in mean squared (Mahalanobis) distance.

A linear eraser says nothing about nonlinear probes, which can still recover
the concept: score a small MLP probe too (``scriptlab.probe``).

References: Belrose et al. 2023, "LEACE: Perfect linear concept erasure in
closed form", https://arxiv.org/abs/2306.03819 (reference implementation:
EleutherAI/concept-erasure, ``LeaceFitter``); Ravfogel et al. 2020 (INLP),
https://arxiv.org/abs/2004.07667.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Eraser(NamedTuple):
    """A fitted LEACE eraser: ``erase(x) = x - (x - mean) @ proj.T``.

    Attributes:
      mean: float32[D] the (weighted) feature mean it was fitted on.
      proj: float32[D, D] the oblique projection ``W+ P W``; its rank is at most
        the number of concept classes minus one.
    """

    mean: jax.Array
    proj: jax.Array


def fit_leace(features, concept, n_classes: int, *, weights=None, tol: float = 1e-5) -> Eraser:
    """Fit the LEACE eraser of a categorical concept.

    Args:
      features: float[N, D] the features to erase the concept from.
      concept: int[N] concept labels in [0, n_classes).
      n_classes: number of concept classes (the one-hot width).
      weights: optional float[N] >= 0 example weights: the eraser is then fitted
        on the reweighted distribution (e.g. ``train.balanced_probabilities``,
        under which the concept is independent of another label).
      tol: eigenvalues of the covariance (and singular values of the whitened
        cross-covariance) below ``tol`` times the largest count as zero.

    Returns:
      The Eraser; apply it with ``erase``.

    Raises:
      ValueError: naming the argument, on bad shapes, labels or weights.
    """
    x = np.asarray(features, np.float64)
    z = np.asarray(concept)
    if x.ndim != 2 or len(x) < 2:
        raise ValueError(f"features must be float[N, D] with N >= 2, got shape {x.shape}")
    if z.shape != (len(x),) or not np.issubdtype(z.dtype, np.integer):
        raise ValueError(f"concept must be int[{len(x)}], got {z.dtype}{list(z.shape)}")
    if not np.all(np.isfinite(x)):
        raise ValueError("features contain NaN or inf")
    if n_classes < 2 or z.min() < 0 or z.max() >= n_classes:
        raise ValueError(
            f"concept labels must lie in [0, n_classes={n_classes}), got [{z.min()}, {z.max()}]"
        )
    if not (tol > 0 and np.isfinite(tol)):
        raise ValueError(f"tol must be a finite number > 0, got {tol!r}")
    w = np.ones(len(x)) if weights is None else np.asarray(weights, np.float64)
    if w.shape != (len(x),) or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
        raise ValueError(f"weights must be {len(x)} finite numbers >= 0 with a positive sum")
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    mean, proj = _leace(
        jnp.asarray(x, dtype),
        jax.nn.one_hot(z, n_classes, dtype=dtype),
        jnp.asarray(w / w.sum(), dtype),
        tol,
    )
    return Eraser(jnp.asarray(mean, jnp.float32), jnp.asarray(proj, jnp.float32))


@jax.jit
def _leace(x, z, w, tol):
    mean = w @ x
    xc = x - mean
    zc = z - w @ z
    sigma_xx = (xc * w[:, None]).T @ xc
    sigma_xz = (xc * w[:, None]).T @ zc
    lam, v = jnp.linalg.eigh(sigma_xx)
    keep = lam > tol * lam.max()
    safe = jnp.where(keep, lam, 1.0)
    whiten = (v * jnp.where(keep, safe**-0.5, 0.0)) @ v.T
    unwhiten = (v * jnp.where(keep, safe**0.5, 0.0)) @ v.T
    u, s, _ = jnp.linalg.svd(whiten @ sigma_xz, full_matrices=False)
    u = u * (s > tol * jnp.maximum(s.max(), 1e-30))
    return mean, unwhiten @ (u @ u.T) @ whiten


def erase(eraser: Eraser, features) -> jax.Array:
    """Apply a fitted eraser.

    Args:
      eraser: from ``fit_leace``.
      features: float[N, D], D the eraser's width.

    Returns:
      float32[N, D] the features with the concept linearly erased.
    """
    x = jnp.asarray(features, jnp.float32)
    d = eraser.mean.shape[0]
    if x.ndim != 2 or x.shape[1] != d:
        raise ValueError(f"features must be float[N, {d}] to match the eraser, got shape {x.shape}")
    if not isinstance(x, jax.core.Tracer) and not bool(jnp.isfinite(x).all()):
        raise ValueError("features contain NaN or inf")
    return x - (x - eraser.mean) @ eraser.proj.T
