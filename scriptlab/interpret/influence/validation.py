"""Influence against actual leave-one-out retraining at two levels (Koh & Liang 2017, Figure 2).

``loo_validation`` predicts, for one test crop, the change in its loss when each of
``k_top + k_rand`` training crops is removed (the ``k_top`` most influential by |I| and
``k_rand`` random ones), retrains without each, and returns both with their Pearson r:

  convex  a logistic head on the frozen embeddings, exact Hessian, Newton retrains;
  top     the model's layers above a cut (``top_layers``: ScriptNet's dense layer and
          heads on pool3 features), refitted to a stationary point first, conjugate
          gradients with damping, heavy-ball retrains from a warm start.

``benchmarks/bench_influence.py --validate`` runs it on the zoo baseline and caches the
result as ``save_result("loo_validation", ...)``, which notebook 11 reads.

References: Koh & Liang 2017, https://arxiv.org/abs/1703.04730; Bae et al. 2022 (warm
retrains find the proximal response), https://arxiv.org/abs/2209.05364.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from scriptlab.interpret._common import check_int
from scriptlab.interpret.influence.fit import embeddings, fit_logistic, refine
from scriptlab.interpret.influence.loo import loo_retrain, pearson
from scriptlab.interpret.influence.losses import LossFn, logistic_loss, objective
from scriptlab.interpret.influence.scores import influence_scores, predicted_loo_change
from scriptlab.interpret.influence.solvers import hvp, largest_eigenvalue, training_hessian
from scriptlab.interpret.influence.top_view import TopLayers, top_layers, top_loss
from scriptlab.protocols import ApplyFn


def pick_test(losses) -> int:
    """The test crop with the 10th-highest loss: a confident mistake, deterministic."""
    losses = np.asarray(losses)
    if losses.ndim != 1 or losses.size < 10:
        raise ValueError(f"losses must be float[N] with N >= 10, got shape {losses.shape}")
    return int(np.argsort(losses)[-10])


def loo_indices(scores, k_top: int = 25, k_rand: int = 25, seed: int = 0) -> np.ndarray:
    """int[k_top + k_rand]: the k_top largest |scores|, then k_rand others drawn at random."""
    scores = np.asarray(scores)
    k_top = check_int("k_top", k_top, 0, scores.size + 1)
    k_rand = check_int("k_rand", k_rand, 0, scores.size - k_top + 1)
    top = np.argsort(-np.abs(scores))[:k_top]
    rest = np.setdiff1d(np.arange(scores.size), top)
    return np.concatenate([top, np.random.default_rng(seed).choice(rest, k_rand, replace=False)])


def largest_objective_eigenvalue(loss: LossFn, params, x, y, *, l2: float) -> float:
    """The largest Hessian eigenvalue of ``objective`` (20 power iterations): 1 / it is a
    stable heavy-ball step."""

    def j(q):
        return objective(loss, q, x, y, l2=l2)

    flat, unravel = ravel_pytree(params)

    def mv(u):
        return ravel_pytree(hvp(j, params, unravel(u)))[0]

    return float(jax.jit(lambda: largest_eigenvalue(mv, flat.size, flat.dtype, 20))())


def refit_top(view: TopLayers, params, feats, y, *, head: str, l2: float, steps: int):
    """The layers above the cut brought to a stationary point of ``objective`` on ``feats``.

    Returns:
      (top params, final |grad J|, the heavy-ball step 1 / lambda_max it used).
    """
    loss = top_loss(view, head)
    start = view.params(params)
    lr = 1.0 / largest_objective_eigenvalue(loss, start, feats, y, l2=l2)
    top, gnorm = refine(loss, start, feats, y, l2=l2, steps=steps, lr=lr)
    return top, float(gnorm), lr


def validate_convex(x, y, xt, yt, *, n_classes: int, l2: float, k_top: int, k_rand: int) -> dict:
    """Predicted vs actual leave-one-out change of a logistic head on frozen features x[N, D]."""
    p, gnorm = fit_logistic(x, y, n_classes=n_classes, l2=l2)
    h = training_hessian(logistic_loss, p, x, y, l2=l2)
    j = pick_test(logistic_loss(p, xt, yt))
    test = (xt[j : j + 1], yt[j : j + 1])
    r = influence_scores(logistic_loss, p, x, y, *test, l2=l2, method="exact", hessian=h)
    idx = loo_indices(r.scores[0], k_top, k_rand)
    loo = loo_retrain(logistic_loss, p, x, y, *test, jnp.asarray(idx), l2=l2, steps=15, hessian=h)
    pred = np.asarray(predicted_loo_change(r.scores[0][idx], x.shape[0]))
    act = np.asarray(loo.delta_test_loss[:, 0])
    return dict(
        n_train=int(x.shape[0]),
        test_index=j,
        removed=idx,
        predicted=pred,
        actual=act,
        pearson=pearson(pred, act),
        fit_grad_norm=float(gnorm),
        loo_max_grad_norm=float(loo.grad_norm.max()),
        l2=l2,
    )


def validate_top(
    view: TopLayers,
    params,
    f,
    y,
    ft,
    yt,
    *,
    head: str,
    l2: float,
    damping: float,
    refine_steps: int,
    loo_steps: int,
    k_top: int,
    k_rand: int,
) -> dict:
    """Predicted vs actual leave-one-out change of the layers above a cut, on frozen features."""
    p, gnorm, lr = refit_top(view, params, f, y, head=head, l2=l2, steps=refine_steps)
    loss = top_loss(view, head)
    j = pick_test(loss(p, ft, yt))
    test = (ft[j : j + 1], yt[j : j + 1])
    r = influence_scores(loss, p, f, y, *test, l2=l2, damping=damping, max_iter=500)
    idx = loo_indices(r.scores[0], k_top, k_rand)
    loo = loo_retrain(
        loss, p, f, y, *test, jnp.asarray(idx), l2=l2, method="momentum", steps=loo_steps,
        lr=lr, momentum=0.9,
    )  # fmt: skip
    n = int(f.shape[0])
    pred = np.asarray(predicted_loo_change(r.scores[0][idx], n))
    act = np.asarray(loo.delta_test_loss[:, 0])
    return dict(
        n_train=n,
        test_index=j,
        removed=idx,
        predicted=pred,
        actual=act,
        pearson=pearson(pred, act),
        refine_grad_norm=gnorm,
        loo_max_grad_norm=float(loo.grad_norm.max()),
        l2=l2,
        damping=damping,
        cg_residual=float(r.s_test.residual[0]),
        cg_iterations=int(r.s_test.iterations[0]),
        loo_steps=loo_steps,
    )


def loo_validation(
    apply_fn: ApplyFn,
    params,
    train_images,
    train_y,
    test_images,
    test_y,
    *,
    n_classes: int,
    first: str = "dense",
    head: str = "script",
    convex_n: int = 5000,
    top_n: int = 500,
    convex_l2: float = 1e-2,
    top_l2: float = 1e-2,
    top_damping: float = 0.01,
    refine_steps: int = 1000,
    loo_steps: int = 200,
    k_top: int = 25,
    k_rand: int = 25,
) -> dict:
    """Both levels of the leave-one-out check on one model: the dict notebook 11 reads.

    Args:
      apply_fn, params: the model (``scriptlab.protocols.ApplyFn``).
      train_images, train_y: float32[N, H, W, C] in [0, 1] (or uint8) and int[N] labels of
        ``head``.
      test_images, test_y: the same for the test crops (the 10th-highest loss is chosen).
      n_classes: classes of ``head``.
      first: the first layer above the cut of the top level (``top_layers``).
      head: the output field both levels' losses read.
      convex_n, top_n: training crops of each level (the first ones).
      convex_l2, top_l2: L2 weights of each level's objective.
      top_damping: damping of the top level's CG solve (its Hessian is indefinite).
      refine_steps, loo_steps: heavy-ball steps of the top level's refit and of each retrain.
      k_top, k_rand: removed crops per level, most influential and random.

    Returns:
      {"convex": ..., "cnn_top": ...}: per level n_train, test_index, removed, predicted,
      actual, pearson and the fits' gradient norms (the top level also its damping, CG
      residual and iterations, and loo_steps).
    """
    train_y, test_y = jnp.asarray(train_y), jnp.asarray(test_y)
    x = embeddings(apply_fn, params, train_images[:convex_n])
    xt = embeddings(apply_fn, params, test_images)
    out = {
        "convex": validate_convex(
            x, train_y[:convex_n], xt, test_y, n_classes=n_classes, l2=convex_l2,
            k_top=k_top, k_rand=k_rand,
        )
    }  # fmt: skip
    view = top_layers(apply_fn, params, train_images[:1], first)
    f, ft = view.features(params, train_images[:top_n]), view.features(params, test_images)
    out["cnn_top"] = validate_top(
        view, params, f, train_y[:top_n], ft, test_y, head=head, l2=top_l2, damping=top_damping,
        refine_steps=refine_steps, loo_steps=loo_steps, k_top=k_top, k_rand=k_rand,
    )  # fmt: skip
    return out
