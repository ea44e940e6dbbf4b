"""Whole-network references: leave-k-out retraining against a plain loop, the PBRF against the
damped Gauss-Newton influence it linearises to (an exact Jacobian, float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from scriptlab import model as M
from scriptlab.interpret import influence as inf


def _softmax(z):
    e = np.exp(z - z.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _logreg_data(n=12, d=3, c=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = rng.integers(0, c, n).astype(np.int32)
    params = {"w": rng.normal(size=(d, c)).astype(np.float32) * 0.1, "b": np.zeros(c, np.float32)}
    return x, y, params


def _loop_retrain(x, y, params, mask, order, lr, momentum, l2):
    """Heavy-ball on sum_b w_b CE_b / sum_b w_b + l2/2 |theta|^2, closed-form gradients, numpy."""
    w, b = params["w"].astype(np.float64), params["b"].astype(np.float64)
    vw, vb = np.zeros_like(w), np.zeros_like(b)
    total = len(order)
    for s, idx in enumerate(order):
        rate = lr * 0.5 * (1 + np.cos(np.pi * s / total))
        wt = mask[idx]
        r = (_softmax(x[idx] @ w + b) - np.eye(w.shape[1])[y[idx]]) * wt[:, None]
        denom = max(wt.sum(), 1.0)
        gw, gb = x[idx].T @ r / denom + l2 * w, r.sum(0) / denom + l2 * b
        vw, vb = momentum * vw - rate * gw, momentum * vb - rate * gb
        w, b = w + vw, b + vb
    return w, b


def _ce(x, y, w, b):
    p = _softmax(x @ w + b)
    return -np.log(p[np.arange(len(y)), y])


def test_leave_out_retrain_matches_a_plain_loop_and_subtracts_the_run_without_removals():
    x, y, params = _logreg_data()
    xt, yt = x[:4] + 0.5, y[:4]
    removed = np.array([[0, 5], [7, 7], [11, 2]])
    kw = dict(epochs=3, batch_size=5, lr=0.3, momentum=0.8, l2=0.01, seed=3)
    got = inf.leave_out_retrain(inf.logistic_loss, params, x, y, xt, yt, removed, **kw)
    rng = np.random.default_rng(3)  # the documented order: seeded permutations, whole batches
    order = np.concatenate([rng.permutation(12)[:10].reshape(2, 5) for _ in range(3)])
    runs = []
    for row in [*removed, []]:
        mask = np.ones(12)
        mask[list(row)] = 0.0
        w, b = _loop_retrain(x, y, params, mask, order, 0.3, 0.8, 0.01)
        r = (_softmax(x @ w + b) - np.eye(3)[y]) * mask[:, None]
        gw, gb = x.T @ r / mask.sum() + 0.01 * w, r.sum(0) / mask.sum() + 0.01 * b
        runs.append((_ce(xt, yt, w, b), np.sqrt((gw**2).sum() + (gb**2).sum())))
    want = np.stack([loss - runs[-1][0] for loss, _ in runs[:-1]])
    np.testing.assert_allclose(got.delta_test_loss, want, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(got.grad_norm, [g for _, g in runs[:-1]], rtol=1e-4)
    np.testing.assert_allclose(got.base_grad_norm, runs[-1][1], rtol=1e-4)
    assert np.abs(want).min() > 1e-4  # every set changed the run: the check has teeth
    again = inf.leave_out_retrain(inf.logistic_loss, params, x, y, xt, yt, removed, **kw)
    np.testing.assert_array_equal(again.delta_test_loss, got.delta_test_loss)
    other = inf.leave_out_retrain(
        inf.logistic_loss, params, x, y, xt, yt, removed, **{**kw, "seed": 4}
    )
    assert not np.allclose(other.delta_test_loss, got.delta_test_loss)


def _tiny():
    m = M.build(3, 2, seed=0, channels=(2, 3, 4), hidden=5, image_shape=(8, 16, 3))
    return M.functional(m)


def test_pbrf_first_order_is_the_damped_gauss_newton_influence_of_the_whole_network():
    """A tiny conv net, float64: the PBRF's response to a small removal weight, divided by the
    weight, equals g_test^T (G + damping I)^-1 sum_r g_r with G from the exact Jacobian."""
    params, apply_fn = _tiny()
    rng = np.random.default_rng(1)
    n, damping, eps = 10, 0.1, 1e-6
    with jax.enable_x64(True):
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), params)
        x = jnp.asarray(rng.uniform(size=(n, 8, 16, 3)))
        y = jnp.asarray(rng.integers(0, 3, n), jnp.int32)
        xt, yt = jnp.asarray(rng.uniform(size=(3, 8, 16, 3))), jnp.asarray([0, 1, 2], jnp.int32)
        removed = np.array([[1, 2], [9, 9]])  # a repeated index is removed once
        kw = dict(damping=damping, epochs=500, batch_size=n, lr=0.5, momentum=0.9)
        got = inf.pbrf(apply_fn, params, x, y, xt, yt, removed, weight=eps, **kw)
        # Q_R is stationary at theta_s without the removal term: nothing moves (the changes
        # above are ~1e-6).
        zero = inf.pbrf(apply_fn, params, x, y, xt, yt, removed[:1], weight=0.0, **kw)
        np.testing.assert_allclose(zero.delta_test_loss, 0.0, atol=1e-13)  # float64 rounding
        flat, unravel = ravel_pytree(params)

        def logits(u, xs):
            return apply_fn(unravel(u), xs).script

        # One jitted Jacobian of every logit, training and test crops: [N + T, C, P].
        jac = jax.jit(jax.jacfwd(logits))(flat, jnp.concatenate([x, xt]))
        p = jax.nn.softmax(logits(flat, jnp.concatenate([x, xt])))
        h_out = jax.vmap(jnp.diag)(p[:n]) - p[:n, :, None] * p[:n, None, :]
        gn = jnp.einsum("ncp,ncd,ndq->pq", jac[:n], h_out, jac[:n]) / n
        # grad CE = J^T (softmax - onehot)
        g = jnp.einsum("ncp,nc->np", jac, p - jax.nn.one_hot(jnp.concatenate([y, yt]), 3))
        g_train, g_test = g[:n], g[n:]
        solve = jnp.linalg.solve(gn + damping * jnp.eye(flat.size), g_train.T)  # [P, N]
        per_point = np.asarray(g_test @ solve)  # [T, N]
        want = np.stack([per_point[:, sorted(set(r))].sum(1) for r in removed])
        np.testing.assert_allclose(np.asarray(got.delta_test_loss) / eps, want, rtol=2e-3)
        # Converged: each run's final gradient is under 1e-3 of the removal term's pull at theta_s.
        pull = [eps * float(jnp.linalg.norm(g_train[np.unique(r)].sum(0))) for r in removed]
        assert (np.asarray(got.grad_norm) < 1e-3 * np.asarray(pull)).all()
        assert np.abs(want).min() > 1e-3


def test_retrain_references_reject_bad_arguments_by_name():
    params, apply_fn = _tiny()
    x = jnp.asarray(np.random.default_rng(2).uniform(size=(6, 8, 16, 3)), jnp.float32)
    y = jnp.asarray([0, 1, 2, 0, 1, 2], jnp.int32)
    kw = dict(damping=0.1, epochs=2, batch_size=3)
    with pytest.raises(ValueError, match=r"removed must be int\[M, k\]"):
        inf.pbrf(apply_fn, params, x, y, x[:2], y[:2], [0, 1], **kw)
    with pytest.raises(ValueError, match=r"removed must lie in \[0, 6\)"):
        inf.pbrf(apply_fn, params, x, y, x[:2], y[:2], [[6]], **kw)
    with pytest.raises(ValueError, match="batch_size must be an integer in"):
        inf.pbrf(apply_fn, params, x, y, x[:2], y[:2], [[0]], **{**kw, "batch_size": 7})
    with pytest.raises(ValueError, match="damping must be a finite number >= 0"):
        inf.pbrf(apply_fn, params, x, y, x[:2], y[:2], [[0]], **{**kw, "damping": -1.0})
    with pytest.raises(ValueError, match="epochs must be an integer >= 1"):
        inf.leave_out_retrain(
            inf.ScriptNetLoss(apply_fn), params, x, y, x[:2], y[:2], [[0]], epochs=0
        )
