"""The font-style shortcut experiment: every method x several seeds, measured so nothing hides.

Methods (``scriptlab.train``'s modes, plus post-hoc heads on frozen trunks):
  baseline, multitask, unlearn, ascent   the first essay's recipes;
  cdann                                  conditional adversary (one font head per script);
  balanced, groupdro                     group-balanced sampling, group DRO;
  balanced_unlearn, balanced_cdann       the two flips under group-balanced sampling;
  leace, dfr, leace_dfr,                 post-hoc: a new linear script head on a frozen
  unlearn_dfr, cdann_dfr                 trunk, after LEACE erasure of style and/or fitted
                                         on the group-balanced training distribution;
  dfr_val, unlearn_dfr_val, ...          the group-balanced head fitted on held-out crops
                                         (val + val_conflict) instead (``fit_posthoc``).
References (the same recipe on other training data, the same evaluation splits):
  oracle   styles uniform within each script (rho 0.2): no shortcut to learn;
  rho99    a stronger bias than the default 0.9;
  diverse  the diverse font table (``fonts.TABLES``): many more training families;
  augment  style augmentation in the training step (``augment.STYLE_AUGMENT``);
  diverse_augment  both;
  diverse_oracle  the diverse fonts with the oracle's uniform styles (rho 0.2);
and the fix on each of the last three trunks: diverse_dfr_val, augment_dfr_val,
diverse_augment_dfr_val.

For every model: script accuracy on the in-distribution test split, on the
bias-conflicting splits and on held-out font families, with the worst (script,
style) and (script, family) cells, the per-script macro average, the
Latin/Cyrillic/Greek held-out crops and Caveat by script, and on the widened held-out
split (the diverse table's held-out families, ``WIDE``: per script, per family, the worst
family); then how much style is
left in the embedding: the model's own font head and FRESH probes (linear, MLP,
per-script) fitted on one half of the conflict split and scored on the other
(Elazar & Goldberg 2018), next to two chance levels (majority style, and style
guessed from the script). Nothing is tuned on test, conflict or held-out:
hyperparameters are chosen on ``val_conflict``.

Layout: ``methods`` (the recipes and the post-hoc heads), ``scoring`` (predictions, scores,
aggregates), ``results`` (the run and its cache), ``tables``, ``figures`` and ``browser``
(misread crops). Every name is importable from ``scriptlab.experiment`` as before.
"""

# ruff: noqa: F401 -- the package namespace keeps every name the single module had (private
# ones included, for tests and notebooks); submodules read the names
# tests patch (MIN_CELL, predict, dataset_for, _rows) from here at call time
from scriptlab import zoo
from scriptlab.experiment.browser import heatmaps, minority_accuracy, misread
from scriptlab.experiment.figures import family_figure, figure, write
from scriptlab.experiment.methods import (
    L2_GRID,
    METHODS,
    POSTHOC,
    REFERENCES,
    Posthoc,
    PosthocApply,
    PosthocHead,
    _apply_posthoc,
    fit_posthoc,
    posthoc_model,
    posthoc_predictions,
)
from scriptlab.experiment.results import (
    EVAL_CODE_VERSION,
    _posthoc_row,
    _rows,
    _write_json,
    run,
    trained_models,
    zoo_requests,
)
from scriptlab.experiment.scoring import (
    ACCURACY,
    EVAL_SPLITS,
    GOAL,
    METRICS,
    MIN_CELL,
    PREDICTED_SPLITS,
    STYLE,
    WIDE,
    WIDE_METRICS,
    Predictions,
    _aggregate,
    _cells,
    _encode_labels,
    _halves,
    _json_table,
    _worst,
    goal,
    measure,
    predicted,
    predictions,
    score,
)
from scriptlab.experiment.tables import (
    _SHORT,
    _cell,
    _name_width,
    _short,
    family_accuracy,
    family_table,
    goal_table,
    table,
)
from scriptlab.train import dataset_for, predict

__all__ = [
    "ACCURACY",
    "EVAL_CODE_VERSION",
    "EVAL_SPLITS",
    "GOAL",
    "L2_GRID",
    "METHODS",
    "METRICS",
    "MIN_CELL",
    "POSTHOC",
    "PREDICTED_SPLITS",
    "REFERENCES",
    "STYLE",
    "WIDE",
    "WIDE_METRICS",
    "Posthoc",
    "PosthocApply",
    "PosthocHead",
    "Predictions",
    "family_accuracy",
    "family_figure",
    "family_table",
    "figure",
    "fit_posthoc",
    "goal",
    "goal_table",
    "heatmaps",
    "measure",
    "minority_accuracy",
    "misread",
    "posthoc_model",
    "posthoc_predictions",
    "predicted",
    "predictions",
    "run",
    "score",
    "table",
    "trained_models",
    "write",
    "zoo_requests",
]
