"""Class model visualisation: the image that maximises a class score (or a channel).

Gradient ascent on the unnormalised score S_c(I) - l2 * ||I - mean||^2 from the
mean image, as Simonyan et al. 2013, plus the regularisers that make the result
readable on a small network: random jitter (Mordvintsev et al. 2015), periodic
Gaussian blur and pixel clipping (Yosinski et al. 2015), a total-variation
penalty (Mahendran & Vedaldi 2015), and a decorrelated Fourier parametrisation
(Olah et al. 2017, Lucid). Any channel count: RGB, grayscale models, or one
channel optimised and shown on all of a model's channels (``grayscale=True``).

All targets (every class of a head, or several channels of a layer) are
optimised together: one jitted call, ``vmap`` over targets and ``lax.scan`` over
steps. ``apply_fn`` is a ``scriptlab.protocols.ApplyFn``: ``objective=("head",
head)`` reads its ``head`` logits, ``objective=("layer", layer, channel)`` its
``out.activations[layer]``.

References: Simonyan, Vedaldi & Zisserman 2013, https://arxiv.org/abs/1312.6034;
Yosinski et al. 2015, https://arxiv.org/abs/1506.06579; Mahendran & Vedaldi 2015,
https://arxiv.org/abs/1412.0035; Olah, Mordvintsev & Schubert 2017 (Feature
Visualization), https://distill.pub/2017/feature-visualization.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jaxtyping import Array, ArrayLike, Float, Integer

from scriptlab.interpret._common import (
    check_array,
    check_choice,
    check_image_shape,
    check_int,
    check_number,
    check_targets,
    gaussian_blur,
    probe_outputs,
    split_rows,
)
from scriptlab.protocols import ApplyFn

PARAMETRISATIONS = ("pixel", "fourier")
OPTIMIZERS = ("sgd", "adam")

# Lucid's square root of the ImageNet colour correlation: optimising in this
# decorrelated space keeps the colour channels from fighting each other.
_COLOR_SQRT = np.array([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float32)
_COLOR_SQRT = _COLOR_SQRT / np.linalg.norm(_COLOR_SQRT, axis=0).max()


class ClassModel(NamedTuple):
    """Optimised images and the objective's score at every ascent step.

    Attributes:
      images: float32[K, H, W, C] in [0, 1], one per target.
      scores: float32[steps, K], the score of the (jittered) image before each step.
    """

    images: jax.Array
    scores: jax.Array


class _Static(NamedTuple):
    """Settings that fix the traced program (changing one recompiles)."""

    kind: str
    name: str
    image_shape: tuple[int, int, int]
    steps: int
    parametrisation: str
    grayscale: bool
    jitter: int
    blur_sigma: float
    blur_every: int
    clip: bool
    optimizer: str


def _fourier_scale(h: int, w: int) -> jax.Array:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    return jnp.asarray(1.0 / np.maximum(np.sqrt(fx**2 + fy**2), 1.0 / max(h, w)), jnp.float32)


def _init(key, n: int, s: _Static) -> jax.Array:
    h, w, channels = s.image_shape
    c = 1 if s.grayscale else channels
    if s.parametrisation == "pixel":
        # The mean image, plus a whisper of noise: a constant image has no
        # spatial structure to climb from (and zero spread, which a model that
        # standardises each image cannot differentiate through).
        return 0.01 * jax.random.normal(key, (n, h, w, c))
    return 0.01 * jax.random.normal(key, (n, c, h, w // 2 + 1, 2))


def _to_image(z: jax.Array, s: _Static) -> jax.Array:
    """One parameter tensor -> image float32[H, W, C] in [0, 1]."""
    h, w, channels = s.image_shape
    if s.parametrisation == "pixel":
        img = 0.5 + z
    else:
        spectrum = (z[..., 0] + 1j * z[..., 1]) * _fourier_scale(h, w)
        x = (
            jnp.fft.irfftn(spectrum, s=(h, w), axes=(-2, -1)).transpose(1, 2, 0)
            * (h * w) ** 0.5
            / 4.0
        )
        if not s.grayscale and channels == 3:  # Lucid's colour decorrelation is for RGB
            x = x @ _COLOR_SQRT.T
        img = jax.nn.sigmoid(x)
    return jnp.broadcast_to(img, (h, w, channels)) if s.grayscale else img


def _total_variation(img: jax.Array) -> jax.Array:
    return ((img[1:] - img[:-1]) ** 2).sum() + ((img[:, 1:] - img[:, :-1]) ** 2).sum()


@functools.partial(jax.jit, static_argnames=("apply_fn", "static"))
def _ascend(apply_fn, params, targets, key, lr, l2, tv, *, static: _Static) -> ClassModel:
    # the targets are independent: split across devices, scores [K, steps] while split
    result = split_rows(
        lambda t: _ascend_targets(apply_fn, params, t, key, lr, l2, tv, static), targets
    )
    return ClassModel(result.images, result.scores.T)


def _ascend_targets(apply_fn, params, targets, key, lr, l2, tv, s: _Static) -> ClassModel:
    """ClassModel(images float32[K, H, W, C], scores float32[K, steps]) of K targets."""
    init_key, jitter_key = jax.random.split(key)
    z0 = _init(init_key, targets.shape[0], s)
    opt = optax.sgd(lr) if s.optimizer == "sgd" else optax.adam(lr)

    def score(image, target):
        out = apply_fn(params, image[None])
        if s.kind == "head":
            return getattr(out, s.name)[0, target]
        return out.activations[s.name][0][..., target].mean()

    def objective(z, target, shift):
        img = _to_image(z, s)
        value = score(jnp.roll(img, shift, axis=(0, 1)) if s.jitter else img, target)
        penalty = l2 * ((img - 0.5) ** 2).sum() + tv * _total_variation(img)
        return -(value - penalty), value  # optax minimises

    grad_all = jax.vmap(jax.grad(objective, has_aux=True))

    def step(carry, inputs):
        z, opt_state = carry
        i, k = inputs
        shifts = jax.random.randint(k, (targets.shape[0], 2), -s.jitter, s.jitter + 1)
        grads, values = grad_all(z, targets, shifts)
        updates, opt_state = opt.update(grads, opt_state, z)
        z = optax.apply_updates(z, updates)
        if s.parametrisation == "pixel":
            if s.blur_sigma > 0:
                blurred = gaussian_blur(0.5 + z, s.blur_sigma) - 0.5
                z = jnp.where((i + 1) % s.blur_every == 0, blurred, z)
            if s.clip:
                z = jnp.clip(z, -0.5, 0.5)
        return (z, opt_state), values

    xs = (jnp.arange(s.steps), jax.random.split(jitter_key, s.steps))
    (z, _), scores = jax.lax.scan(step, (z0, opt.init(z0)), xs)
    return ClassModel(jax.vmap(lambda zi: _to_image(zi, s))(z), scores.T)


def class_model(
    apply_fn: ApplyFn,
    params,
    *,
    objective: tuple = ("head", "script"),
    targets: Integer[ArrayLike, " k"] | Integer[ArrayLike, ""] | Sequence[int] | None = None,
    image_shape: tuple[int, int, int] = (32, 64, 3),
    steps: int = 256,
    lr: float = 0.05,
    l2: float = 1e-3,
    tv: float = 0.0,
    jitter: int = 0,
    blur_sigma: float = 0.0,
    blur_every: int = 4,
    clip: bool = True,
    parametrisation: str = "pixel",
    grayscale: bool = False,
    optimizer: str = "adam",
    seed: int = 0,
) -> ClassModel:
    """Images maximising each target's score, all targets in one jitted call.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn`` (see the module docstring).
      params: model parameters.
      objective: ``("head", "script")`` / ``("head", "font")`` for class scores
        (unnormalised logits), or ``("layer", name, channel)`` for the spatial
        mean of one channel of ``out.activations[name]``; ``channel=None`` (or
        ``("layer", name)``) optimises every channel of the layer.
      targets: int[K] class ids (or channels); default every class / channel.
        Overridden by an int ``channel`` in a layer objective.
      image_shape: (H, W, C) of the model's inputs, any channel count C.
      steps: ascent steps (``lax.scan``).
      lr: step size (traced: changing it does not recompile).
      l2: weight of the L2 penalty ||I - 0.5||^2 (Simonyan's lambda; traced).
      tv: weight of the squared total-variation penalty (traced).
      jitter: the image is rolled by a random shift in [-jitter, jitter] pixels
        before every forward pass (0 = off).
      blur_sigma: Gaussian blur of the image every ``blur_every`` steps (pixel
        parametrisation only; 0 = off).
      blur_every: blur period in steps.
      clip: keep pixels in [0, 1] after each step (pixel parametrisation; the
        Fourier one maps through a sigmoid instead).
      parametrisation: "pixel" (Simonyan) or "fourier" (1/frequency-scaled
        spectrum, with decorrelated colour when C = 3; Olah et al. 2017).
      grayscale: optimise one channel shown on all C.
      optimizer: "adam" (default; robust to the score's scale) or "sgd"
        (Simonyan's plain gradient ascent).
      seed: PRNG seed for the initial noise and the jitter (same seed, same images).

    Returns:
      ClassModel(images float32[K, H, W, C] in [0, 1], scores float32[steps, K]).

    References: Simonyan, Vedaldi & Zisserman 2013, Deep Inside Convolutional Networks,
    https://arxiv.org/abs/1312.6034; Olah, Mordvintsev & Schubert 2017, Feature
    Visualization, https://distill.pub/2017/feature-visualization.
    """
    check_choice("parametrisation", parametrisation, PARAMETRISATIONS)
    check_choice("optimizer", optimizer, OPTIMIZERS)
    image_shape = check_image_shape(apply_fn, params, image_shape)
    for name, value, low in (
        ("steps", steps, 1),
        ("jitter", jitter, 0),
        ("blur_every", blur_every, 1),
    ):
        check_int(name, value, low)
    for knob, x in (("lr", lr), ("l2", l2), ("tv", tv), ("blur_sigma", blur_sigma)):
        check_number(knob, x, low=0.0, open_low=knob == "lr")
    check_int("seed", seed)
    if blur_sigma and parametrisation != "pixel":
        raise ValueError(
            "blur_sigma applies to parametrisation='pixel'; the Fourier one already favours low frequencies"
        )
    if not isinstance(objective, tuple) or objective[:1] not in (("head",), ("layer",)):
        raise ValueError(
            f"objective must be ('head', name) or ('layer', name, channel), got {objective!r}"
        )
    kind, name = objective[0], objective[1]
    probe_images = jnp.full((1, *image_shape), 0.5, jnp.float32)
    if kind == "head":
        if len(objective) != 2:
            raise ValueError(f"objective ('head', name) takes no channel, got {objective!r}")
        n_targets = getattr(probe_outputs(apply_fn, params, probe_images, name), name).shape[-1]
    else:
        out = probe_outputs(apply_fn, params, probe_images, "activations", logits=False)
        if not isinstance(out.activations, dict) or name not in out.activations:
            raise ValueError(
                f"layer {name!r} is not in apply_fn's activations {list(out.activations)}"
            )
        n_targets = out.activations[name].shape[-1]
        channel = objective[2] if len(objective) > 2 else None
        if channel is not None:
            targets = [channel]
    targets = jnp.arange(n_targets) if targets is None else jnp.atleast_1d(jnp.asarray(targets))
    targets = check_targets(
        targets, targets.shape[0], n_targets, name="targets (classes or channels)"
    )
    static = _Static(
        kind, name, tuple(image_shape), int(steps), parametrisation, bool(grayscale),
        int(jitter), float(blur_sigma), int(blur_every), bool(clip), optimizer,
    )  # fmt: skip
    f32 = jnp.float32
    return _ascend(
        apply_fn, params, targets, jax.random.key(seed), f32(lr), f32(l2), f32(tv), static=static
    )


def final_scores(
    apply_fn: ApplyFn, params, result: ClassModel, *, head: str = "script"
) -> Float[Array, "k classes"]:
    """Logits of the optimised images (no jitter): float32[K, n_classes]."""
    # finite, but not range-checked: clip=False images may leave [0, 1]
    images = check_array("result.images", result.images, ndim=4)
    probe_outputs(apply_fn, params, images, head)
    return getattr(apply_fn(params, images), head)
