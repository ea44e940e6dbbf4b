"""Wrap your own Flax NNX model into an ``ApplyFn``, so every interpret method runs on it.

The model's ``__call__(images, ...)`` returns ``(heads, activations)``:

- ``heads``: the logits array (read as ``head="logits"``), or a dict / NamedTuple
  of logits arrays, one per head (read as ``head=<its name>``); an ``"embedding"``
  entry, if any, is the representation ``embed`` reads;
- ``activations``: ``{name: float32[N, h, w, c] or float32[N, d]}`` in forward
  order, the layers that activation, receptive-field, occlusion-of-a-unit and
  Grad-CAM methods read.

Keyword options of ``scriptlab.protocols.ApplyFn`` reach the model only if its
``__call__`` declares them: ``relu=`` (guided backprop, deconvnet: use it for
every ReLU), ``perturb=`` (Grad-CAM: add ``perturb[name]`` to that activation
before recording it) and ``lam=``. A method that needs an option the model
does not declare stops with a ValueError that names it.

``wrap`` runs the model in evaluation mode (BatchNorm reads its running
statistics, Dropout is off) on a copy, leaving yours as it was, and returns an
``apply_fn`` that hashes by value (``scriptlab.model.Functional`` underneath):
two wraps of one architecture share every jitted method's compilation.

References: flax examples/mnist (an ``nnx.Module`` and ``nnx.split`` / ``nnx.merge``);
equinox ``Module`` (static arguments that hash by value).
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import keyword
from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from scriptlab.model import Functional, functional

OPTIONS = ("relu", "perturb", "lam")
"""The ``ApplyFn`` keyword options a model may declare in its ``__call__``."""

_FIXED = ("embedding", "activations")


@functools.cache
def outputs_type(heads: tuple[str, ...]) -> type:
    """The NamedTuple a wrapped model returns: one field per head, then embedding, activations.

    Cached, so one set of head names is always one type (jax sees one pytree structure).
    """
    bad = [h for h in heads if not h.isidentifier() or keyword.iskeyword(h) or h.startswith("_")]
    if bad or "activations" in heads:
        raise TypeError(
            f"the wrapped model's head names must be Python identifiers not starting with _ "
            f"and not 'activations' (they become output fields); got {list(heads)}"
        )
    return collections.namedtuple("WrappedOutputs", (*heads, *_FIXED))


def _heads(raw) -> dict[str, jax.Array]:
    """{head name: array} from what the model returned as its heads."""
    if isinstance(raw, Mapping):
        return dict(raw)
    if hasattr(raw, "_fields"):
        return dict(zip(raw._fields, raw, strict=True))
    return {"logits": raw}


@dataclasses.dataclass(frozen=True)
class Wrapped:
    """A Flax NNX model as a ``scriptlab.protocols.ApplyFn``, equal to every wrap of its architecture.

    Attributes:
      functional: the model's GraphDef and non-Param state (hashes by value).
      options: the ``ApplyFn`` options its ``__call__`` declares, a subset of ``OPTIONS``.
      embedding: the activation read as ``out.embedding`` when the heads carry none
        (None: the last activation), flattened per image.
    """

    functional: Functional
    options: frozenset[str]
    embedding: str | None

    def __repr__(self) -> str:
        return f"Wrapped({self.functional!r}, options={sorted(self.options)})"

    def __call__(self, params, images, *, relu=None, perturb=None, lam=None):
        """Evaluation-mode forward pass; see ``scriptlab.protocols.ApplyFn``."""
        given = {"relu": relu, "perturb": perturb or None, "lam": lam}
        missing = [k for k, v in given.items() if v is not None and k not in self.options]
        if missing:
            raise TypeError(
                f"the wrapped model's __call__ does not accept {', '.join(missing)}=; "
                f"declare it to use the methods that need it (see scriptlab.wrap)"
            )
        kwargs = {k: v for k, v in given.items() if v is not None}
        model = nnx.merge(self.functional.graphdef, params, self.functional.rest, copy=True)
        raw = model(images, **kwargs)
        if not (isinstance(raw, tuple) and len(raw) == 2 and isinstance(raw[1], Mapping)):
            raise TypeError(
                "the wrapped model's __call__ must return (heads, activations), activations a "
                f"dict {{name: array}}; got {type(raw).__name__}"
            )
        heads, acts = _heads(raw[0]), dict(raw[1])
        emb = heads.pop("embedding", None)
        if emb is None:
            name = self.embedding if self.embedding is not None else next(reversed(acts), None)
            if name not in acts:
                raise TypeError(
                    f"the wrapped model returned no activation {name!r} for out.embedding "
                    f"(and no 'embedding' head); its activations: {list(acts)}"
                )
            emb = acts[name]
        emb = jnp.reshape(emb, (emb.shape[0], -1))
        return outputs_type(tuple(heads))(*heads.values(), emb, acts)


def wrap(model: nnx.Module, *, embedding: str | None = None) -> tuple[Any, Wrapped]:
    """Split your NNX model once into ``(params, apply_fn)`` for every ``scriptlab.interpret`` method.

    Args:
      model: an ``nnx.Module`` whose ``__call__(images)`` returns ``(heads, activations)``
        (see the module docstring); it may declare ``relu=``, ``perturb=``, ``lam=``.
      embedding: the activation that ``embed`` reads (default: the heads' "embedding"
        entry, else the last activation).

    Returns:
      (params, apply_fn): params an nnx.State of the nnx.Param leaves (what gradients,
      sanity checks and influence differentiate), apply_fn a ``Wrapped``, the
      ``scriptlab.protocols.ApplyFn`` contract in evaluation mode.
    """
    if not isinstance(model, nnx.Module):
        raise ValueError(f"model must be an nnx.Module, got {type(model).__name__}")
    copy = nnx.merge(*nnx.split(model))  # eval() sets flags; the caller's model keeps its own
    copy.eval()
    params, fn = functional(copy)
    signature = inspect.signature(type(model).__call__).parameters
    accepts_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in signature.values())
    options = frozenset(k for k in OPTIONS if k in signature or accepts_any)
    if embedding is not None and not isinstance(embedding, str):
        raise ValueError(f"embedding must be an activation name or None, got {embedding!r}")
    return params, Wrapped(fn, options, embedding)
