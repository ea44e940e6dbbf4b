"""Level (2) of notebook 11: a network's last layers on frozen features, for any NNX model.

``top_layers(apply_fn, params, images, first)`` cuts the model at the input of one
``nnx.Conv`` / ``nnx.Linear`` layer (``first``: "dense" for ScriptNet, whose input is the
flattened pool3 activation). The view is a function ``view(top, feats)`` of that layer's
parameters and every tracked layer called after it (``view.params(params)``) and of the
frozen features ``feats`` the first one reads (``view.features(params, images)``). It runs
the model's own forward pass under the layer tap of ``layers`` with ``feats`` in place
of ``first``'s input, so whatever sits between the layers (any activation, normalisation,
several heads, ScriptNet's RMS-normalised and per-script font heads) is the model's own
code, not a copy. The trunk below the cut runs on zeros and is discarded (jit drops it).

This part is non-convex; use damping, and read the result as an approximation (Basu et al.
2021; Bae et al. 2022 show it tracks a proximal response rather than leave-one-out).

References: Basu, Pope & Feizi 2021, https://arxiv.org/abs/2006.14651; Bae et al. 2022,
https://arxiv.org/abs/2209.05364.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from jax.interpreters import partial_eval as pe

from scriptlab.interpret._common import check_choice, forward_chunks
from scriptlab.interpret.influence.layers import LeafIndex, as_float, module_name, tapping
from scriptlab.interpret.influence.losses import LossFn, cross_entropy
from scriptlab.protocols import ApplyFn, ModelOutputs


class _Cut:
    """Tap: lists the tracked layers in call order; records ``first``'s input or replaces it."""

    def __init__(self, params, first: str | None = None, feats: jax.Array | None = None):
        self.leaves = LeafIndex(params)
        self.first, self.feats = first, feats
        self.called: list[tuple[str, int, int]] = []  # (name, kernel leaf, bias leaf or -1)
        self.cut_input: jax.Array | None = None

    def __call__(self, module, original, inputs, args, kwargs):
        kernel = self.leaves.of(getattr(module, "kernel", None))
        if kernel >= 0:
            name = module_name(self.leaves.paths[kernel])
            self.called.append((name, kernel, self.leaves.of(getattr(module, "bias", None))))
            if name == self.first:
                self.cut_input = inputs
                if self.feats is not None:
                    if self.feats.shape[1:] != inputs.shape[1:]:
                        raise ValueError(
                            f"feats must be [N, {', '.join(map(str, inputs.shape[1:]))}] (the "
                            f"input of layer {name!r}), got shape {tuple(self.feats.shape)}"
                        )
                    inputs = self.feats.astype(inputs.dtype)
        return original(module, inputs, *args, **kwargs)


@dataclasses.dataclass(frozen=True)
class TopLayers:
    """A model from layer ``first`` up, as a pure function of those layers and their frozen input.

    Call it as ``view(top, feats) -> ModelOutputs`` (the model's own outputs type, with
    ``activations``, if it has them, emptied: they would be of the zeros the trunk runs on).
    Hashes by value, so a loss over it can be a static jit argument.

    Attributes:
      apply_fn: the model (``scriptlab.protocols.ApplyFn``).
      first: the name of the first layer above the cut (its kernel's path in ``params``).
      layers: (name, kernel leaf, bias leaf or -1) of ``first`` and every tracked layer
        called after it, in call order.
      treedef: the tree structure of the model's params.
      specs: (shape, dtype) of every leaf of the params.
      image_shape: one input image's shape (H, W, C).
    """

    apply_fn: ApplyFn
    first: str
    layers: tuple[tuple[str, int, int], ...]
    treedef: Any
    specs: tuple
    image_shape: tuple[int, ...]

    def params(self, params) -> dict:
        """{layer name: {"kernel": array, "bias": array}} of the layers above the cut (no bias
        entry for a layer without one), taken from the model's ``params``."""
        leaves = jax.tree.leaves(params)
        return {
            name: {"kernel": jnp.asarray(leaves[k])}
            | ({"bias": jnp.asarray(leaves[b])} if b >= 0 else {})
            for name, k, b in self.layers
        }

    def features(self, params, images, *, batch_size: int = 500) -> jax.Array:
        """float32[N, ...]: the input layer ``first`` receives on each image (the frozen features).

        One jitted pass over memory-bounded chunks of ``batch_size`` images (the result does
        not depend on it); uint8 images are divided by 255 chunk by chunk.
        """
        n = len(images)
        shape = jax.eval_shape(self._cut_input, params, jnp.zeros((1, *self.image_shape))).shape
        flat = forward_chunks(_CutInput(self), params, images, layer=None, batch_size=batch_size)
        return flat.reshape(n, *shape[1:])

    def _cut_input(self, params, images) -> jax.Array:
        cut = _Cut(params, self.first)
        with tapping(cut):
            self.apply_fn(params, images)
        return cut.cut_input

    def _full(self, top) -> Any:
        """The model's params with ``top``'s layers in place and zeros below the cut."""
        leaves = [jnp.zeros(shape, dtype) for shape, dtype in self.specs]
        for name, k, b in self.layers:
            leaves[k] = top[name]["kernel"]
            if b >= 0:
                leaves[b] = top[name]["bias"]
        return jax.tree.unflatten(self.treedef, leaves)

    def _run(self, top, feats, images):
        full = self._full(top)
        cut = _Cut(full, self.first, feats)
        with tapping(cut):
            out = self.apply_fn(full, images)
        if cut.cut_input is None:
            raise ValueError(f"layer {self.first!r} was not called by apply_fn on these inputs")
        return out

    def __call__(self, top, feats: jax.Array) -> ModelOutputs:
        """The model's outputs with ``feats`` float32[N, ...] as layer ``first``'s input."""
        images = jnp.zeros((feats.shape[0], *self.image_shape), jnp.float32)
        out = self._run(top, feats, images)
        if "activations" in getattr(out, "_fields", ()):
            out = out._replace(activations={})
        return out


class _Features(NamedTuple):
    """The cut input as an output field, for ``_common.forward_chunks``."""

    embedding: jax.Array


@dataclasses.dataclass(frozen=True)
class _CutInput:
    """An apply_fn whose ``embedding`` is the input of the view's first layer (hashes by value)."""

    view: TopLayers

    def __call__(self, params, images, **_) -> _Features:
        return _Features(self.view._cut_input(params, images))


def _reads_images(view: TopLayers, top, feats) -> list[str]:
    """The output fields (activations aside) that still read the images past the cut."""
    names: list[str] = []

    def heads(t, f, images):
        out = view._run(t, f, images)
        fields = [n for n in getattr(out, "_fields", ()) if n != "activations"]
        names[:] = [n for n in fields if hasattr(getattr(out, n), "shape")]
        return [getattr(out, n) for n in names]

    images = jax.ShapeDtypeStruct((1, *view.image_shape), jnp.float32)
    jaxpr = jax.make_jaxpr(heads)(top, feats, images).jaxpr  # the images are the last input
    return [
        name
        for i, name in enumerate(names)
        if pe.dce_jaxpr(jaxpr, [j == i for j in range(len(names))])[1][-1]
    ]


def top_layers(apply_fn: ApplyFn, params, images, first: str) -> TopLayers:
    """The view of ``apply_fn``'s model from layer ``first`` up, on that layer's frozen input.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn`` of an NNX model built from ``nnx.Conv`` /
        ``nnx.Linear`` layers (anything between them).
      params: its params.
      images: float32[N, H, W, C] in [0, 1] (or uint8); only one image's shape is used.
      first: the first layer above the cut, named by its path in ``params`` ("dense" for
        ScriptNet: the dense layer and both heads on the flattened pool3 features).

    Returns:
      A ``TopLayers``: ``view.params(params)``, ``view.features(params, images)``,
      ``view(top, feats)``.

    Raises:
      ValueError: ``first`` names no tracked layer (the message lists them), or an
        output other than the activations reads the images past the cut (a skip
        connection around it).
    """
    images = as_float(jnp.asarray(images) if not hasattr(images, "shape") else images)
    called = []

    def trace(p, x):
        probe = _Cut(p)  # inside: the tap knows the traced leaves
        with tapping(probe):
            apply_fn(p, x)
        called[:] = probe.called

    try:
        jax.eval_shape(trace, params, images[:1])
    except Exception as e:  # the model's own message says what it expected
        raise ValueError(
            f"apply_fn could not run on images of shape {tuple(images.shape)} (wrong height, "
            f"width or channel count for this model?): {type(e).__name__}: {e}"
        ) from e
    names = [name for name, _, _ in called]
    check_choice("first", first, tuple(names))
    leaves, treedef = jax.tree.flatten(params)
    specs = tuple((tuple(jnp.shape(a)), jnp.result_type(a)) for a in leaves)
    view = TopLayers(
        apply_fn,
        first,
        tuple(called[names.index(first) :]),
        treedef,
        specs,
        tuple(images.shape[1:]),
    )
    feats = jax.eval_shape(view._cut_input, params, images[:1])
    top = jax.eval_shape(view.params, params)
    bad = _reads_images(view, top, feats)
    if bad:
        raise ValueError(
            f"outputs {bad} read the images other than through layer {first!r} (a connection "
            "around the cut); choose a later first layer"
        )
    return view


def top_loss(view: TopLayers, head: str = "script") -> LossFn:
    """Per-example cross-entropy of ``view(top, feats)``'s ``head`` output (a ``LossFn``)."""
    if not isinstance(view, TopLayers):
        raise ValueError(
            f"view must be a TopLayers (top_layers(apply_fn, params, images, first)), "
            f"got {type(view).__name__}"
        )
    return cross_entropy(view, head)
