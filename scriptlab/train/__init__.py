"""Training the dual-head model: baseline, multitask, unlearn (gradient flip) and ascent.

Modes (the font head always sees ordinary gradients unless stated):
  baseline   script loss only; the font head is not trained.
  multitask  script loss + font loss, ordinary gradients everywhere.
  unlearn    script loss + font loss through ``gradient_flip`` with the DANN
             schedule lam(p) = lam_max * (2 / (1 + exp(-10 p)) - 1): the font
             head learns to read style while the trunk is pushed to hide it.
             The first ``adv_warmup`` of training keeps lam = 0 (pre-training
             before the reversal bites stabilises it, as Kim et al. 2019 found).
  ascent     the literal recipe of the essay "Dissecting the Blackbox": script
             loss MINUS font loss, so the font head and the trunk both climb the
             font loss.
  cdann      ``unlearn`` with one font head per script, each read at the crop's
             true script (Li et al. 2018): the flip then removes style *given*
             the script (conditional invariance) instead of all the style that
             correlates with the script (marginal invariance, which fights the
             task when style and script are correlated).
  balanced   script loss only, with every (script, style) group drawn equally
             often (Idrissi et al. 2022): the minority styles of each script
             weigh as much as its assigned one.
  groupdro   balanced sampling plus online group DRO (Sagawa et al. 2020): the
             loss is a weighted mean of per-group losses whose weights climb
             (exponentiated gradient, step ``dro_eta``) on the worst groups.

``balance=True`` adds group-balanced sampling to any mode (``balanced`` and
``groupdro`` always use it). Under balanced sampling style is independent of
script, so the marginal flip of ``unlearn`` no longer fights the task.

The step is a plain ``jax.jit`` over a (params, opt_state) pytree (Flax's
performance guide: no graph walking per step); ``lam`` is a traced scalar, so
the schedule never recompiles.

References: Ganin & Lempitsky 2015, https://arxiv.org/abs/1409.7495; Kim et al.
2019, https://arxiv.org/abs/1812.10352; Elazar & Goldberg 2018,
https://arxiv.org/abs/1808.06640; Li et al. 2018 (conditional invariant adversarial
networks, ECCV); Sagawa et al. 2020 (group DRO), https://arxiv.org/abs/1911.08731;
Idrissi et al. 2022, https://arxiv.org/abs/2110.14503.

Layout: ``config`` (modes, ``TrainConfig``), ``modes`` (schedule, groups, DRO), ``step`` (loss and
update), ``inference`` (``predict``, ``evaluate``), ``loop`` (``train``) and ``checkpoints``
(``save``, ``restore``). Every name is importable from ``scriptlab.train`` as before.
"""

# ruff: noqa: F401 -- the package namespace keeps every name the single module had (private
# ones included, for tests); ``TrainConfig.key`` reads TRAINING_CODE_VERSION from here at call
# time, so a patched ``train.TRAINING_CODE_VERSION`` takes effect
from scriptlab import cache, distributed
from scriptlab import data as data_lib
from scriptlab.model import ScriptNet, functional
from scriptlab.protocols import ApplyFn
from scriptlab.train.checkpoints import (
    _META,
    _check_shapes,
    _config_from_json,
    _head_sizes,
    _read,
    _read_meta,
    _write_checkpoint,
    add_checksums,
    restore,
    save,
)
from scriptlab.train.config import (
    ADVERSARIAL,
    BALANCED,
    MODES,
    TRAINING_CODE_VERSION,
    TrainConfig,
    _checked_tuple,
    _rate,
    _width,
    make_train_config,
)
from scriptlab.train.inference import _predict, evaluate, predict
from scriptlab.train.loop import (
    Result,
    TrainingDiverged,
    _feeder,
    _gather,
    _on_host,
    build_model,
    dataset_for,
    epoch_learning_rates,
    lr_schedule,
    train,
)
from scriptlab.train.modes import _lam, balanced_probabilities, dann_lambda, dro_update, group_ids
from scriptlab.train.step import TrainState, _loss_fn, make_step

__all__ = [
    "ADVERSARIAL",
    "BALANCED",
    "MODES",
    "TRAINING_CODE_VERSION",
    "Result",
    "TrainConfig",
    "TrainState",
    "TrainingDiverged",
    "add_checksums",
    "balanced_probabilities",
    "build_model",
    "dann_lambda",
    "dataset_for",
    "dro_update",
    "epoch_learning_rates",
    "evaluate",
    "group_ids",
    "lr_schedule",
    "make_step",
    "make_train_config",
    "predict",
    "restore",
    "save",
    "train",
]
