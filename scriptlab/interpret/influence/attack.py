"""The training-set attack of Koh & Liang 2017 (section 5.2) on the convex head over frozen features.

For a target test crop, the k training crops that help it most (most
negative I_up,loss) are moved inside an L-infinity ball of radius epsilon
along sign(I_pert,loss), the first-order direction that raises the target's
loss most after retraining; the head is then actually refit on the poisoned
training set and the target's prediction read again. A random-sign
perturbation of the same crops and size is the control.

What is retrained: the L2-regularised logistic head on frozen trunk
features (the trunk's features of the perturbed crops are recomputed). Like
Koh & Liang's Inception experiment, where the top layer is retrained. The
refit is Newton from the old optimum with the exact gradient of the poisoned
objective (so its fixed point is the exact new minimiser): chord steps on the
old Hessian's factor, re-formed as the exact Hessian at the iterate every 10
steps without convergence (Shamanskii's method; chord steps alone left one
refit in 40 at ||grad J|| 9e-3 after 200 steps), each step backtracked so
that J decreases (full steps diverged at 8/255). It runs until
||grad J|| <= tol; its final gradient norm, step count and ``converged`` flag are returned.

References: Koh & Liang 2017, section 5.2, https://arxiv.org/abs/1703.04730.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax.flatten_util import ravel_pytree

from scriptlab.interpret._common import (
    check_choice,
    check_images,
    check_int,
    check_nonneg,
    check_number,
    check_xy,
)
from scriptlab.interpret.influence.layers import as_float
from scriptlab.interpret.influence.losses import logistic_loss, objective
from scriptlab.interpret.influence.perturb import perturbation_influence
from scriptlab.interpret.influence.solvers import damped_hessian

DIRECTIONS = ("influence", "random")


class AttackResult(NamedTuple):
    """One target's training-set attack and the actual retrain.

    Attributes:
      indices: int32[k] the perturbed training crops (most helpful first).
      images: float32[k, H, W, 3] the perturbed crops, on the 8-bit grid.
      delta: float32[k, H, W, 3] images - originals, |delta| <= epsilon.
      pred_before, pred_after: int32[] the target's predicted class.
      loss_before, loss_after: float32[] the target's loss.
      flipped: bool[] the prediction changed.
      grad_norm: float32[] ||grad J|| of the refit on the poisoned set.
      refit_steps: int32[] Newton-type steps the refit took.
      converged: bool[] grad_norm <= the requested tolerance.
    """

    indices: jax.Array
    images: jax.Array
    delta: jax.Array
    pred_before: jax.Array
    pred_after: jax.Array
    loss_before: jax.Array
    loss_after: jax.Array
    flipped: jax.Array
    grad_norm: jax.Array
    refit_steps: jax.Array
    converged: jax.Array


REFRESH = 10  # chord steps on one factorisation before the Hessian is re-formed at the iterate


# The attack's small steps, jitted: run op by op they compiled about 50 small programs.
@functools.partial(jax.jit, static_argnames=("apply_fn",))
def _embedding(apply_fn, params, images):
    return apply_fn(params, images).embedding


@functools.partial(jax.jit, static_argnames=("k",))
def _most_helpful(scores, train_images, k):
    idx = jax.lax.top_k(-scores, k)[1]  # most negative: most helpful
    return idx, as_float(train_images[idx])


@jax.jit
def _on_8bit_grid(originals, signs, epsilon):
    return jnp.clip(jnp.round((originals + epsilon * signs) * 255.0) / 255.0, 0.0, 1.0)


@functools.partial(jax.jit, static_argnames=("apply_fn", "max_steps"))
def _refit(apply_fn, trunk, head, feats, y, idx, new_images, chol, l2, tol, max_steps):
    new = apply_fn(trunk, new_images).embedding.reshape(idx.shape[0], -1)
    f = feats.at[idx].set(new)
    flat0, unravel = ravel_pytree(head)

    def jfun(u):
        return objective(logistic_loss, unravel(u), f, y, l2=l2)

    grad_j = jax.grad(jfun)

    def cond(c):
        return (jnp.linalg.norm(c[1]) > tol) & (c[3] < max_steps)

    def body(c):
        u, g, factor, i = c
        # Shamanskii: the old optimum's factor first (free, enough nearly always); every
        # REFRESH steps without convergence, the exact Hessian of the poisoned objective at u.
        factor = jax.lax.cond(
            (i > 0) & (i % REFRESH == 0),
            lambda: jnp.linalg.cholesky(jax.hessian(jfun)(u)),
            lambda: factor,
        )
        du = jax.scipy.linalg.cho_solve((factor, True), g)
        # Backtracking on {1, 1/2, ...}: a crop moved far in feature space (8/255) makes
        # the full step overshoot and diverge; a descent step on a convex J cannot.
        ts = 0.5 ** jnp.arange(12.0)
        vals = jax.vmap(lambda t: jfun(u - t * du))(ts)
        u = u - ts[jnp.argmax(vals <= jfun(u))] * du
        return u, grad_j(u), factor, i + 1

    u, g, _, steps = jax.lax.while_loop(cond, body, (flat0, grad_j(flat0), chol, 0))
    return unravel(u), jnp.linalg.norm(g), steps


def training_set_attack(
    apply_fn: Callable,
    trunk_params,
    head_params,
    train_images,
    train_y,
    features,
    target_image,
    target_y,
    *,
    k: int,
    epsilon: float,
    l2: float,
    hessian: jax.Array,
    direction: str = "influence",
    seed: int = 0,
    max_refit_steps: int = 100,
    tol: float = 1e-6,
) -> AttackResult:
    """Perturb the k most helpful training crops of one target, retrain the head, read the target.

    Args:
      apply_fn, trunk_params: the frozen trunk (a ``Functional`` and its params).
      head_params: {"w", "b"} the fitted head (``fit_logistic``), at its optimum.
      train_images: uint8[N, H, W, 3] (or float in [0, 1]) the head's training crops.
      train_y: int[N] their labels.
      features: float32[N, D] ``embeddings(apply_fn, trunk_params, train_images)``.
      target_image: float32[1, H, W, 3] or uint8, the test crop; target_y: int[1].
      k: how many training crops to perturb.
      epsilon: L-infinity budget in [0, 1] units; use a multiple of 1/255 so
        the crops stay on the 8-bit grid (e.g. 2 / 255).
      l2: the head's L2 weight; hessian: float32[P, P] of its objective at
        ``head_params`` (``training_hessian``).
      direction: "influence" (sign of I_pert,loss: the attack) or "random"
        (random signs: the control).
      seed: the random control's seed.
      max_refit_steps: at most this many Newton-type steps in the refit.
      tol: the refit stops once ||grad J|| <= tol on the poisoned set;
        ``converged`` says whether it got there (float32 reaches about 1e-7
        on the workshop head; H >= l2 I, so the parameters are then within
        tol / l2 of the new minimiser).

    Returns:
      AttackResult.

    References: Koh & Liang 2017, section 5.2, https://arxiv.org/abs/1703.04730.
    """
    from scriptlab.interpret.influence.scores import influence_scores

    check_choice("direction", direction, DIRECTIONS)
    check_number("epsilon", epsilon, low=0.0, high=1.0)
    check_nonneg("l2", l2)
    max_refit_steps = check_int("max_refit_steps", max_refit_steps, 1)
    check_number("tol", tol, low=0.0)
    train_images = check_images(train_images, name="train_images", keep_uint8=True)
    train_images, train_y = check_xy(train_images, train_y, "train")
    target_image = check_images(target_image, name="target_image")
    target_image, target_y = check_xy(target_image, target_y, "target")
    if target_y.shape != (1,):
        raise ValueError(f"target_image must be one crop [1, H, W, 3], got {target_image.shape}")
    n = train_y.shape[0]
    k = check_int("k", k, 1, n + 1)
    target_feat = _embedding(apply_fn, trunk_params, target_image)
    inf = influence_scores(
        logistic_loss,
        head_params,
        features,
        train_y,
        target_feat,
        target_y,
        l2=l2,
        method="exact",
        hessian=hessian,
    )
    idx, originals = _most_helpful(inf.scores[0], train_images, k)
    if direction == "influence":
        pert = perturbation_influence(
            logistic_loss,
            head_params,
            inf.s_test.x,
            originals,
            train_y[idx],
            apply_fn=apply_fn,
            trunk_params=trunk_params,
        )[:, 0]
        signs = jnp.sign(pert)
    else:
        signs = jax.random.rademacher(jax.random.key(seed), originals.shape, jnp.float32)
    images = _on_8bit_grid(originals, signs, epsilon)
    chol = jnp.linalg.cholesky(damped_hessian(hessian, 0.0))
    new_head, gnorm, steps = _refit(
        apply_fn,
        trunk_params,
        head_params,
        features,
        train_y,
        idx,
        images,
        chol,
        l2,
        tol,
        max_refit_steps,
    )

    def read(p):
        logits = target_feat @ p["w"] + p["b"]
        return jnp.argmax(logits[0]), logistic_loss(p, target_feat, target_y)[0]

    (pb, lb), (pa, la) = read(head_params), read(new_head)
    delta = images - originals
    return AttackResult(idx, images, delta, pb, pa, lb, la, pb != pa, gnorm, steps, gnorm <= tol)
