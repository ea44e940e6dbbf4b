"""Input checks and shared helpers of the interpret package, one of each.

Every public function of ``scriptlab.interpret`` validates its inputs here,
eagerly and outside jit (shapes are checked while tracing, values only when
concrete), and the few computations several methods share live here too: the
one Gaussian blur and the one chunked forward pass. No method module imports
another method module's private helpers; they import this one.

The ``apply_fn`` contract itself is ``scriptlab.protocols.ApplyFn``.

References: captum ``_utils/common.py`` (one module of input checks).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

# The two ways a transform's independent work is split across devices: re-exported
# here so that every method module takes its helpers from this one module.
from scriptlab.distributed import map_rows as map_rows
from scriptlab.distributed import split_rows as split_rows


def is_concrete(x) -> bool:
    """True unless ``x`` is a tracer (then only its shape and dtype can be checked)."""
    return not isinstance(x, jax.core.Tracer)


# --------------------------------------------------------------------------- argument checks
def check_choice(name: str, value, allowed) -> None:
    """Raise unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"{name} must be one of {allowed}, got {value!r}")


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_int(name: str, value, low: int | None = None, high: int | None = None) -> int:
    """An integer in [low, high) (either bound may be None), returned as int.

    Floats are accepted only when integral (2.0, never 2.5: nothing is
    truncated); bools and arrays of more than one value are rejected.
    """
    if np.ndim(value) == 0 and hasattr(value, "dtype") and is_concrete(value):
        value = value.item()  # a 0-d numpy/jax array
    ok = _is_real(value) and np.isfinite(value) and int(value) == value
    ok = ok and (low is None or value >= low) and (high is None or value < high)
    if not ok:
        allowed = {
            (False, False): "an integer",
            (True, False): f"an integer >= {low}",
            (False, True): f"an integer < {high}",
            (True, True): f"an integer in [{low}, {high})",
        }[low is not None, high is not None]
        raise ValueError(f"{name} must be {allowed}, got {value!r}")
    return int(value)


def check_batch_size(batch_size, *, name: str = "batch_size") -> int:
    """An integer >= 1, returned as int."""
    return check_int(name, batch_size, 1)


def check_number(
    name: str, value, *, low: float | None = None, high: float | None = None, open_low=False
) -> float:
    """A finite real number in [low, high] ((low, high] with ``open_low``), returned as float.

    Traced values (a learning rate swept under jit) pass unchecked.
    """
    if not is_concrete(value):
        return value
    if np.ndim(value) == 0 and hasattr(value, "dtype"):
        value = value.item()
    ok = _is_real(value) and bool(np.isfinite(value))
    if ok and low is not None:
        ok = value > low if open_low else value >= low
    ok = ok and (high is None or value <= high)
    if not ok:
        lo = "" if low is None else f"{'>' if open_low else '>='} {low}"
        hi = "" if high is None else f"<= {high}"
        bound = " and ".join(b for b in (lo, hi) if b)
        raise ValueError(
            f"{name} must be a finite number{' ' + bound if bound else ''}, got {value!r}"
        )
    return float(value)


def check_nonneg(name: str, value: float) -> None:
    """Raise unless ``value`` is a finite number >= 0."""
    check_number(name, value, low=0.0)


def check_method_options(options, methods) -> dict:
    """Per-method keyword options {method: {option: value}}: every key names a method.

    A misspelt method would otherwise be ignored and its defaults used silently.
    """
    options = {} if options is None else options
    if not isinstance(options, dict) or not all(isinstance(v, dict) for v in options.values()):
        raise ValueError(f"options must be a dict {{method: {{option: value}}}}, got {options!r}")
    unknown = sorted(set(options) - set(methods))
    if unknown:
        raise ValueError(f"options name unknown methods {unknown}; allowed: {', '.join(methods)}")
    return options


def check_steps(steps, lr, momentum) -> None:
    """An optimiser's settings: steps an integer >= 1, lr > 0 and momentum in [0, 1), finite."""
    check_int("steps", steps, 1)
    check_number("lr", lr, low=0.0, open_low=True)
    check_number("momentum", momentum, low=0.0)
    if is_concrete(momentum) and momentum >= 1:
        raise ValueError(f"momentum must be in [0, 1), got {momentum!r}")


def check_array(name: str, x, *, shape=None, ndim: int | None = None) -> jax.Array:
    """A finite real array; ``shape`` (None entries match anything) or ``ndim`` checked.

    Returns float32 (or the tracer as given: its values cannot be checked).
    """
    if is_concrete(x) and not hasattr(x, "shape"):
        x = np.asarray(x)
    got = tuple(getattr(x, "shape", ()))
    want = None if shape is None else tuple(shape)
    if (ndim is not None and len(got) != ndim) or (
        want is not None
        and (
            len(got) != len(want)
            or any(w is not None and g != w for g, w in zip(got, want, strict=True))
        )
    ):
        dims = ", ".join("*" if w is None else str(w) for w in want or ())
        expected = f"shape [{dims}]" if want is not None else f"rank {ndim}"
        raise ValueError(f"{name} must have {expected}, got shape {got}")
    if not (jnp.issubdtype(x.dtype, jnp.floating) or jnp.issubdtype(x.dtype, jnp.integer)):
        raise ValueError(f"{name} must be a real array, got dtype {x.dtype}")
    if not is_concrete(x):
        return x
    x = jnp.asarray(x, jnp.float32)
    if not bool(jnp.isfinite(x).all()):
        raise ValueError(f"{name} contains NaN or infinite values")
    return x


def check_indices(name: str, values, size: int, *, what: str = "") -> np.ndarray:
    """Integer indices in [0, size) as int64 (no negative wrap-around, no float truncation).

    Args:
      name: the argument's name.
      values: an int or an int array (any shape).
      size: the length of the axis the indices select from.
      what: what the axis is, for the message ("images", "rows of conv1").
    """
    v = np.asarray(values)
    if v.dtype == np.bool_ or not np.issubdtype(v.dtype, np.integer):
        raise ValueError(f"{name} must be integer indices, got dtype {v.dtype}")
    if v.size and (v.min() < 0 or v.max() >= size):
        over = f" (the number of {what})" if what else ""
        raise ValueError(
            f"{name} must lie in [0, {size}){over}, got values in [{v.min()}, {v.max()}]"
        )
    return v.astype(np.int64)


def uint8_to_float(images) -> jax.Array:
    """uint8 0..255 -> float32 in [0, 1]: the library's one conversion (``scriptlab.protocols``).

    XLA divides by 255 as a multiplication by 1/255, so a few values differ by
    one float32 ulp from numpy's ``data.as_float``; eager and jitted calls agree.
    """
    return jnp.asarray(images).astype(jnp.float32) / 255.0


def check_images(images, *, name: str = "images", keep_uint8: bool = False) -> jax.Array:
    """Validate a batch of images under the library's one image convention.

    The convention (``scriptlab.protocols``): float images lie in [0, 1];
    uint8 images are 0..255 and are divided by 255 (as ``data.as_float``
    does); any other dtype (int32, bool, ...) is rejected, since its scale is
    a guess. Concrete images are checked to be finite and inside [0, 1].

    Args:
      images: an array (or a tracer) of rank 4.
      name: the argument's name, for the error message.
      keep_uint8: leave uint8 images as they are (the chunked forward pass
        divides them by 255 chunk by chunk, so N images never exist as float32).

    Returns:
      float32[N, H, W, C] in [0, 1] (or the uint8 array, with ``keep_uint8``).
    """
    if is_concrete(images) and not hasattr(images, "shape"):
        images = np.asarray(images)
    shape = getattr(images, "shape", None)
    if shape is None or len(shape) != 4:
        raise ValueError(
            f"{name} must be float32[N, H, W, C] (rank 4), got shape {shape}; "
            f"add a batch axis with images[None] for a single image"
        )
    if shape[0] == 0:
        raise ValueError(f"{name} is empty: shape {shape}")
    if images.dtype == np.uint8:
        return jnp.asarray(images) if keep_uint8 else uint8_to_float(images)
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(
            f"{name} must be float in [0, 1] or uint8 in 0..255, got dtype {images.dtype}"
        )
    images = jnp.asarray(images, jnp.float32) if is_concrete(images) else images.astype(jnp.float32)
    if is_concrete(images):
        if not bool(jnp.isfinite(images).all()):
            raise ValueError(f"{name} contains NaN or infinite values")
        lo, hi = float(images.min()), float(images.max())
        if lo < 0.0 or hi > 1.0:
            raise ValueError(
                f"{name} must lie in [0, 1] (float) or be uint8 0..255, got float values in "
                f"[{lo:g}, {hi:g}]; divide 0..255 floats by 255"
            )
    return images


def check_targets(targets, n: int, n_classes: int | None, *, name: str = "targets") -> jax.Array:
    """Validate class ids: an int or int[N] in [0, n_classes). Returns int32[N]."""
    t = jnp.asarray(targets) if is_concrete(targets) else targets
    if not jnp.issubdtype(t.dtype, jnp.integer):
        raise ValueError(f"{name} must be integer class ids, got dtype {t.dtype}")
    if t.ndim == 0:
        t = jnp.full((n,), t)
    if t.shape != (n,):
        raise ValueError(f"{name} must be an int or int[{n}] (one per image), got shape {t.shape}")
    if is_concrete(t) and n_classes is not None:
        lo, hi = int(t.min()), int(t.max())
        if lo < 0 or hi >= n_classes:
            raise ValueError(f"{name} must lie in [0, {n_classes}), got values in [{lo}, {hi}]")
    return t.astype(jnp.int32)


def check_maps(maps, image_shape, *, name: str = "maps") -> jax.Array:
    """Attribution maps of a batch of images: float[N, H, W] or float[N, H, W, C], finite.

    Args:
      maps: the maps (any real dtype).
      image_shape: (N, H, W, C) of the images they explain.
      name: the argument's name, for the error message.

    Returns:
      float32[N, H, W] or float32[N, H, W, C].
    """
    n, h, w, c = image_shape
    shape = tuple(getattr(maps, "shape", np.shape(maps)))
    if shape not in ((n, h, w), (n, h, w, c)):
        raise ValueError(
            f"{name} must be float32[N, H, W] or float32[N, H, W, C] like the images, "
            f"[{n}, {h}, {w}] or [{n}, {h}, {w}, {c}], got shape {shape}"
        )
    return check_array(name, maps)


def check_masks(masks, shape, *, name: str = "masks") -> jax.Array:
    """Boolean masks bool[N, H, W] (``shape`` (N, H, W), or None for any rank-3 shape).

    Only bool is accepted: 0/1 floats or ints would be a guess at a threshold.
    """
    got = tuple(getattr(masks, "shape", np.shape(masks)))
    dtype = getattr(masks, "dtype", np.asarray(masks).dtype)
    want = "[N, H, W]" if shape is None else list(shape)
    if len(got) != 3 or (shape is not None and got != tuple(shape)):
        raise ValueError(f"{name} must be bool{want}, got shape {got}")
    if dtype != np.bool_:
        raise ValueError(f"{name} must be bool{want}, got dtype {dtype}")
    if got[0] == 0:
        raise ValueError(f"{name} is empty: shape {got}")
    return jnp.asarray(masks)


def check_xy(x, y, name: str) -> tuple[jax.Array, jax.Array]:
    """Validate a batch of inputs [N, ...] and int[N] targets; returns (x, int32 y)."""
    xs = getattr(x, "shape", None)
    if xs is None or len(xs) < 1 or xs[0] == 0:
        raise ValueError(
            f"{name} inputs must be an array with a leading batch axis N >= 1, got shape {xs}"
        )
    y = jnp.asarray(y)
    if (
        not jnp.issubdtype(y.dtype, jnp.integer)
        or y.shape != (xs[0],)
        or (is_concrete(y) and int(y.min()) < 0)
    ):
        raise ValueError(
            f"{name} targets must be int[{xs[0]}] (one class id >= 0 per input), "
            f"got dtype {y.dtype} shape {y.shape}"
        )
    x = jnp.asarray(x)
    if jnp.issubdtype(x.dtype, jnp.floating) and not bool(jnp.isfinite(x).all()):
        raise ValueError(f"{name} inputs contain NaN or infinite values")
    return x, y.astype(jnp.int32)


def check_hessian(hessian, params, method: str):
    """None, or a float32[P, P] Hessian over the flattened ``params`` for method="exact"."""
    if hessian is None:
        return None
    p = ravel_pytree(params)[0].size
    if method != "exact":
        raise ValueError(f"hessian= is used by method='exact' only, got method={method!r}")
    if getattr(hessian, "shape", None) != (p, p):
        raise ValueError(
            f"hessian must be float32[{p}, {p}] (flattened params), got shape "
            f"{getattr(hessian, 'shape', None)}"
        )
    return jnp.asarray(hessian)


# --------------------------------------------------------------------------- probing apply_fn
def probe_outputs(apply_fn, params, images, head: str, *, logits: bool = True, **kwargs):
    """Run ``apply_fn`` abstractly (``jax.eval_shape``) on one image; turn failures into clear errors.

    Args:
      apply_fn, params: the model (``scriptlab.protocols.ApplyFn``).
      images: float32[N, H, W, C]; only ``images[:1]``'s shape is used.
      head: the output field the caller reads.
      logits: also require ``getattr(out, head)`` to be [N, n_classes].
      **kwargs: passed to ``apply_fn`` (``relu=``, ``perturb=``).

    Returns:
      The output's shape structure (a ``ModelOutputs`` of ShapeDtypeStructs).
    """
    try:
        out = jax.eval_shape(lambda p, x: apply_fn(p, x, **kwargs), params, images[:1])
    except Exception as e:  # the model's own message says what it expected
        raise ValueError(
            f"apply_fn could not run on images of shape {tuple(images.shape)} "
            f"(wrong height, width or channel count for this model?): {type(e).__name__}: {e}"
        ) from e
    if not hasattr(out, head):
        fields = getattr(out, "_fields", None) or [a for a in dir(out) if not a.startswith("_")]
        raise ValueError(
            f"head={head!r} is not an output of apply_fn: head must name a logits field of "
            f"its output, one of {list(fields)}"
        )
    shape = getattr(getattr(out, head), "shape", None)
    if logits and (shape is None or len(shape) != 2):
        raise ValueError(f"head={head!r} must be logits [N, n_classes], got shape {shape}")
    return out


def layer_shapes(apply_fn, params, image_shape: Sequence[int]) -> dict[str, tuple[int, ...]]:
    """Shape of every named activation for one image, e.g. {'conv1': (16, 32, 16), ...}.

    Traced with ``jax.eval_shape``: costs no FLOPs.
    """
    x = jax.ShapeDtypeStruct((1, *image_shape), jnp.float32)
    out = jax.eval_shape(lambda p, im: apply_fn(p, im), params, x)
    acts = getattr(out, "activations", None)
    if not isinstance(acts, dict):
        raise ValueError(
            "apply_fn(params, images) must return an object with an `activations` dict"
        )
    return {k: tuple(v.shape[1:]) for k, v in acts.items()}


def check_layers(
    apply_fn, params, image_shape, layers, *, spatial: bool = False
) -> tuple[str, ...]:
    """Validate layer names against the model's activations (all of them when ``layers`` is None)."""
    shapes = layer_shapes(apply_fn, params, image_shape)
    allowed = tuple(k for k, s in shapes.items() if len(s) == 3 or not spatial)
    if layers is None:
        return allowed
    if isinstance(layers, str):
        layers = (layers,)
    for name in layers:
        if name not in allowed:
            kind = "spatial layer" if spatial else "layer"
            raise ValueError(f"unknown {kind} {name!r}; allowed: {', '.join(allowed)}")
    return tuple(layers)


# --------------------------------------------------------------------------- shared computations
def gaussian_blur(images: jax.Array, sigma: float) -> jax.Array:
    """Separable Gaussian blur of float[N, H, W, C] per channel, edge padding.

    The kernel has radius ``max(1, round(3 sigma))`` (halves round up) and sums to 1.

    Args:
      images: float32[N, H, W, C].
      sigma: the standard deviation in pixels, > 0.

    Returns:
      float32[N, H, W, C].
    """
    radius = max(1, int(3 * sigma + 0.5))
    x = jnp.arange(-radius, radius + 1, dtype=jnp.float32)
    k = jnp.exp(-0.5 * (x / sigma) ** 2)
    k = k / k.sum()
    pad = [(0, 0), (radius, radius), (radius, radius), (0, 0)]
    padded = jnp.pad(images, pad, mode="edge")
    h, w = images.shape[1:3]
    rows = sum(k[i] * padded[:, i : i + h, :, :] for i in range(2 * radius + 1))
    return sum(k[i] * rows[:, :, i : i + w, :] for i in range(2 * radius + 1))


def forward_chunks(
    apply_fn, params: Any, images, *, layer: str | None, batch_size: int
) -> jax.Array:
    """One representation per image, float32[N, D], over memory-bounded chunks in one jitted call.

    Args:
      apply_fn, params: the model (``scriptlab.protocols.ApplyFn``).
      images: float32[N, H, W, C] in [0, 1] or uint8[N, H, W, C] (divided by 255
        chunk by chunk).
      layer: None for ``out.embedding``; any other output field (e.g. "script")
        or a name in ``out.activations``, flattened per image.
      batch_size: images per vmapped chunk.

    Returns:
      float32[N, D].
    """
    images = check_images(images, keep_uint8=True)
    batch_size = check_batch_size(batch_size)
    probe = jnp.zeros((1, *images.shape[1:]), jnp.float32)
    out = probe_outputs(apply_fn, params, probe, "embedding", logits=False)
    if layer is not None:
        fields = [f for f in getattr(out, "_fields", ()) if f != "activations"]
        allowed = fields + list(getattr(out, "activations", None) or {})
        if layer not in allowed:
            raise ValueError(
                f"layer={layer!r} is neither an output field nor an activation of apply_fn; "
                f"allowed: {', '.join(allowed)}"
            )
    return _forward_chunks(apply_fn, params, images, layer, batch_size)


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _forward_chunks(apply_fn, params, images, layer, batch_size):
    def one(image):
        image = uint8_to_float(image) if image.dtype == jnp.uint8 else image
        out = apply_fn(params, image[None])
        if layer is None:
            rep = out.embedding
        elif layer in getattr(out, "_fields", ()):
            rep = getattr(out, layer)
        else:
            rep = out.activations[layer]
        return rep.reshape(-1)

    return map_rows(one, images, batch_size=batch_size)


def check_binary(name: str, values, *, shape=None) -> jax.Array:
    """Binary labels, bool or integers 0 / 1 (e.g. "did the prediction flip"), as bool.

    Args:
      name: the argument's name.
      values: a bool or integer array.
      shape: the shape it must have (None: any).

    Returns:
      bool array of ``values``' shape.
    """
    v = np.asarray(values) if is_concrete(values) else values
    got = tuple(getattr(v, "shape", ()))
    if shape is not None and got != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got shape {got}")
    if v.dtype != np.bool_:
        if not jnp.issubdtype(v.dtype, jnp.integer):
            raise ValueError(f"{name} must be bool or integer 0 / 1, got dtype {v.dtype}")
        if is_concrete(v) and v.size and not np.isin(v, (0, 1)).all():
            raise ValueError(f"{name} must be bool or integer 0 / 1, got values {np.unique(v)[:5]}")
    return jnp.asarray(v).astype(bool)
