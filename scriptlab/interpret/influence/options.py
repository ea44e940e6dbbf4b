"""The settings ``influence_scores`` and ``loo_retrain`` share, passed once as one NamedTuple."""

from __future__ import annotations

from typing import NamedTuple

import jax

from scriptlab.interpret.influence.losses import LossFn


class InfluenceOptions(NamedTuple):
    """The objective and its curvature: what a score and the retrain that checks it must agree on.

    Attributes:
      l2: weight of (l2/2) ||theta||^2 in ``losses.objective``.
      damping: added to the Hessian's diagonal.
      test_loss_fn: loss on the test points (None: the training loss).
      hessian: optional precomputed float32[P, P] Hessian of the objective.
    """

    l2: float
    damping: float = 0.0
    test_loss_fn: LossFn | None = None
    hessian: jax.Array | None = None


def resolve_options(options, *, l2, damping, test_loss_fn, hessian) -> InfluenceOptions:
    """``options``, or the same settings from separate keywords (never both; l2 is required)."""
    given = {
        k: v
        for k, v in dict(l2=l2, damping=damping, test_loss_fn=test_loss_fn, hessian=hessian).items()
        if v is not None and not (k == "damping" and v == 0.0)
    }
    if options is None:
        if l2 is None:
            raise ValueError(
                "l2 must be given (a number >= 0), or options=InfluenceOptions(l2=...)"
            )
        return InfluenceOptions(l2, damping, test_loss_fn, hessian)
    if not isinstance(options, InfluenceOptions):
        raise ValueError(f"options must be an InfluenceOptions, got {type(options).__name__}")
    if given:
        raise ValueError(
            f"pass either options= or the separate keywords, not both; got options and {sorted(given)}"
        )
    return options
