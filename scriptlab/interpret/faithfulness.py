"""Faithfulness of attribution maps: deletion, insertion and ROAD curves.

A map is faithful when the pixels it ranks highest are the ones the model's
score depends on. Each test here changes pixels in the map's order and follows
the target's score; the area under that curve is the test's number:

- **deletion** (Petsiuk et al. 2018): the most relevant pixels are replaced
  first by a baseline image (black by default). A faithful map makes the score
  fall fast: a low AUC is good.
- **insertion** (Petsiuk et al. 2018): start from a baseline (a blur of the
  image by default) and put the most relevant pixels back first. The score
  should rise fast: a high AUC is good.
- **ROAD** (Rong et al. 2022): remove pixels most relevant first (MoRF: a low
  AUC is good) or least relevant first (LeRF: a high AUC is good), and fill them
  by noisy linear imputation (``road_impute``) instead of a constant. A constant
  fill takes crops off the data distribution, and the shape of the filled
  region leaks which pixels were ranked high; the imputed image stays smooth.

The schedule, shared by every curve: an image has P = H * W pixels and a curve
S >= 2 points (``steps``). At step k = 0 .. S - 1 the first
n_k = floor(k * P / (S - 1)) pixels of the order are changed (every channel of
a pixel together), so ``fractions[k] = n_k / P`` runs from exactly 0 to exactly 1.
The order ranks the pixels by the map's value, highest first (LeRF: lowest
first); equal values keep raster order (row-major, the smaller flat index
first) in both directions, as a stable sort does. A map with channels,
float32[N, H, W, C], is reduced to one value per pixel first by ``reduce`` (a
rule of ``saliency.reduce_channels``; "sum" by default, which keeps the sign).
To rank by magnitude, pass ``abs(maps)``. The AUC is the trapezoid rule over
the fractions, so it lies in [0, 1] for probabilities.

Every (image, step) pair is scored in one jitted program per curve: the pairs
are flattened into chunks of ``batch_size``, and a ``lax.map`` over the chunks
builds each chunk's perturbed images and scores them in one vmapped forward
pass, so memory is bounded by the chunk. ROAD's imputations run one at a time
inside a chunk (a ``lax.map``): each conjugate-gradient solve then stops at its
own convergence and works on arrays that stay in cache; 64 solves vmapped
together ran slower on CPU than a Python loop of single ones.

``apply_fn`` is a ``scriptlab.protocols.ApplyFn``; these curves read
``getattr(out, head)`` logits only.

References: Petsiuk, Das & Saenko 2018, RISE: Randomized Input Sampling for
Explanation of Black-box Models (deletion and insertion),
https://arxiv.org/abs/1806.07421; Rong, Leemann, Borisov, Kasneci & Kasneci 2022,
A Consistent and Efficient Evaluation Strategy for Attribution Methods (ROAD),
https://arxiv.org/abs/2202.00449.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Bool, Float, Int, Real

from scriptlab.interpret._common import (
    check_array,
    check_batch_size,
    check_choice,
    check_images,
    check_int,
    check_maps,
    check_masks,
    check_number,
    check_targets,
    map_rows,
    probe_outputs,
)
from scriptlab.interpret.saliency import Baseline, make_baseline, reduce_channels
from scriptlab.protocols import AnyArray, ApplyFn, Image, Targets

ORDERS = ("morf", "lerf")
"""ROAD's two orders: most relevant first, least relevant first."""
OUTPUTS = ("probability", "logit")
REDUCTIONS = ("sum", "abs_sum", "max_abs", "l2")
"""How a map with channels becomes one value per pixel (``saliency.reduce_channels``)."""

# ROAD's neighbour weights (dy, dx, weight): direct neighbours 1, diagonals 1/2, as
# the reference implementation's 1/6 and 1/12 (a common scale leaves the solution alone).
_NEIGHBOURS = (
    (-1, -1, 0.5), (-1, 0, 1.0), (-1, 1, 0.5),
    (0, -1, 1.0), (0, 1, 1.0),
    (1, -1, 0.5), (1, 0, 1.0), (1, 1, 0.5),
)  # fmt: skip
ROAD_ITERATIONS = 256
"""The most conjugate-gradient steps of ``road_impute`` by default (32 x 64 crops need <= 150)."""
ROAD_TOL = 1e-5
"""Default relative residual at which ``road_impute``'s conjugate gradients stop."""


class FaithfulnessCurve(NamedTuple):
    """A perturbation curve per image and the areas under it.

    Attributes:
      fractions: float32[S], the share of pixels changed at each step, 0 to 1.
      scores: float32[N, S], the target's probability (or logit) at each step.
      correct: bool[N, S], whether the head's argmax is the target at each step;
        ``correct.mean(0)`` is the accuracy curve ROAD plots.
      auc: float32[N], the trapezoid of ``scores`` over ``fractions``.
      accuracy_auc: float32[N], the trapezoid of ``correct`` over ``fractions``;
        its mean over images is the area under the accuracy curve.
    """

    fractions: jax.Array
    scores: jax.Array
    correct: jax.Array
    auc: jax.Array
    accuracy_auc: jax.Array


# --------------------------------------------------------------------------- pieces
def pixel_counts(n_pixels: int, steps: int) -> np.ndarray:
    """int32[S]: pixels changed at each step, n_k = floor(k * P / (S - 1)), from 0 to P."""
    n_pixels, steps = check_int("n_pixels", n_pixels, 1), check_int("steps", steps, 2)
    return (np.arange(steps, dtype=np.int64) * n_pixels // (steps - 1)).astype(np.int32)


def pixel_ranks(maps: Real[AnyArray, "n h w"], *, order: str = "morf") -> Int[Array, "n h w"]:
    """int32[N, H, W]: each pixel's place in the removal order (0 goes first).

    "morf" ranks the highest value first, "lerf" the lowest; equal values keep
    raster order in both (a stable sort; -0.0 counts as 0.0).

    Args:
      maps: float32[N, H, W] relevance per pixel.
      order: "morf" or "lerf".

    Returns:
      int32[N, H, W].
    """
    check_choice("order", order, ORDERS)
    return _ranks(check_array("maps", maps, ndim=3), order == "morf")


def _ranks(maps, descending):
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    flat = jnp.where(flat == 0, 0.0, flat)  # one zero, so -0.0 and 0.0 tie
    first = jnp.argsort(-flat if descending else flat, axis=-1, stable=True)
    place = jnp.broadcast_to(jnp.arange(flat.shape[1], dtype=jnp.int32), flat.shape)
    ranks = jnp.zeros_like(place).at[jnp.arange(n)[:, None], first].set(place)
    return ranks.reshape(maps.shape)


def _neighbour_sum(u):
    """sum_j w_ij u_j over each pixel's in-image neighbours; u is float32[H, W, C]."""
    h, w = u.shape[:2]
    padded = jnp.pad(u, ((1, 1), (1, 1), (0, 0)))
    return sum(
        weight * padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w] for dy, dx, weight in _NEIGHBOURS
    )


def _impute_one(image, removed, key, noise, tol, iterations):
    """One image's noisy linear imputation (see ``road_impute``): float32[H, W, C]."""
    m = removed[..., None].astype(image.dtype)
    known = 1.0 - m
    degree = _neighbour_sum(jnp.ones_like(image[..., :1]))

    def system(u):  # (D - W) restricted to the removed pixels, per channel
        return m * (degree * u - _neighbour_sum(m * u))

    def dot(a, b):
        return (a * b).sum((0, 1))

    def safe_div(a, b):
        return jnp.where(b > 0, a / jnp.where(b > 0, b, 1.0), 0.0)

    n_known = known.sum()
    start = jnp.where(n_known > 0, dot(known, image) / jnp.maximum(n_known, 1.0), 0.5)
    u = m * start
    b = m * _neighbour_sum(known * image)
    r = b - system(u)
    bound = tol**2 * dot(b, b)

    def unconverged(state):
        step, _, _, _, rr = state
        return (step < iterations) & jnp.any(rr > bound)

    def cg_step(state):
        step, u, r, p, rr = state
        ap = system(p)
        alpha = safe_div(rr, dot(p, ap))
        u, r = u + alpha * p, r - alpha * ap
        rr_new = dot(r, r)
        return step + 1, u, r, r + safe_div(rr_new, rr) * p, rr_new

    _, u, *_ = jax.lax.while_loop(unconverged, cg_step, (0, u, r, r, dot(r, r)))
    jitter = noise * jax.random.normal(key, image.shape, image.dtype)
    return jnp.clip(known * image + m * (u + jitter), 0.0, 1.0)


@jax.jit
def _road_impute(images, removed, key, noise, tol, iterations):
    def one(job):
        i, image, removed_i = job
        return _impute_one(image, removed_i, jax.random.fold_in(key, i), noise, tol, iterations)

    # one image at a time: each solve stops at its own convergence and its arrays stay in cache
    return map_rows(one, (jnp.arange(images.shape[0]), images, removed))


def road_impute(
    images: Image[AnyArray, "n h w c"],
    removed: Bool[AnyArray, "n h w"],
    *,
    noise: float = 0.01,
    seed: int = 0,
    tol: float = ROAD_TOL,
    iterations: int = ROAD_ITERATIONS,
) -> Float[Array, "n h w c"]:
    """ROAD's noisy linear imputation: fill removed pixels from their neighbours.

    Each removed pixel i takes the weighted mean of its in-image 8 neighbours j,
    ``x_i = sum_j w_ij x_j / sum_j w_ij`` with w = 1 for the 4 direct neighbours
    and 1/2 for the diagonals (the reference implementation's 1/6 and 1/12).
    Known pixels are the boundary values, so the removed ones solve, per
    channel, the sparse linear system ``(D - W_RR) x_R = W_RK x_K`` (D: the
    in-image neighbour weight sums; R removed, K known). It is symmetric and
    positive definite whenever a pixel is known, and is solved by conjugate
    gradients on the image grid (no matrix is built), started from the mean
    colour of the known pixels, until every channel's residual is at most
    ``tol`` times its right-hand side's norm, or for ``iterations`` steps. With
    every pixel removed the system has no boundary and the fill is grey (0.5).
    Then Gaussian noise of standard deviation ``noise`` is added to the removed
    pixels only, and the image is clipped to [0, 1].

    At the defaults a 32 x 64 crop converges in 10 to 150 steps, to within
    1e-4 of a dense float64 solve (tests/test_faithfulness.py).

    Args:
      images: float32[N, H, W, C] in [0, 1].
      removed: bool[N, H, W], True where a pixel is removed and imputed.
      noise: standard deviation of the added noise, >= 0 (ROAD: 0.01); 0 for the
        plain linear imputation.
      seed: the noise seed; image i uses ``fold_in(key(seed), i)``.
      tol: relative residual at which the solve stops, >= 0 (0: run ``iterations``).
      iterations: the most conjugate-gradient steps, >= 1.

    Returns:
      float32[N, H, W, C]: known pixels unchanged, removed pixels imputed.

    References: Rong et al. 2022 (ROAD), https://arxiv.org/abs/2202.00449.
    """
    images = check_images(images)
    removed = check_masks(removed, images.shape[:3], name="removed")
    return _road_impute(images, removed, *_road_settings(noise, tol, seed, iterations))


def _road_settings(noise, tol, seed, iterations):
    """(key, noise, tol, iterations) as arrays, so that new values compile nothing."""
    noise = jnp.float32(check_number("noise", noise, low=0.0))
    tol = jnp.float32(check_number("tol", tol, low=0.0))
    key = jax.random.key(check_int("seed", seed, 0))
    return key, noise, tol, jnp.int32(check_int("iterations", iterations, 1))


# --------------------------------------------------------------------------- the curves
def _trapezoid(values, fractions):
    return ((values[..., 1:] + values[..., :-1]) * 0.5 * jnp.diff(fractions)).sum(-1)


@functools.partial(jax.jit, static_argnames=("apply_fn", "kind", "head", "output", "batch_size"))
def _curve(
    apply_fn, params, images, targets, maps, fills, counts, road, *, kind, head, output, batch_size
):
    n, h, w, _ = images.shape
    steps = counts.shape[0]
    ranks = _ranks(maps, kind != "road_lerf").reshape(n, h, w)
    key, noise, tol, iterations = road

    def perturbed(job):
        i, k = job
        changed = ranks[i] < counts[k]
        if kind == "deletion":
            return jnp.where(changed[..., None], fills[i], images[i])
        if kind == "insertion":
            return jnp.where(changed[..., None], images[i], fills[i])
        ik = jax.random.fold_in(jax.random.fold_in(key, i), k)
        return _impute_one(images[i], changed, ik, noise, tol, iterations)

    def chunk(jobs):
        # imputations one at a time (each CG stops at its own convergence), forwards vmapped
        xs = jax.lax.map(perturbed, jobs) if kind.startswith("road") else jax.vmap(perturbed)(jobs)
        t = targets[jobs[0]]

        def score(x, target):
            logits = getattr(apply_fn(params, x[None]), head)[0]
            value = jax.nn.softmax(logits)[target] if output == "probability" else logits[target]
            return value, jnp.argmax(logits) == target

        return jax.vmap(score)(xs, t)

    total = n * steps
    padded = -(-total // batch_size) * batch_size
    job = jnp.minimum(jnp.arange(padded), total - 1)  # repeat the last job: a valid input
    jobs = (job // steps).reshape(-1, batch_size), (job % steps).reshape(-1, batch_size)
    scores, correct = map_rows(chunk, jobs)
    scores = scores.reshape(-1)[:total].reshape(n, steps)
    correct = correct.reshape(-1)[:total].reshape(n, steps)
    fractions = counts.astype(jnp.float32) / (h * w)
    return FaithfulnessCurve(
        fractions,
        scores,
        correct,
        _trapezoid(scores, fractions),
        _trapezoid(correct.astype(jnp.float32), fractions),
    )


def _validate(apply_fn, params, images, targets, maps, *, head, output, reduce, steps, batch_size):
    images = check_images(images)
    n_classes = getattr(probe_outputs(apply_fn, params, images, head), head).shape[-1]
    targets = check_targets(targets, images.shape[0], n_classes)
    check_choice("reduce", reduce, REDUCTIONS)
    maps = check_maps(maps, images.shape)
    if maps.ndim == 4:
        maps = reduce_channels(maps, reduce)
    check_choice("output", output, OUTPUTS)
    counts = pixel_counts(images.shape[1] * images.shape[2], steps)
    return images, targets, maps, jnp.asarray(counts), check_batch_size(batch_size)


def _perturbation_curve(
    kind, apply_fn, params, images, targets, maps, *, baseline, blur_sigma, steps, reduce, head,
    output, batch_size,
):  # fmt: skip
    images, targets, maps, counts, batch_size = _validate(
        apply_fn, params, images, targets, maps, head=head, output=output, reduce=reduce,
        steps=steps, batch_size=batch_size,
    )  # fmt: skip
    if not isinstance(baseline, str):
        b = check_images(
            np.asarray(baseline)[None] if np.ndim(baseline) == 3 else baseline, name="baseline"
        )
        baseline = b[0] if np.ndim(baseline) == 3 else b
    fills = make_baseline(images, baseline, blur_sigma=blur_sigma)
    return _curve(
        apply_fn, params, images, targets, maps, fills, counts, _road_settings(0.0, 0.0, 0, 1),
        kind=kind, head=head, output=output, batch_size=batch_size,
    )  # fmt: skip


def deletion_curve(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    maps: Real[AnyArray, "n h w"] | Real[AnyArray, "n h w c"],
    *,
    steps: int = 21,
    baseline: Baseline = "black",
    blur_sigma: float = 4.0,
    reduce: str = "sum",
    head: str = "script",
    output: str = "probability",
    batch_size: int = 64,
) -> FaithfulnessCurve:
    """Deletion curve: the target's score as the most relevant pixels are replaced first.

    At step k the n_k highest-ranked pixels (the schedule and order of the
    module docstring) show the baseline instead of the image; ``scores[:, 0]``
    is the clean image's score and ``scores[:, -1]`` the baseline's. A faithful
    map gives a low ``auc``.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn``.
      params: its parameters.
      images: float32[N, H, W, C] in [0, 1] (or uint8 0..255).
      targets: int[N] (or one int), class ids of ``head``.
      maps: float32[N, H, W] relevance per pixel, or float32[N, H, W, C]
        reduced by ``reduce``; higher is more relevant.
      steps: points on the curve, S >= 2 (fractions 0, ~1/(S-1), ..., 1).
      baseline: what a deleted pixel shows: "black" (Petsiuk's zeros), "white",
        "gray", "blur" (a Gaussian blur of the image), or an image [H, W, C] /
        [N, H, W, C] in [0, 1].
      blur_sigma: the blur's standard deviation in pixels, for "blur".
      reduce: channel rule for maps with channels, one of ``REDUCTIONS``.
      head: the output field holding the class logits ("script" or "font").
      output: "probability" (softmax of the target) or "logit".
      batch_size: perturbed images per vmapped chunk (bounds memory).

    Returns:
      FaithfulnessCurve(fractions [S], scores [N, S], correct [N, S], auc [N],
      accuracy_auc [N]).

    References: Petsiuk, Das & Saenko 2018 (RISE), https://arxiv.org/abs/1806.07421.
    """
    return _perturbation_curve(
        "deletion", apply_fn, params, images, targets, maps, baseline=baseline,
        blur_sigma=blur_sigma, steps=steps, reduce=reduce, head=head, output=output,
        batch_size=batch_size,
    )  # fmt: skip


def insertion_curve(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    maps: Real[AnyArray, "n h w"] | Real[AnyArray, "n h w c"],
    *,
    steps: int = 21,
    baseline: Baseline = "blur",
    blur_sigma: float = 4.0,
    reduce: str = "sum",
    head: str = "script",
    output: str = "probability",
    batch_size: int = 64,
) -> FaithfulnessCurve:
    """Insertion curve: the target's score as the most relevant pixels are put back first.

    At step k the n_k highest-ranked pixels show the image and the rest the
    baseline (a blur by default, as Petsiuk et al.); ``scores[:, 0]`` is the
    baseline's score and ``scores[:, -1]`` the clean image's. A faithful map
    gives a high ``auc``.

    Args:
      apply_fn, params, images, targets, maps: as ``deletion_curve``.
      steps, blur_sigma, reduce, head, output, batch_size: as ``deletion_curve``.
      baseline: the starting image: "blur" (default), "black", "white", "gray",
        or an image [H, W, C] / [N, H, W, C] in [0, 1].

    Returns:
      FaithfulnessCurve(fractions [S], scores [N, S], correct [N, S], auc [N],
      accuracy_auc [N]).

    References: Petsiuk, Das & Saenko 2018 (RISE), https://arxiv.org/abs/1806.07421.
    """
    return _perturbation_curve(
        "insertion", apply_fn, params, images, targets, maps, baseline=baseline,
        blur_sigma=blur_sigma, steps=steps, reduce=reduce, head=head, output=output,
        batch_size=batch_size,
    )  # fmt: skip


def road_curve(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    maps: Real[AnyArray, "n h w"] | Real[AnyArray, "n h w c"],
    *,
    order: str = "morf",
    steps: int = 21,
    noise: float = 0.01,
    seed: int = 0,
    tol: float = ROAD_TOL,
    iterations: int = ROAD_ITERATIONS,
    reduce: str = "sum",
    head: str = "script",
    output: str = "probability",
    batch_size: int = 64,
) -> FaithfulnessCurve:
    """ROAD curve: remove pixels in the map's order and impute them (``road_impute``).

    At step k the first n_k pixels of the order (most relevant first for
    "morf", least relevant first for "lerf") are removed and filled by noisy
    linear imputation, each (image, step) with its own noise (key
    ``fold_in(fold_in(key(seed), i), k)``). Both orders start at the clean
    image and end at the fully imputed (grey) one. A faithful map gives a low
    MoRF ``auc`` and a high LeRF ``auc``; ROAD reports the accuracy curves
    (``correct.mean(0)``) as well.

    Args:
      apply_fn, params, images, targets, maps: as ``deletion_curve``.
      steps, reduce, head, output, batch_size: as ``deletion_curve``.
      order: "morf" (most relevant first) or "lerf" (least relevant first).
      noise: standard deviation of the imputation noise, >= 0 (ROAD: 0.01).
      seed: the noise seed.
      tol, iterations: when each imputation's conjugate gradients stop (``road_impute``).

    Returns:
      FaithfulnessCurve(fractions [S], scores [N, S], correct [N, S], auc [N],
      accuracy_auc [N]).

    References: Rong et al. 2022 (ROAD), https://arxiv.org/abs/2202.00449.
    """
    images, targets, maps, counts, batch_size = _validate(
        apply_fn, params, images, targets, maps, head=head, output=output, reduce=reduce,
        steps=steps, batch_size=batch_size,
    )  # fmt: skip
    check_choice("order", order, ORDERS)
    road = _road_settings(noise, tol, seed, iterations)
    return _curve(
        apply_fn, params, images, targets, maps, images[:0], counts, road,
        kind=f"road_{order}", head=head, output=output, batch_size=batch_size,
    )  # fmt: skip


# --------------------------------------------------------------------------- reference maps
def random_maps(images: Image[AnyArray, "n h w c"], *, seed: int = 0) -> Float[Array, "n h w"]:
    """A seeded uniform random map per image, the chance row of a faithfulness table.

    Image i's map is ``uniform(fold_in(key(seed), i), (H, W))``, so it does not
    depend on the batch it comes in.

    Args:
      images: float32[N, H, W, C]; only the shape is used.
      seed: the seed, >= 0.

    Returns:
      float32[N, H, W] in [0, 1).

    References: Petsiuk et al. 2018 and Rong et al. 2022 compare against random orders,
    https://arxiv.org/abs/2202.00449.
    """
    n, h, w = check_images(images).shape[:3]
    key = jax.random.key(check_int("seed", seed, 0))
    return jax.vmap(lambda i: jax.random.uniform(jax.random.fold_in(key, i), (h, w)))(jnp.arange(n))


def ink_maps(masks: Bool[AnyArray, "n h w"], *, seed: int = 0) -> Float[Array, "n h w"]:
    """The ink mask as an attribution map: every ink pixel above every other, ties broken at random.

    The map is ``mask + 0.5 * u`` with u a seeded uniform in [0, 1) per pixel
    (as ``random_maps``): ink ranks first, and within ink and within background
    the order is random rather than raster order, which would remove the top
    rows first.

    Args:
      masks: bool[N, H, W] ground-truth ink.
      seed: the tie-breaking seed, >= 0.

    Returns:
      float32[N, H, W]: ink pixels in [1, 1.5), the rest in [0, 0.5).

    References: Zhang et al. 2016 (ink masks as ground truth for maps, the pointing game),
    https://arxiv.org/abs/1608.00507.
    """
    masks = check_masks(masks, None, name="masks")
    n, h, w = masks.shape
    jitter = random_maps(jnp.zeros((n, h, w, 1)), seed=seed)
    return masks.astype(jnp.float32) + 0.5 * jitter


def faithfulness_rows(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    maps: Mapping[str, Real[AnyArray, "n h w"] | Real[AnyArray, "n h w c"]],
    *,
    steps: int = 21,
    noise: float = 0.01,
    seed: int = 0,
    head: str = "script",
    batch_size: int = 64,
    model: str = "",
    road_iterations: int = ROAD_ITERATIONS,
) -> list[dict]:
    """One row of mean AUCs per map: deletion, insertion and ROAD in both orders.

    Each curve runs with its defaults (deletion to black, insertion from a
    blur, probabilities, ``reduce="sum"``). Add reference rows by passing
    ``random_maps(images)`` and ``ink_maps(masks)`` among ``maps``.

    Args:
      apply_fn, params, images, targets: as ``deletion_curve``.
      maps: {method name: float32[N, H, W] or [N, H, W, C] maps}, in row order.
      steps: points per curve.
      noise, seed: ROAD's imputation noise and its seed.
      head: the output field holding the class logits.
      batch_size: perturbed images per vmapped chunk.
      model: a label copied into every row.
      road_iterations: ROAD's conjugate-gradient steps (``road_curve``'s ``iterations``).

    Returns:
      One dict per method: model, method, deletion (lower is better), insertion
      (higher), road_morf (lower), road_lerf (higher), road_gap (road_lerf -
      road_morf, higher), each a mean of per-image probability AUCs.

    References: Petsiuk et al. 2018, https://arxiv.org/abs/1806.07421; Rong et al. 2022,
    https://arxiv.org/abs/2202.00449.
    """
    if not isinstance(maps, Mapping) or not maps:
        raise ValueError(
            f"maps must be a non-empty dict {{method: maps}}, got {type(maps).__name__}"
        )
    common = dict(steps=steps, head=head, batch_size=batch_size)
    road = dict(common, noise=noise, seed=seed, iterations=road_iterations)
    rows = []
    for method, m in maps.items():  # a handful of methods, each curve one batched call
        aucs = {
            "deletion": deletion_curve(apply_fn, params, images, targets, m, **common).auc,
            "insertion": insertion_curve(apply_fn, params, images, targets, m, **common).auc,
            "road_morf": road_curve(apply_fn, params, images, targets, m, order="morf", **road).auc,
            "road_lerf": road_curve(apply_fn, params, images, targets, m, order="lerf", **road).auc,
        }
        row = {"model": model, "method": method}
        row.update({name: float(a.mean()) for name, a in aucs.items()})
        row["road_gap"] = row["road_lerf"] - row["road_morf"]
        rows.append(row)
    return rows
