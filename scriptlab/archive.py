"""One file of trained zoo models: ``scriptlab cache export`` / ``scriptlab cache import``.

A teacher runs ``scriptlab prepare`` once, exports, and hands the file out; each
participant imports it instead of training. The archive holds the zoo models of
``workshop.requests`` (checkpoints are small: a few MB in all) and no datasets:
those are re-rendered from the pinned fonts by ``scriptlab prepare`` in about a
minute, byte-identical, and are 300 MB per preset.

Format: a gzip-compressed tar (no pickle anywhere) with one top folder,
``scriptlab-cache/``, holding ``manifest.json`` and ``zoo/<entry>/`` folders
exactly as in ``$SCRIPTLAB_CACHE/zoo``. The manifest records the package version,
``train.TRAINING_CODE_VERSION`` and, per entry, its zoo name, preset, seed, training-config key, dataset key and
the sha256 and size of every file. Export is deterministic (sorted members, zero
times and owners): the same models give the same bytes.

Import trusts nothing in the file. Before anything is written it checks that every
member is a plain file or folder under the top folder (no absolute paths, no
``..``, no links or devices), that the files are exactly those the manifest lists,
with their sizes and sha256, that the models were trained by this training-code
version (else it names every model and both versions), that the package version is this one, and that each
entry's config key and dataset key are the ones this installation computes for
that zoo name, preset and seed. Any mismatch refuses the whole archive.
"""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import re
import tarfile
from pathlib import Path, PurePosixPath
from typing import NamedTuple

from scriptlab import __version__, zoo
from scriptlab import train as train_lib
from scriptlab.cache import cache_dir, cache_lock, write_atomic
from scriptlab.validation import check_name

FORMAT = "scriptlab-cache"
FORMAT_VERSION = 1
ROOT = "scriptlab-cache"
MAX_FILE_BYTES = 256 * 2**20  # no zoo checkpoint comes near this; a larger member is refused
MAX_TOTAL_BYTES = 2 * 2**30
_FILE_NAME = re.compile(r"checkpoint\.json|checkpoint\.msgpack|epoch_\d{3}\.msgpack")


class ArchiveError(ValueError):
    """An archive that cannot be exported or must not be imported, and why."""


class Entry(NamedTuple):
    """One zoo model in an archive.

    Attributes:
      folder: its folder name under ``zoo/`` (``zoo.path``'s last part).
      name: its key in ``zoo.ZOO``.
      preset: its dataset preset.
      seed: its training seed.
      config_key: ``TrainConfig.key()`` of the recipe it was trained with.
      data_key: the cache key of the dataset it was trained on.
      files: {file name: (size in bytes, sha256 hex)}.
    """

    folder: str
    name: str
    preset: str
    seed: int
    config_key: str
    data_key: str
    files: dict[str, tuple[int, str]]


class Imported(NamedTuple):
    """What ``import_models`` did: entry folders written and entries left as they were."""

    written: list[str]
    kept: list[str]


def _sha256(blob: bytes) -> str:
    return hashlib.sha256(blob).hexdigest()


def _expected_data_key(cfg: train_lib.TrainConfig) -> str:
    from scriptlab import data

    return data.make_config(cfg.preset, cfg.data_seed, **cfg.data_overrides()).key()


def export_models(file: str | Path, requests) -> list[Entry]:
    """Write the cached zoo models of ``requests`` into one archive at ``file`` (atomically).

    Args:
      file: the archive to write (``.tar.gz`` by convention); an existing file is replaced.
      requests: (name, preset, seed, overrides) tuples, as ``zoo.warm`` takes; every one
        must be cached (run ``scriptlab prepare`` first).

    Returns:
      The entries written, in order.

    Raises:
      ArchiveError: a requested model is not cached, or its checkpoint is incomplete.
    """
    file = Path(file)
    entries: list[Entry] = []
    blobs: dict[str, bytes] = {}
    for name, preset, seed, overrides in requests:
        if overrides:
            raise ArchiveError(f"cannot export {name} with overrides {overrides}: not a zoo entry")
        cfg = zoo.config(name, preset, seed)
        where = zoo.path(cfg, name)
        meta_path = where / "checkpoint.json"
        if not meta_path.exists():
            raise ArchiveError(
                f"zoo model {name} (preset {preset}, seed {seed}) is not cached at {where}; "
                f"run `scriptlab prepare --preset {preset}` first"
            )
        train_lib.add_checksums(where)  # a legacy checkpoint gets its checksums first
        meta = json.loads(meta_path.read_text())
        names = ["checkpoint.msgpack", *(f"epoch_{e:03d}.msgpack" for e in meta["snapshots"])]
        files = {}
        for fname in [*names, "checkpoint.json"]:
            blob = (where / fname).read_bytes()
            if fname != "checkpoint.json" and _sha256(blob) != meta["sha256"].get(fname):
                raise ArchiveError(f"{where / fname} does not match its checksum; delete {where}")
            files[fname] = (len(blob), _sha256(blob))
            blobs[f"{ROOT}/zoo/{where.name}/{fname}"] = blob
        entries.append(
            Entry(where.name, name, preset, int(seed), cfg.key(), meta["data_key"], files)
        )
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "scriptlab_version": __version__,
        "training_code_version": train_lib.TRAINING_CODE_VERSION,
        "entries": [e._asdict() for e in entries],
    }
    blobs[f"{ROOT}/manifest.json"] = json.dumps(manifest, indent=1, sort_keys=True).encode()
    write_atomic(file, _tar_gz(blobs))
    return entries


def _tar_gz(blobs: dict[str, bytes]) -> bytes:
    """A deterministic .tar.gz of ``blobs`` ({member path: bytes}) with their folders."""
    folders = sorted({str(p) for name in blobs for p in PurePosixPath(name).parents} - {"."})
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for folder in folders:
            info = tarfile.TarInfo(folder)
            info.type, info.mode, info.mtime = tarfile.DIRTYPE, 0o755, 0
            tar.addfile(info)
        for name in sorted(blobs):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(blobs[name]), 0o644, 0
            tar.addfile(info, io.BytesIO(blobs[name]))
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", mtime=0, filename="") as gz:
        gz.write(raw.getvalue())
    return out.getvalue()


def _read_members(file: Path) -> dict[str, bytes]:
    """{path: bytes} of every regular file in the archive; anything unsafe is refused."""
    try:
        tar = tarfile.open(file, mode="r:*")
    except (tarfile.TarError, OSError, EOFError) as err:
        raise ArchiveError(f"{file} is not a readable tar archive ({err})") from None
    blobs: dict[str, bytes] = {}
    total = 0
    with tar:
        try:
            for m in tar:
                path = PurePosixPath(m.name)
                if path.is_absolute() or ".." in path.parts or path.parts[:1] != (ROOT,):
                    raise ArchiveError(
                        f"{file}: member {m.name!r} lies outside {ROOT}/; refusing the archive"
                    )
                if m.isdir():
                    continue
                if not m.isreg():
                    raise ArchiveError(
                        f"{file}: member {m.name!r} is not a plain file (a link or device); "
                        f"refusing the archive"
                    )
                total += m.size
                if m.size > MAX_FILE_BYTES or total > MAX_TOTAL_BYTES:
                    raise ArchiveError(
                        f"{file}: member {m.name!r} is too large ({m.size} bytes); "
                        f"refusing the archive"
                    )
                if str(path) in blobs:
                    raise ArchiveError(f"{file}: member {m.name!r} appears twice")
                fh = tar.extractfile(m)
                assert fh is not None  # a regular member always has contents
                blobs[str(path)] = fh.read()
        except (tarfile.TarError, OSError, EOFError, gzip.BadGzipFile) as err:
            raise ArchiveError(f"{file} is truncated or corrupt ({err})") from None
    return blobs


def _entries(file: Path, manifest_blob: bytes | None) -> list[Entry]:
    if manifest_blob is None:
        raise ArchiveError(f"{file} has no {ROOT}/manifest.json: not a scriptlab cache archive")
    try:
        manifest = json.loads(manifest_blob)
        if manifest.get("format") != FORMAT:
            raise ValueError(f"format is {manifest.get('format')!r}, not {FORMAT!r}")
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"format_version is {manifest.get('format_version')!r}, "
                f"this scriptlab reads {FORMAT_VERSION}"
            )
        version = manifest.get("scriptlab_version")
        trained_by = manifest.get("training_code_version", "unrecorded")
        entries = [
            Entry(**{**e, "files": {k: tuple(v) for k, v in e["files"].items()}})
            for e in manifest["entries"]
        ]
    except (ValueError, TypeError, KeyError, AttributeError) as err:
        raise ArchiveError(f"{file}: manifest.json is malformed ({err})") from None
    if trained_by != train_lib.TRAINING_CODE_VERSION:
        models = ", ".join(f"{e.name} (preset {e.preset}, seed {e.seed})" for e in entries)
        raise ArchiveError(
            f"{file} holds models trained by training-code version {trained_by}, this scriptlab "
            f"trains with version {train_lib.TRAINING_CODE_VERSION}: {models}. Refusing the archive "
            f"(this code would train other weights); export it again from an up-to-date cache, "
            f"or run `scriptlab prepare`"
        )
    if version != __version__:
        raise ArchiveError(
            f"{file} was made by scriptlab {version}, this is scriptlab {__version__}; "
            f"refusing it (the recipes may differ): export it again with this version, "
            f"or run `scriptlab prepare`"
        )
    return entries


def _check_entry(file: Path, e: Entry, blobs: dict[str, bytes]) -> None:
    """The entry is this installation's zoo model and its files are whole."""
    try:
        check_name("zoo model", e.name, tuple(zoo.ZOO))
        cfg = zoo.config(e.name, e.preset, e.seed)
    except (ValueError, TypeError) as err:
        raise ArchiveError(f"{file}: entry {e.folder!r}: {err}") from None
    here = zoo.path(cfg, e.name).name
    if cfg.key() != e.config_key or here != e.folder:
        raise ArchiveError(
            f"{file}: {e.name} (preset {e.preset}, seed {e.seed}) has config key "
            f"{e.config_key}, this installation's recipe has {cfg.key()}; refusing the archive "
            f"(it was made with other training settings)"
        )
    if _expected_data_key(cfg) != e.data_key:
        raise ArchiveError(
            f"{file}: {e.folder} was trained on dataset {e.data_key}, this installation renders "
            f"{_expected_data_key(cfg)} (other fonts or dataset code); refusing the archive"
        )
    if not set(e.files) >= {"checkpoint.json", "checkpoint.msgpack"} or not all(
        _FILE_NAME.fullmatch(f) for f in e.files
    ):
        raise ArchiveError(f"{file}: entry {e.folder} lists files {sorted(e.files)}")
    for fname, (size, digest) in e.files.items():
        blob = blobs.get(f"{ROOT}/zoo/{e.folder}/{fname}")
        if blob is None:
            raise ArchiveError(f"{file}: {e.folder}/{fname} is listed but missing")
        if len(blob) != size or _sha256(blob) != digest:
            raise ArchiveError(
                f"{file}: {e.folder}/{fname} does not match its sha256 in the manifest "
                f"(corrupt or altered); refusing the archive"
            )
    try:
        meta = json.loads(blobs[f"{ROOT}/zoo/{e.folder}/checkpoint.json"])
        if not isinstance(meta, dict):
            raise ValueError("not an object")
    except ValueError as err:
        raise ArchiveError(f"{file}: {e.folder}/checkpoint.json is malformed ({err})") from None
    if meta.get("config_key") != e.config_key or meta.get("data_key") != e.data_key:
        raise ArchiveError(f"{file}: {e.folder}/checkpoint.json disagrees with the manifest")
    sums = meta["sha256"] if isinstance(meta.get("sha256"), dict) else {}
    if set(sums) | {"checkpoint.json"} != set(e.files) or any(
        e.files[f][1] != digest for f, digest in sums.items()
    ):
        raise ArchiveError(f"{file}: {e.folder}'s files do not match its checkpoint.json")


def import_models(file: str | Path, *, replace: bool = False) -> Imported:
    """Check an archive made by ``export_models`` and install its models into the zoo cache.

    Nothing is written unless the whole archive passes (see the module docstring).
    Each entry is written under its zoo lock, parameter files first and
    ``checkpoint.json`` last, so a reader never sees half an entry.

    Args:
      file: the archive.
      replace: overwrite models already in the cache (default: keep them).

    Returns:
      An ``Imported`` naming the entry folders written and those kept.

    Raises:
      ArchiveError: naming the first problem found; the cache is then untouched.
    """
    file = Path(file)
    if not file.is_file():
        raise ArchiveError(f"{file} is not a file")
    blobs = _read_members(file)
    entries = _entries(file, blobs.get(f"{ROOT}/manifest.json"))
    listed = {f"{ROOT}/manifest.json"}
    for e in entries:
        _check_entry(file, e, blobs)
        listed |= {f"{ROOT}/zoo/{e.folder}/{f}" for f in e.files}
    if extra := sorted(set(blobs) - listed):
        raise ArchiveError(f"{file}: {extra[0]} is not in the manifest; refusing the archive")
    written, kept = [], []
    root = cache_dir() / "zoo"
    for e in entries:
        where = root / e.folder
        with cache_lock(where) as writable:
            if not writable:
                raise ArchiveError(f"the zoo cache {root} is not writable")
            if (where / "checkpoint.json").exists() and not replace:
                kept.append(e.folder)
                continue
            if where.is_symlink() or (where.exists() and not where.is_dir()):
                raise ArchiveError(f"{where} is not a plain folder; remove it first")
            where.mkdir(parents=True, exist_ok=True)
            (where / "checkpoint.json").unlink(missing_ok=True)  # incomplete until rewritten
            for fname in sorted(e.files, key=lambda f: f == "checkpoint.json"):
                write_atomic(where / fname, blobs[f"{ROOT}/zoo/{e.folder}/{fname}"])
            written.append(e.folder)
    return Imported(written, kept)
