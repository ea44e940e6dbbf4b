"""Checkpoints: save, restore and checksum a trained model (msgpack + JSON, no pickle)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import jax
import numpy as np
from flax import nnx

from scriptlab import cache, distributed
from scriptlab import data as data_lib
from scriptlab.model import ScriptNet
from scriptlab.train.config import TrainConfig
from scriptlab.train.loop import Result


def save(result: Result, directory: str | Path) -> Path:
    """Write checkpoint.msgpack (flax serialization, no pickle) and checkpoint.json.

    In a multi-process run process 0 writes and every process returns once it has
    (each holds the same trained model; every process may then ``restore``).
    """
    directory = Path(directory)
    failed = None
    if distributed.is_main_process():
        try:
            _write_checkpoint(result, directory)
        except (OSError, ValueError) as err:  # the others must not wait for it forever
            failed = err
    distributed.sync(f"scriptlab.train.save:{directory}")
    if failed is not None:
        raise failed
    return directory


def _write_checkpoint(result: Result, directory: Path) -> None:
    from flax import serialization

    if directory.exists() and not directory.is_dir():
        raise ValueError(f"cannot save a checkpoint into {directory}: it is a file, not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    cache.clean_temporaries(directory)
    blobs = {"checkpoint.msgpack": nnx.state(result.model, nnx.Param).to_pure_dict()}
    for epoch, params in result.snapshots:
        blobs[f"epoch_{epoch:03d}.msgpack"] = params.to_pure_dict()
    digests = {}
    for name, tree in blobs.items():
        blob = serialization.msgpack_serialize(tree)
        digests[name] = hashlib.sha256(blob).hexdigest()
        cache.write_atomic(directory / name, blob)
    meta = {
        "config": dataclasses.asdict(result.config),
        "config_key": result.config.key(),
        "data_key": result.data_key,
        "history": result.history,
        "snapshots": [e for e, _ in result.snapshots],
        "sha256": digests,
    }
    # written last: a checkpoint.json means every file it names is complete
    cache.write_atomic(directory / "checkpoint.json", json.dumps(meta, indent=1).encode())


def _config_from_json(d: dict) -> TrainConfig:
    return TrainConfig(**d)  # __post_init__ checks every field and makes the lists tuples


def restore(
    directory: str | Path, cfg: TrainConfig | None = None, ds: data_lib.Dataset | None = None
) -> Result:
    """Load a checkpoint written by ``save``.

    Args:
      cfg: if given, must equal the stored config (else a clear ValueError).
      ds: if given, its key must equal the stored dataset key.
    """
    directory = Path(directory)
    meta_path = directory / "checkpoint.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no checkpoint.json in {directory}")
    meta, stored = _read_meta(meta_path)
    if cfg is not None and cfg != stored:
        diff = {
            f.name: (getattr(stored, f.name), getattr(cfg, f.name))
            for f in dataclasses.fields(TrainConfig)
            if getattr(stored, f.name) != getattr(cfg, f.name)
        }
        raise ValueError(
            f"checkpoint in {directory} was trained with a different config: "
            f"(stored, requested) = {diff}"
        )
    if ds is not None and ds.key != meta["data_key"]:
        raise ValueError(
            f"checkpoint in {directory} was trained on dataset {meta['data_key']}, not {ds.key}"
        )
    loaded = _read(directory / "checkpoint.msgpack", meta)
    n_scripts, n_font_logits = _head_sizes(loaded, directory)
    conditional = stored.mode == "cdann"
    n_styles = n_font_logits // n_scripts if conditional else n_font_logits
    if ds is not None and (n_scripts, n_styles) != (len(ds.scripts), len(ds.styles)):
        raise ValueError(
            f"checkpoint in {directory} has heads for {n_scripts} scripts and {n_styles} styles; "
            f"the dataset has {len(ds.scripts)} scripts and {len(ds.styles)} styles"
        )
    h, w = data_lib.make_config(stored.preset).image_size
    abstract = nnx.eval_shape(
        lambda: ScriptNet(
            n_scripts,
            n_styles,
            channels=stored.channels,
            dropout=stored.dropout,
            image_shape=(h, w, 3),
            conditional=conditional,
            rngs=nnx.Rngs(0),
        )
    )
    graphdef, state = nnx.split(abstract)
    _check_shapes(state.to_pure_dict(), loaded, directory)
    nnx.replace_by_pure_dict(state, loaded)
    model = nnx.merge(graphdef, state)
    snaps = []
    for epoch in meta.get("snapshots", []):
        params = nnx.state(model, nnx.Param)
        blob = _read(directory / f"epoch_{epoch:03d}.msgpack", meta)
        _check_shapes(params.to_pure_dict(), blob, directory)
        params = jax.tree.map(lambda x: x, params)
        nnx.replace_by_pure_dict(params, blob)
        snaps.append((epoch, params))
    return Result(model, stored, meta["history"], meta["data_key"], snaps)


def add_checksums(directory: str | Path) -> bool:
    """Record sha256 and config key in a checkpoint saved before they existed; True if it did.

    The files' present bytes become the reference (call it after a successful
    ``restore``), so a later bit flip is caught. Checkpoints that have them are left alone.
    """
    directory = Path(directory)
    meta, stored = _read_meta(directory / "checkpoint.json")
    if "sha256" in meta:
        return False
    names = ["checkpoint.msgpack", *(f"epoch_{e:03d}.msgpack" for e in meta["snapshots"])]
    meta["sha256"] = {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in names}
    meta["config_key"] = stored.key()
    cache.write_atomic(directory / "checkpoint.json", json.dumps(meta, indent=1).encode())
    return True


_META = {"config": dict, "data_key": str, "history": list, "snapshots": list}


def _read_meta(path: Path) -> tuple[dict, TrainConfig]:
    """checkpoint.json and its config, checked for structure and against its config key."""
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise TypeError(f"the top level is a {type(meta).__name__}, not an object")
        for key, kind in _META.items():
            if not isinstance(meta.get(key), kind):
                raise TypeError(f"{key!r} must be a {kind.__name__}, got {meta.get(key)!r:.60}")
        stored = _config_from_json(meta["config"])
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path} is malformed: {err}") from err
    if "config_key" in meta and stored.key() != meta["config_key"]:
        raise ValueError(
            f"{path}: the stored config hashes to {stored.key()}, not its recorded "
            f"config_key {meta['config_key']} (edited or corrupt)"
        )
    return meta, stored


def _read(path: Path, meta: dict) -> dict:
    """A msgpack parameter file, checked against its sha256 and for finite float32 arrays.

    Checkpoints saved before checksums were recorded (no "sha256" in the meta)
    are still read; their arrays are checked all the same.
    """
    from flax import serialization

    blob = path.read_bytes()
    want = meta.get("sha256", {}).get(path.name) if isinstance(meta.get("sha256"), dict) else None
    if "sha256" in meta and hashlib.sha256(blob).hexdigest() != want:
        raise ValueError(f"checksum mismatch in {path}: the file is corrupt or was replaced")
    try:
        tree = serialization.msgpack_restore(blob)
    except Exception as err:  # msgpack raises several types on truncated input
        raise ValueError(f"{path} is not a readable msgpack file: {err}") from err
    if not isinstance(tree, dict):
        raise ValueError(f"{path} does not hold a parameter dict")
    for where, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = jax.tree_util.keystr(where)
        if not isinstance(leaf, np.ndarray) or leaf.dtype != np.float32:
            raise ValueError(
                f"{path}: parameter {name} must be a float32 array, got "
                f"{getattr(leaf, 'dtype', type(leaf).__name__)}"
            )
        if not np.isfinite(leaf).all():
            raise ValueError(f"{path}: parameter {name} contains NaN or infinite values")
    return tree


def _head_sizes(raw: dict, where: Path) -> tuple[int, int]:
    try:
        return raw["script_head"]["bias"].shape[0], raw["font_head"]["bias"].shape[0]
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"checkpoint in {where} lacks the script/font head biases") from err


def _check_shapes(template: dict, loaded: dict, where: Path, prefix: str = "") -> None:
    """Every array the model expects is in the checkpoint, with the same shape."""
    for k, v in template.items():
        name = f"{prefix}{k}"
        if k not in loaded:
            raise ValueError(f"checkpoint in {where} lacks parameter {name!r}")
        if isinstance(v, dict):
            _check_shapes(v, loaded[k], where, name + "/")
        elif tuple(v.shape) != tuple(np.shape(loaded[k])):
            raise ValueError(
                f"checkpoint in {where}: {name} has shape {np.shape(loaded[k])}, "
                f"the model expects {tuple(v.shape)}"
            )
