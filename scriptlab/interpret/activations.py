"""Activation maps, activation sparsity over training, and dead filters.

Every function takes ``(apply_fn, params, images, ...)`` with ``apply_fn`` a
``scriptlab.protocols.ApplyFn``; these read only its ``activations`` dict. Images are processed in one jitted ``lax.map`` over memory-bounded
chunks (``batch_size`` images vmapped at a time), never a Python loop.

The two claims of the essay "Understanding Convolutional Neural Networks" these
measure: "for networks with ReLU activations, the activations start out as dense
blobs that gradually become sparse with more training" (``activation_sparsity``, ``sparsity_curve``) and "dead filters
(filters that result in a blank activation map for all inputs) ... are
manifestations of high learning rates" (``dead_filters``).

References: Zeiler & Fergus 2014 (visualising feature maps),
https://arxiv.org/abs/1311.2901; Yosinski et al. 2015 (live activations),
https://arxiv.org/abs/1506.06579; Karpathy, cs231n "Visualizing what ConvNets learn"
(dead filters, sparsity), https://cs231n.github.io/understanding-cnn/; Hoyer 2004 (the
sparseness measure).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Int, Real

from scriptlab.interpret._common import (
    check_array,
    check_batch_size,
    check_images,
    check_int,
    check_layers,
    check_number,
    map_rows,
)
from scriptlab.protocols import AnyArray, ApplyFn, Image


class DeadFilters(NamedTuple):
    """Per-layer result of ``dead_filters``: which channels never fire, and their peak.

    Attributes:
      dead: {layer: bool[C]}, True where the channel's max activation over the
        images is <= threshold.
      peak: {layer: float32[C]}, max activation over every image and position.
      fire_rate: {layer: float32[C]}, share of images where the channel fires anywhere.
    """

    dead: dict[str, jax.Array]
    peak: dict[str, jax.Array]
    fire_rate: dict[str, jax.Array]


@functools.partial(jax.jit, static_argnames=("apply_fn", "layers", "batch_size"))
def _maps(apply_fn, params, images, *, layers, batch_size):
    def one(x):
        acts = apply_fn(params, x[None]).activations
        return {k: acts[k][0] for k in layers}

    return map_rows(one, images, batch_size=batch_size)


def activation_maps(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 64,
) -> dict[str, Float[Array, "n ..."]]:
    """Every named layer's feature maps for a batch, in one jitted pass.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn`` (``out.activations`` is read).
      params: the model parameters (a pytree).
      images: float32[N, H, W, C] in [0, 1].
      layers: names to return (default: every activation the model exposes).
      batch_size: images per vmapped chunk (bounds memory).

    Returns:
      {layer: float32[N, h, w, c]} (or [N, c] for dense layers).

    References: Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901.
    """
    images = check_images(images)
    layers = check_layers(apply_fn, params, images.shape[1:], layers)
    check_batch_size(batch_size)
    return _maps(apply_fn, params, images, layers=layers, batch_size=int(batch_size))


def _hoyer(a: jax.Array) -> jax.Array:
    """Hoyer (2004) sparseness of a flat vector: 0 when all equal, 1 when one-hot."""
    n = a.size
    l1 = jnp.abs(a).sum()
    l2 = jnp.sqrt((a**2).sum())
    ratio = jnp.where(l2 > 0, l1 / jnp.where(l2 > 0, l2, 1.0), jnp.sqrt(n))
    return (jnp.sqrt(n) - ratio) / (jnp.sqrt(n) - 1)


def _image_stats(apply_fn, params, layers, x):
    acts = apply_fn(params, x[None]).activations
    out = {}
    for k in layers:
        a = acts[k][0]
        flat_maps = a.reshape(-1, a.shape[-1])  # [h*w, C] (or [1, C] for a dense layer)
        out[k] = {
            "zero": jnp.mean(a <= 0),
            # Hoyer per feature map (over positions), averaged over channels: "blob vs sparse"
            "hoyer": jnp.mean(jax.vmap(_hoyer, in_axes=1)(flat_maps))
            if flat_maps.shape[0] > 1
            else _hoyer(a),
            "peak": flat_maps.max(0),
        }
    return out


@functools.partial(jax.jit, static_argnames=("apply_fn", "layers", "batch_size"))
def _stats(apply_fn, params, images, *, layers, batch_size):
    per_image = map_rows(
        functools.partial(_image_stats, apply_fn, params, layers), images, batch_size=batch_size
    )
    return {
        k: {
            "zero_fraction": v["zero"].mean(),
            "hoyer": v["hoyer"].mean(),
            "peak": v["peak"].max(0),
            "fire_rate": (v["peak"] > 0).mean(0),
        }
        for k, v in per_image.items()
    }


def activation_sparsity(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 64,
) -> dict[str, dict[str, Float[Array, ""] | Float[Array, " _channels"]]]:
    """How sparse each layer's activations are over a set of images.

    Args:
      apply_fn, params, images, layers, batch_size: as ``activation_maps``.

    Returns:
      {layer: {"zero_fraction": share of activations <= 0 (ReLU off),
               "hoyer": mean Hoyer sparseness of one feature map over its
                        positions (0: flat blob, 1: a single spike),
               "peak": float32[C] max over images and positions,
               "fire_rate": float32[C] share of images where the channel is
                            positive somewhere}}; scalars are float32[].

    References: Hoyer 2004 (sparseness); Glorot, Bordes & Bengio 2011 (ReLU sparsity).
    """
    images = check_images(images)
    layers = check_layers(apply_fn, params, images.shape[1:], layers)
    check_batch_size(batch_size)
    return _stats(apply_fn, params, images, layers=layers, batch_size=int(batch_size))


def stack_params(snapshots: Sequence[tuple[int, Any]]) -> tuple[Int[np.ndarray, " t"], Any]:
    """(epochs int[T], params stacked along a new leading axis) from (epoch, params) pairs."""
    if not snapshots:
        raise ValueError("snapshots is empty; expected a list of (epoch, params) pairs")
    epochs = np.array([check_int("snapshot epoch", e, 0) for e, _ in snapshots])
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs), *[p for _, p in snapshots])
    return epochs, stacked


@functools.partial(jax.jit, static_argnames=("apply_fn", "layers", "batch_size"))
def _curve(apply_fn, stacked, images, *, layers, batch_size):
    return jax.lax.map(
        lambda p: _stats(apply_fn, p, images, layers=layers, batch_size=batch_size), stacked
    )


def sparsity_curve(
    apply_fn: ApplyFn,
    snapshots: Sequence[tuple[int, Any]],
    images: Image[AnyArray, "n h w c"],
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 64,
) -> tuple[Int[np.ndarray, " t"], dict[str, dict[str, Float[Array, "t ..."]]]]:
    """``activation_sparsity`` at every training snapshot, in one jitted ``lax.map`` over epochs.

    Args:
      apply_fn: as ``activation_maps``.
      snapshots: list of (epoch, params), e.g. ``zoo.load_epochs("baseline")``.
      images, layers, batch_size: as ``activation_maps``.

    Returns:
      (epochs int[T], {layer: {stat: float32[T] or float32[T, C]}}).

    References: Hoyer 2004; "Understanding Convolutional Neural Networks" ("dense blobs
    that gradually become sparse").
    """
    images = check_images(images)
    epochs, stacked = stack_params(snapshots)
    layers = check_layers(apply_fn, snapshots[0][1], images.shape[1:], layers)
    check_batch_size(batch_size)
    return epochs, _curve(apply_fn, stacked, images, layers=layers, batch_size=int(batch_size))


def dead_filters(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    *,
    layers: Sequence[str] | None = None,
    threshold: float = 0.0,
    batch_size: int = 64,
) -> DeadFilters:
    """Channels whose activation map is blank for every input of a dataset split.

    One jitted pass over the split in ``lax.map`` chunks of ``batch_size``
    images; only the per-image channel maxima ([N, C]) are kept, so memory does
    not grow with the feature-map size.

    Args:
      apply_fn, params, images, batch_size: as ``activation_maps``.
      layers: spatial layers to check (default: every spatial activation).
      threshold: a channel is dead when its maximum over every image and
        position is <= threshold (0.0: ReLU never on).

    Returns:
      DeadFilters(dead={layer: bool[C]}, peak={layer: float32[C]},
      fire_rate={layer: float32[C]}).

    References: Karpathy, cs231n (dead ReLU filters under high learning rates),
    https://cs231n.github.io/understanding-cnn/.
    """
    images = check_images(images)
    layers = check_layers(apply_fn, params, images.shape[1:], layers, spatial=True)
    check_batch_size(batch_size)
    threshold = check_number("threshold", threshold)
    stats = _stats(apply_fn, params, images, layers=layers, batch_size=int(batch_size))
    peak = {k: v["peak"] for k, v in stats.items()}
    return DeadFilters(
        {k: p <= threshold for k, p in peak.items()},
        peak,
        {k: v["fire_rate"] for k, v in stats.items()},
    )


class ActivationChange(NamedTuple):
    """How each layer moves from images to their paired images (``activation_change``).

    Attributes:
      crop: {layer: float32[N]} per pair, ||a(x) - a(y)|| / ((||a(x)|| + ||a(y)||) / 2) over
        the whole layer, in [0, 2] (0: the same activations; 0 where both are zero).
      unit: {layer: float32[C]} per channel, the mean over pairs of |m(x) - m(y)| divided by
        the mean over pairs of (|m(x)| + |m(y)|) / 2, m the channel's mean over positions,
        in [0, 2] (0 for a channel silent on every image).
    """

    crop: dict[str, jax.Array]
    unit: dict[str, jax.Array]


def _pair_stats(apply_fn, params, layers, pair):
    x, y = pair
    ax = apply_fn(params, x[None]).activations
    ay = apply_fn(params, y[None]).activations
    out = {}
    for k in layers:
        a, b = ax[k][0], ay[k][0]
        out[k] = {
            "diff": jnp.linalg.norm((a - b).ravel()),
            "size": (jnp.linalg.norm(a.ravel()) + jnp.linalg.norm(b.ravel())) / 2,
            "mx": a.reshape(-1, a.shape[-1]).mean(0),  # the channel means over positions
            "my": b.reshape(-1, b.shape[-1]).mean(0),
        }
    return out


@functools.partial(jax.jit, static_argnames=("apply_fn", "layers", "batch_size"))
def _change(apply_fn, params, images, others, *, layers, batch_size):
    per_pair = map_rows(
        functools.partial(_pair_stats, apply_fn, params, layers), (images, others),
        batch_size=batch_size,
    )  # fmt: skip
    crop, unit = {}, {}
    for k, v in per_pair.items():
        size = v["size"]
        crop[k] = jnp.where(size > 0, v["diff"] / jnp.where(size > 0, size, 1.0), 0.0)
        moved = jnp.abs(v["mx"] - v["my"]).mean(0)
        level = ((jnp.abs(v["mx"]) + jnp.abs(v["my"])) / 2).mean(0)
        unit[k] = jnp.where(level > 0, moved / jnp.where(level > 0, level, 1.0), 0.0)
    return crop, unit


def activation_change(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    others: Image[AnyArray, "n h w c"],
    *,
    layers: Sequence[str] | None = None,
    batch_size: int = 64,
) -> ActivationChange:
    """How far each layer's activations move from each image to its paired image.

    Pair a crop with its style twin (``scriptlab.twins.plain_twin``) and the change is what
    the font alone does to each layer; pair it with another crop and it is the scale of a
    change of text. Both images of a pair run in one jitted ``lax.map`` over chunks. The
    measures are relative, so layers and models of different activation scale compare.

    Args:
      apply_fn, params, layers, batch_size: as ``activation_maps``.
      images: float32[N, H, W, C] in [0, 1] (or uint8).
      others: the paired images, the same shape.

    Returns:
      ``ActivationChange`` (per pair and per channel, for every layer).

    References: Zeiler & Fergus 2014 (feature maps); Adebayo, Muelly, Abelson & Kim 2022
    (a signal's paired crop without it).
    """
    images = check_images(images)
    others = check_images(others, name="others")
    if others.shape != images.shape:
        raise ValueError(
            f"others must have the shape of images {tuple(images.shape)}, got {tuple(others.shape)}"
        )
    layers = check_layers(apply_fn, params, images.shape[1:], layers)
    check_batch_size(batch_size)
    crop, unit = _change(apply_fn, params, images, others, layers=layers,
                         batch_size=int(batch_size))  # fmt: skip
    return ActivationChange(crop=crop, unit=unit)


def feature_grid(
    maps: Real[AnyArray, "h w c"], *, columns: int = 8, pad: int = 1, normalise: str = "channel"
) -> Float[np.ndarray, "grid_h grid_w"]:
    """Tile one image's feature maps [h, w, C] into a single 2-D array for plotting.

    Args:
      maps: float32[h, w, C] activations of one image.
      columns: tiles per row.
      pad: blank pixels between tiles (NaN, shown as the background).
      normalise: "channel" (each map scaled to its own max), "layer" (shared max) or "none".

    Returns:
      float32[rows*(h+pad)-pad, columns*(w+pad)-pad] with NaN gaps.
    """
    maps = np.asarray(maps, np.float32)
    if maps.ndim != 3:
        raise ValueError(f"maps must be float32[h, w, C] (one image), got shape {maps.shape}")
    maps = np.asarray(check_array("maps", maps))
    columns, pad = check_int("columns", columns, 1), check_int("pad", pad, 0)
    if normalise not in ("channel", "layer", "none"):
        raise ValueError(f"normalise must be 'channel', 'layer' or 'none', got {normalise!r}")
    h, w, c = maps.shape
    if normalise == "channel":
        top = maps.max(axis=(0, 1), keepdims=True)
        maps = maps / np.where(top > 0, top, 1.0)
    elif normalise == "layer" and maps.max() > 0:
        maps = maps / maps.max()
    rows = -(-c // columns)
    grid = np.full((rows * (h + pad) - pad, columns * (w + pad) - pad), np.nan, np.float32)
    for k in range(c):  # tiling for display only: C tiles, not a compute loop
        r, q = divmod(k, columns)
        grid[r * (h + pad) : r * (h + pad) + h, q * (w + pad) : q * (w + pad) + w] = maps[..., k]
    return grid
