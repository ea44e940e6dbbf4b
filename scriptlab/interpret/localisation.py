"""Score saliency maps against ground-truth ink masks.

Our crops are rendered, so we know exactly which pixels are glyph ink
(``ds.test.masks``). A map that explains a script decision should put its mass
on the ink; the share of ink pixels is what a map that ignores the image gets
by chance. Two scores, both per image and then averaged:

- ink mass: the share of |map| on ink pixels (chance: the ink fraction);
- pointing game (Zhang et al. 2016): is the map's argmax on ink, or within
  ``tolerance`` pixels of it (chance: the share of pixels that count as a hit).

References: Zhang et al. 2016, Top-down Neural Attention by Excitation Backprop (the
pointing game), https://arxiv.org/abs/1608.00507; Simonyan et al. 2013 (saliency as weak
localisation), https://arxiv.org/abs/1312.6034.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Real

from scriptlab.interpret._common import check_array, check_int, check_method_options
from scriptlab.interpret.saliency import METHODS, saliency
from scriptlab.protocols import AnyArray, ApplyFn, Image, Targets


def _check_maps_masks(maps, masks) -> tuple[jax.Array, jax.Array]:
    maps, masks = jnp.asarray(maps, jnp.float32), jnp.asarray(masks)
    if maps.ndim != 3:
        raise ValueError(f"maps must be float32[N, H, W], got shape {maps.shape}")
    if masks.shape != maps.shape:
        raise ValueError(f"masks must be bool{list(maps.shape)} like maps, got shape {masks.shape}")
    return check_array("maps", maps), masks.astype(bool)


def dilate(masks: Bool[AnyArray, "n h w"], radius: int) -> Bool[AnyArray, "n h w"]:
    """Grow bool[N, H, W] masks by ``radius`` pixels (square neighbourhood)."""
    radius = check_int("radius", radius, 0)
    if radius == 0:
        return masks
    size = 2 * radius + 1
    grown = jax.lax.reduce_window(
        masks.astype(jnp.float32), 0.0, jax.lax.max, (1, size, size), (1, 1, 1), "SAME"
    )
    return grown > 0


@functools.partial(jax.jit, static_argnames=("tolerance",))
def _scores(maps, masks, *, tolerance):
    mag = jnp.abs(maps)
    flat = mag.reshape(mag.shape[0], -1)
    ink = masks.reshape(masks.shape[0], -1)
    hit_zone = dilate(masks, tolerance).reshape(masks.shape[0], -1)
    total = flat.sum(-1)
    # a map that is all zeros carries no information: it counts as chance
    ink_fraction = ink.mean(-1)
    ink_mass = jnp.where(
        total > 0, (flat * ink).sum(-1) / jnp.where(total > 0, total, 1.0), ink_fraction
    )
    peak = flat.argmax(-1)
    hit = jnp.take_along_axis(hit_zone, peak[:, None], 1)[:, 0] & (total > 0)
    return {
        "ink_mass": ink_mass,
        "ink_fraction": ink_fraction,
        "pointing": hit.astype(jnp.float32),
        "pointing_chance": hit_zone.mean(-1),
    }


def localisation_scores(
    maps: Real[AnyArray, "n h w"], masks: Bool[AnyArray, "n h w"], *, tolerance: int = 0
) -> dict[str, Float[Array, " n"]]:
    """Per-image localisation scores of saliency maps against ink masks.

    Args:
      maps: float32[N, H, W] saliency maps (the sign is ignored).
      masks: bool[N, H, W] ground-truth ink.
      tolerance: pointing-game tolerance in pixels (0: the argmax must be ink).

    Returns:
      dict of float32[N]: "ink_mass", "ink_fraction" (its chance level),
      "pointing" (1.0 for a hit) and "pointing_chance".

    References: Zhang et al. 2016 (pointing game), https://arxiv.org/abs/1608.00507.
    """
    if int(tolerance) != tolerance or tolerance < 0:
        raise ValueError(f"tolerance must be an integer >= 0, got {tolerance!r}")
    maps, masks = _check_maps_masks(maps, masks)
    return _scores(maps, masks, tolerance=int(tolerance))


def localisation_table(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    masks: Bool[AnyArray, "n h w"],
    targets: Targets,
    *,
    methods: tuple[str, ...] = METHODS,
    tolerance: int = 1,
    options: dict[str, dict] | None = None,
    model: str = "",
) -> list[dict]:
    """Score every saliency method by how much of its mass falls on ink.

    Args:
      apply_fn, params, images, targets: as ``saliency.saliency``.
      masks: bool[N, H, W] ink masks of ``images``.
      methods: method names from ``saliency.METHODS``.
      tolerance: pointing-game tolerance in pixels.
      options: per-method keyword options, e.g. ``{"smoothgrad": {"n_samples": 16}}``.
      model: a label copied into every row.

    Returns:
      One dict per method, means over images: model, method, ink_mass, chance
      (the ink fraction), lift (ink_mass / chance), pointing, pointing_chance.
    """
    options = check_method_options(options, METHODS)
    maps = {  # a handful of methods, each one batched call over all images
        method: saliency(
            apply_fn, params, images, targets, method=method, **options.get(method, {})
        )
        for method in methods
    }
    return localisation_rows(maps, masks, tolerance=tolerance, model=model)


def localisation_rows(
    maps: Mapping[str, Real[AnyArray, "n h w"]],
    masks: Bool[AnyArray, "n h w"],
    *,
    tolerance: int = 1,
    model: str = "",
) -> list[dict]:
    """``localisation_table`` for maps already computed: one row of mean scores per method.

    Args:
      maps: {method name: float32[N, H, W] saliency maps}, in the order the rows should follow.
      masks: bool[N, H, W] ink masks of the images the maps explain.
      tolerance: pointing-game tolerance in pixels.
      model: a label copied into every row.

    Returns:
      One dict per method, as ``localisation_table``.
    """
    if not isinstance(maps, dict) or not maps:
        raise ValueError(
            f"maps must be a non-empty dict {{method name: float32[N, H, W]}}, got {type(maps).__name__}"
        )
    rows = []
    for method, m in maps.items():
        s = {
            k: float(v.mean())
            for k, v in localisation_scores(m, masks, tolerance=tolerance).items()
        }
        rows.append(
            {
                "model": model,
                "method": method,
                "ink_mass": s["ink_mass"],
                "chance": s["ink_fraction"],
                "lift": s["ink_mass"] / s["ink_fraction"],
                "pointing": s["pointing"],
                "pointing_chance": s["pointing_chance"],
            }
        )
    return rows
