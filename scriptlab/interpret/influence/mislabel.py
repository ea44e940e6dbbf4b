"""Mislabel detection: self-influence ranks the training points the model had to bend towards.

References: Koh & Liang 2017, section 5.4, https://arxiv.org/abs/1703.04730; Grosse et
al. 2023 (self-influence), https://arxiv.org/abs/2308.03296.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from scriptlab.interpret._common import (
    check_batch_size,
    check_hessian,
    check_indices,
    check_int,
    check_nonneg,
    check_number,
    check_xy,
)
from scriptlab.interpret.influence.losses import LossFn, example_grad, objective
from scriptlab.interpret.influence.solvers import damped_hessian, hessian_matrix


@functools.partial(jax.jit, static_argnames=("loss_fn", "batch_size"))
def _self_influence(loss_fn, params, x, y, hessian, l2, damping, batch_size):
    f = functools.partial(objective, loss_fn, x=x, y=y, l2=l2)
    h = damped_hessian(
        hessian_matrix(lambda p: f(p), params) if hessian is None else hessian, damping
    )
    chol = jnp.linalg.cholesky(h)
    g = example_grad(loss_fn)

    def one(a):
        z = jax.scipy.linalg.solve_triangular(chol, g(params, *a), lower=True)
        return jnp.vdot(z, z)  # g^T (L L^T)^-1 g

    return jax.lax.map(one, (x, y), batch_size=batch_size)


def self_influence(
    loss_fn: LossFn,
    params,
    x,
    y,
    *,
    l2: float,
    damping: float = 0.0,
    batch_size: int = 256,
    hessian: jax.Array | None = None,
) -> jax.Array:
    """grad L(z_i)^T H^-1 grad L(z_i) for every training point (>= 0; = -I_up,loss(z_i, z_i)).

    A point whose own loss would rise most if it were left out is one the model
    had to bend towards: mislabelled examples score high. Uses the exact
    factorised Hessian (P up to a few thousand, e.g. the logistic head).
    ``l2`` and ``damping`` are traced.

    Args:
      loss_fn, params, x, y, l2, damping, hessian: as in ``influence_scores``.
      batch_size: points per vmapped chunk.

    Returns:
      float32[N].

    References: Koh & Liang 2017, section 5.4, https://arxiv.org/abs/1703.04730; Grosse
    et al. 2023, https://arxiv.org/abs/2308.03296.
    """
    x, y = check_xy(x, y, "train")
    check_nonneg("l2", l2)
    check_nonneg("damping", damping)
    check_batch_size(batch_size)
    hessian = check_hessian(hessian, params, "exact")
    return _self_influence(
        loss_fn, params, x, y, hessian, float(l2), float(damping), int(batch_size)
    )


def detection_curve(ranking, flipped, fractions) -> np.ndarray:
    """Fraction of flipped labels found when checking the top ``fractions`` of a ranking.

    Args:
      ranking: int[N] training indices, most suspicious first.
      flipped: bool[N], which labels were corrupted.
      fractions: float[F] in [0, 1], fractions of the data checked.

    Returns:
      float[F]: found / total flipped.
    """
    flipped = np.asarray(flipped, bool)
    ranking = check_indices("ranking", ranking, len(flipped), what="training points")
    f = np.asarray(fractions, np.float64)
    if not (np.isfinite(f).all() and (f >= 0).all() and (f <= 1).all()):
        raise ValueError(f"fractions must lie in [0, 1], got {f}")
    hits = np.concatenate([[0], np.cumsum(flipped[ranking])])
    k = np.round(np.asarray(fractions) * len(ranking)).astype(int)
    return hits[k] / max(int(flipped.sum()), 1)


def flip_labels(labels, n_classes: int, fraction: float, *, seed: int = 0):
    """Give a random ``fraction`` of labels a different random class. Returns (new labels, flipped mask)."""
    n_classes = check_int("n_classes", n_classes, 2)
    labels = check_indices("labels", labels, n_classes, what="classes")
    check_number("fraction", fraction, low=0.0, high=1.0)
    rng = np.random.default_rng(seed)
    idx = rng.choice(len(labels), int(round(fraction * len(labels))), replace=False)
    new = labels.copy()
    new[idx] = (labels[idx] + rng.integers(1, n_classes, len(idx))) % n_classes
    mask = np.zeros(len(labels), bool)
    mask[idx] = True
    return new, mask
