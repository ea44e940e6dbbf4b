"""Style counterfactuals: each crop re-rendered with only its font swapped.

A crop's *twin* in another font keeps everything the renderer drew for the crop
(``data.draw_chunk``): the word, its size, where its ink box sits, its rotation,
the text and background colours, the gradient and texture, the blur and the
noise, number for number. Only the face changes, so any change in a model's
reading of the twin is caused by the font alone: the ground truth against which
the explanation methods are judged (issue 26; Adebayo et al. 2022 plant their
spurious signals the same way).

Which face: for each requested style, the crop's own face when the style is the
crop's own (that twin is the crop itself, byte for byte), else a face of that
style from the script's training pool; for the held-out slot, a face from the
script's held-out pool (any style of ``config.styles``, never a family any
training split draws for that script). Among the faces whose cmap covers the
crop's word (no tofu, as in the dataset), one is picked by a generator seeded
with (seed, config seed, split, crop index, slot), so a twin does not depend on
which other twins are asked for. A slot no face can fill is marked invalid and
left black: never a wrong picture.

Size and position: the word keeps its font size, shrunk only as far as the new
face needs to fit inside the crop, and its ink box keeps its centre (moved the
least to stay inside the one-pixel margin). Twins are rendered in the dataset's
worker pool (``data.map_chunks``) and cached content-addressed in
$SCRIPTLAB_CACHE/twins as .npz (read with ``allow_pickle=False``).

References: Adebayo, Muelly, Abelson & Kim 2022, "Post hoc explanations may be
ineffective for detecting unknown spurious correlation" (ICLR).
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np

from scriptlab import data, fonts
from scriptlab.cache import cache_dir, cache_lock, write_atomic
from scriptlab.fonts import STYLES, check_name

TWINS_VERSION = 1
HELDOUT = "heldout"  # the name of the held-out-family slot


class Twins(NamedTuple):
    """Each crop re-rendered in several fonts, one slot per style (and the held-out family).

    Attributes:
      images: uint8[N, S, H, W, 3]; zeros where ``valid`` is False.
      masks: bool[N, S, H, W] glyph ink before blur and noise (as ``data.Split.masks``).
      valid: bool[N, S]: a face of the slot covers the crop's word.
      own: bool[N, S]: the slot is the crop's own face (the twin is the crop itself).
      style: int32[N, S] style id (into ``config.styles``) of the twin's face, -1 if invalid.
      family: int32[N, S] family id (into ``families``) of the twin's face, -1 if invalid.
      face: int32[N, S] face id (into ``fonts.table_faces(config.fonts)``), -1 if invalid.
      script: int32[N] the crops' scripts (into ``config.scripts``).
      text: str[N] the crops' words.
      index: int64[N] the crops' rows in their split.
      slots: the S slot names: the requested styles, then "heldout" if asked for.
      families: family names, ``fonts.families(config.fonts)``.
    """

    images: np.ndarray
    masks: np.ndarray
    valid: np.ndarray
    own: np.ndarray
    style: np.ndarray
    family: np.ndarray
    face: np.ndarray
    script: np.ndarray
    text: np.ndarray
    index: np.ndarray
    slots: tuple[str, ...]
    families: tuple[str, ...]


_ARRAYS = ("images", "masks", "valid", "own", "style", "family", "face", "script", "text", "index")


def style_twins(
    ds_or_config: data.Dataset | data.DataConfig,
    split: str,
    index,
    styles: Sequence[str] = STYLES,
    *,
    heldout: bool = True,
    seed: int = 0,
    workers: int | None = None,
    progress: bool = False,
    cache: bool = True,
) -> Twins:
    """Render crops of a split again with only the font swapped, once per style.

    Args:
      ds_or_config: the dataset (its texts are checked against the replayed draws)
        or its ``data.DataConfig``.
      split: one of ``data.SPLITS``.
      index: an int or int[N], rows of the split.
      styles: the style slots, names from the config's styles (a single name is one slot).
      heldout: add a slot for a face of a family held out of training for the crop's script.
      seed: which face of a style is picked for each crop (an int >= 0).
      workers: render processes (default: all cores), as ``data.load``.
      progress: show a progress bar.
      cache: read/write $SCRIPTLAB_CACHE/twins.

    Returns:
      ``Twins`` with N crops and S = len(styles) + heldout slots.

    References: Adebayo, Muelly, Abelson & Kim 2022 (planted spurious signals).
    """
    cfg, ds = _config_of(ds_or_config)
    check_name("split", split, data.SPLITS)
    n_split = cfg.sizes()[split]
    index = _check_index(index, n_split, split)
    styles = (styles,) if isinstance(styles, str) else tuple(styles)
    for style in styles:
        if style not in cfg.styles:
            raise ValueError(
                f"unknown style {style!r} in styles; allowed (the config's): {', '.join(cfg.styles)}"
            )
    if len(set(styles)) != len(styles):
        raise ValueError(f"styles must not repeat a style, got {styles}")
    if not isinstance(heldout, (bool, np.bool_)):
        raise ValueError(f"heldout must be True or False, got {heldout!r}")
    if not styles and not heldout:
        raise ValueError("no twin asked for: styles is empty and heldout is False")
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    slots = (*styles, *((HELDOUT,) if heldout else ()))
    request = (cfg, split, index, slots, int(seed))

    if not cache:
        twins = _render(request, workers, progress)
    else:
        path = twins_path(*request)
        twins = _try_load(path, request)
        if twins is None:
            with cache_lock(path) as writable:
                twins = _try_load(path, request)  # another process may have written it
                if twins is None:
                    twins = _render(request, workers, progress)
                    if writable:
                        _save(twins, path, request)
    if ds is not None and not np.array_equal(ds.split(split).text[index], twins.text):
        raise ValueError(
            f"the dataset's {split} words differ from the ones its config renders: this Dataset "
            f"was not made by this version of scriptlab.data (config key {cfg.key()})"
        )
    return twins


class PlainTwin(NamedTuple):
    """Each crop's twin in the style its script is usually drawn in (``plain_twin``).

    Attributes:
      images: uint8[N, H, W, 3] the plain twins (zeros where not ``ok``).
      masks: bool[N, H, W] their glyph ink.
      ok: bool[N] the twin exists and is a swap (valid, not the crop's own face).
      slot: int[N] the slot of ``Twins`` each came from (-1 where the style has no slot).
    """

    images: np.ndarray
    masks: np.ndarray
    ok: np.ndarray
    slot: np.ndarray


def plain_twin(twins: Twins, ds: data.Dataset) -> PlainTwin:
    """Each crop's twin in its script's usual style (``ds.bias_style``): the crop without the signal.

    On a conflict crop (a script in a style it rarely has in training) this is the same
    crop in the style a style-reading model expects for the true script: the pair is the
    cleanest counterfactual of "the style alone made the reading".

    Args:
      twins: ``style_twins`` of some crops of ``ds``.
      ds: the dataset (anything with ``scripts``, ``styles`` and ``bias_style(script)``).

    Returns:
      ``PlainTwin`` over the N crops.

    References: Adebayo, Muelly, Abelson & Kim 2022 (signal crops and their plain twins).
    """
    if not isinstance(twins, Twins):
        raise ValueError(f"twins must be a scriptlab.twins.Twins, got {type(twins).__name__}")
    n = len(twins.script)
    usual = [ds.styles[ds.bias_style(s)] for s in ds.scripts]  # one per script
    per_script = np.array([twins.slots.index(u) if u in twins.slots else -1 for u in usual])
    slot = per_script[twins.script].astype(np.int64)
    rows, cols = np.arange(n), np.maximum(slot, 0)
    ok = (slot >= 0) & twins.valid[rows, cols] & ~twins.own[rows, cols]
    images = np.where(ok[:, None, None, None], twins.images[rows, cols], 0).astype(np.uint8)
    masks = twins.masks[rows, cols] & ok[:, None, None]
    return PlainTwin(images=images, masks=masks, ok=ok, slot=slot)


def twins_path(cfg: data.DataConfig, split: str, index, slots, seed: int) -> Path:
    """The cache file of a request: named by everything that decides its bytes."""
    blob = json.dumps(
        {
            "data": cfg.key(),
            "split": split,
            "index": hashlib.sha256(np.asarray(index, np.int64).tobytes()).hexdigest(),
            "slots": list(slots),
            "seed": seed,
            "version": TWINS_VERSION,
        },
        sort_keys=True,
    )
    key = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return cache_dir() / "twins" / f"{cfg.preset}-{cfg.seed}-{split}-{key}.npz"


# --------------------------------------------------------------------------- checks


def _config_of(ds_or_config) -> tuple[data.DataConfig, data.Dataset | None]:
    if isinstance(ds_or_config, data.Dataset):
        return ds_or_config.config, ds_or_config
    if isinstance(ds_or_config, data.DataConfig):
        return ds_or_config, None
    raise ValueError(
        f"ds_or_config must be a scriptlab.data.Dataset or DataConfig, "
        f"got {type(ds_or_config).__name__}"
    )


def _check_index(index, n: int, split: str) -> np.ndarray:
    v = np.asarray(index)
    if v.size == 0:
        raise ValueError("index is empty; ask for at least one crop")
    if v.dtype == np.bool_ or not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"index must be an int or int[N] rows of {split}, got dtype {v.dtype}")
    if v.ndim > 1:
        raise ValueError(f"index must be an int or int[N], got shape {v.shape}")
    v = v.reshape(-1).astype(np.int64)
    if v.min() < 0 or v.max() >= n:
        raise ValueError(
            f"index must lie in [0, {n}) (the {split} split's size), "
            f"got values in [{v.min()}, {v.max()}]"
        )
    return v


# --------------------------------------------------------------------------- rendering


def _slot_code(slot: str) -> int:
    return len(STYLES) if slot == HELDOUT else STYLES.index(slot)


def _pool(cfg: data.DataConfig, script: str, slot: str) -> list[fonts.Face]:
    """The faces a slot may take for ``script``: a style's training faces, or the held-out pool."""
    styles, heldout = (cfg.styles, True) if slot == HELDOUT else ((slot,), False)
    out = []
    for style in styles:
        try:
            out.extend(fonts.faces_for(script, style, heldout=heldout, table=cfg.fonts))
        except fonts.FontPackageError:
            raise  # a broken install, never an empty slot
        except fonts.FontCoverageError:
            continue  # an empty cell fills no slot
    return out


def _choose(cfg, split: str, index: int, script: str, own: int, text: str, slots, seed: int):
    """The face id of every slot for one crop, -1 where no face covers its word."""
    table = fonts.table_faces(cfg.fonts)
    own_face = table[own]
    out = []
    for slot in slots:
        if slot == own_face.style:
            out.append(own)
            continue
        pool = [f for f in _pool(cfg, script, slot) if f != own_face and fonts.covers(f, text)]
        if not pool:
            out.append(-1)
            continue
        entropy = [seed, cfg.seed, data.SPLITS.index(split), index, _slot_code(slot)]
        pick = np.random.default_rng(np.random.SeedSequence(entropy)).integers(len(pool))
        out.append(table.index(pool[pick]))
    return out


def _twin_chunk(job) -> dict[str, np.ndarray]:
    """Twins of some crops of one chunk (runs in a worker process)."""
    cfg, split, chunk, rows, scripts, faces, slots, seed = job
    h, w = cfg.image_size
    draws = data.draw_chunk(cfg, data.chunk_entropy(cfg, split, chunk), scripts, faces)
    local = rows - chunk * data.CHUNK
    n, s = len(rows), len(slots)
    face = np.array(
        [
            _choose(
                cfg,
                split,
                int(rows[i]),
                cfg.scripts[scripts[j]],
                int(faces[j]),
                draws.glyphs[j].text,
                slots,
                seed,
            )
            for i, j in enumerate(local)
        ],
        np.int32,
    ).reshape(n, s)
    valid = face >= 0
    crop, slot = np.nonzero(valid)
    alpha = np.zeros((n, s, h, w), np.uint8)
    table = fonts.table_faces(cfg.fonts)
    for i, k in zip(crop, slot, strict=True):  # Pillow draws one string at a time
        alpha[i, k] = data.glyph_alpha(table[face[i, k]], draws.glyphs[local[i]], h, w)
    images = np.zeros((n, s, h, w, 3), np.uint8)
    images[crop, slot] = data.paint(alpha[crop, slot], draws.take(local[crop]))
    return {
        "images": images,
        "masks": alpha >= 128,
        "face": face,
        "own": face == faces[local][:, None],
        "text": np.array([draws.glyphs[j].text for j in local], dtype=str),
    }


def _render(request, workers: int | None, progress: bool) -> Twins:
    cfg, split, index, slots, seed = request
    script, _, face = data.split_plan(cfg, split)
    chunk = index // data.CHUNK
    order = np.argsort(chunk, kind="stable")
    jobs = []
    for c in np.unique(chunk):
        rows = index[order][chunk[order] == c]
        sl = slice(c * data.CHUNK, (c + 1) * data.CHUNK)
        jobs.append((cfg, split, int(c), rows, script[sl], face[sl], slots, seed))
    parts = data.map_chunks(
        _twin_chunk,
        jobs,
        [len(j[3]) * len(slots) for j in jobs],
        workers=workers,
        progress=progress,
        desc=f"rendering {split} twins",
    )
    merged = {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}
    back = np.empty_like(order)
    back[order] = np.arange(len(order))
    merged = {k: v[back] for k, v in merged.items()}
    twin_face = merged["face"]
    valid = twin_face >= 0
    table, families = fonts.table_faces(cfg.fonts), fonts.families(cfg.fonts)
    style_of = np.array([cfg.styles.index(f.style) if f.style in cfg.styles else -1 for f in table])
    family_of = np.array([families.index(f.family) for f in table])
    return Twins(
        images=merged["images"],
        masks=merged["masks"],
        valid=valid,
        own=merged["own"] & valid,
        style=np.where(valid, style_of[twin_face], -1).astype(np.int32),
        family=np.where(valid, family_of[twin_face], -1).astype(np.int32),
        face=twin_face.astype(np.int32),
        script=script[index].astype(np.int32),
        text=merged["text"],
        index=index,
        slots=slots,
        families=families,
    )


# --------------------------------------------------------------------------- caching


def _save(twins: Twins, path: Path, request) -> None:
    arrays = {k: getattr(twins, k) for k in _ARRAYS}
    arrays["key"] = np.array(path.stem)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        write_atomic(path, buf.getvalue())
    except OSError as err:
        warnings.warn(f"twins cache {path.parent} is read-only ({err}); not cached", stacklevel=3)


def _try_load(path: Path, request) -> Twins | None:
    """The cached twins, or None (a damaged file is reported and removed)."""
    if not path.exists():
        return None
    cfg, _, index, slots, _ = request
    try:
        with np.load(path, allow_pickle=False) as z:  # zip CRCs catch a damaged file
            arrays = {k: z[k] for k in z.files}
        if str(arrays.pop("key")) != path.stem:
            raise ValueError("it holds another request's twins")
        n, s, (h, w) = len(index), len(slots), cfg.image_size
        shapes = {"images": (n, s, h, w, 3), "masks": (n, s, h, w)}
        shapes |= {"script": (n,), "text": (n,), "index": (n,)}
        for k in _ARRAYS:
            if arrays[k].shape != shapes.get(k, (n, s)):
                raise ValueError(f"{k} has shape {arrays[k].shape}")
        if not np.array_equal(arrays["index"], index):
            raise ValueError("it holds other crops")
        return Twins(**arrays, slots=slots, families=fonts.families(cfg.fonts))
    except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as err:
        warnings.warn(f"twins cache {path} is unreadable ({err}); rendering again", stacklevel=3)
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)
    return None
