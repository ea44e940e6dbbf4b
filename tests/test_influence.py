"""Influence functions against closed forms, finite differences and actual retraining."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree
from scipy.optimize import minimize

from scriptlab.interpret import influence as inf


def _spd(p, seed=0):
    rng = np.random.default_rng(seed)
    m = rng.normal(size=(p, p))
    return (m @ m.T / p + 0.5 * np.eye(p)).astype(np.float32)


def _quadratic(a):
    """f(params) = 0.5 u^T A u + sum(u) over a two-leaf pytree; its Hessian is A."""

    def f(params):
        u = ravel_pytree(params)[0]
        return 0.5 * u @ jnp.asarray(a) @ u + u.sum()

    return f


PARAMS = {"a": jnp.ones(3), "b": jnp.full((2, 2), 0.5)}  # P = 7


def _tree(u):
    return ravel_pytree(PARAMS)[1](jnp.asarray(u, jnp.float32))


def test_hvp_of_quadratic_is_a_times_v():
    a = _spd(7)
    v = np.random.default_rng(1).normal(size=7).astype(np.float32)
    hv = ravel_pytree(inf.hvp(_quadratic(a), PARAMS, _tree(v)))[0]
    np.testing.assert_allclose(hv, a @ v, rtol=1e-5, atol=1e-5)


def _logreg_problem(n=60, d=4, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=(d, c))
    y = np.argmax(x @ w + rng.gumbel(size=(n, c)), axis=1).astype(np.int32)
    return jnp.asarray(x), jnp.asarray(y)


@pytest.mark.slow
def test_hvp_matches_finite_difference_of_gradient():
    x, y = _logreg_problem()
    params = {"w": jnp.full((4, 3), 0.1), "b": jnp.zeros(3)}
    f = lambda p: inf.objective(inf.logistic_loss, p, x, y, l2=0.01)  # noqa: E731
    v = jax.tree.map(
        lambda a: jnp.asarray(np.random.default_rng(2).normal(size=a.shape), jnp.float32), params
    )
    eps = 1e-2
    with jax.enable_x64(True):
        p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
        v64 = jax.tree.map(lambda a: a.astype(jnp.float64), v)
        x64 = x.astype(jnp.float64)
        f64 = lambda p: inf.objective(inf.logistic_loss, p, x64, y, l2=0.01)  # noqa: E731
        gp = jax.grad(f64)(jax.tree.map(lambda a, b: a + eps * b, p64, v64))
        gm = jax.grad(f64)(jax.tree.map(lambda a, b: a - eps * b, p64, v64))
        fd = ravel_pytree(jax.tree.map(lambda a, b: (a - b) / (2 * eps), gp, gm))[0]
    hv = ravel_pytree(inf.hvp(f, params, v))[0]
    np.testing.assert_allclose(hv, np.asarray(fd), rtol=1e-3, atol=1e-4)


@pytest.mark.parametrize("method", ["cg", "lissa", "exact"])
def test_inverse_hvp_matches_numpy_solve(method):
    a = _spd(7)
    damping = 0.1
    v = np.random.default_rng(3).normal(size=7).astype(np.float32)
    st = inf.inverse_hvp(
        _quadratic(a), PARAMS, _tree(v), method=method, damping=damping, tol=1e-5, max_iter=5000
    )
    want = np.linalg.solve(a.astype(np.float64) + damping * np.eye(7), v)
    np.testing.assert_allclose(ravel_pytree(st.x)[0], want, rtol=1e-3, atol=1e-4)
    assert bool(st.converged) and float(st.residual) <= 1e-5 * 1.5
    assert int(st.iterations) >= 1
    if method == "cg":
        assert (
            int(st.iterations) <= 7 + 3
        )  # CG on a 7-dim SPD system: <= P steps in exact arithmetic


def test_inverse_hvp_batched_right_hand_sides_and_reports_nonconvergence():
    a = _spd(7)
    vs = np.random.default_rng(4).normal(size=(3, 7)).astype(np.float32)
    vt = jax.vmap(_tree)(jnp.asarray(vs))
    # tol 1e-5, not 1e-6: float32 CG on this 7x7 system ends with true relative residuals near
    # 1e-6, which one CPU reads as 0.9e-6 and another as 1.05e-6 (converged=False)
    st = inf.inverse_hvp(_quadratic(a), PARAMS, vt, method="cg", tol=1e-5)
    got = jax.vmap(lambda t: ravel_pytree(t)[0])(st.x)
    np.testing.assert_allclose(
        got, np.linalg.solve(a.astype(np.float64), vs.T).T, rtol=1e-3, atol=1e-4
    )
    assert st.residual.shape == (3,) and bool(st.converged.all())
    short = inf.inverse_hvp(_quadratic(a), PARAMS, vt, method="lissa", tol=1e-8, max_iter=2)
    assert not bool(short.converged.any()) and int(short.iterations.max()) == 2
    assert float(short.residual.min()) > 1e-3


@pytest.mark.slow
def test_influence_cg_matches_exact_and_closed_form():
    x, y = _logreg_problem()
    params, gnorm = inf.fit_logistic(x, y, n_classes=3, l2=0.01)
    assert float(gnorm) < 1e-4
    xt, yt = x[:2] + 0.3, y[:2]
    exact = inf.influence_scores(inf.logistic_loss, params, x, y, xt, yt, l2=0.01, method="exact")
    cg = inf.influence_scores(
        inf.logistic_loss, params, x, y, xt, yt, l2=0.01, method="cg", tol=1e-6
    )
    assert exact.scores.shape == (2, 60)
    np.testing.assert_allclose(cg.scores, exact.scores, rtol=1e-3, atol=1e-5)
    # Closed form with numpy: -g_test^T H^-1 g_train.
    f = lambda p: inf.objective(inf.logistic_loss, p, x, y, l2=0.01)  # noqa: E731
    h = np.asarray(inf.hessian_matrix(f, params), np.float64)
    g = np.asarray(inf.per_example_grads(inf.logistic_loss, params, x, y), np.float64)
    gt = np.asarray(inf.per_example_grads(inf.logistic_loss, params, xt, yt), np.float64)
    np.testing.assert_allclose(exact.scores, -gt @ np.linalg.solve(h, g.T), rtol=1e-3, atol=1e-5)
    pre = inf.influence_scores(
        inf.logistic_loss,
        params,
        x,
        y,
        xt,
        yt,
        l2=0.01,
        method="exact",
        hessian=inf.training_hessian(inf.logistic_loss, params, x, y, l2=0.01),
    )
    np.testing.assert_allclose(pre.scores, exact.scores, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="hessian must be"):
        inf.influence_scores(
            inf.logistic_loss, params, x, y, xt, yt, l2=0.01, method="exact", hessian=h[:3]
        )


def test_influence_predicts_leave_one_out_on_tiny_logistic_regression():
    x, y = _logreg_problem()
    l2 = 0.01
    params, _ = inf.fit_logistic(x, y, n_classes=3, l2=l2)
    xt, yt = x[:1] * 0.5 + 0.2, y[:1]
    sc = inf.influence_scores(inf.logistic_loss, params, x, y, xt, yt, l2=l2, method="exact").scores
    loo = inf.loo_retrain(inf.logistic_loss, params, x, y, xt, yt, jnp.arange(60), l2=l2, steps=15)
    assert float(loo.grad_norm.max()) < 1e-5
    pred = inf.predicted_loo_change(sc[0], 60)
    assert inf.pearson(pred, loo.delta_test_loss[:, 0]) > 0.99
    # Independent retraining from scratch (float64 L-BFGS) for a few points.
    xd, yd = np.asarray(x, np.float64), np.asarray(y)

    def jfun(u, w):
        wmat, b = u[:12].reshape(4, 3), u[12:]
        z = xd @ wmat + b
        z = z - z.max(1, keepdims=True)
        ll = np.log(np.exp(z).sum(1)) - z[np.arange(60), yd]
        return (w * ll).sum() / 60 + 0.5 * l2 * (u @ u)

    def test_loss(u):
        z = np.asarray(xt, np.float64) @ u[:12].reshape(4, 3) + u[12:]
        return np.log(np.exp(z).sum()) - z[0, int(yt[0])]

    u0 = minimize(jfun, np.zeros(15), args=(np.ones(60),), method="BFGS", options={"gtol": 1e-10}).x
    for i in (0, 7, 31):
        w = np.ones(60)
        w[i] = 0.0
        ui = minimize(jfun, u0, args=(w,), method="BFGS", options={"gtol": 1e-10}).x
        np.testing.assert_allclose(
            loo.delta_test_loss[i, 0], test_loss(ui) - test_loss(u0), rtol=0.02, atol=2e-5
        )


@pytest.mark.slow
def test_self_influence_matches_numpy():
    x, y = _logreg_problem(n=40)
    params, _ = inf.fit_logistic(x, y, n_classes=3, l2=0.05)
    si = inf.self_influence(inf.logistic_loss, params, x, y, l2=0.05, batch_size=16)
    f = lambda p: inf.objective(inf.logistic_loss, p, x, y, l2=0.05)  # noqa: E731
    h = np.asarray(inf.hessian_matrix(f, params), np.float64)
    g = np.asarray(inf.per_example_grads(inf.logistic_loss, params, x, y), np.float64)
    want = np.einsum("np,np->n", g, np.linalg.solve(h, g.T).T)
    np.testing.assert_allclose(si, want, rtol=1e-3, atol=1e-6)
    assert bool((si >= 0).all())


def test_momentum_loo_agrees_with_newton_loo():
    x, y = _logreg_problem(n=30, seed=5)
    params, _ = inf.fit_logistic(x, y, n_classes=3, l2=0.1)
    xt, yt = x[:3], y[:3]
    idx = jnp.array([0, 4, 9])
    a = inf.loo_retrain(inf.logistic_loss, params, x, y, xt, yt, idx, l2=0.1, steps=10)
    b = inf.loo_retrain(
        inf.logistic_loss,
        params,
        x,
        y,
        xt,
        yt,
        idx,
        l2=0.1,
        method="momentum",
        steps=400,
        lr=0.5,
        momentum=0.8,
    )
    assert a.delta_test_loss.shape == (3, 3)
    np.testing.assert_allclose(b.delta_test_loss, a.delta_test_loss, rtol=1e-2, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("conditional", [False, True])
def test_top_layers_reproduce_scriptnet_and_font_head_influence_runs(conditional):
    from scriptlab.model import build, functional

    net = build(4, 3, seed=0, channels=(4, 4, 8), hidden=16, conditional=conditional)
    params, apply_fn = functional(net)
    imgs = jax.random.uniform(jax.random.key(0), (6, 32, 64, 3))
    feats = inf.embeddings(apply_fn, params, imgs, field="pool3", batch_size=4)
    assert feats.shape == (6, 4 * 8 * 8)
    view = inf.top_layers(apply_fn, params, imgs, "dense")
    np.testing.assert_array_equal(view.features(params, imgs), feats)
    top = view.params(params)
    assert sorted(top) == ["dense", "font_head", "script_head"]
    out, got = apply_fn(params, imgs), view(top, feats)
    # the conditional model's font head is read at the predicted script, as the model reads it
    for field in ("script", "font", "embedding"):
        np.testing.assert_allclose(getattr(got, field), getattr(out, field), rtol=1e-4, atol=1e-4)
    emb = inf.embeddings(apply_fn, params, imgs)
    np.testing.assert_allclose(emb, out.embedding, rtol=1e-4, atol=1e-5)
    y = jnp.array([0, 1, 2, 3, 0, 1])
    res = inf.influence_scores(
        inf.top_loss(view, "script"),
        top,
        feats,
        y,
        feats[:2],
        jnp.array([0, 2]),
        l2=1e-3,
        test_loss_fn=inf.top_loss(view, "font"),
        damping=0.01,
        max_iter=20,
    )
    assert res.scores.shape == (2, 6) and bool(jnp.isfinite(res.scores).all())
    with pytest.raises(ValueError, match="head"):
        inf.top_loss(view, "nope")(top, feats, y)


def test_detection_curve_and_flip_labels_by_hand():
    flipped = np.array([True, False, True, False])
    np.testing.assert_allclose(
        inf.detection_curve([2, 1, 0, 3], flipped, [0, 0.25, 0.5, 1.0]), [0, 0.5, 0.5, 1.0]
    )
    labels = np.arange(100) % 5
    new, mask = inf.flip_labels(labels, 5, 0.1, seed=0)
    assert (
        mask.sum() == 10
        and (new[mask] != labels[mask]).all()
        and (new[~mask] == labels[~mask]).all()
    )
    assert new.min() >= 0 and new.max() < 5


def test_bad_inputs_raise_clear_errors():
    x, y = _logreg_problem(n=10)
    params = {"w": jnp.zeros((4, 3)), "b": jnp.zeros(3)}
    f = lambda p: inf.objective(inf.logistic_loss, p, x, y, l2=0.1)  # noqa: E731
    with pytest.raises(ValueError, match="method must be one of"):
        inf.inverse_hvp(f, params, params, method="newton")
    with pytest.raises(ValueError, match="damping"):
        inf.inverse_hvp(f, params, params, damping=-1.0)
    with pytest.raises(ValueError, match="tree structure"):
        inf.inverse_hvp(f, params, {"w": jnp.zeros((4, 3))})
    with pytest.raises(ValueError, match="train targets must be int"):
        inf.influence_scores(inf.logistic_loss, params, x, y[:5], x, y, l2=0.1)
    with pytest.raises(ValueError, match="test inputs"):
        inf.influence_scores(inf.logistic_loss, params, x, y, x[:0], y[:0], l2=0.1)
    with pytest.raises(ValueError, match="removed must lie"):
        inf.loo_retrain(inf.logistic_loss, params, x, y, x, y, jnp.array([10]), l2=0.1)
    with pytest.raises(ValueError, match="l2 must be > 0"):
        inf.fit_logistic(x, y, n_classes=3, l2=0.0)
    with pytest.raises(ValueError, match="NaN"):
        inf.influence_scores(inf.logistic_loss, params, x.at[0, 0].set(jnp.nan), y, x, y, l2=0.1)


@pytest.mark.parametrize("n, b", [(10, 3), (12, 4), (5, 8), (1, 1)])
def test_map_chunks_matches_a_plain_loop_for_rows_and_chunk_sums(n, b):
    """Per-row outputs come back in order with the last chunk's padding cut; an output with one
    row per chunk (a chunk's sum, padding rows weighted 0) keeps one row per chunk."""
    from scriptlab.interpret.influence.losses import map_chunks

    rng = np.random.default_rng(n * 100 + b)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    w = np.ones(n, np.float32)

    @jax.jit
    def fn(scale, chunk):
        xs, ws = chunk
        assert xs.shape[0] == min(b, n)  # every chunk has the same rows: one program
        return {"rows": scale * xs**2, "sums": (ws[:, None] * xs).sum(0)[None]}

    out = map_chunks(fn, (jnp.asarray(x), w), b, 2.0)
    np.testing.assert_allclose(out["rows"], 2.0 * x**2, rtol=1e-6)
    sums = [x[i : i + b].sum(0) for i in range(0, n, min(b, n))]
    np.testing.assert_allclose(out["sums"], np.stack(sums), rtol=1e-5, atol=1e-6)


# --------------------------------------------------------------------------- the LOO validation
def test_loo_indices_take_the_largest_magnitudes_then_distinct_random_ones():
    from scriptlab.interpret.influence.validation import loo_indices, pick_test

    scores = np.array([0.1, -5.0, 0.3, 4.0, -0.2, 0.0, 2.0, -0.05])
    idx = loo_indices(scores, k_top=3, k_rand=4, seed=1)
    np.testing.assert_array_equal(idx[:3], [1, 3, 6])
    assert len(set(idx.tolist())) == 7 and set(idx[3:]) <= {0, 2, 4, 5, 7}
    np.testing.assert_array_equal(idx, loo_indices(scores, k_top=3, k_rand=4, seed=1))
    assert pick_test(np.arange(20.0)[::-1]) == 9  # the 10th-highest loss
    with pytest.raises(ValueError, match="k_rand"):
        loo_indices(scores, k_top=3, k_rand=6)
    with pytest.raises(ValueError, match="losses"):
        pick_test(np.ones(5))


@pytest.mark.slow
def test_loo_validation_gives_what_notebook_11_reads_and_the_convex_level_tracks_retraining():
    from scriptlab.model import build, functional

    params, apply_fn = functional(build(4, 3, seed=0, channels=(4, 4, 8), hidden=16))
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (100, 32, 64, 3), dtype=np.uint8)
    labels = rng.integers(0, 4, 100)
    out = inf.loo_validation(
        apply_fn, params, images[:80], labels[:80], images[80:], labels[80:], n_classes=4,
        convex_n=80, top_n=40, refine_steps=20, loo_steps=5, k_top=4, k_rand=4,
    )  # fmt: skip
    for level in ("convex", "cnn_top"):
        c = out[level]
        assert len(c["removed"]) == len(c["predicted"]) == len(c["actual"]) == 8
        np.testing.assert_allclose(c["pearson"], np.corrcoef(c["predicted"], c["actual"])[0, 1])
    assert out["cnn_top"]["n_train"] == 40 and out["cnn_top"]["loo_steps"] == 5
    assert {"refine_grad_norm", "damping"} <= set(out["cnn_top"])
    assert out["convex"]["pearson"] > 0.95  # exact Hessian, Newton retrains: Koh & Liang's Fig. 2
