"""Argument checks shared by every layer: one of each, each raising a ValueError that names the
argument, what was given and what is allowed.

The bottom layer of the package (with ``cache`` and ``protocols``): it imports nothing from
scriptlab, so configs (``data``, ``train``), probes and the interpret methods
(through ``interpret._common``) all check their arguments the same way.

References: captum ``_utils/common.py`` (one module of input checks).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import jax

# No JAX at import: the dataset's worker processes import this module (through ``data``)
# and never load JAX. The array checks import it when they run.


def is_concrete(x) -> bool:
    """True unless ``x`` is a tracer (then only its shape and dtype can be checked)."""
    jax = sys.modules.get("jax")  # not loaded: nothing can be a tracer
    return jax is None or not isinstance(x, jax.core.Tracer)


def _is_real(value) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(
        value, (bool, np.bool_)
    )


def check_name(kind: str, value: str, allowed: tuple[str, ...]) -> str:
    """Raise a ValueError naming ``kind`` unless ``value`` is one of ``allowed``."""
    if value not in allowed:
        raise ValueError(f"unknown {kind} {value!r}; allowed: {', '.join(allowed)}")
    return value


def check_names(name: str, values, allowed: tuple[str, ...], *, kind: str) -> tuple[str, ...]:
    """A tuple of distinct names, each one of ``allowed``, returned as a tuple.

    Args:
      name: the argument's name ("scripts").
      values: a sequence of names (a list is accepted; a bare string is not).
      allowed: the names it may hold.
      kind: what one name is, for the message ("script").
    """
    if isinstance(values, str) or not isinstance(values, Sequence):
        raise ValueError(f"{name} must be a sequence of {kind} names, got {values!r}")
    values = tuple(values)
    for v in values:
        check_name(kind, v, allowed)
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise ValueError(f"{name} must not repeat a {kind}, got {values} ({', '.join(repeated)})")
    return values


def check_bool(name: str, value) -> bool:
    """A Python or numpy bool (not 0 or 1), returned as bool."""
    if not isinstance(value, (bool, np.bool_)):
        raise ValueError(f"{name} must be True or False, got {value!r}")
    return bool(value)


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


def check_array(name: str, x, *, shape=None, ndim: int | None = None) -> jax.Array:
    """A finite real array; ``shape`` (None entries match anything) or ``ndim`` checked.

    Returns float32 (or the tracer as given: its values cannot be checked).
    """
    import jax.numpy as jnp

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
