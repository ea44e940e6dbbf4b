"""Influence functions: which training crops made this prediction (Koh & Liang 2017).

Koh & Liang ask how the loss on a test point would change if one training
point were up-weighted by a small epsilon or removed:
I_up,loss(z, z_test) = -grad L(z_test)^T H^-1 grad L(z), with H the Hessian of
the training objective at its optimum. The package, one concern per module:

  losses      loss functions and the objective J(theta; w) (``objective``)
  solvers     ``hvp`` and ``inverse_hvp`` (CG, LiSSA, Cholesky), ``training_hessian``
  scores      ``influence_scores`` of every training point on every test point
  options     ``InfluenceOptions``: the settings influence_scores and loo_retrain share
  loo         ``loo_retrain``: actual leave-one-out retraining (float32 or a float64
              reference), to check the scores; ``predicted_loo_change_newton``
  mislabel    ``self_influence`` and the detection curve of flipped labels
  fit         the convex logistic head (``fit_logistic``, ``embeddings``) and ``refine``
  top_view    ``top_layers``: any model from one layer up, on that layer's frozen input
              (ScriptNet: the dense layer and both heads on pool3 features)
  cache       cached validation results
  validation  ``loo_validation``: predicted vs actual leave-one-out at two levels (the
              result notebook 11 reads, cached by benchmarks/bench_influence.py)
  layers      any NNX network as linear layers: inputs, pre-activation gradients,
              ``layerwise_loss`` (a ``protocols.LayerwiseLoss``)
  tracin      ``tracin_scores`` over epoch snapshots (Pruthi et al. 2020), every parameter
  ekfac       ``fit_ekfac`` and ``ekfac_scores``: EK-FAC inverse Gauss-Newton, every layer
  perturb     ``perturbation_influence``: I_pert,loss, the pixels of a training crop that move a test loss
  attack      ``training_set_attack``: Koh & Liang's section 5.2 attack, validated by retraining
  retrain     whole-network references: ``leave_out_retrain`` (leave-k-out, seeded) and
              ``pbrf``, the proximal Bregman response that damped influence estimates

The estimators share one leading signature and one set of defaults:
``estimator(loss_fn, params, train_x, train_y, test_x, test_y, *, ...)``
(``influence_scores``, ``tracin_scores`` with its checkpoints in the place of
``params``, ``ekfac_scores``); ``fit_ekfac``, the ``s_test`` and
self-influence functions take the same first two. What fixes the curvature
comes after the ``*``: ``hessian=`` / ``factors=``, and ``l2``, which has no
default (the objective's L2 weight: say which); TracIn takes
``learning_rates=`` there. ``loss_fn`` is a ``LossFn``; TracIn and EK-FAC
over the whole network take a ``protocols.LayerwiseLoss``,
``layerwise_loss(apply_fn, head)``, for any NNX model and any head.

References: Koh & Liang 2017, https://arxiv.org/abs/1703.04730; Agarwal, Bullins & Hazan
2017 (LiSSA), https://arxiv.org/abs/1602.03943; Pearlmutter 1994 (fast exact HVP); Basu,
Pope & Feizi 2021, https://arxiv.org/abs/2006.14651; Bae et al. 2022,
https://arxiv.org/abs/2209.05364; Grosse et al. 2023 (self-influence for mislabel
detection), https://arxiv.org/abs/2308.03296.
"""

from scriptlab.interpret.influence.attack import AttackResult, training_set_attack
from scriptlab.interpret.influence.cache import load_result, results_path, save_result
from scriptlab.interpret.influence.ekfac import (
    EKFACFactors,
    ekfac_s_test,
    ekfac_scores,
    ekfac_self_influence,
    fit_ekfac,
)
from scriptlab.interpret.influence.fit import embeddings, fit_logistic, refine
from scriptlab.interpret.influence.layers import (
    LayerwiseCrossEntropy,
    LinearLayer,
    ScriptNetLoss,
    layerwise_loss,
)
from scriptlab.interpret.influence.loo import (
    LOO_METHODS,
    LOOResult,
    loo_retrain,
    pearson,
    predicted_loo_change_newton,
    slope,
)
from scriptlab.interpret.influence.losses import (
    LossFn,
    cross_entropy,
    example_grad,
    logistic_loss,
    objective,
)
from scriptlab.interpret.influence.mislabel import detection_curve, flip_labels, self_influence
from scriptlab.interpret.influence.options import InfluenceOptions
from scriptlab.interpret.influence.perturb import perturbation_influence
from scriptlab.interpret.influence.retrain import RetrainResult, leave_out_retrain, pbrf
from scriptlab.interpret.influence.scores import (
    Influence,
    influence_scores,
    per_example_grads,
    predicted_loo_change,
)
from scriptlab.interpret.influence.solvers import (
    METHODS,
    InverseHVPState,
    damped_hessian,
    hessian_matrix,
    hvp,
    inverse_hvp,
    largest_eigenvalue,
    training_hessian,
)
from scriptlab.interpret.influence.top_view import TopLayers, top_layers, top_loss
from scriptlab.interpret.influence.tracin import (
    tracin_scores,
    tracin_self_influence,
)
from scriptlab.interpret.influence.validation import loo_validation

__all__ = [
    "InfluenceOptions",
    "predicted_loo_change_newton",
    "slope",
    "AttackResult",
    "perturbation_influence",
    "training_set_attack",
    "RetrainResult",
    "leave_out_retrain",
    "pbrf",
    "EKFACFactors",
    "ekfac_s_test",
    "ekfac_scores",
    "ekfac_self_influence",
    "fit_ekfac",
    "ScriptNetLoss",
    "LayerwiseCrossEntropy",
    "LinearLayer",
    "layerwise_loss",
    "tracin_scores",
    "tracin_self_influence",
    "cross_entropy",
    "damped_hessian",
    "detection_curve",
    "embeddings",
    "example_grad",
    "fit_logistic",
    "flip_labels",
    "hessian_matrix",
    "hvp",
    "Influence",
    "influence_scores",
    "inverse_hvp",
    "InverseHVPState",
    "largest_eigenvalue",
    "load_result",
    "logistic_loss",
    "LOO_METHODS",
    "loo_retrain",
    "loo_validation",
    "LOOResult",
    "LossFn",
    "METHODS",
    "objective",
    "pearson",
    "per_example_grads",
    "predicted_loo_change",
    "refine",
    "results_path",
    "save_result",
    "self_influence",
    "top_layers",
    "top_loss",
    "TopLayers",
    "training_hessian",
]
