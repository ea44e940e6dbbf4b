"""The dataset's configuration and containers: presets, ``DataConfig``, ``Split``, ``Dataset``."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from scriptlab import fonts
from scriptlab.fonts import SCRIPTS, STYLES
from scriptlab.validation import check_int, check_name, check_names, check_number

DATA_VERSION = 1
CHUNK = 256
# val_conflict comes last: each split draws from its own seed, so appending it left the
# other splits' bytes unchanged.
SPLITS = ("train", "val", "test", "conflict", "heldout", "val_conflict")
CONFLICT_SPLITS = ("conflict", "val_conflict")

# The style each script is drawn in a fraction rho of the time in train/val/test.
# Latin/Cyrillic/Greek share many letter shapes, so a style shortcut pays there.
BIAS: dict[str, str] = {
    "latin": "hand",
    "cyrillic": "serif",
    "greek": "mono",
    "arabic": "serif",
    "hebrew": "display",
    "devanagari": "hand",
    "thai": "display",
    "chinese": "sans",
    "japanese": "display",
    "korean": "sans",
}

PRESETS: dict[str, dict] = {
    "smoke": dict(
        n_train=600, n_val=150, n_test=150, n_conflict=150, n_heldout=150, n_val_conflict=150
    ),
    "workshop": dict(
        n_train=30_000,
        n_val=1_500,
        n_test=2_000,
        n_conflict=2_000,
        n_heldout=2_000,
        n_val_conflict=2_000,
    ),
    "full": dict(
        n_train=60_000,
        n_val=6_000,
        n_test=10_000,
        n_conflict=10_000,
        n_heldout=10_000,
        n_val_conflict=6_000,
    ),
}


@dataclasses.dataclass(frozen=True)
class DataConfig:
    """Everything that determines the dataset's bytes."""

    preset: str = "workshop"
    seed: int = 0
    rho: float = 0.9
    image_size: tuple[int, int] = (32, 64)
    n_train: int = 30_000
    n_val: int = 1_500
    n_test: int = 2_000
    n_conflict: int = 2_000
    n_heldout: int = 2_000
    n_val_conflict: int = 2_000
    scripts: tuple[str, ...] = SCRIPTS
    styles: tuple[str, ...] = STYLES
    fonts: str = "default"  # the font table (a key of fonts.TABLES)

    def __post_init__(self):
        """Every construction is checked (``make_config``, a restore, ``dataclasses.replace``).

        Raises:
          ValueError: naming the field, the value and what is allowed.
        """
        check_name("preset", self.preset, tuple(PRESETS))
        check_name("fonts", self.fonts, tuple(fonts.TABLES))
        object.__setattr__(self, "seed", check_int("seed", self.seed, 0))
        try:
            check_number("rho", self.rho, low=0.0, high=1.0)
        except ValueError:
            raise ValueError(f"rho must be in [0, 1], got {self.rho!r}") from None
        size = self.image_size
        if (
            isinstance(size, str)
            or not isinstance(size, Sequence)
            or len(size) != 2
            or any(
                isinstance(v, (bool, np.bool_)) or not isinstance(v, (int, np.integer))
                for v in size
            )
            or min(size) < 16
            or size[0] % 8
            or size[1] % 8
        ):
            raise ValueError(
                f"image_size must be (H, W) with H, W >= 16 and divisible by 8, got {size!r}"
            )
        object.__setattr__(self, "image_size", tuple(int(v) for v in size))
        for split in SPLITS:
            object.__setattr__(
                self, f"n_{split}", check_int(f"n_{split}", getattr(self, f"n_{split}"), 0)
            )
        object.__setattr__(
            self, "scripts", check_names("scripts", self.scripts, SCRIPTS, kind="script")
        )
        object.__setattr__(self, "styles", check_names("styles", self.styles, STYLES, kind="style"))
        if len(self.scripts) < 2:
            raise ValueError(f"scripts must name at least two scripts, got {self.scripts}")
        if not self.styles:
            raise ValueError(f"styles must name at least one style; allowed: {', '.join(STYLES)}")
        for s in self.scripts:  # every script needs at least one covered style in the training pool
            if not [st for st in self.styles if st in fonts.styles_for(s, table=self.fonts)]:
                # raises FontCoverageError naming the cell
                fonts.faces_for(s, self.styles[0], table=self.fonts)

    def sizes(self) -> dict[str, int]:
        return {s: getattr(self, f"n_{s}") for s in SPLITS}

    def key(self) -> str:
        """Content address: a hash of the config, the data version and the font table.

        The default table's configs hash exactly what they hashed before ``fonts`` existed
        (no ``fonts`` field), so their cached datasets and zoo models keep their keys.
        """
        import PIL

        config = dataclasses.asdict(self)
        if self.fonts == "default":
            del config["fonts"]
        faces = fonts.table_faces(self.fonts)
        blob = json.dumps(
            {
                "config": config,
                "version": DATA_VERSION,
                "pillow": PIL.__version__,
                "faces": [list(f) for f in faces],
                # the bytes of the files used, so a changed font package is a new dataset
                "font_files": fonts.file_digests(
                    f
                    for f in faces
                    if f.style in self.styles and set(f.scripts) & set(self.scripts)
                ),
                "bias": BIAS,
            },
            sort_keys=True,
        )
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


def make_config(preset: str = "workshop", seed: int = 0, **overrides) -> DataConfig:
    """Build and validate a DataConfig from a preset name plus overrides.

    Raises:
      ValueError: naming the argument, the value and what is allowed.
    """
    check_name("preset", preset, tuple(PRESETS))
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    for name in overrides:
        if name not in fields:
            raise ValueError(f"unknown config field {name!r}; allowed: {', '.join(sorted(fields))}")
    return DataConfig(preset=preset, seed=seed, **{**PRESETS[preset], **overrides})


class Split(NamedTuple):
    """One split: images, ink masks and labels, all row-aligned.

    Attributes:
      images: uint8[N, H, W, 3]
      masks: bool[N, H, W]: glyph ink before blur and noise
      script: int32[N], index into Dataset.scripts
      style: int32[N], index into Dataset.styles
      family: int32[N], index into Dataset.families
      text: str[N]
      color: uint8[N, 3] text colour
    """

    images: np.ndarray
    masks: np.ndarray
    script: np.ndarray
    style: np.ndarray
    family: np.ndarray
    text: np.ndarray
    color: np.ndarray

    def __len__(self) -> int:
        return len(self.script)

    def take(self, idx) -> Split:
        """Rows ``idx`` of every field."""
        return Split(*(a[idx] for a in self))


@dataclasses.dataclass(frozen=True)
class Dataset:
    """All splits plus the label names; ids index into ``scripts``/``styles``/``families``."""

    config: DataConfig
    splits: dict[str, Split]
    scripts: tuple[str, ...]
    styles: tuple[str, ...]
    families: tuple[str, ...]
    seconds: float = 0.0  # generation time (0 when loaded from cache)

    def split(self, name: str) -> Split:
        check_name("split", name, SPLITS)
        return self.splits[name]

    train = property(lambda self: self.splits["train"])
    val = property(lambda self: self.splits["val"])
    test = property(lambda self: self.splits["test"])
    conflict = property(lambda self: self.splits["conflict"])
    heldout = property(lambda self: self.splits["heldout"])
    val_conflict = property(lambda self: self.splits["val_conflict"])

    @property
    def key(self) -> str:
        return self.config.key()

    def bias_style(self, script: str) -> int:
        """Style id a script is biased towards."""
        return self.styles.index(_bias_style(self.config, script))


def as_float(images) -> np.ndarray:
    """uint8 images -> float32 in [0, 1] (works on numpy or jax arrays)."""
    return images.astype(np.float32) / np.float32(255.0)


def _bias_style(cfg: DataConfig, script: str) -> str:
    styles = [s for s in cfg.styles if s in fonts.styles_for(script, table=cfg.fonts)]
    return BIAS[script] if BIAS[script] in styles else styles[0]
