"""The cache layer: where cached files live, atomic writes, per-entry locks, stale temporaries.

Datasets (``data``), zoo models (``zoo``, ``train``'s checkpoints), experiment
results, influence results and cache archives are all written through these four
functions, so every file in the cache is either whole or absent, and two processes
asking for one entry produce it once. The bottom layer: it imports nothing from scriptlab.
"""

from __future__ import annotations

import contextlib
import os
import re
from pathlib import Path


def cache_dir() -> Path:
    """Where datasets and models are cached: $SCRIPTLAB_CACHE or ~/.cache/scriptlab."""
    root = os.environ.get("SCRIPTLAB_CACHE") or Path.home() / ".cache" / "scriptlab"
    return Path(root)


_TEMPORARY = re.compile(r"\.(\d+)\.tmp(\.npz)?$")


def write_atomic(path: Path, blob: bytes) -> None:
    """Write ``blob`` through a unique temporary file and rename it: no reader sees half a file.

    A symbolic link at ``path`` is refused rather than followed out of its folder.
    """
    if path.is_symlink():
        raise ValueError(f"refusing to write through the symbolic link {path}")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_bytes(blob)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def clean_temporaries(folder: Path) -> None:
    """Delete the temporary files of killed writers in ``folder`` (their process is gone)."""
    for tmp in folder.glob("*.tmp*") if folder.is_dir() else ():
        match = _TEMPORARY.search(tmp.name)
        if match is None:
            continue
        try:
            os.kill(int(match.group(1)), 0)
        except ProcessLookupError:
            tmp.unlink(missing_ok=True)
        except PermissionError:  # alive, another user's
            pass


@contextlib.contextmanager
def cache_lock(path: Path):
    """Hold an exclusive lock on ``path``'s cache entry; yields False when the cache is read-only.

    Writers of one entry (datasets, zoo models) take it in turn, so two processes
    asking for the same entry produce it once. A cache folder that cannot be
    written (a read-only mount) is still read: no lock is needed to read files
    that are only ever replaced atomically.
    """
    import fcntl

    lock = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fh = open(lock, "a")  # noqa: SIM115 (held across the yield)
    except OSError:
        yield False
        return
    with fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield True
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
