"""Gradient saliency: vanilla gradient, gradient x input, SmoothGrad, Integrated
Gradients, guided backpropagation, deconvnet and Grad-CAM.

One calling convention for all::

    maps = method(apply_fn, params, images, targets, *, options)

``images`` is float32[N, H, W, C] in [0, 1], ``targets`` int[N] (or one int for
all), and ``maps`` is float32[N, H, W]. The functions validate their inputs
eagerly (shapes, channel count, class range, NaNs) and then run one jitted,
vmapped computation: images are batched with ``jax.vmap`` and samples / steps
with a ``lax.scan`` over vmapped chunks, never a Python loop.

``apply_fn`` is a ``scriptlab.protocols.ApplyFn``. These methods read
``getattr(out, head)`` logits; guided backprop and deconvnet also pass
``relu=``, Grad-CAM ``perturb=`` and ``out.activations[layer]``. Each image is
scored on its own (``apply_fn`` sees batches of 1 under ``vmap``), so models
that mix images in a batch (train-mode batch norm) still give per-image maps.

References: Simonyan, Vedaldi & Zisserman 2013 (gradient saliency),
https://arxiv.org/abs/1312.6034; Shrikumar et al. 2016 (gradient x input),
https://arxiv.org/abs/1605.01713; Smilkov et al. 2017 (SmoothGrad),
https://arxiv.org/abs/1706.03825; Sundararajan, Taly & Yan 2017 (Integrated Gradients),
https://arxiv.org/abs/1703.01365; Springenberg et al. 2014 (guided backprop),
https://arxiv.org/abs/1412.6806; Zeiler & Fergus 2014 (deconvnet),
https://arxiv.org/abs/1311.2901; Selvaraju et al. 2017 (Grad-CAM),
https://arxiv.org/abs/1610.02391.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeAlias

import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Float, Real

from scriptlab.interpret._common import (
    check_array,
    check_choice,
    check_images,
    check_int,
    check_number,
    check_targets,
    gaussian_blur,
    probe_outputs,
    split_rows,
)
from scriptlab.protocols import AnyArray, ApplyFn, Image, Targets

METHODS = (
    "gradient",
    "gradient_x_input",
    "smoothgrad",
    "integrated_gradients",
    "guided_backprop",
    "deconvnet",
    "grad_cam",
)
REDUCTIONS = ("max_abs", "sum", "abs_sum", "l2", "none")

Maps: TypeAlias = Float[Array, "n h w"] | Float[Array, "n h w c"]
"""Saliency maps: one per image, channels reduced (or kept, with ``reduce="none"``)."""

Baseline: TypeAlias = str | Real[ArrayLike, "h w c"] | Real[ArrayLike, "n h w c"]
"""A path-method baseline: a name in ``BASELINES``, one image, or one per image."""
BASELINES = ("black", "white", "gray", "blur")


# --------------------------------------------------------------------------- ReLU rules
@jax.custom_vjp
def guided_relu(x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """ReLU forward; backward passes g only where x > 0 and g > 0 (Springenberg 2014)."""
    return jnp.maximum(x, 0)


def _guided_fwd(x):
    return jnp.maximum(x, 0), x


def _guided_bwd(x, g):
    return (jnp.where((x > 0) & (g > 0), g, 0).astype(g.dtype),)


guided_relu.defvjp(_guided_fwd, _guided_bwd)


@jax.custom_vjp
def deconv_relu(x: Float[Array, "*shape"]) -> Float[Array, "*shape"]:
    """ReLU forward; backward is ReLU of the incoming signal, ignoring x (Zeiler & Fergus 2014)."""
    return jnp.maximum(x, 0)


def _deconv_fwd(x):
    return jnp.maximum(x, 0), None


def _deconv_bwd(_, g):
    return (jnp.maximum(g, 0),)


deconv_relu.defvjp(_deconv_fwd, _deconv_bwd)

_RELUS: dict[str, Callable | None] = {"plain": None, "guided": guided_relu, "deconv": deconv_relu}


# --------------------------------------------------------------------------- validation
def _validate(
    apply_fn, params, images, targets, head, **probe_kwargs
) -> tuple[jax.Array, jax.Array, Any]:
    images = check_images(images)
    out = probe_outputs(apply_fn, params, images, head, **probe_kwargs)
    targets = check_targets(targets, images.shape[0], getattr(out, head).shape[-1])
    return images, targets, out


# --------------------------------------------------------------------------- core
def reduce_channels(
    grads: Float[Array, "*batch h w c"], reduce: str
) -> Float[Array, "*batch h w"] | Float[Array, "*batch h w c"]:
    """Channel reduction float[..., H, W, C] -> float[..., H, W].

    "max_abs" is Simonyan's max over channels of |g|; "sum" keeps the sign (and
    Integrated Gradients' completeness); "abs_sum" and "l2" are common variants;
    "none" returns the per-channel array unchanged.
    """
    if reduce == "max_abs":
        return jnp.abs(grads).max(-1)
    if reduce == "sum":
        return grads.sum(-1)
    if reduce == "abs_sum":
        return jnp.abs(grads).sum(-1)
    if reduce == "l2":
        return jnp.sqrt((grads**2).sum(-1))
    if reduce == "none":
        return grads
    raise ValueError(f"reduce must be one of {REDUCTIONS}, got {reduce!r}")


def _score(apply_fn, head: str, relu: Callable | None):
    """score(params, image[H, W, C], target) -> scalar logit of one image."""

    def score(params, image, target):
        kwargs = {} if relu is None else {"relu": relu}
        return getattr(apply_fn(params, image[None], **kwargs), head)[0, target]

    return score


def _batch_grad(apply_fn, params, images, targets, head, relu):
    """d score_n / d image_n for every image: float32[N, H, W, C], one batched call."""
    grad = jax.grad(_score(apply_fn, head, relu), argnums=1)
    return jax.vmap(grad, in_axes=(None, 0, 0))(params, images, targets)


def _check_per_call(samples_per_call) -> int | None:
    if samples_per_call is None:
        return None
    return check_int("samples_per_call", samples_per_call, 1)


def _chunk(k: int, samples_per_call: int | None, n: int) -> int:
    """Largest divisor of k not above the requested samples per call.

    The default keeps each call near 128 images: on CPU, bigger vmapped batches
    stream more activation memory and ran slower per image (benchmarks/bench_saliency.py).
    """
    want = samples_per_call or max(1, 128 // max(n, 1))
    want = max(1, min(k, want))
    return max(d for d in range(1, want + 1) if k % d == 0)


def _mean_over_samples(fn, xs: jax.Array, chunk: int) -> jax.Array:
    """Mean of fn(x) over the leading axis of xs: a scan over vmapped chunks.

    Keeps memory at ``chunk`` evaluations while each call is one big batch. Up to
    64 chunks the scan is unrolled, because XLA:CPU runs a rolled loop's body
    slower than the same batched gradient outside a loop
    (benchmarks/bench_saliency.py prints IG's cost against plain gradient calls).
    """
    k = xs.shape[0]
    xs = xs.reshape((k // chunk, chunk) + xs.shape[1:])

    def body(total, x_chunk):
        return total + jax.vmap(fn)(x_chunk).sum(0), None

    first = jax.eval_shape(fn, xs[0, 0])
    total, _ = jax.lax.scan(body, jnp.zeros(first.shape, first.dtype), xs, unroll=k // chunk <= 64)
    return total / k


@functools.partial(jax.jit, static_argnames=("apply_fn", "head", "rule", "reduce", "times_input"))
def _gradient_map(apply_fn, params, images, targets, *, head, rule, reduce, times_input):
    def maps(batch):
        x, t = batch
        g = _batch_grad(apply_fn, params, x, t, head, _RELUS[rule])
        return reduce_channels(g * x if times_input else g, reduce)

    return split_rows(maps, (images, targets))


@functools.partial(jax.jit, static_argnames=("apply_fn", "head", "n_samples", "reduce", "chunk"))
def _smoothgrad_map(
    apply_fn, params, images, targets, key, noise, *, head, n_samples, reduce, chunk
):
    def maps(batch):
        x, t = batch
        span = x.max(axis=(1, 2, 3), keepdims=True) - x.min(axis=(1, 2, 3), keepdims=True)
        sigma = noise * jnp.maximum(span, 1e-6)
        keys = jax.random.split(key, n_samples)

        def one_sample(k):
            eps = jax.random.normal(k, x.shape, x.dtype)
            return _batch_grad(apply_fn, params, x + sigma * eps, t, head, None)

        return reduce_channels(_mean_over_samples(one_sample, keys, chunk), reduce)

    return split_rows(maps, (images, targets))


@functools.partial(jax.jit, static_argnames=("apply_fn", "head", "steps", "reduce", "chunk"))
def _ig_map(apply_fn, params, images, targets, baselines, *, head, steps, reduce, chunk):
    # Midpoint Riemann sum: error O(1/steps^2) with `steps` gradient calls, and it
    # never evaluates the baseline itself (where a constant image has no spread).
    alphas = (jnp.arange(steps, dtype=images.dtype) + 0.5) / steps

    def maps(batch):
        x, t, b = batch
        diff = x - b

        def at(alpha):
            return _batch_grad(apply_fn, params, b + alpha * diff, t, head, None)

        return reduce_channels(_mean_over_samples(at, alphas, chunk) * diff, reduce)

    return split_rows(maps, (images, targets, baselines))


@functools.partial(jax.jit, static_argnames=("apply_fn", "head", "layer"))
def _grad_cam_map(apply_fn, params, images, targets, *, head, layer):
    def one(image, target):
        act_shape = jax.eval_shape(
            lambda x: apply_fn(params, x).activations[layer][0], image[None]
        ).shape

        def f(delta):
            out = apply_fn(params, image[None], perturb={layer: delta[None]})
            return getattr(out, head)[0, target], out.activations[layer][0]

        g, act = jax.grad(f, has_aux=True)(jnp.zeros(act_shape, images.dtype))
        weights = g.mean(axis=(0, 1))  # global-average-pooled gradients, one per channel
        cam = jax.nn.relu((act * weights).sum(-1))
        return jax.image.resize(cam, images.shape[1:3], method="bilinear")

    return split_rows(lambda batch: jax.vmap(one)(*batch), (images, targets))


# --------------------------------------------------------------------------- public API
def vanilla_gradient(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    *,
    head: str = "script",
    reduce: str = "max_abs",
) -> Maps:
    """Image-specific class saliency: |dS_c/dI|, max over channels.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn``; its ``getattr(out, head)`` logits are read.
      params: the model parameters (any pytree).
      images: float32[N, H, W, C] in [0, 1].
      targets: int or int[N], the class c whose unnormalised score S_c is explained.
      head: output field holding the logits ("script" or "font").
      reduce: channel reduction, one of ``REDUCTIONS`` (Simonyan: "max_abs").

    Returns:
      float32[N, H, W] saliency maps.

    References: Simonyan, Vedaldi & Zisserman 2013, Deep Inside Convolutional Networks,
    https://arxiv.org/abs/1312.6034.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    images, targets, _ = _validate(apply_fn, params, images, targets, head)
    return _gradient_map(
        apply_fn, params, images, targets, head=head, rule="plain", reduce=reduce, times_input=False
    )


def gradient_x_input(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    *,
    head: str = "script",
    reduce: str = "sum",
) -> Maps:
    """Gradient times input, summed over channels (signed).

    Args and Returns as ``vanilla_gradient``.

    References: Shrikumar et al. 2016, Not Just a Black Box,
    https://arxiv.org/abs/1605.01713.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    images, targets, _ = _validate(apply_fn, params, images, targets, head)
    return _gradient_map(
        apply_fn, params, images, targets, head=head, rule="plain", reduce=reduce, times_input=True
    )


def smoothgrad(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    *,
    head: str = "script",
    n_samples: int = 32,
    noise: float = 0.15,
    key: jax.Array | None = None,
    reduce: str = "max_abs",
    samples_per_call: int | None = None,
) -> Maps:
    """SmoothGrad: the gradient averaged over Gaussian-noised copies, then reduced.

    Args:
      apply_fn, params, images, targets, head: as ``vanilla_gradient``.
      n_samples: noisy copies per image.
      noise: noise standard deviation as a fraction of each image's value range
        (Smilkov et al. recommend 0.1-0.2).
      key: PRNG key; default ``jax.random.key(0)`` (same key, same maps).
      reduce: channel reduction of the averaged gradient.
      samples_per_call: noise samples evaluated per vmapped call (memory bound);
        default about 128 images per call.

    Returns:
      float32[N, H, W].

    References: Smilkov et al. 2017, SmoothGrad: removing noise by adding noise,
    https://arxiv.org/abs/1706.03825.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    n_samples = check_int("n_samples", n_samples, 1)
    noise = check_number("noise", noise, low=0.0)
    samples_per_call = _check_per_call(samples_per_call)
    images, targets, _ = _validate(apply_fn, params, images, targets, head)
    key = jax.random.key(0) if key is None else key
    chunk = _chunk(n_samples, samples_per_call, images.shape[0])
    return _smoothgrad_map(
        apply_fn, params, images, targets, key, jnp.float32(noise),
        head=head, n_samples=n_samples, reduce=reduce, chunk=chunk,
    )  # fmt: skip


def make_baseline(
    images: Float[Array, "n h w c"],
    baseline: Baseline = "black",
    *,
    blur_sigma: float = 4.0,
) -> Float[Array, "n h w c"]:
    """Integrated Gradients reference images, float32[N, H, W, C].

    ``"black"``, ``"white"`` and ``"gray"`` are constant images; ``"blur"`` is
    each image Gaussian-blurred (Sturmfels et al. 2020 discuss the choice); an
    array of shape [H, W, C] or [N, H, W, C] is broadcast to the images.
    """
    if isinstance(baseline, str):
        check_choice("baseline", baseline, BASELINES)
        if baseline == "blur":
            return gaussian_blur(
                images, check_number("blur_sigma", blur_sigma, low=0.0, open_low=True)
            )
        value = {"black": 0.0, "white": 1.0, "gray": 0.5}[baseline]
        return jnp.full_like(images, value)
    b = jnp.asarray(baseline, images.dtype)
    if b.shape not in (images.shape, images.shape[1:]):
        raise ValueError(
            f"baseline must be a name in {BASELINES} or shaped {images.shape[1:]} / {images.shape}, got {b.shape}"
        )
    return jnp.broadcast_to(check_array("baseline", b), images.shape)


def integrated_gradients(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    *,
    head: str = "script",
    steps: int = 32,
    baseline: Baseline = "black",
    reduce: str = "sum",
    samples_per_call: int | None = None,
) -> Maps:
    """Integrated Gradients along the straight path from a baseline, midpoint rule.

    With ``reduce="sum"`` the map sums to about S_c(x) - S_c(baseline)
    (completeness); ``completeness_gap`` measures how far off a step count is.

    Args:
      apply_fn, params, images, targets, head: as ``vanilla_gradient``.
      steps: Riemann steps (gradient evaluations per image).
      baseline: "black", "white", "gray", "blur" or an array (see ``make_baseline``).
      reduce: channel reduction of the per-channel attributions.
      samples_per_call: path points evaluated per vmapped call (memory bound).

    Returns:
      float32[N, H, W].

    References: Sundararajan, Taly & Yan 2017, Axiomatic Attribution for Deep Networks,
    https://arxiv.org/abs/1703.01365.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    steps = check_int("steps", steps, 1)
    samples_per_call = _check_per_call(samples_per_call)
    images, targets, _ = _validate(apply_fn, params, images, targets, head)
    baselines = make_baseline(images, baseline)
    chunk = _chunk(steps, samples_per_call, images.shape[0])
    return _ig_map(
        apply_fn,
        params,
        images,
        targets,
        baselines,
        head=head,
        steps=steps,
        reduce=reduce,
        chunk=chunk,
    )


def completeness_gap(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    attributions: Real[AnyArray, "n h w"] | Real[AnyArray, "n h w c"],
    *,
    head: str = "script",
    baseline: Baseline = "black",
) -> tuple[Float[Array, " n"], Float[Array, " n"]]:
    """How well IG attributions add up: (sum of attributions, S_c(x) - S_c(baseline)).

    Args:
      attributions: float32[N, H, W] (``reduce="sum"``) or [N, H, W, C].

    Returns:
      (float32[N], float32[N]); completeness says they are equal.
    """
    images, targets, _ = _validate(apply_fn, params, images, targets, head)
    n, h, w, c = images.shape
    shape = (n, h, w) if jnp.ndim(attributions) == 3 else (n, h, w, c)
    attributions = check_array("attributions", attributions, shape=shape)
    baselines = make_baseline(images, baseline)

    def scores(x):
        logits = getattr(apply_fn(params, x), head)
        return jnp.take_along_axis(logits, targets[:, None], axis=1)[:, 0]

    total = attributions.reshape(attributions.shape[0], -1).sum(-1)
    return total, scores(images) - scores(baselines)


def guided_backprop(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    *,
    head: str = "script",
    reduce: str = "max_abs",
) -> Maps:
    """Guided backpropagation: at every ReLU pass the gradient only where the
    forward input and the incoming gradient are both positive.

    ``apply_fn`` must accept ``relu=`` (the rule is swapped in; no rebuild).
    Args and Returns as ``vanilla_gradient``.

    References: Springenberg, Dosovitskiy, Brox & Riedmiller 2014, Striving for
    Simplicity, https://arxiv.org/abs/1412.6806.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    images, targets, _ = _validate(apply_fn, params, images, targets, head, relu=guided_relu)
    return _gradient_map(
        apply_fn,
        params,
        images,
        targets,
        head=head,
        rule="guided",
        reduce=reduce,
        times_input=False,
    )


def deconvnet(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    *,
    head: str = "script",
    reduce: str = "max_abs",
) -> Maps:
    """Deconvnet: at every ReLU pass the ReLU of the incoming signal (ignoring the
    forward input); max-pool switches route the signal as in the gradient: each
    pool window's whole signal goes to its first maximum, as in Zeiler &
    Fergus, ``nnx.max_pool`` and PyTorch's ``MaxPool2d`` (ScriptNet's pool,
    ``scriptlab.model._max_pool``; an all-zero window after a ReLU is a tie).

    ``apply_fn`` must accept ``relu=``. Args and Returns as ``vanilla_gradient``.

    References: Zeiler & Fergus 2014, Visualizing and Understanding Convolutional
    Networks, https://arxiv.org/abs/1311.2901.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    images, targets, _ = _validate(apply_fn, params, images, targets, head, relu=deconv_relu)
    return _gradient_map(
        apply_fn,
        params,
        images,
        targets,
        head=head,
        rule="deconv",
        reduce=reduce,
        times_input=False,
    )


def grad_cam(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    *,
    head: str = "script",
    layer: str = "conv3",
) -> Float[Array, "n h w"]:
    """Grad-CAM on a named layer: ReLU(sum_k alpha_k A_k) with alpha_k the
    spatial mean of dS_c/dA_k, bilinearly upsampled to the image size.

    ``apply_fn`` must accept ``perturb={layer: array}`` and return
    ``out.activations[layer]`` float32[N, h, w, k]. Other args as ``vanilla_gradient``.

    Returns:
      float32[N, H, W], non-negative.

    References: Selvaraju et al. 2017, Grad-CAM, https://arxiv.org/abs/1610.02391.
    """
    images, targets, out = _validate(apply_fn, params, images, targets, head)
    acts = getattr(out, "activations", None)
    if not isinstance(acts, dict) or layer not in acts:
        names = list(acts) if isinstance(acts, dict) else None
        raise ValueError(f"layer={layer!r} is not in apply_fn's activations {names}")
    if len(acts[layer].shape) != 4:
        raise ValueError(
            f"layer={layer!r} must be spatial [N, h, w, k], got shape {acts[layer].shape}"
        )
    probe_outputs(apply_fn, params, images, head, perturb={layer: jnp.zeros(acts[layer].shape)})
    return _grad_cam_map(apply_fn, params, images, targets, head=head, layer=layer)


_FUNCTIONS = {
    "gradient": vanilla_gradient,
    "gradient_x_input": gradient_x_input,
    "smoothgrad": smoothgrad,
    "integrated_gradients": integrated_gradients,
    "guided_backprop": guided_backprop,
    "deconvnet": deconvnet,
    "grad_cam": grad_cam,
}


def saliency(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    *,
    method: str = "gradient",
    **options,
) -> Maps:
    """Any method of ``METHODS`` by name; ``options`` go to that method.

    Returns:
      float32[N, H, W].
    """
    check_choice("method", method, METHODS)
    return _FUNCTIONS[method](apply_fn, params, images, targets, **options)
