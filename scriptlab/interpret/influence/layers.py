"""Any Flax NNX network as a stack of linear layers: each layer's inputs and pre-activation gradients.

Every ``nnx.Conv`` and ``nnx.Linear`` computes s = W a + b (a conv at every
output position). The per-example gradient of such a layer is a sum over its
positions of outer products, grad_W L = sum_s a_s g_s^T, with a_s the input
patch (plus a 1 for the bias) and g_s = dL/ds. Both whole-network estimators
read the network through this view:

  * TracIn gets per-example gradients as one batched matmul per layer, about
    15x faster on XLA:CPU than ``vmap`` of ``grad`` (which turns each
    per-example conv gradient into a grouped convolution);
  * EK-FAC takes its Kronecker factors E[a a^T] and E[g g^T] from them.

Nothing here knows the architecture. ``apply_fn`` runs under a tap: while it
is traced, every ``nnx.Conv`` / ``nnx.Linear`` call whose kernel is a leaf of
``params`` records its input and adds a zero perturbation to its output, so the
gradient with respect to the perturbation is the pre-activation gradient
(Flax's own ``nnx.capture`` instruments module classes the same way). Layers
are found in the order the model calls them and named by their path in
``params`` ("conv1", "blocks.0.conv"); whatever sits between them (any
activation, BatchNorm in evaluation mode, LayerNorm, pooling, residual adds,
several heads) is differentiated by ``jax.vjp``. These are the modules
kronfluence tracks; parameters outside them (normalisation scales and
offsets) are held fixed: the view gives them zero gradient.

References: Grosse & Martens 2016 (KFC: conv layers as sums over positions),
https://arxiv.org/abs/1602.01407; Goodfellow 2015 (per-example gradients from
layer inputs and output gradients), https://arxiv.org/abs/1510.01799;
kronfluence (tracked modules), https://github.com/pomonam/kronfluence.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import threading
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.interpreters import partial_eval as pe

from scriptlab.interpret._common import probe_outputs, uint8_to_float
from scriptlab.protocols import ApplyFn, LayerwiseLoss

__all__ = ["LayerwiseLoss", "LinearLayer", "LayerwiseCrossEntropy", "ScriptNetLoss"]


class LinearLayer(NamedTuple):
    """One tracked ``nnx.Conv`` or ``nnx.Linear``: where its parameters are and how it reads its input.

    Attributes:
      name: the module's path in ``params``, dot-joined ("conv1", "blocks.0.conv").
      kernel: index of its kernel in ``jax.tree.leaves(params)``.
      bias: index of its bias there, or -1 (``use_bias=False``).
      kernel_size: the conv window per spatial axis; () for a dense layer.
      strides: step per spatial axis (() for dense).
      dilation: kernel dilation per spatial axis (() for dense).
      padding: (low, high) zero or edge padding per spatial axis (() for dense).
      pad_mode: ``jnp.pad`` mode of that padding: "constant", "wrap" or "reflect".
    """

    name: str
    kernel: int
    bias: int
    kernel_size: tuple[int, ...] = ()
    strides: tuple[int, ...] = ()
    dilation: tuple[int, ...] = ()
    padding: tuple[tuple[int, int], ...] = ()
    pad_mode: str = "constant"


# --------------------------------------------------------------------------- the tap
_ACTIVE = threading.local()  # the recorder of the forward pass this thread is tracing
_PATCH_LOCK = threading.Lock()
_PATCH_DEPTH = [0]
_ORIGINAL: dict[type, Callable] = {}


def _tapped(cls):
    original = cls.__call__

    def call(self, inputs, *args, **kwargs):
        recorder = getattr(_ACTIVE, "recorder", None)
        if recorder is None:
            return original(self, inputs, *args, **kwargs)
        return recorder(self, original, inputs, args, kwargs)

    call._scriptlab_tap = True  # type: ignore[attr-defined]
    return original, call


@contextlib.contextmanager
def tapping(recorder):
    """Route this thread's nnx.Conv / nnx.Linear calls through ``recorder`` while tracing.

    ``recorder(module, original, inputs, args, kwargs)`` returns the layer's output
    (``original(module, inputs, *args, **kwargs)`` runs the layer itself).
    """
    with _PATCH_LOCK:
        if _PATCH_DEPTH[0] == 0:
            for cls in (nnx.Conv, nnx.Linear):
                _ORIGINAL[cls], cls.__call__ = _tapped(cls)
        _PATCH_DEPTH[0] += 1
    previous = getattr(_ACTIVE, "recorder", None)
    _ACTIVE.recorder = recorder
    try:
        yield recorder
    finally:
        _ACTIVE.recorder = previous
        with _PATCH_LOCK:
            _PATCH_DEPTH[0] -= 1
            if _PATCH_DEPTH[0] == 0:
                for cls, original in _ORIGINAL.items():
                    cls.__call__ = original
                _ORIGINAL.clear()


def _key_name(k) -> str:
    for attr in ("key", "name", "idx"):
        if hasattr(k, attr):
            return str(getattr(k, attr))
    return str(k)


def module_name(path) -> str:
    """A layer's name from its kernel's key path in ``params``: "conv1", "blocks.0.conv"."""
    names = [_key_name(k) for k in path]
    while names and names[-1] in ("value", "kernel", "raw_value"):
        names.pop()
    return ".".join(names) or "<root>"


def _pairs(x, rank: int) -> tuple[int, ...]:
    if x is None:
        return (1,) * rank
    return (int(x),) * rank if isinstance(x, int) else tuple(int(v) for v in x)


def _conv_geometry(module, name: str, spatial: tuple[int, ...]) -> dict:
    """kernel_size, strides, dilation, padding and pad_mode of an nnx.Conv, as its __call__ uses them."""
    k = tuple(module.kernel_size)
    rank = len(k)
    unsupported = []
    if module.feature_group_count != 1:
        unsupported.append(f"feature_group_count={module.feature_group_count} (grouped conv)")
    if any(v != 1 for v in _pairs(module.input_dilation, rank)):
        unsupported.append(f"input_dilation={module.input_dilation}")
    if module.mask is not None:
        unsupported.append("a kernel mask")
    if module.conv_general_dilated is not jax.lax.conv_general_dilated:
        unsupported.append("a custom conv_general_dilated")
    if unsupported:
        raise ValueError(
            f"layer {name!r}: the layer-wise view supports nnx.Conv with feature_group_count=1, "
            f"input_dilation=1, no mask and lax.conv_general_dilated; got {', '.join(unsupported)}"
        )
    strides, dilation = _pairs(module.strides, rank), _pairs(module.kernel_dilation, rank)
    dilated = tuple((kk - 1) * d + 1 for kk, d in zip(k, dilation, strict=True))
    padding, mode = module.padding, "constant"
    if isinstance(padding, str) and padding.upper() in ("CIRCULAR", "REFLECT"):
        mode = {"CIRCULAR": "wrap", "REFLECT": "reflect"}[padding.upper()]
        pads = tuple(((kd - 1) // 2, kd // 2) for kd in dilated)  # as nnx.Conv pads them
    elif isinstance(padding, str) and padding.upper() == "CAUSAL":
        pads = ((dilated[0] - 1, 0),)
    elif isinstance(padding, str):
        pads = tuple(jax.lax.padtype_to_pads(spatial, dilated, strides, padding.upper()))
    elif isinstance(padding, int):
        pads = ((padding, padding),) * rank
    else:
        pads = tuple((p, p) if isinstance(p, int) else tuple(p) for p in padding)
    return dict(
        kernel_size=k,
        strides=strides,
        dilation=dilation,
        padding=tuple((int(lo), int(hi)) for lo, hi in pads),
        pad_mode=mode,
    )


class LeafIndex:
    """Where a module's parameters sit in ``params``: a tap's way from a variable to its leaf.

    Attributes:
      paths: the key path of every leaf of ``params``, in ``jax.tree.leaves`` order.
    """

    def __init__(self, params):
        leaves, _ = jax.tree_util.tree_flatten_with_path(params)
        self._index = {}
        for i, (_, leaf) in enumerate(leaves):
            if id(leaf) in self._index:  # aliased leaves: the tap could not tell them apart
                raise ValueError(
                    "params holds one array object at two leaves; pass a pytree of distinct "
                    "arrays (jax.tree.map(jnp.array, params))"
                )
            self._index[id(leaf)] = i
        self.paths = [p for p, _ in leaves]

    def of(self, variable) -> int:
        """The index of ``variable``'s array among the leaves, or -1 (None, or not in params)."""
        if variable is None:
            return -1
        return self._index.get(id(variable.get_value()), -1)


class _Recorder:
    """Records every tracked layer's description and input; adds ``perturb[i]`` to the i-th output."""

    def __init__(self, params, perturb=None, keep=None):
        self.leaves = LeafIndex(params)
        self.paths = self.leaves.paths
        self.perturb = perturb
        self.keep = keep  # kernel leaf indices to track (None: every layer found)
        self.layers: list[LinearLayer] = []
        self.inputs: list[jax.Array] = []
        self.outputs: list[jax.Array] = []

    def __call__(self, module, original, inputs, args, kwargs):
        kernel = self.leaves.of(getattr(module, "kernel", None))
        if kernel < 0 or (self.keep is not None and kernel not in self.keep):
            # a frozen layer (its kernel is not in params), or one the logits do not depend on
            return original(module, inputs, *args, **kwargs)
        name = module_name(self.paths[kernel])
        if any(layer.kernel == kernel for layer in self.layers):
            raise ValueError(
                f"layer {name!r} is called more than once in one forward pass (shared weights); "
                "the layer-wise view needs one call per nnx.Conv / nnx.Linear"
            )
        bias = self.leaves.of(getattr(module, "bias", None))
        if isinstance(module, nnx.Conv):
            n_spatial = len(module.kernel_size)
            if inputs.ndim < n_spatial + 2:
                raise ValueError(
                    f"layer {name!r} got an input of shape {inputs.shape} without a batch axis; "
                    "apply_fn must run the model on the whole batch (not vmap it per example)"
                )
            geometry = _conv_geometry(module, name, tuple(inputs.shape[-n_spatial - 1 : -1]))
            layer = LinearLayer(name, kernel, bias, **geometry)
        else:
            if inputs.ndim < 2:
                raise ValueError(
                    f"layer {name!r} got an input of shape {inputs.shape} without a batch axis; "
                    "apply_fn must run the model on the whole batch (not vmap it per example)"
                )
            if module.dot_general is not jax.lax.dot_general:
                raise ValueError(f"layer {name!r}: a custom dot_general is not supported")
            layer = LinearLayer(name, kernel, bias)
        out = original(module, inputs, *args, **kwargs)
        if self.perturb is not None:
            out = out + self.perturb[len(self.layers)]
        self.layers.append(layer)
        self.inputs.append(inputs)
        self.outputs.append(out)
        return out


def output_field(out, head: str):
    """``getattr(out, head)``: the logits the loss reads (as ``cross_entropy`` reads them)."""
    return getattr(out, head)


# --------------------------------------------------------------------------- patches
def layer_patches(x: jax.Array, layer: LinearLayer) -> jax.Array:
    """float[N, S, d_in (+ 1)]: a layer's input windows (channel-major, like ``kernel_rows``), and a 1.

    Args:
      x: the layer's input, float[N, *batch, *spatial, c_in] (conv) or float[N, ..., d_in].
      layer: its ``LinearLayer``.

    Returns:
      One row per output position S (the example's extra batch axes and the
      output's spatial positions, row-major), with a trailing 1 for the bias
      when the layer has one.
    """
    n = x.shape[0]
    if layer.kernel_size:
        rank = len(layer.kernel_size)
        spatial_in = x.shape[-rank - 1 : -1]
        x = x.reshape((-1, *spatial_in, x.shape[-1]))
        pads = ((0, 0), *layer.padding, (0, 0))
        if any(p for pair in layer.padding for p in pair):
            x = jnp.pad(x, pads, mode=layer.pad_mode)
        out = [
            (x.shape[1 + i] - ((k - 1) * d + 1)) // s + 1
            for i, (k, s, d) in enumerate(
                zip(layer.kernel_size, layer.strides, layer.dilation, strict=True)
            )
        ]
        # one strided slice per kernel offset, not conv_general_dilated_patches: its one-hot
        # convolution costs (k*k*c)^2 per position on XLA:CPU
        shifted = []
        for offset in itertools.product(*(range(k) for k in layer.kernel_size)):
            index = tuple(
                slice(o * d, o * d + (m - 1) * s + 1, s)
                for o, d, m, s in zip(offset, layer.dilation, out, layer.strides, strict=True)
            )
            shifted.append(x[(slice(None), *index)])
        x = jnp.stack(shifted, axis=-1).reshape(n, -1, x.shape[-1] * len(shifted))
    else:  # a dense layer: one position per entry of the axes before the features
        x = x.reshape(n, -1, x.shape[-1])
    if layer.bias < 0:
        return x
    return jnp.concatenate([x, jnp.ones(x.shape[:2] + (1,), x.dtype)], axis=-1)


# --------------------------------------------------------------------------- layer matrices
def kernel_rows(kernel: jax.Array, layer: LinearLayer) -> jax.Array:
    """A kernel as the float[d_in, out] matrix whose rows match ``layer_patches`` (c_in, then the window)."""
    if layer.kernel_size:
        kernel = jnp.moveaxis(kernel, -2, 0)  # [c_in, *window, out]
    return kernel.reshape(-1, kernel.shape[-1])


def params_to_matrices(params, layers: tuple[LinearLayer, ...]) -> dict:
    """{layer name: float[d_in (+ 1), out]}: each layer's kernel rows and its bias as the last row."""
    leaves = jax.tree.leaves(params)
    out = {}
    for layer in layers:
        m = kernel_rows(jnp.asarray(leaves[layer.kernel]), layer)
        if layer.bias >= 0:
            m = jnp.concatenate([m, jnp.asarray(leaves[layer.bias])[None]], axis=0)
        out[layer.name] = m
    return out


def matrices_to_params(params, mats: dict, layers: tuple[LinearLayer, ...], lead: tuple[int, ...]):
    """A pytree like ``params`` (leading axes ``lead`` on every leaf) from {layer name: float[*lead, d_in (+ 1), out]}.

    The inverse of ``params_to_matrices``; leaves of no layer in ``mats``
    (another head, a normalisation scale) get zeros.
    """
    leaves, treedef = jax.tree.flatten(params)
    new = [jnp.zeros(lead + jnp.shape(p), jnp.result_type(p)) for p in leaves]
    nl = len(lead)
    for layer in layers:
        if layer.name not in mats:
            continue
        m = mats[layer.name]
        shape = jnp.shape(leaves[layer.kernel])
        w = m[..., : m.shape[-2] - (layer.bias >= 0), :]
        if layer.kernel_size:  # rows are (c_in, *window); the kernel is [*window, c_in, out]
            w = w.reshape(lead + (shape[-2], *shape[:-2], shape[-1]))
            w = jnp.moveaxis(w, nl, nl + len(layer.kernel_size))
        new[layer.kernel] = w.reshape(lead + shape)
        if layer.bias >= 0:
            new[layer.bias] = m[..., -1, :]
    return jax.tree.unflatten(treedef, new)


def logit_residual(logits: jax.Array, y: jax.Array) -> jax.Array:
    """d CE / d logits = softmax(logits) - onehot(y): the cotangent of the true-label loss."""
    return jax.nn.softmax(logits) - jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)


def as_float(images: jax.Array) -> jax.Array:
    """uint8 crops (the dataset's storage) to float32 in [0, 1], chunk by chunk; floats pass."""
    return uint8_to_float(images) if images.dtype == jnp.uint8 else images


# --------------------------------------------------------------------------- the loss
def _structure(params, x) -> tuple:
    """What the layer list depends on, hashable: params' tree, leaf shapes and dtypes, one input's shape."""
    leaves, treedef = jax.tree.flatten(params)
    specs = tuple((tuple(jnp.shape(a)), jnp.result_type(a)) for a in leaves)
    return treedef, specs, tuple(x.shape[1:])


@functools.lru_cache(maxsize=64)
def _trace_layers(loss, treedef, specs, input_shape) -> tuple[LinearLayer, ...]:
    """The layers ``loss``'s logits depend on differentiably, in call order (traced, no FLOPs).

    Every tapped layer is perturbed and the JVP of the logits traced; dead-code
    elimination of that jaxpr tells which perturbations reach the output
    tangent (a second head does not, nor a path through an argmax).
    """
    params = jax.tree.unflatten(treedef, [jax.ShapeDtypeStruct(s, d) for s, d in specs])
    x = jax.ShapeDtypeStruct((1, *input_shape), jnp.float32)
    found = []

    def outputs(p, xi):
        recorder = loss._record(p, xi)
        found.append(tuple(recorder.layers))
        return recorder.outputs

    shapes = jax.eval_shape(outputs, params, x)

    def logits_tangent(p, xi, t):
        zeros = [jnp.zeros(a.shape, a.dtype) for a in t]
        return jax.jvp(lambda pert: loss._record(p, xi, pert).logits, (zeros,), (t,))[1]

    closed = jax.make_jaxpr(logits_tangent)(params, x, shapes)
    _, used = pe.dce_jaxpr(closed.jaxpr, [True] * len(closed.jaxpr.outvars))
    used_t = used[len(used) - len(shapes) :]
    return tuple(layer for layer, u in zip(found[0], used_t, strict=True) if u)


@dataclasses.dataclass(frozen=True)
class LayerwiseCrossEntropy:
    """Per-example softmax cross-entropy of one output field of any NNX model, seen layer by layer.

    A ``scriptlab.protocols.LayerwiseLoss``: callable as a ``LossFn``
    (``cross_entropy(apply_fn, head)``), and ``forward`` / ``layer_grads`` /
    ``example_grads`` give every ``nnx.Conv`` and ``nnx.Linear`` layer's
    inputs and pre-activation gradients. Hashes by value (``apply_fn`` and
    ``head``), so it can be a static jit argument.

    Attributes:
      apply_fn: a ``scriptlab.protocols.ApplyFn`` that merges an NNX model
        inside, built from ``nnx.Conv`` / ``nnx.Linear`` layers (anything between them).
      head: the output field of logits float32[N, C] the loss reads ("script",
        "font", "logits", ...).
    """

    apply_fn: ApplyFn
    head: str = "script"

    def __post_init__(self):
        if not isinstance(self.head, str) or not self.head or self.head.startswith("_"):
            raise ValueError(
                f"head must name a logits field of apply_fn's output (a str), got {self.head!r}"
            )

    def __call__(self, params, x, y):
        logits = output_field(self.apply_fn(params, as_float(x)), self.head)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    def _record(self, params, x, perturb=None, keep=None) -> _Recorder:
        recorder = _Recorder(params, perturb, keep)
        with tapping(recorder):
            recorder.logits = output_field(self.apply_fn(params, x), self.head)
        return recorder

    def layers(self, params, x) -> tuple[LinearLayer, ...]:
        """The tracked layers in forward order, found by tracing ``apply_fn`` on ``x[:1]`` (no FLOPs).

        Only layers the head's logits depend on differentiably are kept (the
        other head of a two-headed model is not). Checks the head and the
        layers, raising a ValueError that names what is wrong, so estimators
        call it before they jit.
        """
        x = jnp.asarray(x) if not hasattr(x, "shape") else x
        probe_outputs(self.apply_fn, params, as_float(x[:1]), self.head)
        layers = _trace_layers(self, *_structure(params, x))
        if not layers:
            raise ValueError(
                f"apply_fn's {self.head!r} output depends on no nnx.Conv or nnx.Linear layer whose "
                "kernel is a leaf of params; the layer-wise view needs at least one"
            )
        return layers

    def forward(self, params, x):
        """Every tracked layer's patches, the logits, and the map logit cotangent -> pre-activation grads.

        Args:
          params: the model's params.
          x: float32[N, ...] inputs in [0, 1], or uint8.

        Returns:
          (layers, inputs, logits, backward): layers the ``LinearLayer``s in
          forward order; inputs a list of float32[N, S_l, d_l (+ 1)]
          (``layer_patches``); logits float32[N, C]; ``backward(r)`` maps a
          cotangent r float32[N, C] on the logits to the list of pre-activation
          gradients float32[N, S_l, out_l] (linear in r).
        """
        x = as_float(x)
        layers = _trace_layers(self, *_structure(params, x))
        keep = frozenset(layer.kernel for layer in layers)
        shapes = jax.eval_shape(lambda p, xi: self._record(p, xi, keep=keep).outputs, params, x)
        zeros = [jnp.zeros(s.shape, s.dtype) for s in shapes]

        def run(perturb):
            recorder = self._record(params, x, perturb, keep)
            return recorder.logits, recorder.inputs

        logits, vjp, acts = jax.vjp(run, zeros, has_aux=True)
        inputs = [layer_patches(a, layer) for a, layer in zip(acts, layers, strict=True)]

        def backward(r):
            (grads,) = vjp(r)
            return [g.reshape(r.shape[0], -1, g.shape[-1]) for g in grads]

        return layers, inputs, logits, backward

    def layer_grads(self, params, x, y) -> dict:
        """Per-example gradients per layer, kept factored where that is cheaper.

        Returns:
          {layer name: float32[B, d_in + 1, out]} for a layer with several
          positions (a sum over them), {layer name: (a float32[B, d_in + 1], g
          float32[B, out])} for a layer with one (dense), whose gradient is a g^T.
        """
        layers, inputs, logits, backward = self.forward(params, x)
        outs = backward(logit_residual(logits, y))
        return {
            layer.name: (a[:, 0], g[:, 0]) if a.shape[1] == 1 else jnp.einsum("nsi,nso->nio", a, g)
            for layer, a, g in zip(layers, inputs, outs, strict=True)
        }

    @staticmethod
    def grad_dots(u: dict, v: dict) -> jax.Array:
        """float32[B_u, B_v]: dot products of two batches of ``layer_grads``, all layers summed.

        A dense layer's (a g^T) . (a' g'^T) = (a . a') (g . g'): d_in + out
        multiplies per pair instead of d_in x out (the 2048 x 128 dense layer
        holds 90 % of ScriptNet's parameters).
        """
        total = 0.0
        for name, gu in u.items():
            gv = v[name]
            if isinstance(gu, tuple):
                total = total + (gu[0] @ gv[0].T) * (gu[1] @ gv[1].T)
            else:
                total = total + gu.reshape(gu.shape[0], -1) @ gv.reshape(gv.shape[0], -1).T
        return total

    @staticmethod
    def grad_sq_norms(u: dict) -> jax.Array:
        """float32[B]: squared norms of a batch of ``layer_grads``."""
        total = 0.0
        for gu in u.values():
            if isinstance(gu, tuple):
                total = total + jnp.sum(gu[0] ** 2, 1) * jnp.sum(gu[1] ** 2, 1)
            else:
                total = total + jnp.sum(gu.reshape(gu.shape[0], -1) ** 2, 1)
        return total

    def example_grads(self, params, x, y) -> jax.Array:
        """float32[B, P] flat gradients of each example's loss (``ravel_pytree`` order; 0 off the tracked layers)."""
        layers, inputs, logits, backward = self.forward(params, x)
        outs = backward(logit_residual(logits, y))
        mats = {
            layer.name: jnp.einsum("nsi,nso->nio", a, g)
            for layer, a, g in zip(layers, inputs, outs, strict=True)
        }
        tree = matrices_to_params(params, mats, layers, (x.shape[0],))
        leaves = [leaf.reshape(x.shape[0], -1) for leaf in jax.tree.leaves(tree)]
        return jnp.concatenate(leaves, axis=1)


def layerwise_loss(apply_fn: ApplyFn, head: str = "script") -> LayerwiseCrossEntropy:
    """The cross-entropy of ``apply_fn``'s ``head`` output, seen layer by layer (``LayerwiseCrossEntropy``).

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn`` of an NNX model built from
        ``nnx.Conv`` / ``nnx.Linear`` layers.
      head: the output field of logits float32[N, C].

    Returns:
      A ``scriptlab.protocols.LayerwiseLoss``, the first argument of
      ``tracin_scores``, ``fit_ekfac`` and ``ekfac_scores``.
    """
    return LayerwiseCrossEntropy(apply_fn, head)


ScriptNetLoss = LayerwiseCrossEntropy  # its name before it took any model (back-compat)


def check_layerwise(loss_fn: Any, params, x) -> tuple[LinearLayer, ...]:
    """Raise unless ``loss_fn`` is a ``LayerwiseLoss``; return its layers on inputs like ``x``."""
    if not isinstance(loss_fn, LayerwiseLoss):
        raise ValueError(
            "loss_fn must be a scriptlab.protocols.LayerwiseLoss (layerwise_loss(apply_fn, head)), "
            f"got {type(loss_fn).__name__}"
        )
    return loss_fn.layers(params, x)
