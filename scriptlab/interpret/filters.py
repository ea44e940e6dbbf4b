"""Convolution filters as images, and how noisy they are.

The essay "Understanding Convolutional Neural Networks": "Visualization of
convolution filters can give insights on how well the model is trained ... Noisy
filters usually mean that the network isn't trained long enough, or is
overfitting". ``filter_noisiness`` turns "noisy" into a number that can be
compared across checkpoints: the roughness of each
kh x kw kernel slice relative to its own magnitude, scaled so that i.i.d.
white noise (a freshly initialised layer) scores about 1 and a constant
kernel scores 0.

Kernels are read from a params pytree as ``params[layer]["kernel"]``
(flax NNX / Linen layout: float32[kh, kw, c_in, c_out]).

References: Krizhevsky, Sutskever & Hinton 2012 (first-layer filters as images); Zeiler
& Fergus 2014, https://arxiv.org/abs/1311.2901; Rudin, Osher & Fatemi 1992 (total
variation).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from scriptlab.interpret._common import check_array, check_int

MEASURES = ("tv", "hf")


def _conv_paths(tree, prefix: str = "") -> list[str]:
    """Dotted paths of every sub-dict holding a 4-D "kernel", in the tree's order."""
    if not isinstance(tree, dict):
        return []
    here = [prefix[:-1]] if getattr(tree.get("kernel"), "ndim", 0) == 4 else []
    return here + [p for k, v in tree.items() for p in _conv_paths(v, f"{prefix}{k}.")]


def conv_kernel(params, layer: str) -> jax.Array:
    """float32[kh, kw, c_in, c_out] kernel of a conv layer from a params pytree.

    Args:
      params: the model parameters (an nnx.State or nested dicts).
      layer: the layer's attribute name, or a dotted path to a nested one
        ("block1.conv_a"; list items by index, "blocks.0.conv").
    """
    tree = params.to_pure_dict() if hasattr(params, "to_pure_dict") else params
    node = tree
    for key in str(layer).split("."):
        node = node.get(key, node.get(int(key)) if key.isdigit() else None)
        if not isinstance(node, dict):
            break
    if not isinstance(node, dict) or "kernel" not in node:
        raise ValueError(
            f"layer must name a conv layer with a 4-D kernel; got {layer!r}, "
            f"allowed: {', '.join(_conv_paths(tree))}"
        )
    kernel = jnp.asarray(node["kernel"])
    if kernel.ndim != 4:
        raise ValueError(
            f"layer {layer!r} has a {kernel.ndim}-D kernel; expected [kh, kw, c_in, c_out]"
        )
    return kernel


def _check_kernel(kernel) -> jax.Array:
    kernel = jnp.asarray(kernel, jnp.float32)
    if kernel.ndim != 4:
        raise ValueError(f"kernel must be float32[kh, kw, c_in, c_out], got shape {kernel.shape}")
    return check_array("kernel", kernel)


def filter_images(kernel, *, mode: str = "rgb") -> np.ndarray:
    """First-layer filters as displayable images in [0, 1].

    Args:
      kernel: float32[kh, kw, 3 or 1, c_out] (``mode="rgb"``) or any [kh, kw, c_in, c_out].
      mode: "rgb": one colour image per filter, all three input channels scaled
        together around mid-grey (0.5 = zero weight; a 1-channel kernel, a
        grayscale model's, is shown grey); "channels": one grey image per
        (filter, input channel), each scaled symmetrically by its filter's max |w|.

    Returns:
      float32[c_out, kh, kw, 3] for "rgb", float32[c_out, c_in, kh, kw] for "channels".
    """
    kernel = np.asarray(_check_kernel(kernel))
    scale = np.abs(kernel).max(axis=(0, 1, 2), keepdims=True)
    scaled = 0.5 + 0.5 * kernel / np.where(scale > 0, scale, 1.0)  # [kh, kw, cin, cout]
    if mode == "rgb":
        if kernel.shape[2] not in (1, 3):
            raise ValueError(
                f"mode='rgb' needs 3 input channels (or 1, shown grey), got kernel shape {kernel.shape}"
            )
        rgb = np.broadcast_to(scaled, (*scaled.shape[:2], 3, scaled.shape[3]))
        return rgb.transpose(3, 0, 1, 2).astype(np.float32)
    if mode == "channels":
        return scaled.transpose(3, 2, 0, 1).astype(np.float32)
    raise ValueError(f"mode must be 'rgb' or 'channels', got {mode!r}")


def filter_grid(kernel, *, max_in: int = 16, max_out: int = 32, pad: int = 1) -> np.ndarray:
    """Tile a deeper layer's kernel slices into one 2-D image: rows = output, columns = input channels.

    Args:
      kernel: float32[kh, kw, c_in, c_out].
      max_in, max_out: show at most this many input / output channels.
      pad: blank (NaN) pixels between slices.

    Returns:
      float32 2-D array in [0, 1] (0.5 = zero weight, each output filter scaled by its max |w|), NaN gaps.
    """
    max_in, max_out = check_int("max_in", max_in, 1), check_int("max_out", max_out, 1)
    pad = check_int("pad", pad, 0)
    imgs = filter_images(kernel, mode="channels")[:max_out, :max_in]  # [cout, cin, kh, kw]
    co, ci, kh, kw = imgs.shape
    grid = np.full((co, ci, kh + pad, kw + pad), np.nan, np.float32)
    grid[:, :, :kh, :kw] = imgs
    return grid.transpose(0, 2, 1, 3).reshape(co * (kh + pad), ci * (kw + pad))[
        : -pad or None, : -pad or None
    ]


@functools.partial(jax.jit, static_argnames=("measure",))
def _noisiness(kernel, *, measure):
    w = jnp.moveaxis(kernel, (2, 3), (0, 1))  # [cin, cout, kh, kw]
    dr = w[..., 1:, :] - w[..., :-1, :]
    dc = w[..., :, 1:] - w[..., :, :-1]
    pairs = dr.shape[-2] * dr.shape[-1] + dc.shape[-2] * dc.shape[-1]
    if measure == "tv":
        # white noise: E|a - b| / E|a| = sqrt(2)
        rough = (jnp.abs(dr).sum((-2, -1)) + jnp.abs(dc).sum((-2, -1))) / pairs
        size = jnp.abs(w).mean((-2, -1)) * jnp.sqrt(2.0)
    else:
        # Dirichlet energy = spectral energy weighted by (2 - 2 cos f): white noise gives E(a - b)^2 / E a^2 = 2
        rough = ((dr**2).sum((-2, -1)) + (dc**2).sum((-2, -1))) / pairs
        size = (w**2).mean((-2, -1)) * 2.0
    per_slice = jnp.where(size > 0, rough / jnp.where(size > 0, size, 1.0), 0.0)  # [cin, cout]
    # weight slices by their energy so near-zero input channels do not dominate
    energy = (w**2).sum((-2, -1))
    return (per_slice * energy).sum(0) / jnp.maximum(energy.sum(0), 1e-30)


def filter_noisiness(kernel, *, measure: str = "tv") -> jax.Array:
    """How rough each filter is, normalised so white noise scores ~1 and a constant kernel 0.

    Args:
      kernel: float32[kh, kw, c_in, c_out] with kh, kw >= 2.
      measure: "tv": normalised total variation, mean |neighbour difference|
        over sqrt(2) * mean |w|; "hf": high-frequency energy, the mean squared
        neighbour difference over 2 * mean w^2 (the spectrum weighted by 2 - 2 cos f).
        A checkerboard scores 2 on "hf".

    Returns:
      float32[c_out]: per filter, the energy-weighted mean over its input-channel slices.

    References: Rudin, Osher & Fatemi 1992 (total variation).
    """
    kernel = _check_kernel(kernel)
    if measure not in MEASURES:
        raise ValueError(f"measure must be one of {MEASURES}, got {measure!r}")
    if min(kernel.shape[:2]) < 2:
        raise ValueError(
            f"kernel must be at least 2x2 spatially to measure roughness, got shape {kernel.shape}"
        )
    return _noisiness(kernel, measure=measure)
