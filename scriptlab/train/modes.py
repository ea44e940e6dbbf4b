"""What the modes add to a step: the DANN schedule, group ids, balanced sampling, group DRO."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from scriptlab.train.config import ADVERSARIAL, TrainConfig


def dann_lambda(progress, lam_max: float = 1.0):
    """DANN schedule lam(p) = lam_max * (2 / (1 + exp(-10 p)) - 1), p in [0, 1]."""
    return lam_max * (2.0 / (1.0 + jnp.exp(-10.0 * progress)) - 1.0)


def _lam(cfg: TrainConfig, progress: float) -> float:
    if cfg.mode in ADVERSARIAL:
        p = max(0.0, (progress - cfg.adv_warmup) / (1.0 - cfg.adv_warmup))
        return float(dann_lambda(p, cfg.lam_max)) if progress >= cfg.adv_warmup else 0.0
    # lam = -1 makes the flip an identity in the backward pass: ordinary gradients.
    return -1.0


def group_ids(script, style, n_styles: int):
    """The (script, style) group of every crop: ``script * n_styles + style``."""
    return np.asarray(script) * n_styles + np.asarray(style)


def balanced_probabilities(groups) -> np.ndarray:
    """Per-example sampling probabilities that draw every occurring group equally often.

    Args:
      groups: int[N] group ids.

    Returns:
      float64[N], summing to 1; each occurring group's examples sum to 1 / (groups present).
    """
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) == 0:
        raise ValueError(f"groups must be a non-empty 1-d array of ids, got shape {groups.shape}")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / (len(counts) * counts[inverse])


def dro_update(weights, group_losses, present, eta):
    """One exponentiated-gradient step of group DRO's weights (Sagawa et al. 2020, Alg. 1).

    Args:
      weights: float32[G] current weights, summing to 1.
      group_losses: float32[G] mean loss of each group in the batch.
      present: bool[G] groups with at least one example in the batch; the others keep
        their weight (before renormalisation).
      eta: step size.

    Returns:
      float32[G] new weights, summing to 1.
    """
    w = weights * jnp.exp(jnp.where(present, eta * group_losses, 0.0))
    return w / w.sum()
