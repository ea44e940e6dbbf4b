"""Receptive fields (analytic and empirical) and top-activating dataset patches.

Analytic geometry follows the standard recurrence over a stack of
(kernel k, stride s, left padding p) layers, per axis, starting from the input
(size 1, jump 1, first pixel 0)::

    size_out  = size_in + (k - 1) * jump_in
    jump_out  = jump_in * s
    left_out  = left_in - p * jump_in      # input row of unit 0's first RF pixel

so unit ``i`` of a layer sees input rows ``[left + i * jump, left + i * jump + size)``
(clipped to the image; ``left`` is negative where SAME padding reaches outside).
SAME padding is XLA's: total ``max((ceil(n / s) - 1) * s + k - n, 0)``, the
smaller half on the left, so it depends on the input size of each layer.

``ScriptNet`` standardises each image by its own mean and standard deviation
before conv1, which makes every unit depend (weakly) on every pixel. The
receptive field that matters for "what in the image drives this unit" is the
conv/pool stack's, so the empirical check differentiates the stack
(``trunk_fn``) rather than the full ``apply_fn``.

References: Zeiler & Fergus 2014 (top-activating patches),
https://arxiv.org/abs/1311.2901; Araujo, Norris & Sim 2019, "Computing Receptive Fields
of Convolutional Neural Networks" (Distill),
https://distill.pub/2019/computing-receptive-fields; Luo et al. 2016 (effective
receptive field), https://arxiv.org/abs/1701.04128.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from scriptlab.interpret._common import (
    check_batch_size,
    check_images,
    check_indices,
    check_int,
    check_layers,
    check_number,
    map_rows,
)
from scriptlab.protocols import ApplyFn
from scriptlab.validation import check_bool


class ReceptiveField(NamedTuple):
    """Receptive-field geometry of one layer, per axis (rows, cols), in input pixels.

    Attributes:
      name: the layer's key in the model's activations.
      size: the receptive-field extent of one unit.
      jump: input pixels between neighbouring units (the cumulative stride).
      left: input row/col of unit 0's first receptive-field pixel (< 0: padding).
      start: input row/col of unit 0's receptive-field centre.
      shape: the layer's spatial output shape (h, w).
    """

    name: str
    size: tuple[int, int]
    jump: tuple[int, int]
    left: tuple[int, int]
    start: tuple[float, float]
    shape: tuple[int, int]


class TopPatches(NamedTuple):
    """Result of ``top_activating``: for each channel, the k images that drive it hardest.

    Attributes:
      index: int32[C, k], image indices, strongest first.
      value: float32[C, k], the channel's max activation in that image.
      row: int32[C, k], the row of that max in the layer's grid.
      col: int32[C, k], its column.
    """

    index: jax.Array
    value: jax.Array
    row: jax.Array
    col: jax.Array


def _same_pad(n: int, k: int, s: int) -> tuple[int, int]:
    out = -(-n // s)
    total = max((out - 1) * s + k - n, 0)
    return total // 2, out


def receptive_fields(geometry, image_hw: Sequence[int]) -> dict[str, ReceptiveField]:
    """Analytic receptive field of every layer of a conv/pool trunk.

    Args:
      geometry: sequence of objects with ``name, kernel, stride, padding``
        ("SAME" or "VALID"), e.g. ``ScriptNet.geometry()``.
      image_hw: (H, W) of the input.

    Returns:
      {layer name: ReceptiveField}, in order.

    References: Araujo, Norris & Sim 2019 (Distill),
    https://distill.pub/2019/computing-receptive-fields.
    """
    if len(image_hw) != 2:
        raise ValueError(f"image_hw must be (H, W) with H, W >= 1, got {tuple(image_hw)}")
    image_hw = tuple(check_int("image_hw", v, 1) for v in image_hw)
    size, jump, left, n = [1, 1], [1, 1], [0, 0], list(image_hw)
    out = {}
    for g in geometry:
        k, s, padding = int(g.kernel), int(g.stride), str(g.padding).upper()
        if k < 1 or s < 1:
            raise ValueError(f"layer {g.name!r}: kernel and stride must be >= 1, got {k}, {s}")
        for a in range(2):
            if padding == "SAME":
                p, n_out = _same_pad(n[a], k, s)
            elif padding == "VALID":
                p, n_out = 0, (n[a] - k) // s + 1
            else:
                raise ValueError(
                    f"layer {g.name!r}: padding must be 'SAME' or 'VALID', got {g.padding!r}"
                )
            size[a] += (k - 1) * jump[a]
            left[a] -= p * jump[a]
            jump[a] *= s
            n[a] = n_out
        out[g.name] = ReceptiveField(
            g.name,
            tuple(size),
            tuple(jump),
            tuple(left),
            tuple(left[a] + (size[a] - 1) / 2 for a in range(2)),
            tuple(n),
        )
    return out


def receptive_box(rf: ReceptiveField, row, col, image_hw: Sequence[int] | None = None):
    """Input box (top, left, bottom, right), bottom/right exclusive, of unit(s) (row, col).

    Works on ints or integer arrays (broadcast). With ``image_hw`` the box is clipped to the image.
    """
    row = check_indices("row", row, rf.shape[0], what=f"rows of {rf.name}")
    col = check_indices("col", col, rf.shape[1], what=f"columns of {rf.name}")
    top = rf.left[0] + row * rf.jump[0]
    lft = rf.left[1] + col * rf.jump[1]
    bottom, right = top + rf.size[0], lft + rf.size[1]
    if image_hw is not None:
        h, w = image_hw
        top, lft = np.clip(top, 0, h), np.clip(lft, 0, w)
        bottom, right = np.clip(bottom, 0, h), np.clip(right, 0, w)
    return top, lft, bottom, right


def trunk_fn(model, params=None, *, linear: bool = True):
    """The activations a receptive field describes, as ``f(images) -> {layer: activation}``.

    Two kinds of model:

    - ``trunk_fn(model)``: a model that describes its own conv/pool stack,
      ``model.trunk(images, linear=...)`` (``ScriptNet`` builds it from its layer table,
      leaving out the per-image standardisation; see the module docstring);
    - ``trunk_fn(apply_fn, params)``: any ``scriptlab.protocols.ApplyFn``; ``f`` returns
      ``apply_fn(params, images).activations``, with ``relu=`` the identity when ``linear``.

    With ``linear=True`` the ReLUs are identities (and ScriptNet's max pools sum their
    windows), so the gradient of a unit is nonzero on its whole receptive field rather than
    on the pixels one particular image happens to route through (same geometry, dense
    support). A model whose ``apply_fn`` takes no ``relu=`` (no ReLU to undo) needs
    ``linear=False``.

    Returns:
      ``f(float32[N, H, W, C]) -> {name: float32[N, h, w, c]}``, for
      ``empirical_receptive_field``.
    """
    check_bool("linear", linear)
    if params is None:
        if not callable(getattr(model, "trunk", None)):
            raise ValueError(
                f"model must have a trunk(images, linear=) method (ScriptNet), got "
                f"{type(model).__name__}; for any other model pass (apply_fn, params)"
            )
        return functools.partial(model.trunk, linear=linear)
    options = {"relu": _identity} if linear else {}

    def f(images):
        return dict(model(params, images, **options).activations)

    return f


def _identity(x):
    return x


def empirical_receptive_field(
    feature_fn,
    image_shape: Sequence[int],
    layer: str,
    rows,
    cols,
    *,
    channel: int = 0,
    seed: int = 0,
) -> np.ndarray:
    """Input pixels where a unit's gradient is nonzero, for several units at once.

    One forward pass and one vmapped VJP (one cotangent per unit), jitted.

    Args:
      feature_fn: ``f(float32[1, H, W, C]) -> {layer: float32[1, h, w, c]}``,
        e.g. ``trunk_fn(model)``.
      image_shape: (H, W, C) of the input.
      layer: which activation.
      rows, cols: int or int[U]: the units' positions in the layer.
      channel: the units' channel.
      seed: the random input the gradient is taken at.

    Returns:
      bool[U, H, W] (bool[H, W] for scalar rows, cols): True where
      d unit / d pixel != 0 in any input channel.
    """
    scalar = np.ndim(rows) == 0
    shapes = jax.eval_shape(feature_fn, jax.ShapeDtypeStruct((1, *image_shape), jnp.float32))
    if layer not in shapes:
        raise ValueError(f"unknown layer {layer!r}; allowed: {', '.join(shapes)}")
    _, h, w, c = shapes[layer].shape
    rows = check_indices("rows", rows, h, what=f"rows of {layer}")
    cols = check_indices("cols", cols, w, what=f"columns of {layer}")
    if rows.shape != cols.shape:
        raise ValueError(f"rows and cols must have one shape, got {rows.shape} and {cols.shape}")
    channel = check_int("channel", channel, 0, c)
    rows, cols = jnp.atleast_1d(jnp.asarray(rows)), jnp.atleast_1d(jnp.asarray(cols))
    x = jax.random.uniform(jax.random.key(seed), (1, *image_shape))

    @jax.jit
    def support(x, rows, cols):
        act, vjp = jax.vjp(lambda im: feature_fn(im)[layer], x)

        def one(r, c):
            return vjp(jnp.zeros_like(act).at[0, r, c, channel].set(1.0))[0][0]

        return jnp.any(jax.vmap(one)(rows, cols) != 0, axis=-1)

    mask = np.asarray(support(x, rows, cols))
    return mask[0] if scalar else mask


def support_box(mask: np.ndarray) -> tuple[int, int, int, int]:
    """(top, left, bottom, right) bounding box of a bool[H, W] mask (bottom/right exclusive)."""
    if np.ndim(mask) != 2:
        raise ValueError(f"mask must be bool[H, W], got shape {np.shape(mask)}")
    rows, cols = np.nonzero(mask)
    if rows.size == 0:
        return (0, 0, 0, 0)
    return int(rows.min()), int(cols.min()), int(rows.max()) + 1, int(cols.max()) + 1


# --------------------------------------------------------------------------- top-activating patches
@functools.partial(jax.jit, static_argnames=("apply_fn", "layer", "k", "batch_size"))
def _top(apply_fn, params, images, *, layer, k, batch_size):
    def one(x):
        a = apply_fn(params, x[None]).activations[layer][0]  # [h, w, C]
        flat = a.reshape(-1, a.shape[-1])
        return flat.max(0), flat.argmax(0).astype(jnp.int32)

    peak, where = map_rows(one, images, batch_size=batch_size)  # [N, C], [N, C]
    value, index = jax.lax.top_k(peak.T, k)  # [C, k]
    pos = jnp.take_along_axis(where.T, index, axis=1)
    w = apply_fn(params, images[:1]).activations[layer].shape[2]
    return value, index.astype(jnp.int32), pos // w, pos % w


def top_activating(
    apply_fn: ApplyFn, params, images, layer: str, *, k: int = 8, batch_size: int = 64
) -> TopPatches:
    """For every channel of a layer, the k images that activate it most, and where.

    One jitted pass: ``lax.map`` over image chunks keeps each image's per-channel
    maximum and its position ([N, C] each), then ``lax.top_k`` over images. An
    image appears at most once per channel (its strongest position).

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn`` (``out.activations[layer]`` is read).
      params: model parameters.
      images: float32[N, H, W, C] in [0, 1].
      layer: a spatial layer name, e.g. "conv3".
      k: images per channel (1 <= k <= N).
      batch_size: images per vmapped chunk.

    Returns:
      TopPatches(index, value, row, col), each [C, k], strongest first.

    References: Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901; Girshick et al.
    2014 (top-activating regions), https://arxiv.org/abs/1311.2524.
    """
    images = check_images(images)
    (layer,) = check_layers(apply_fn, params, images.shape[1:], layer, spatial=True)
    k = check_int("k", k, 1, images.shape[0] + 1)  # at most the number of images
    check_batch_size(batch_size)
    value, index, row, col = _top(
        apply_fn, params, images, layer=layer, k=int(k), batch_size=int(batch_size)
    )
    return TopPatches(index, value, row, col)


@functools.partial(jax.jit, static_argnames=("size",))
def _crops(images, index, top, left, *, size, fill):
    sh, sw = size
    padded = jnp.pad(images, ((0, 0), (sh, sh), (sw, sw), (0, 0)), constant_values=fill)

    def one(i, t, l):
        return jax.lax.dynamic_slice(padded[i], (t + sh, l + sw, 0), (sh, sw, images.shape[-1]))

    return jax.vmap(jax.vmap(one))(index, top, left)


def receptive_crops(images, rf: ReceptiveField, index, row, col, *, fill: float = 1.0) -> jax.Array:
    """Crop each unit's receptive field out of its image (outside the image: ``fill``).

    Args:
      images: float32[N, H, W, C].
      rf: the layer's ``ReceptiveField``.
      index, row, col: int[...] image indices and unit positions (e.g. a ``TopPatches``'s).
      fill: value shown where the field hangs over the image border (padding).

    Returns:
      float32[..., size_h, size_w, C], one crop per unit, vmapped.
    """
    images = check_images(images)
    index = check_indices("index", index, images.shape[0], what="images")
    row = check_indices("row", row, rf.shape[0], what=f"rows of {rf.name}")
    col = check_indices("col", col, rf.shape[1], what=f"columns of {rf.name}")
    if not index.shape == row.shape == col.shape:
        raise ValueError(
            f"index, row and col must have one shape, got {index.shape}, {row.shape}, {col.shape}"
        )
    fill = check_number("fill", fill)
    index, row, col = (jnp.asarray(a, jnp.int32) for a in (index, row, col))
    top = rf.left[0] + row * rf.jump[0]
    left = rf.left[1] + col * rf.jump[1]
    shape = index.shape
    flat = _crops(
        images,
        index.reshape(1, -1),
        top.reshape(1, -1),
        left.reshape(1, -1),
        size=tuple(rf.size),
        fill=jnp.float32(fill),
    )
    return flat.reshape(*shape, *flat.shape[2:])


def label_purity(labels, index, n_classes: int) -> np.ndarray:
    """Share of each channel's top-k images that carry its most common label.

    Args:
      labels: int[N] labels of the images (script or style).
      index: int[C, k] image indices (``TopPatches.index``).
      n_classes: number of label values.

    Returns:
      float32[C] in [1/min(k, n_classes), 1]: 1.0 means all k share one label.
    """
    n_classes = check_int("n_classes", n_classes, 1)
    labels = check_indices("labels", labels, n_classes, what="classes")
    index = check_indices("index", index, len(labels), what="labels")
    if index.ndim != 2:
        raise ValueError(f"index must be int[C, k] (TopPatches.index), got shape {index.shape}")
    lab = labels[index]  # [C, k]
    counts = (lab[..., None] == np.arange(n_classes)).sum(1)  # [C, n_classes]
    return (counts.max(-1) / lab.shape[1]).astype(np.float32)


def purity_chance(labels, k: int, n_classes: int, *, draws: int = 2000, seed: int = 0) -> float:
    """Mean ``label_purity`` of k images drawn at random without replacement (the chance level)."""
    n = len(labels)
    k = check_int("k", k, 1, n + 1)  # at most the number of labels
    draws = check_int("draws", draws, 1)
    rng = np.random.default_rng(seed)
    index = np.argsort(rng.random((draws, n)), axis=1)[:, :k]
    return float(label_purity(labels, index, n_classes).mean())


class UnitShares(NamedTuple):
    """The channels each query image drives hardest, and what their top images share with it.

    Attributes:
      units: int32[Q, U] per query, the U channels it drives hardest (relative to each
        channel's strongest image), best first.
      share: float32[Q, A] share of those channels' top images (U x k together) whose label
        column a equals the query's.
      base_rate: float32[Q, A] the same share over all N images searched (k images at random).
    """

    units: np.ndarray
    share: np.ndarray
    base_rate: np.ndarray


def unit_shares(peaks, top: TopPatches, query_keys, point_keys, *, units: int = 1) -> UnitShares:
    """Which channels a query image drives hardest, and the labels of their top-k images.

    A channel's drive by query q is ``peaks[q, c] / top.value[c, 0]``: the query's peak
    activation as a fraction of the channel's strongest image among the N searched (a
    channel whose strongest image does not activate it, a dead one, is never picked).
    Ties go to the lower channel. Pass label columns (style, script): a query whose
    hardest-driven channels have top images in its style, not its script, is read by
    style units.

    Args:
      peaks: float[Q, C] each query's peak activation per channel of ``top``'s layer
        (``activations[layer].max((1, 2))``).
      top: ``top_activating`` over the N images searched.
      query_keys: int[Q] or int[Q, A] labels of each query.
      point_keys: int[N] or int[N, A] the same label columns of the N images.
      units: channels per query, 1 <= units <= C.

    Returns:
      A ``UnitShares``.

    References: Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901; Adebayo, Muelly,
    Abelson & Kim 2022 (explanations judged by a planted signal), https://arxiv.org/abs/2212.04629.
    """
    value = np.asarray(top.value, np.float32)
    index = np.asarray(top.index)
    c, _ = value.shape
    p = np.asarray(peaks, np.float32)
    if p.ndim != 2 or p.shape[1] != c:
        raise ValueError(f"peaks must be float[Q, {c}] (one column per channel), got {p.shape}")
    qk, pk = np.asarray(query_keys), np.asarray(point_keys)
    qk = qk[:, None] if qk.ndim == 1 else qk
    pk = pk[:, None] if pk.ndim == 1 else pk
    if qk.ndim != 2 or qk.shape[0] != len(p) or not np.issubdtype(qk.dtype, np.integer):
        raise ValueError(
            f"query_keys must be int[{len(p)}] or int[{len(p)}, A] labels, got "
            f"{qk.dtype}{list(qk.shape)}"
        )
    if pk.ndim != 2 or pk.shape[1] != qk.shape[1] or not np.issubdtype(pk.dtype, np.integer):
        raise ValueError(
            f"point_keys must be int[N, {qk.shape[1]}] labels like query_keys, got "
            f"{pk.dtype}{list(pk.shape)}"
        )
    check_indices("top.index", index, len(pk), what="point_keys rows")
    units = check_int("units", units, 1, c + 1)
    live = value[:, 0] > 0
    drive = np.where(live, p / np.where(live, value[:, 0], 1.0), -np.inf)
    chosen = np.argsort(-drive, axis=1, kind="stable")[:, :units]  # [Q, U]
    images = index[chosen].reshape(len(p), -1)  # [Q, U * k]
    share = (pk[images] == qk[:, None, :]).mean(1)
    base = (pk[None] == qk[:, None, :]).mean(1)
    return UnitShares(chosen.astype(np.int32), share.astype(np.float32), base.astype(np.float32))
