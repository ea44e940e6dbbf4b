"""Occlusion sensitivity: slide a grey (or mean, or blurred) patch over the image.

"Blocking a region of an image and running it through a CNN will output scores
when part of the image is occluded ... A plot of these class scores as a
function of position of occlusion produces an inverse heat map" (the seed
essay, after Zeiler & Fergus 2014).

Every (image, window) pair is scored in ONE jitted call: the pairs are
flattened and fed through ``lax.map(batch_size=...)``, which vmaps
``batch_size`` occluded copies at a time, so memory is bounded by the chunk
and not by the number of windows (the thing PAIR saliency does with one
forward per window, and Captum with ``perturbations_per_eval``).

``apply_fn`` is a ``scriptlab.protocols.ApplyFn``; occlusion reads its
``head`` logits or, for a layer target, ``out.activations[layer]``.

References: Zeiler & Fergus 2014, Visualizing and Understanding Convolutional Networks
(occlusion sensitivity), https://arxiv.org/abs/1311.2901; Zhang et al. 2016 (pointing
game), https://arxiv.org/abs/1608.00507.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Real

from scriptlab.interpret._common import (
    check_batch_size,
    check_choice,
    check_images,
    check_int,
    check_number,
    check_targets,
    gaussian_blur,
    layer_shapes,
    map_rows,
    probe_outputs,
)
from scriptlab.protocols import AnyArray, ApplyFn, Image, Targets

FILLS = ("grey", "mean", "blur")
OUTPUTS = ("probability", "logit")


class Occlusion(NamedTuple):
    """Result of ``occlusion``: scores per window position, the clean score and a per-pixel heat map.

    Attributes:
      scores: float32[N, nh, nw], the target score with the window at
        (rows[a], cols[b]) occluded.
      base: float32[N], the target score of the unoccluded image.
      heatmap: float32[N, H, W], the mean drop (base - score) over the windows
        covering each pixel.
      rows: int32[nh], the top row of each window.
      cols: int32[nw], the left column of each window.
    """

    scores: jax.Array
    base: jax.Array
    heatmap: jax.Array
    rows: jax.Array
    cols: jax.Array


def _pair(value, name: str) -> tuple[int, int]:
    v = (value, value) if np.ndim(value) == 0 else tuple(np.ravel(value))
    if len(v) != 2:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return check_int(name, v[0]), check_int(name, v[1])


def fill_images(
    images: Float[Array, "n h w c"], fill: str, *, sigma: float
) -> Float[Array, "n h w c"]:
    """What an occluded window shows: float32[N, H, W, C] (grey 0.5, the image's mean colour, or its blur)."""
    if fill == "grey":
        return jnp.full_like(images, 0.5)
    if fill == "mean":
        return jnp.broadcast_to(images.mean(axis=(1, 2), keepdims=True), images.shape)
    return gaussian_blur(images, sigma)


def _score_fn(apply_fn, params, *, head, output, layer, unit):
    def score(x, target):
        out = apply_fn(params, x[None])
        if layer is None:
            logits = getattr(out, head)[0]
            return jax.nn.softmax(logits)[target] if output == "probability" else logits[target]
        a = out.activations[layer][0]
        if a.ndim == 1:
            return a[target]
        if unit is None:
            return a[..., target].max()
        return a[unit[0], unit[1], target]

    return score


@functools.partial(
    jax.jit,
    static_argnames=(
        "apply_fn",
        "patch",
        "stride",
        "fill",
        "sigma",
        "head",
        "output",
        "layer",
        "unit",
        "batch_size",
    ),
)
def _occlusion(
    apply_fn,
    params,
    images,
    targets,
    *,
    patch,
    stride,
    fill,
    sigma,
    head,
    output,
    layer,
    unit,
    batch_size,
):
    n, h, w, _ = images.shape
    (ph, pw), (sh, sw) = patch, stride
    rows = jnp.arange(0, h - ph + 1, sh, dtype=jnp.int32)
    cols = jnp.arange(0, w - pw + 1, sw, dtype=jnp.int32)
    fills = fill_images(images, fill, sigma=sigma)
    score = _score_fn(apply_fn, params, head=head, output=output, layer=layer, unit=unit)
    base = map_rows(lambda job: score(*job), (images, targets), batch_size=batch_size)

    # window membership per axis: row_in[r, i] is True when pixel row i lies in window r
    row_in = (jnp.arange(h)[None, :] >= rows[:, None]) & (
        jnp.arange(h)[None, :] < rows[:, None] + ph
    )
    col_in = (jnp.arange(w)[None, :] >= cols[:, None]) & (
        jnp.arange(w)[None, :] < cols[:, None] + pw
    )
    img_i, row_i, col_i = (
        a.ravel()
        for a in jnp.meshgrid(
            jnp.arange(n), jnp.arange(rows.size), jnp.arange(cols.size), indexing="ij"
        )
    )

    def one(job):
        i, r, c = job
        inside = row_in[r][:, None, None] & col_in[c][None, :, None]
        return score(jnp.where(inside, fills[i], images[i]), targets[i])

    scores = map_rows(one, (img_i, row_i, col_i), batch_size=batch_size).reshape(
        n, rows.size, cols.size
    )
    drop = base[:, None, None] - scores
    r_in, c_in = row_in.astype(jnp.float32), col_in.astype(jnp.float32)
    total = jnp.einsum("nrc,ri,cj->nij", drop, r_in, c_in)
    count = jnp.einsum("ri,cj->ij", r_in, c_in)
    heat = jnp.where(count > 0, total / jnp.maximum(count, 1.0), 0.0)
    return Occlusion(scores, base, heat, rows, cols)


def occlusion(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    *,
    patch: int | tuple[int, int] = 8,
    stride: int | tuple[int, int] = 2,
    fill: str = "grey",
    sigma: float | None = None,
    head: str = "script",
    output: str = "probability",
    layer: str | None = None,
    unit: tuple[int, int] | None = None,
    batch_size: int = 64,
) -> Occlusion:
    """Occlusion sensitivity map of a class score (or a layer unit) for a batch of images.

    Windows of ``patch`` pixels start at rows ``0, s, 2s, ... <= H - ph`` (and
    likewise columns); each window is replaced by ``fill`` and the target score
    recomputed. All N x nh x nw occluded copies are scored in one jitted
    ``lax.map`` over vmapped chunks of ``batch_size``.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn`` (see the module docstring).
      params: model parameters.
      images: float32[N, H, W, C] in [0, 1].
      targets: int[N] (or one int): class ids of ``head``, or channel ids when ``layer`` is set.
      patch: window size, int or (ph, pw), 1 <= ph <= H, 1 <= pw <= W.
      stride: window step, int or (sh, sw) >= 1.
      fill: "grey" (0.5), "mean" (the image's mean colour) or "blur" (a
        Gaussian blur of the image, ``sigma`` default patch / 4).
      head: output field holding the class logits ("script" or "font").
      output: "probability" (softmax of the target) or "logit".
      layer: score a unit of this activation instead of a class.
      unit: (row, col) of the unit in ``layer``; None: the channel's max over positions.
      batch_size: occluded copies per vmapped chunk (bounds memory).

    Returns:
      Occlusion(scores [N, nh, nw], base [N], heatmap [N, H, W], rows [nh], cols [nw]).
      ``scores`` is Zeiler & Fergus's inverse heat map; ``heatmap`` is the mean
      drop ``base - score`` over the windows covering each pixel (positive:
      hiding the pixel lowers the score).

    References: Zeiler & Fergus 2014, https://arxiv.org/abs/1311.2901.
    """
    images = check_images(images)
    n, h, w, _ = images.shape
    ph, pw = _pair(patch, "patch")
    sh, sw = _pair(stride, "stride")
    if not (1 <= ph <= h and 1 <= pw <= w):
        raise ValueError(
            f"patch must fit in the image: 1 <= patch <= (H, W) = {(h, w)}, got {(ph, pw)}"
        )
    if sh < 1 or sw < 1:
        raise ValueError(f"stride must be >= 1, got {(sh, sw)}")
    check_choice("fill", fill, FILLS)
    check_choice("output", output, OUTPUTS)
    sigma = check_number(
        "sigma", max(ph, pw) / 4 if sigma is None else sigma, low=0.0, open_low=True
    )
    check_batch_size(batch_size)
    if layer is None:
        n_targets = getattr(probe_outputs(apply_fn, params, images, head), head).shape[-1]
    else:
        shapes = layer_shapes(apply_fn, params, (h, w, images.shape[-1]))
        if layer not in shapes:
            raise ValueError(f"unknown layer {layer!r}; allowed: {', '.join(shapes)}")
        n_targets = shapes[layer][-1]
        if unit is not None:
            unit = _pair(unit, "unit")
            if len(shapes[layer]) != 3 or not (
                0 <= unit[0] < shapes[layer][0] and 0 <= unit[1] < shapes[layer][1]
            ):
                raise ValueError(
                    f"unit must be a (row, col) inside {layer!r} of shape {shapes[layer]}, got {unit}"
                )
    targets = check_targets(targets, n, n_targets)
    return _occlusion(
        apply_fn,
        params,
        images,
        targets,
        patch=(ph, pw),
        stride=(sh, sw),
        fill=fill,
        sigma=sigma,
        head=head,
        output=output,
        layer=layer,
        unit=unit,
        batch_size=int(batch_size),
    )


def occlusion_localisation(
    heatmaps: Real[AnyArray, "n h w"], masks: Bool[AnyArray, "n h w"], *, tolerance: int = 1
) -> dict[str, Float[Array, " n"]]:
    """Ink-mask localisation scores of occlusion heat maps, comparable with the saliency family's.

    Only the positive part of the heat map counts (pixels whose occlusion
    lowers the score); the scores themselves are ``localisation.localisation_scores``.

    Args:
      heatmaps: float32[N, H, W] (``Occlusion.heatmap``).
      masks: bool[N, H, W] ground-truth ink.
      tolerance: pointing-game tolerance in pixels.

    Returns:
      dict of float32[N]: ink_mass, ink_fraction (chance), pointing, pointing_chance.

    References: Zhang et al. 2016 (pointing game), https://arxiv.org/abs/1608.00507.
    """
    from scriptlab.interpret.localisation import localisation_scores

    return localisation_scores(
        jnp.maximum(jnp.asarray(heatmaps, jnp.float32), 0.0), masks, tolerance=tolerance
    )
