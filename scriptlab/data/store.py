"""The dataset cache: checksummed .npz files, loaded or regenerated."""

from __future__ import annotations

import contextlib
import hashlib
import os
import warnings
import zipfile
from pathlib import Path

import numpy as np

from scriptlab import fonts
from scriptlab.cache import cache_dir, cache_lock, clean_temporaries
from scriptlab.data.config import SPLITS, DataConfig, Dataset, Split, make_config
from scriptlab.data.generate import _generate

# --------------------------------------------------------------------------- caching


def _digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(name.encode())
        h.update(str(a.dtype).encode() + str(a.shape).encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _save(ds: Dataset, path: Path) -> None:
    arrays = {
        f"{split}/{field}": v for split, s in ds.splits.items() for field, v in s._asdict().items()
    }
    arrays["key"] = np.array(ds.config.key())  # whose file this is (a legacy file has none)
    arrays["digest"] = np.array(_digest(arrays))
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp.npz")  # unique: writers may race
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(tmp, **arrays)
    os.replace(tmp, path)


def _load(cfg: DataConfig, path: Path) -> Dataset:
    with np.load(path, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    digest = str(arrays.pop("digest"))
    if digest != _digest(arrays):
        raise ValueError(f"checksum mismatch in {path}")
    key = str(arrays.pop("key", cfg.key()))
    if key != cfg.key():
        raise ValueError(f"{path} holds dataset {key}, not this config's {cfg.key()}")
    splits = {
        split: Split(**{f: arrays[f"{split}/{f}"] for f in Split._fields}) for split in SPLITS
    }
    _check_schema(cfg, splits, path)
    return Dataset(cfg, splits, cfg.scripts, cfg.styles, fonts.families(cfg.fonts))


def _check_schema(cfg: DataConfig, splits: dict[str, Split], path: Path) -> None:
    """Every split has this config's size, image size, dtypes and label ranges."""
    h, w = cfg.image_size
    for split, s in splits.items():
        n = cfg.sizes()[split]
        want = {
            "images": (np.uint8, (n, h, w, 3)),
            "masks": (np.bool_, (n, h, w)),
            "script": (np.int32, (n,)),
            "style": (np.int32, (n,)),
            "family": (np.int32, (n,)),
            "color": (np.uint8, (n, 3)),
        }
        for field, (dtype, shape) in want.items():
            a = getattr(s, field)
            if a.dtype != dtype or a.shape != shape:
                raise ValueError(
                    f"{path}: {split}/{field} is {a.dtype}{list(a.shape)}, this config needs "
                    f"{np.dtype(dtype)}{list(shape)}"
                )
        if s.text.shape != (n,) or s.text.dtype.kind != "U":
            raise ValueError(f"{path}: {split}/text must be str[{n}], got {s.text.dtype}")
        for field, size in (("script", len(cfg.scripts)), ("style", len(cfg.styles))):
            a = getattr(s, field)
            if n and (a.min() < 0 or a.max() >= size):
                raise ValueError(f"{path}: {split}/{field} labels outside [0, {size})")


def dataset_path(cfg: DataConfig) -> Path:
    return cache_dir() / "data" / f"{cfg.preset}-{cfg.seed}-{cfg.key()}.npz"


def load(
    preset: str = "workshop",
    seed: int = 0,
    *,
    workers: int | None = None,
    progress: bool = True,
    cache: bool = True,
    **overrides,
) -> Dataset:
    """The dataset for a preset and seed: from the on-disk cache, or generated and cached.

    Args:
      preset: "smoke" (seconds, for tests), "workshop" (the notebooks'), or "full".
      seed: the same seed gives byte-identical arrays.
      workers: render processes (default: all cores).
      progress: show a tqdm bar while rendering.
      cache: read/write the content-addressed cache ($SCRIPTLAB_CACHE/data).
      **overrides: DataConfig fields (rho, n_train, scripts, styles, image_size, ...).

    A truncated or corrupt cache file is reported, deleted and regenerated.
    """
    cfg = make_config(preset, seed, **overrides)
    path = dataset_path(cfg)
    if not cache:
        return _generate(cfg, workers, progress)
    if (ds := _try_load(cfg, path)) is not None:
        return ds
    with cache_lock(path) as writable:
        # another process may have rendered it while this one waited for the lock
        if (ds := _try_load(cfg, path)) is not None:
            return ds
        clean_temporaries(path.parent)
        ds = _generate(cfg, workers, progress)
        try:
            if not writable:
                raise PermissionError("no lock could be taken")
            _save(ds, path)
        except OSError as err:
            warnings.warn(
                f"dataset cache {path.parent} is read-only ({err}); not cached", stacklevel=2
            )
    return ds


def _try_load(cfg: DataConfig, path: Path) -> Dataset | None:
    """The cached dataset, or None (a damaged file is reported and removed)."""
    if not path.exists():
        return None
    try:
        return _load(cfg, path)
    except (ValueError, OSError, KeyError, EOFError, TypeError, zipfile.BadZipFile) as err:
        warnings.warn(f"dataset cache {path} is unreadable ({err}); regenerating", stacklevel=3)
        with contextlib.suppress(OSError):  # a read-only cache keeps it
            path.unlink(missing_ok=True)
    return None
