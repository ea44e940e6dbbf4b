"""Influence functions: speed, and validation against actual leave-one-out retraining.

    python benchmarks/bench_influence.py            # speed table + both validations
    python benchmarks/bench_influence.py --speed    # speed table only
    python benchmarks/bench_influence.py --validate # validations only

Speed: seconds to score every training crop of the workshop preset (ds.train)
against one test crop and against 100, for the convex head (logistic
regression on frozen embeddings, exact factorised Hessian) and for the CNN's
last layers (dense + script head, 264k parameters, conjugate gradients with
damping), next to the cost of one leave-one-out retrain. The ratio
"N retrains / influence" is what makes influence worth using.

Validation (Koh & Liang 2017, Figure 2): predicted vs actual change in one
test crop's loss for 60 removed training crops (30 most influential by |I|, 30
random), Pearson r, for both levels. The results are cached with
``influence.save_result`` so notebook 11 can quote them.
"""

from __future__ import annotations

import argparse
import time

import jax
import jax.numpy as jnp
import numpy as np

from scriptlab import data, zoo
from scriptlab.interpret import influence as inf

CONVEX_L2 = 1e-2
TOP_L2 = 1e-2
CONVEX_N = 5000  # training crops for the convex LOO validation
TOP_N = 500  # training crops for the CNN-level refit and LOO: 51 full-batch retrains must fit on 2 cores
TOP_DAMPING = 0.01
TOP_REFINE_STEPS = 1000
TOP_LOO_STEPS = 200
K_TOP, K_RAND = 25, 25


def timed(fn, *args, **kw):
    """(result, seconds) of a warm call: one call to compile, then a timed one."""
    jax.block_until_ready(fn(*args, **kw))
    t = time.perf_counter()
    out = jax.block_until_ready(fn(*args, **kw))
    return out, time.perf_counter() - t


def pick_test(losses) -> int:
    """The test crop with the 10th-highest loss: a confident mistake, deterministic."""
    return int(np.argsort(np.asarray(losses))[-10])


def loo_indices(scores, k_top=K_TOP, k_rand=K_RAND, seed=0) -> np.ndarray:
    scores = np.asarray(scores)
    top = np.argsort(-np.abs(scores))[:k_top]
    rest = np.setdiff1d(np.arange(scores.size), top)
    return np.concatenate([top, np.random.default_rng(seed).choice(rest, k_rand, replace=False)])


def convex_setup(ds, m, n=None):
    x = inf.embeddings(m.apply_fn, m.params, ds.train.images[:n])
    xt = inf.embeddings(m.apply_fn, m.params, ds.test.images)
    y, yt = jnp.asarray(ds.train.script[:n]), jnp.asarray(ds.test.script)
    p, gnorm = inf.fit_logistic(x, y, n_classes=len(ds.scripts), l2=CONVEX_L2)
    return x, y, xt, yt, p, float(gnorm)


def top_setup(ds, m, n):
    f = inf.embeddings(m.apply_fn, m.params, ds.train.images[:n], field="pool3")
    ft = inf.embeddings(m.apply_fn, m.params, ds.test.images, field="pool3")
    y, yt = jnp.asarray(ds.train.script[:n]), jnp.asarray(ds.test.script)
    loss = inf.top_loss("script")
    lr = 1.0 / top_lmax(loss, inf.top_params(m.params), f, y)
    p, gnorm = inf.refine(
        loss, inf.top_params(m.params), f, y, l2=TOP_L2, steps=TOP_REFINE_STEPS, lr=lr
    )
    return f, y, ft, yt, p, float(gnorm), lr


def top_lmax(loss, p, f, y) -> float:
    """Largest Hessian eigenvalue of the objective (sets a stable heavy-ball step 1/lmax)."""
    from jax.flatten_util import ravel_pytree

    def jfun(q):
        return inf.objective(loss, q, f, y, l2=TOP_L2)

    flat, unravel = ravel_pytree(p)
    mv = lambda u: ravel_pytree(inf.hvp(jfun, p, unravel(u)))[0]  # noqa: E731
    return float(jax.jit(lambda: inf.largest_eigenvalue(mv, flat.size, flat.dtype, 20))())


def speed(ds, m):
    print(f"\n== speed: score every ds.train crop (N = {len(ds.train)}) ==")
    rows = []
    x, y, xt, yt, p, _ = convex_setup(ds, m)
    n = x.shape[0]
    h, t_h = timed(lambda: inf.training_hessian(inf.logistic_loss, p, x, y, l2=CONVEX_L2))
    kw = dict(l2=CONVEX_L2, method="exact", hessian=h)
    _, t1 = timed(
        lambda: inf.influence_scores(inf.logistic_loss, p, x, y, xt[:1], yt[:1], **kw).scores
    )
    _, t100 = timed(
        lambda: inf.influence_scores(inf.logistic_loss, p, x, y, xt[:100], yt[:100], **kw).scores
    )
    k = 10
    _, tl = timed(
        lambda: (
            inf.loo_retrain(
                inf.logistic_loss,
                p,
                x,
                y,
                xt[:1],
                yt[:1],
                jnp.arange(k),
                l2=CONVEX_L2,
                steps=15,
                hessian=h,
            ).delta_test_loss
        )
    )
    _, t_fit = timed(lambda: inf.fit_logistic(x, y, n_classes=len(ds.scripts), l2=CONVEX_L2)[0])
    rows.append(
        ("convex head (1,290 params, exact H)", t_h, t1, f"{t100:.3f}", tl / (k + 1), t_fit)
    )

    ft = inf.embeddings(m.apply_fn, m.params, ds.train.images, field="pool3")
    ftt = inf.embeddings(m.apply_fn, m.params, ds.test.images[:100], field="pool3")
    top = inf.top_params(m.params)
    loss = inf.top_loss("script")
    # CG capped at 100 iterations; 100 test points would be 100 such solves (not run: minutes).
    kw = dict(l2=TOP_L2, damping=TOP_DAMPING, method="cg", max_iter=100, tol=1e-4)
    _, t1 = timed(lambda: inf.influence_scores(loss, top, ft, y, ftt[:1], yt[:1], **kw).scores)
    k, steps = 1, 10
    _, tl = timed(
        lambda: (
            inf.loo_retrain(
                loss,
                top,
                ft,
                y,
                ftt[:1],
                yt[:1],
                jnp.arange(k),
                l2=TOP_L2,
                method="momentum",
                steps=steps,
                lr=0.05,
            ).delta_test_loss
        )
    )
    tl = tl / (k + 1) * TOP_LOO_STEPS / steps
    rows.append(
        (
            f"CNN last layers (264k params, CG <= 100 its; LOO = {TOP_LOO_STEPS} full-batch steps, "
            f"extrapolated from {steps})",
            0.0,
            t1,
            "not run (100 CG solves)",
            tl,
            float("nan"),
        )
    )

    print(
        "| level | form H (s) | influence, 1 test (s) | influence, 100 tests (s) | one LOO retrain, warm (s) "
        "| one fit from scratch (s) | N warm retrains / influence | N fits from scratch / influence |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, th, a, b, c, d in rows:
        cold = "-" if np.isnan(d) else f"{n * d / (a + th):,.0f}x"
        d = "-" if np.isnan(d) else f"{d:.3f}"
        print(
            f"| {name} | {th:.3f} | {a:.3f} | {b} | {c:.3f} | {d} | {n * c / (a + th):,.0f}x | {cold} |"
        )
    print("influence times include forming H (convex) or the CG solve (CNN); N =", n)
    return rows


def validate(ds, m):
    print("\n== validation: predicted vs actual leave-one-out ==")
    out = {}
    # Level 1: convex head on frozen embeddings, all of ds.train.
    x, y, xt, yt, p, gnorm = convex_setup(ds, m, CONVEX_N)
    h = inf.training_hessian(inf.logistic_loss, p, x, y, l2=CONVEX_L2)
    j = pick_test(inf.logistic_loss(p, xt, yt))
    r = inf.influence_scores(
        inf.logistic_loss,
        p,
        x,
        y,
        xt[j : j + 1],
        yt[j : j + 1],
        l2=CONVEX_L2,
        method="exact",
        hessian=h,
    )
    idx = loo_indices(r.scores[0])
    loo = inf.loo_retrain(
        inf.logistic_loss,
        p,
        x,
        y,
        xt[j : j + 1],
        yt[j : j + 1],
        jnp.asarray(idx),
        l2=CONVEX_L2,
        steps=15,
        hessian=h,
    )
    pred = np.asarray(inf.predicted_loo_change(r.scores[0][idx], x.shape[0]))
    act = np.asarray(loo.delta_test_loss[:, 0])
    out["convex"] = dict(
        n_train=int(x.shape[0]),
        test_index=j,
        removed=idx,
        predicted=pred,
        actual=act,
        pearson=inf.pearson(pred, act),
        fit_grad_norm=gnorm,
        loo_max_grad_norm=float(loo.grad_norm.max()),
        l2=CONVEX_L2,
    )
    print(
        f"convex head: N_train={x.shape[0]}, {len(idx)} removed, Pearson r = {out['convex']['pearson']:.4f} "
        f"(fit |grad| {gnorm:.1e}, LOO max |grad| {float(loo.grad_norm.max()):.1e})"
    )

    # Level 2: the CNN's last layers (dense + script head) on frozen conv features.
    f, y, ft, yt, p, gnorm, lr = top_setup(ds, m, TOP_N)
    loss = inf.top_loss("script")
    j = pick_test(loss(p, ft, yt))
    r = inf.influence_scores(
        loss, p, f, y, ft[j : j + 1], yt[j : j + 1], l2=TOP_L2, damping=TOP_DAMPING, max_iter=500
    )
    idx = loo_indices(r.scores[0])
    loo = inf.loo_retrain(
        loss,
        p,
        f,
        y,
        ft[j : j + 1],
        yt[j : j + 1],
        jnp.asarray(idx),
        l2=TOP_L2,
        method="momentum",
        steps=TOP_LOO_STEPS,
        lr=lr,
        momentum=0.9,
    )
    pred = np.asarray(inf.predicted_loo_change(r.scores[0][idx], TOP_N))
    act = np.asarray(loo.delta_test_loss[:, 0])
    out["cnn_top"] = dict(
        n_train=TOP_N,
        test_index=j,
        removed=idx,
        predicted=pred,
        actual=act,
        pearson=inf.pearson(pred, act),
        refine_grad_norm=gnorm,
        loo_max_grad_norm=float(loo.grad_norm.max()),
        l2=TOP_L2,
        damping=TOP_DAMPING,
        cg_residual=float(r.s_test.residual[0]),
        cg_iterations=int(r.s_test.iterations[0]),
        loo_steps=TOP_LOO_STEPS,
    )
    print(
        f"CNN last layers: N_train={TOP_N}, {len(idx)} removed, Pearson r = {out['cnn_top']['pearson']:.4f} "
        f"(refit |grad| {gnorm:.1e}, LOO max |grad| {float(loo.grad_norm.max()):.1e}, "
        f"CG residual {float(r.s_test.residual[0]):.1e} in {int(r.s_test.iterations[0])} iterations)"
    )
    print("saved", inf.save_result("loo_validation", out))
    return out


def main():
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--speed", action="store_true", help="speed table only")
    ap.add_argument("--validate", action="store_true", help="validations only")
    a = ap.parse_args()
    ds = data.load("workshop", seed=0)
    m = zoo.load("baseline")
    print(f"jax {jax.__version__} on {jax.devices()[0].platform}, {jax.device_count()} device(s)")
    if not a.validate:
        speed(ds, m)
    if not a.speed:
        validate(ds, m)


if __name__ == "__main__":
    main()
