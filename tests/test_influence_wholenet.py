"""Whole-network influence (TracIn, EK-FAC), I_pert,loss and the training-set attack on tiny models."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from scriptlab import model as M
from scriptlab.interpret import influence as inf
from scriptlab.interpret.influence import ekfac as ek
from scriptlab.interpret.influence import layers as L


def _tiny(seed=0):
    m = M.build(3, 2, seed=seed, channels=(2, 3, 4), hidden=5, image_shape=(8, 16, 3))
    return M.functional(m)


def _data(n, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.uniform(size=(n, 8, 16, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, n), jnp.int32)
    return x, y


@functools.lru_cache
def _grad_fn(loss):
    """One example's flat gradient by plain jax.grad, jitted once per loss (the reference)."""
    return jax.jit(
        lambda p, xi, yi: ravel_pytree(jax.grad(lambda q: loss(q, xi[None], yi[None])[0])(p))[0]
    )


def _loop_grad(loss, params, x, y):
    return _grad_fn(loss)(params, x, y)


@pytest.mark.parametrize("head", ["script", "font"])
def test_layer_grads_equal_jax_grad_for_every_parameter(head):
    params, apply_fn = _tiny()
    x, y = _data(4)
    y = y % (3 if head == "script" else 2)
    fast = L.ScriptNetLoss(apply_fn, head).example_grads(params, x, y)
    ref = inf.cross_entropy(apply_fn, head)
    want = np.stack([_loop_grad(ref, params, x[i], y[i]) for i in range(4)])
    np.testing.assert_allclose(fast, want, rtol=1e-4, atol=1e-6)
    u = L.ScriptNetLoss(apply_fn, head).layer_grads(params, x, y)
    np.testing.assert_allclose(L.ScriptNetLoss.grad_dots(u, u), want @ want.T, rtol=1e-4, atol=1e-6)


def _checkpoints():
    params, apply_fn = _tiny()
    ckpts = [_tiny(seed)[0] for seed in (1, 2, 3)]
    return apply_fn, ckpts, np.array([0.3, 0.1, 0.02])


@pytest.mark.parametrize("fast", [True, False])
def test_tracin_matches_plain_python_loop(fast):
    apply_fn, ckpts, lrs = _checkpoints()
    x, y = _data(7, seed=1)
    xt, yt = _data(2, seed=2)
    ref = inf.cross_entropy(apply_fn, "script")
    loss = L.ScriptNetLoss(apply_fn, "script") if fast else ref
    got = inf.tracin_scores(
        loss, ckpts, x, y, xt, yt, learning_rates=lrs, batch_size=3
    )  # 7 = 3 + 3 + 1 padded
    want = np.zeros((2, 7))
    for p, lr in zip(ckpts, lrs, strict=True):
        for t in range(2):
            for i in range(7):
                want[t, i] += lr * float(
                    _loop_grad(ref, p, xt[t], yt[t]) @ _loop_grad(ref, p, x[i], y[i])
                )
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-7)
    self_inf = inf.tracin_self_influence(loss, ckpts, x, y, learning_rates=lrs, batch_size=4)
    want_self = [
        sum(
            lr * float(jnp.sum(_loop_grad(ref, p, x[i], y[i]) ** 2))
            for p, lr in zip(ckpts, lrs, strict=True)
        )
        for i in range(7)
    ]
    np.testing.assert_allclose(self_inf, want_self, rtol=1e-4)


def test_tracin_rejects_bad_checkpoints():
    apply_fn, ckpts, lrs = _checkpoints()
    x, y = _data(3)
    loss = L.ScriptNetLoss(apply_fn)
    with pytest.raises(ValueError, match="learning_rates"):
        inf.tracin_scores(loss, ckpts, x, y, x, y, learning_rates=lrs[:2])
    with pytest.raises(ValueError, match="learning_rates must be >= 0"):
        inf.tracin_scores(loss, ckpts, x, y, x, y, learning_rates=-lrs)
    with pytest.raises(ValueError, match="checkpoints"):
        inf.tracin_scores(loss, [], x, y, x, y, learning_rates=[])
    with pytest.raises(ValueError, match=r"checkpoints\[1\]"):
        inf.tracin_scores(
            loss, [ckpts[0], {"w": jnp.ones(2)}], x, y, x, y, learning_rates=[1.0, 1.0]
        )


def test_epoch_learning_rates_average_the_training_schedule():
    from scriptlab.train import TrainConfig, epoch_learning_rates, lr_schedule

    cfg = TrainConfig(epochs=3, batch_size=10, micro_batch=10, warmup_steps=5, lr=1e-2)
    got = epoch_learning_rates(cfg, 100, [0, 1, 3])
    sched = lr_schedule(cfg, 30)
    assert got[0] == 0.0
    np.testing.assert_allclose(got[1], np.mean([sched(i) for i in range(10)]), rtol=1e-6)
    np.testing.assert_allclose(got[2], np.mean([sched(i) for i in range(20, 30)]), rtol=1e-6)
    with pytest.raises(ValueError, match="epochs"):
        epoch_learning_rates(cfg, 100, [4])


# --------------------------------------------------------------------------- EK-FAC
def _logreg_layer(n, d=4, c=3, seed=0):
    """One dense layer (multinomial logistic regression): inputs with a 1, expected-label cotangents."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    w = rng.normal(size=(d + 1, c)) * 0.5
    a = np.concatenate([x, np.ones((n, 1))], 1)
    p = jax.nn.softmax(jnp.asarray(a @ w))
    r = np.sqrt(np.asarray(p))[:, :, None] * (np.asarray(p)[:, None, :] - np.eye(c)[None])
    fisher = np.stack([np.diag(q) - np.outer(q, q) for q in np.asarray(p)])
    # exact Gauss-Newton (= Hessian of the mean cross-entropy for a linear model), (d, out) layout
    ggn = np.einsum("ni,nj,nab->iajb", a, a, fisher).reshape((d + 1) * c, (d + 1) * c) / n
    return jnp.asarray(a[:, None], jnp.float32), jnp.asarray(r[:, :, None], jnp.float32), ggn


def _ekfac_one_layer(a, g):
    n = a.shape[0]
    big_a, big_s = ek.kronecker_factors(a, g)
    q_a, q_s = jnp.linalg.eigh(big_a / n)[1], jnp.linalg.eigh(big_s / n)[1]
    lam = jnp.sum(ek.rotated_grads(q_a, q_s, a, g) ** 2, axis=(0, 1)) / n
    return q_a, q_s, lam


def test_ekfac_is_the_exact_damped_inverse_for_one_dense_layer_and_one_example():
    a, g, ggn = _logreg_layer(1)
    q_a, q_s, lam = _ekfac_one_layer(a, g)
    v = np.random.default_rng(1).normal(size=(2, 5, 3))
    got = ek.precondition(q_a, q_s, lam, jnp.asarray(v, jnp.float32), 0.1)
    want = np.linalg.solve(ggn + 0.1 * np.eye(15), v.reshape(2, 15).T).T.reshape(2, 5, 3)
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4)


def test_ekfac_eigenvalues_are_the_gauss_newton_diagonal_in_the_kronecker_basis():
    a, g, ggn = _logreg_layer(40, seed=3)
    q_a, q_s, lam = _ekfac_one_layer(a, g)
    basis = np.kron(np.asarray(q_a, np.float64), np.asarray(q_s, np.float64))
    np.testing.assert_allclose(lam.ravel(), np.diag(basis.T @ ggn @ basis), rtol=1e-3, atol=1e-6)
    # with 40 examples the Kronecker approximation is no longer exact: the test above can fail
    v = np.random.default_rng(1).normal(size=(1, 5, 3))
    got = np.asarray(ek.precondition(q_a, q_s, lam, jnp.asarray(v, jnp.float32), 0.01)).ravel()
    want = np.linalg.solve(ggn + 0.01 * np.eye(15), v.ravel())
    assert np.abs(got - want).max() > 1e-3 * np.abs(want).max()


def _replace_layer(params, layers, name, mat):
    mats = {**L.params_to_matrices(params, layers), name: mat}
    return L.matrices_to_params(params, mats, layers, ())


@functools.lru_cache
def _expected_factors():
    """EK-FAC of the tiny model on 5 crops, fitted once for the tests that only read it."""
    params, apply_fn = _tiny()
    x, _ = _data(5, seed=4)
    return ek.fit_ekfac(
        L.ScriptNetLoss(apply_fn), params, x, labels="expected", batch_size=2
    )  # 2 + 2 + 1 padded


def test_fit_ekfac_eigenvalues_match_exact_gauss_newton_of_every_scriptnet_layer():
    params, apply_fn = _tiny()
    x, _ = _data(5, seed=4)
    f = _expected_factors()
    layers = L.ScriptNetLoss(apply_fn).layers(params, x)
    p = np.asarray(jax.nn.softmax(apply_fn(params, x).script), np.float64)
    fisher = np.stack([np.diag(q) - np.outer(q, q) for q in p])
    for name in ("conv1", "conv2", "conv3", "dense", "script_head"):  # strided, SAME, dense, head
        m0 = L.params_to_matrices(params, layers)[name]
        jac = jax.jacobian(
            lambda m, name=name: apply_fn(_replace_layer(params, layers, name, m), x).script
        )(m0)
        rot = np.einsum("ij,ncio,op->ncjp", f.q_a[name], np.asarray(jac, np.float64), f.q_s[name])
        want = np.einsum("ncjp,ncd,ndjp->jp", rot, fisher, rot) / 5
        np.testing.assert_allclose(f.eigenvalues[name], want, rtol=2e-3, atol=1e-7, err_msg=name)


def _dense_ekfac_inverse(f, params, lam, layers):
    """The EK-FAC (GN + lam I)^-1 as a dense matrix over ravel_pytree(params), block by block."""
    flat, unravel = ravel_pytree(params)
    eye = np.eye(flat.size, dtype=np.float32)

    def apply(u):
        mats = L.params_to_matrices(unravel(u), layers)
        out = {
            k: ek.precondition(f.q_a[k], f.q_s[k], f.eigenvalues[k], v[None], lam)[0]
            for k, v in mats.items()
        }
        return ravel_pytree(L.matrices_to_params(params, out, layers, ()))[0]

    return np.asarray(jax.vmap(apply)(jnp.asarray(eye))).T


def test_ekfac_scores_s_test_and_self_influence_use_one_inverse():
    params, apply_fn = _tiny()
    x, y = _data(6, seed=5)
    xt, yt = _data(2, seed=6)
    f = ek.fit_ekfac(L.ScriptNetLoss(apply_fn), params, x, labels="sampled", seed=1, batch_size=4)
    hinv = _dense_ekfac_inverse(f, params, 0.05, L.ScriptNetLoss(apply_fn).layers(params, x))
    ref = inf.cross_entropy(apply_fn, "script")
    g = np.stack([_loop_grad(ref, params, x[i], y[i]) for i in range(6)])
    gt = np.stack([_loop_grad(ref, params, xt[i], yt[i]) for i in range(2)])
    scores = inf.ekfac_scores(
        L.ScriptNetLoss(apply_fn),
        params,
        x,
        y,
        xt,
        yt,
        factors=f,
        l2=0.0,
        damping=0.05,
        batch_size=4,
    )
    np.testing.assert_allclose(scores, -gt @ hinv @ g.T, rtol=2e-3, atol=1e-5)
    s = inf.ekfac_s_test(L.ScriptNetLoss(apply_fn), params, xt, yt, factors=f, l2=0.0, damping=0.05)
    flat_s = jax.vmap(lambda t: ravel_pytree(t)[0])(s)
    np.testing.assert_allclose(flat_s, gt @ hinv.T, rtol=2e-3, atol=1e-5)
    si = inf.ekfac_self_influence(
        L.ScriptNetLoss(apply_fn), params, x, y, factors=f, l2=0.0, damping=0.05, batch_size=4
    )
    np.testing.assert_allclose(si, np.einsum("np,pq,nq->n", g, hinv, g), rtol=2e-3, atol=1e-5)
    # l2 and damping add: the same inverse
    s2 = inf.ekfac_scores(
        L.ScriptNetLoss(apply_fn),
        params,
        x,
        y,
        xt,
        yt,
        factors=f,
        l2=0.02,
        damping=0.03,
        batch_size=4,
    )
    np.testing.assert_allclose(s2, scores, rtol=1e-5, atol=1e-7)


def test_low_rank_precondition_at_full_rank_is_precondition():
    f = _expected_factors()
    rng = np.random.default_rng(7)
    for name in ("dense", "script_head"):
        d, o = f.eigenvalues[name].shape
        a = jnp.asarray(rng.normal(size=(3, d)), jnp.float32)
        g = jnp.asarray(rng.normal(size=(3, o)), jnp.float32)
        args = (f.q_a[name], f.q_s[name], f.eigenvalues[name])
        u, v = ek.low_rank_precondition(*args, a, g, 0.05, min(d, o))
        want = ek.precondition(*args, jnp.einsum("ti,to->tio", a, g), 0.05)
        np.testing.assert_allclose(u @ jnp.swapaxes(v, 1, 2), want, rtol=1e-4, atol=1e-5)


def test_ekfac_query_rank_one_is_exact_when_the_eigenvalues_are_kronecker():
    """K-FAC's eigenvalues lam_a x lam_s make each preconditioned dense gradient rank 1, so
    query_rank=1 must give the exact scores; EK-FAC's corrected ones need more rank."""
    params, apply_fn = _tiny()
    x, y = _data(6, seed=5)
    xt, yt = _data(2, seed=6)
    f = _expected_factors()
    rng = np.random.default_rng(8)
    kron = {
        k: jnp.asarray(np.outer(rng.uniform(0.5, 2, v.shape[0]), rng.uniform(0.5, 2, v.shape[1])))
        for k, v in f.eigenvalues.items()
    }
    fk = f._replace(eigenvalues=kron)
    exact = inf.ekfac_scores(
        L.ScriptNetLoss(apply_fn),
        params,
        x,
        y,
        xt,
        yt,
        factors=fk,
        l2=0.0,
        damping=0.0,
        batch_size=4,
    )
    rank1 = inf.ekfac_scores(
        L.ScriptNetLoss(apply_fn),
        params,
        x,
        y,
        xt,
        yt,
        factors=fk,
        l2=0.0,
        damping=0.0,
        batch_size=4,
        query_rank=1,
    )
    np.testing.assert_allclose(rank1, exact, rtol=1e-4, atol=1e-6)
    # the corrected eigenvalues are not Kronecker: rank 1 is off, the error shrinks with rank
    exact = inf.ekfac_scores(
        L.ScriptNetLoss(apply_fn),
        params,
        x,
        y,
        xt,
        yt,
        factors=f,
        l2=0.0,
        damping=0.05,
        batch_size=4,
    )
    err = [
        np.abs(
            inf.ekfac_scores(
                L.ScriptNetLoss(apply_fn),
                params,
                x,
                y,
                xt,
                yt,
                factors=f,
                l2=0.0,
                damping=0.05,
                batch_size=4,
                query_rank=r,
            )
            - exact
        ).max()
        for r in (1, 2, 3)
    ]
    assert err[0] > 1e-4 * np.abs(exact).max() and err[2] < err[0]
    with pytest.raises(ValueError, match="query_rank"):
        inf.ekfac_scores(
            L.ScriptNetLoss(apply_fn), params, x, y, xt, yt, factors=f, l2=0.0, query_rank=0
        )


def test_ekfac_rejects_bad_arguments():
    params, apply_fn = _tiny()
    x, y = _data(3)
    with pytest.raises(ValueError, match="labels"):
        ek.fit_ekfac(L.ScriptNetLoss(apply_fn), params, x, labels="empirical")
    with pytest.raises(ValueError, match="targets"):
        ek.fit_ekfac(L.ScriptNetLoss(apply_fn), params, x, labels="true")
    f = _expected_factors()
    with pytest.raises(ValueError, match="damping"):
        inf.ekfac_scores(
            L.ScriptNetLoss(apply_fn), params, x, y, x, y, factors=f, l2=0.0, damping=-1.0
        )
    with pytest.raises(ValueError, match="head='font'"):
        inf.ekfac_scores(L.ScriptNetLoss(apply_fn, "font"), params, x, y, x, y, factors=f, l2=0.0)


# --------------------------------------------------------------------------- I_pert,loss
def _fd_along(f, x, direction, h=1e-3):
    """Central difference of f at x along direction, in float64."""
    with jax.enable_x64(True):
        x64, d64 = jnp.asarray(x, jnp.float64), jnp.asarray(direction, jnp.float64)
        return float((f(x64 + h * d64) - f(x64 - h * d64)) / (2 * h))


def test_pert_influence_of_the_convex_model_is_the_derivative_of_the_exact_influence():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(30, 4)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 30), jnp.int32)
    params, _ = inf.fit_logistic(x, y, n_classes=3, l2=0.1, steps=20)
    res = inf.influence_scores(
        inf.logistic_loss, params, x, y, x[:2], y[:2], l2=0.1, method="exact"
    )
    got = inf.perturbation_influence(inf.logistic_loss, params, res.s_test.x, x[5:8], y[5:8])
    assert got.shape == (3, 2, 4)
    h = np.asarray(inf.training_hessian(inf.logistic_loss, params, x, y, l2=0.1), np.float64)
    p64 = {k: np.asarray(v, np.float64) for k, v in params.items()}
    xt64, xs64 = np.asarray(x[:2], np.float64), np.asarray(x, np.float64)

    def exact_influence(xi, i, t):  # -g_test^T H^-1 grad_theta L(x_i), H fixed at the optimum
        def flat_grad(xx, yy):
            g = jax.grad(lambda p: inf.logistic_loss(p, xx[None], yy[None])[0])(p64)
            return jnp.concatenate([g["b"].ravel(), g["w"].ravel()])  # ravel_pytree's order

        return -flat_grad(xt64[t], y[t]) @ jnp.linalg.solve(h, flat_grad(xi, y[i]))

    d = rng.normal(size=4)
    for i in (5, 6, 7):
        for t in (0, 1):
            want = _fd_along(lambda xi, i=i, t=t: exact_influence(xi, i, t), xs64[i], d)
            np.testing.assert_allclose(float(got[i - 5, t] @ d), want, rtol=2e-3, atol=1e-6)


def test_pert_influence_of_the_whole_network_matches_finite_differences():
    params, apply_fn = _tiny()
    x, y = _data(4, seed=7)
    f = ek.fit_ekfac(L.ScriptNetLoss(apply_fn), params, x, batch_size=4)
    s = inf.ekfac_s_test(
        L.ScriptNetLoss(apply_fn), params, x[:1], y[:1], factors=f, l2=0.0, damping=0.1
    )
    loss = inf.cross_entropy(apply_fn, "script")
    got = inf.perturbation_influence(loss, params, s, x, y, batch_size=3)
    assert got.shape == (4, 1, 8, 16, 3)
    s0 = jax.tree.map(lambda a: a[0], s)
    d = np.random.default_rng(1).normal(size=(8, 16, 3))
    for i in (1, 3):

        def fn(xi, i=i):
            p64 = jax.tree.map(lambda a: a.astype(jnp.float64), params)
            s64 = jax.tree.map(lambda a: a.astype(jnp.float64), s0)
            g = jax.grad(lambda p: loss(p, xi[None], y[i : i + 1])[0])(p64)
            return -sum(
                jnp.vdot(a, b)
                for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(s64), strict=True)
            )

        want = _fd_along(fn, np.asarray(x[i], np.float64), d, h=1e-4)
        np.testing.assert_allclose(float(jnp.vdot(got[i, 0], d)), want, rtol=1e-2, atol=1e-6)


def test_pert_influence_reaches_pixels_through_a_frozen_trunk():
    trunk, apply_fn = _tiny()
    x, y = _data(5, seed=8)
    feats = apply_fn(trunk, x).embedding
    head = {"w": jnp.full((5, 3), 0.1), "b": jnp.zeros(3)}
    s = jnp.asarray(np.random.default_rng(2).normal(size=(2, 18)), jnp.float32)
    got = inf.perturbation_influence(
        inf.logistic_loss, head, s, x, y, apply_fn=apply_fn, trunk_params=trunk
    )
    unravel = ravel_pytree(head)[1]
    d = np.random.default_rng(3).normal(size=(8, 16, 3))

    def fn(xi, t):
        with jax.enable_x64(True):
            t64 = jax.tree.map(lambda a: a.astype(jnp.float64), trunk)
            e = apply_fn(t64, xi[None]).embedding
            g = jax.grad(lambda p: inf.logistic_loss(p, e, y[2:3])[0])(
                jax.tree.map(lambda a: a.astype(jnp.float64), head)
            )
            return -ravel_pytree(g)[0] @ ravel_pytree(unravel(s[t]))[0].astype(jnp.float64)

    assert feats.shape == (5, 5)
    for t in (0, 1):
        want = _fd_along(lambda xi, t=t: fn(xi, t), np.asarray(x[2], np.float64), d, h=1e-4)
        np.testing.assert_allclose(float(jnp.vdot(got[2, t], d)), want, rtol=1e-2, atol=1e-6)
    with pytest.raises(ValueError, match="s_test"):
        inf.perturbation_influence(
            inf.logistic_loss, head, s[:, :5], x, y, apply_fn=apply_fn, trunk_params=trunk
        )
    with pytest.raises(ValueError, match="trunk_params"):
        inf.perturbation_influence(inf.logistic_loss, head, s, x, y, apply_fn=apply_fn)


# --------------------------------------------------------------------------- the attack
def test_training_set_attack_stays_in_budget_and_its_retrain_is_an_exact_refit():
    trunk, apply_fn = _tiny()
    rng = np.random.default_rng(9)
    imgs = rng.integers(0, 256, size=(40, 8, 16, 3)).astype(np.uint8)
    y = jnp.asarray(rng.integers(0, 3, 40), jnp.int32)
    feats = inf.embeddings(apply_fn, trunk, imgs)
    head, _ = inf.fit_logistic(feats, y, n_classes=3, l2=0.05, steps=30)
    h = inf.training_hessian(inf.logistic_loss, head, feats, y, l2=0.05)
    target = imgs[:1].astype(np.float32) / 255.0
    kw = dict(k=3, epsilon=2 / 255, l2=0.05, hessian=h)
    res = inf.training_set_attack(apply_fn, trunk, head, imgs, y, feats, target, y[:1], **kw)
    ctl = inf.training_set_attack(
        apply_fn, trunk, head, imgs, y, feats, target, y[:1], direction="random", **kw
    )
    assert float(jnp.abs(res.delta).max()) <= 2 / 255 + 1e-6
    np.testing.assert_allclose(res.images * 255, np.round(res.images * 255), atol=1e-3)
    assert float(res.grad_norm) <= 1e-6 and float(ctl.grad_norm) <= 1e-6
    assert bool(res.converged) and bool(ctl.converged) and 1 <= int(res.refit_steps) < 100
    np.testing.assert_array_equal(res.indices, ctl.indices)
    # the refit is the minimiser on the poisoned set: compare with an independent Newton fit
    poisoned = np.asarray(imgs, np.float32) / 255.0
    poisoned[np.asarray(res.indices)] = np.asarray(res.images)
    f2 = inf.embeddings(apply_fn, trunk, poisoned)
    ref, _ = inf.fit_logistic(f2, y, n_classes=3, l2=0.05, steps=30)
    want = inf.logistic_loss(ref, apply_fn(trunk, target).embedding, y[:1])[0]
    np.testing.assert_allclose(res.loss_after, want, rtol=1e-3, atol=1e-6)
    assert float(res.loss_after - res.loss_before) > float(ctl.loss_after - ctl.loss_before)
    with pytest.raises(ValueError, match="direction"):
        inf.training_set_attack(
            apply_fn, trunk, head, imgs, y, feats, target, y[:1], direction="up", **kw
        )


# --------------------------------------------------------------------------- validation fixes
def _logreg(n=40, seed=0):
    rng = np.random.default_rng(seed)
    x = jnp.asarray(rng.normal(size=(n, 3)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, n), jnp.int32)
    params, gnorm = inf.fit_logistic(x, y, n_classes=3, l2=0.05, steps=30)
    return x, y, params, float(gnorm)


def test_options_tuple_is_the_same_as_the_keywords_and_not_both():
    x, y, params, _ = _logreg()
    opts = inf.InfluenceOptions(l2=0.05, damping=0.01)
    a = inf.influence_scores(inf.logistic_loss, params, x, y, x[:2], y[:2], options=opts)
    b = inf.influence_scores(inf.logistic_loss, params, x, y, x[:2], y[:2], l2=0.05, damping=0.01)
    np.testing.assert_array_equal(a.scores, b.scores)
    la = inf.loo_retrain(inf.logistic_loss, params, x, y, x[:2], y[:2], jnp.arange(3), options=opts)
    lb = inf.loo_retrain(
        inf.logistic_loss, params, x, y, x[:2], y[:2], jnp.arange(3), l2=0.05, damping=0.01
    )
    np.testing.assert_array_equal(la.delta_test_loss, lb.delta_test_loss)
    with pytest.raises(ValueError, match="not both"):
        inf.influence_scores(inf.logistic_loss, params, x, y, x, y, l2=0.05, options=opts)
    with pytest.raises(ValueError, match="l2 must be given"):
        inf.loo_retrain(inf.logistic_loss, params, x, y, x, y, jnp.arange(2))


def test_self_term_correction_removes_the_first_order_bias_and_float64_resolves_tiny_changes():
    x, y, params, gnorm = _logreg(n=30, seed=1)
    assert gnorm < 1e-5  # a converged start
    idx = jnp.arange(30)
    loo = inf.loo_retrain(
        inf.logistic_loss, params, x, y, x[:3], y[:3], idx, l2=0.05, steps=30, precision="float64"
    )
    assert loo.delta_test_loss.dtype == np.float64 and float(loo.grad_norm.max()) < 1e-10
    actual = loo.delta_test_loss
    first = inf.predicted_loo_change(
        inf.influence_scores(
            inf.logistic_loss, params, x, y, x[:3], y[:3], l2=0.05, method="exact"
        ).scores.T,
        30,
    )
    newton = inf.predicted_loo_change_newton(
        inf.logistic_loss, params, x, y, x[:3], y[:3], idx, l2=0.05
    )
    err_first = np.abs(np.asarray(first) - actual).max()
    err_newton = np.abs(np.asarray(newton) - actual).max()
    assert err_newton < 0.7 * err_first  # n = 30: large changes, test loss curvature remains
    assert abs(inf.slope(newton, actual) - 1) < abs(inf.slope(first, actual) - 1)
    # float32 retrains agree with the float64 reference to float32's resolution
    f32 = inf.loo_retrain(inf.logistic_loss, params, x, y, x[:3], y[:3], idx, l2=0.05, steps=30)
    np.testing.assert_allclose(f32.delta_test_loss, actual, atol=2e-6)
    assert inf.slope([1.0, 2.0], [2.0, 4.0]) == pytest.approx(2.0)
