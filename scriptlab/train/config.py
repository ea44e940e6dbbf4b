"""The training configuration: modes, the checked ``TrainConfig`` and its key."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence

# the package, read at call time: a patched ``train.TRAINING_CODE_VERSION`` (tests) reaches key()
from scriptlab import data as data_lib
from scriptlab import fonts, train
from scriptlab.augment import Augment
from scriptlab.validation import check_bool, check_int, check_name, check_number

MODES = ("baseline", "multitask", "unlearn", "ascent", "cdann", "balanced", "groupdro")
ADVERSARIAL = ("unlearn", "cdann")  # modes whose font loss reaches the trunk through the flip
BALANCED = ("balanced", "groupdro")  # modes that always draw every (script, style) group equally

# Part of every TrainConfig.key(), so zoo models trained by older code are not loaded as if new.
# Bump it whenever a change moves the trained bits (the loss, the optimiser, the step, the model's
# forward pass, initialisation): tests/test_golden.py fails until it is bumped.
TRAINING_CODE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model."""

    mode: str = "baseline"
    preset: str = "workshop"
    seed: int = 0
    data_seed: int = 0
    rho: float | None = None  # None: the dataset preset's default
    fonts: str = "default"  # the dataset's font table (a key of fonts.TABLES)
    epochs: int = 4
    batch_size: int = 64
    # Rows per forward/backward pass inside one step. The step still takes the whole batch's
    # mean gradient (the passes' gradients are averaged); only float rounding and the dropout
    # draws differ from one pass. 16 rows keep a pass's activations in the CPU's cache: 1.5-1.8x
    # the images/s of one 64-row pass on 2 cores (benchmarks/bench_train.py). groupdro,
    # whose weights need the whole batch's group losses, always takes one pass.
    micro_batch: int = 16
    lr: float = 4e-3
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    clip_norm: float = 1.0  # global gradient-norm clip: keeps the adversarial modes stable
    lam_max: float = 0.3
    adv_warmup: float = (
        0.25  # unlearn: fraction of training with lam = 0 (pre-train, Kim et al. 2019)
    )
    font_weight: float = 1.0
    dropout: tuple[float, float] = (0.1, 0.3)
    channels: tuple[int, int, int] = (16, 32, 64)
    n_train: int | None = None  # train on the first n training crops only
    shuffle_labels: bool = False  # permute script labels (Adebayo data randomisation)
    snapshots: bool = False  # keep params after every epoch (epoch 0 = init)
    max_loss: float = (
        50.0  # stop as diverged when the script loss exceeds this (CE starts near 2.3)
    )
    dro_eta: float = 0.1  # groupdro: step size of the group weights' exponentiated gradient
    balance: bool = False  # draw every (script, style) group equally (always on in BALANCED modes)
    # style augmentation inside the jitted step (scriptlab.augment); the identity leaves the
    # step's program, and key(), exactly as they were before the field existed
    augment: Augment = Augment()

    def __post_init__(self):
        """Every construction is checked: ``make_train_config``, a restore, ``replace``.

        Sequences become tuples (a config read back from JSON holds lists) and an ``augment``
        dict (JSON again) an ``Augment``.

        Raises:
          ValueError: naming the field, the value and what is allowed.
        """
        check_name("mode", self.mode, MODES)
        check_name("preset", self.preset, tuple(data_lib.PRESETS))
        for name, low in (
            ("seed", 0),
            ("data_seed", 0),
            ("epochs", 1),
            ("batch_size", 1),
            ("micro_batch", 1),
            ("warmup_steps", 0),
        ):
            object.__setattr__(self, name, check_int(name, getattr(self, name), low))
        if self.n_train is not None:
            object.__setattr__(self, "n_train", check_int("n_train", self.n_train, 1))
        if self.batch_size % self.micro_batch:
            raise ValueError(
                f"micro_batch must divide batch_size, got micro_batch={self.micro_batch} and "
                f"batch_size={self.batch_size}"
            )
        if self.rho is not None:
            check_number("rho", self.rho, low=0.0, high=1.0)
        check_name("fonts", self.fonts, tuple(fonts.TABLES))
        try:
            check_number("lr", self.lr, low=0.0, open_low=True)
        except ValueError:
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}") from None
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_number("clip_norm", self.clip_norm, low=0.0, open_low=True)
        check_number("lam_max", self.lam_max, low=0.0)
        check_number("adv_warmup", self.adv_warmup, low=0.0, high=1.0)
        if self.adv_warmup == 1.0:
            raise ValueError("adv_warmup must be in [0, 1), got 1.0 (the flip would never start)")
        check_number("font_weight", self.font_weight)
        check_number("max_loss", self.max_loss, low=0.0, open_low=True)
        check_number("dro_eta", self.dro_eta, low=0.0)
        for name in ("shuffle_labels", "snapshots", "balance"):
            check_bool(name, getattr(self, name))
        object.__setattr__(self, "dropout", _checked_tuple("dropout", self.dropout, 2, _rate))
        object.__setattr__(self, "channels", _checked_tuple("channels", self.channels, 3, _width))
        object.__setattr__(self, "augment", _checked_augment(self.augment))

    def data_overrides(self) -> dict:
        """The ``DataConfig`` fields this config sets beyond preset and seed (``data.load``'s)."""
        out = {} if self.rho is None else {"rho": self.rho}
        return out if self.fonts == "default" else out | {"fonts": self.fonts}

    def key(self) -> str:
        """Content address of the trained model.

        The default font table is left out of the hash, so configs that predate ``fonts``
        keep their keys (and the zoo its cached models).
        """
        fields = dataclasses.asdict(self) | {"training_code_version": train.TRAINING_CODE_VERSION}
        if self.fonts == "default":
            del fields["fonts"]
        if self.augment.is_identity:  # the key of every config from before the field
            del fields["augment"]
        blob = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _checked_augment(value) -> Augment:
    """An ``Augment``, or the dict ``dataclasses.asdict`` made of one (a config read from JSON)."""
    if isinstance(value, Augment):
        return value
    if isinstance(value, dict):
        allowed = {f.name for f in dataclasses.fields(Augment)}
        unknown = sorted(set(value) - allowed)
        if unknown:
            raise ValueError(
                f"augment has unknown fields {unknown}; allowed: {', '.join(sorted(allowed))}"
            )
        return Augment(**value)
    raise ValueError(f"augment must be a scriptlab.augment.Augment or a dict, got {value!r}")


def _rate(name: str, value) -> float:
    check_number(name, value, low=0.0, high=1.0)
    if value == 1.0:
        raise ValueError(f"{name} must be a drop rate in [0, 1), got 1.0")
    return value


def _width(name: str, value) -> int:
    return check_int(name, value, 1)


def _checked_tuple(name: str, values, length: int, check) -> tuple:
    """``values`` as a tuple of ``length`` entries, each passed through ``check(label, v)``."""
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) != length:
        raise ValueError(f"{name} must be a sequence of {length} values, got {values!r}")
    return tuple(check(f"{name}[{i}]", v) for i, v in enumerate(values))


def make_train_config(**kwargs) -> TrainConfig:
    """A validated TrainConfig (clear errors naming the bad argument)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in kwargs:
        if name not in fields:
            raise ValueError(
                f"unknown training option {name!r}; allowed: {', '.join(sorted(fields))}"
            )
    return TrainConfig(**kwargs)
