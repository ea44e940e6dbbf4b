"""ScriptNet as a stack of linear layers: each layer's inputs and pre-activation gradients.

Every parameter of ScriptNet sits in a conv or dense layer s = W a + b. The
per-example gradient of such a layer is a sum over its spatial positions of
outer products, grad_W L = sum_s a_s g_s^T, with a_s the input patch (plus a
1 for the bias) and g_s = dL/ds. Both whole-network estimators read the
network through this view:

  * TracIn gets per-example gradients as one batched matmul per layer, about
    15x faster on XLA:CPU than ``vmap`` of ``grad`` (which turns each
    per-example conv gradient into a grouped convolution);
  * EK-FAC takes its Kronecker factors E[a a^T] and E[g g^T] from them.

The layer list hard-codes ScriptNet's wiring (conv1 -> conv2 -> pool2 ->
conv3 -> pool3 -> dense -> heads), like ``top_layers``; a test checks the
gradients against ``jax.grad`` of ``cross_entropy(apply_fn, head)``.

References: Grosse & Martens 2016 (KFC: conv layers as sums over positions),
https://arxiv.org/abs/1602.01407; Goodfellow 2015 (per-example gradients from
layer inputs and output gradients), https://arxiv.org/abs/1510.01799.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax

from scriptlab.interpret._common import check_choice, uint8_to_float


class Layer(NamedTuple):
    """One linear layer of the network: its params key, and conv geometry (dense: kernel 0).

    Attributes:
      name: the params key ("conv1", ..., "script_head").
      kernel: side of the square conv kernel; 0 for a dense layer.
      stride: conv stride (1 for dense).
    """

    name: str
    kernel: int
    stride: int


# ScriptNet's linear layers, the head last (its input depends on which head).
TRUNK = (Layer("conv1", 4, 2), Layer("conv2", 3, 1), Layer("conv3", 3, 1), Layer("dense", 0, 1))
_TAPS = ("conv1", "conv2", "conv3", "dense")  # post-ReLU taps that follow each trunk layer


def layers_for(head: str) -> tuple[Layer, ...]:
    """The linear layers the loss on ``head`` ("script" or "font") depends on."""
    check_choice("head", head, ("script", "font"))
    return (*TRUNK, Layer(f"{head}_head", 0, 1))


def _patches(x: jax.Array, layer: Layer) -> jax.Array:
    """float[N, S, d_in + 1]: the layer's input windows, channel-major like kernel.transpose(2, 0, 1, 3), and a 1."""
    if layer.kernel:
        k, s = layer.kernel, layer.stride
        n, h, w, c = x.shape
        oh, ow = -(-h // s), -(-w // s)
        ph, pw = max((oh - 1) * s + k - h, 0), max((ow - 1) * s + k - w, 0)
        x = jnp.pad(x, ((0, 0), (ph // 2, ph - ph // 2), (pw // 2, pw - pw // 2), (0, 0)))
        # k*k strided slices, not conv_general_dilated_patches: its one-hot
        # convolution costs (k*k*c)^2 per position on XLA:CPU
        shifted = [
            x[:, i : i + (oh - 1) * s + 1 : s, j : j + (ow - 1) * s + 1 : s]
            for i in range(k)
            for j in range(k)
        ]
        x = jnp.stack(shifted, axis=-1).reshape(n, oh * ow, c * k * k)  # (c, kh, kw) order
    else:  # a dense layer sees the whole (flattened) activation at one position
        x = x.reshape(x.shape[0], 1, -1)
    return jnp.concatenate([x, jnp.ones(x.shape[:2] + (1,), x.dtype)], axis=-1)


def layer_inputs_and_vjp(apply_fn: Callable, params, images: jax.Array, head: str):
    """Inputs of every layer, the head's logits, and the map logit cotangent -> pre-activation grads.

    Args:
      apply_fn: a ScriptNet ``Functional`` (``model.functional``), one font head
        when ``head="font"``.
      params: its params.
      images: float32[N, H, W, 3] in [0, 1], or uint8.
      head: "script" or "font".

    Returns:
      (inputs, logits, backward): inputs a list of float32[N, S_l, d_l + 1] in
      ``layers_for(head)`` order; logits float32[N, C]; ``backward(r)`` maps a
      cotangent r float32[N, C] on the logits to the list of pre-activation
      gradients float32[N, S_l, out_l] (linear in r).
    """
    from scriptlab.model import rms_normalise, standardise

    images = as_float(images)

    def forward(perturb):
        out = apply_fn(params, images, perturb=perturb)
        return getattr(out, head), out.activations

    shapes = jax.eval_shape(lambda: forward(None)[1])
    zeros = {t: jnp.zeros(shapes[t].shape, shapes[t].dtype) for t in _TAPS}
    logits, vjp, acts = jax.vjp(forward, zeros, has_aux=True)
    if logits.shape[-1] != params[f"{head}_head"]["bias"].shape[-1]:
        raise ValueError(
            f"apply_fn's {head} head reads one of several heads (a conditional model); "
            f"layer-wise gradients support ScriptNet with one {head} head"
        )
    head_in = acts["dense"] if head == "script" else rms_normalise(acts["dense"])
    sources = (standardise(images), acts["conv1"], acts["pool2"], acts["pool3"], head_in)
    inputs = [_patches(a, layer) for a, layer in zip(sources, layers_for(head), strict=True)]

    def backward(r):
        (post,) = vjp(r)
        # dL/d(pre-activation) = dL/d(post-ReLU) where the unit is on (post > 0), else 0
        grads = [
            jnp.where(acts[t] > 0, post[t], 0.0).reshape(r.shape[0], -1, acts[t].shape[-1])
            for t in _TAPS
        ]
        return [*grads, r[:, None, :]]

    return inputs, logits, backward


def as_float(images: jax.Array) -> jax.Array:
    """uint8 crops (the dataset's storage) to float32 in [0, 1], chunk by chunk; floats pass."""
    return uint8_to_float(images) if images.dtype == jnp.uint8 else images


def _leaf_key(path) -> tuple[str, str]:
    names = [getattr(k, "key", getattr(k, "name", None)) for k in path]
    return names[0], names[1]  # (layer, "kernel" | "bias"); a trailing ".value" is ignored


def matrices_to_params(params, mats: dict, layers: tuple[Layer, ...], lead: tuple[int, ...]):
    """A pytree like ``params`` (with leading axes ``lead``) from {layer: float[*lead, d_in + 1, out]}.

    Layers not in ``mats`` (the other head) get zeros.
    """
    by_name = {layer.name: layer for layer in layers}

    def leaf(path, p):
        name, kind = _leaf_key(path)
        if name not in mats:
            return jnp.zeros(lead + p.shape, p.dtype)
        m = mats[name]
        if kind == "bias":
            return m[..., -1, :]
        w = m[..., :-1, :]
        if by_name[name].kernel:  # rows are (c_in, kh, kw); the kernel is [kh, kw, c_in, c_out]
            kh, kw, cin, cout = p.shape
            w = w.reshape(lead + (cin, kh, kw, cout))
            n = len(lead)
            w = jnp.moveaxis(w, n, n + 2)
        return w.reshape(lead + p.shape)

    return jax.tree_util.tree_map_with_path(leaf, params)


def params_to_matrices(params, layers: tuple[Layer, ...]) -> dict:
    """{layer: float[d_in + 1, out]} from a params pytree (the inverse of ``matrices_to_params``)."""
    out = {}
    for layer in layers:
        kernel = jnp.asarray(params[layer.name]["kernel"][...])
        bias = jnp.asarray(params[layer.name]["bias"][...])
        if layer.kernel:
            kernel = kernel.transpose(2, 0, 1, 3).reshape(-1, kernel.shape[-1])
        out[layer.name] = jnp.concatenate([kernel, bias[None]], axis=0)
    return out


def logit_residual(logits: jax.Array, y: jax.Array) -> jax.Array:
    """d CE / d logits = softmax(logits) - onehot(y): the cotangent of the true-label loss."""
    return jax.nn.softmax(logits) - jax.nn.one_hot(y, logits.shape[-1], dtype=logits.dtype)


@dataclasses.dataclass(frozen=True)
class ScriptNetLoss:
    """Per-example cross-entropy of a ScriptNet head, with fast per-example gradients.

    Callable as a ``LossFn`` (``cross_entropy(apply_fn, head)``); ``layer_grads``
    (dense layers factored) and ``example_grads``
    gives the flat per-example gradients float32[B, P] (``ravel_pytree`` order)
    from the layer view. Hashes by value, so it can be a static jit argument.

    Attributes:
      apply_fn: a ScriptNet ``Functional``.
      head: "script" or "font".
    """

    apply_fn: Callable
    head: str = "script"

    def __post_init__(self):
        check_choice("head", self.head, ("script", "font"))

    def __call__(self, params, x, y):
        logits = getattr(self.apply_fn(params, as_float(x)), self.head)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)

    def layer_grads(self, params, x, y) -> dict:
        """Per-example gradients per layer, kept factored where that is cheaper.

        Returns:
          {layer: float32[B, d_in + 1, out]} for conv layers (a sum over
          positions), {layer: (a float32[B, d_in + 1], g float32[B, out])} for
          dense layers, whose gradient is the outer product a g^T.
        """
        layers = layers_for(self.head)
        inputs, logits, backward = layer_inputs_and_vjp(self.apply_fn, params, x, self.head)
        outs = backward(logit_residual(logits, y))
        return {
            layer.name: jnp.einsum("nsi,nso->nio", a, g) if layer.kernel else (a[:, 0], g[:, 0])
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
        """float32[B, P] flat gradients of each example's loss (P over every parameter)."""
        layers = layers_for(self.head)
        inputs, logits, backward = layer_inputs_and_vjp(self.apply_fn, params, x, self.head)
        outs = backward(logit_residual(logits, y))
        mats = {
            layer.name: jnp.einsum("nsi,nso->nio", a, g)
            for layer, a, g in zip(layers, inputs, outs, strict=True)
        }
        tree = matrices_to_params(params, mats, layers, (x.shape[0],))
        leaves = [leaf.reshape(x.shape[0], -1) for leaf in jax.tree.leaves(tree)]
        return jnp.concatenate(leaves, axis=1)
