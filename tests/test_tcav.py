"""TCAV against closed forms: a model whose layer is linear in the input, sklearn's
logistic regression, plain loops of single CAV fits and forward-mode derivatives."""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats as scipy_stats
from sklearn.linear_model import LogisticRegression

from scriptlab.interpret import stats as S
from scriptlab.interpret import tcav as T

from helpers import SMALL_SHAPE, scriptnet


class LayerOutputs(NamedTuple):
    """What the toy model returns: script logits, its one layer as embedding and activation."""

    script: jax.Array
    embedding: jax.Array
    activations: dict


def linear_layer_apply(params, images, relu=jax.nn.relu, perturb=None):
    """h = x_flat @ m (the layer "h"), logits = h @ u: grad_h logit_k = u[:, k] everywhere."""
    h = images.reshape(images.shape[0], -1) @ params["m"]
    if perturb and "h" in perturb:
        h = h + perturb["h"]
    return LayerOutputs(h @ params["u"], h, {"h": h})


SHAPE = (4, 4, 1)


def toy_params():
    m = np.zeros((16, 3), np.float32)
    m[0, 0] = m[1, 1] = m[2, 2] = 1.0  # h = the first three pixels
    u = np.array([[1.0, -1.0], [0.2, -0.2], [0.0, 0.0]], np.float32)
    return {"m": jnp.asarray(m), "u": jnp.asarray(u)}


def toy_images(key, n, *, pixel0=(0.0, 1.0)):
    x = jax.random.uniform(key, (n, *SHAPE))
    lo, hi = pixel0
    return x.at[:, 0, 0, 0].set(lo + (hi - lo) * x[:, 0, 0, 0])


def test_layer_gradients_are_the_closed_form():
    params = toy_params()
    x = toy_images(jax.random.key(0), 5)
    targets = jnp.array([0, 1, 0, 1, 1])
    g = T.layer_gradients(linear_layer_apply, params, x, targets, layer="h")
    np.testing.assert_allclose(g, params["u"].T[targets], rtol=1e-6)


@pytest.mark.slow
def test_layer_gradients_match_forward_mode_on_a_network():
    # reverse mode through perturb= against forward mode (jvp) along a direction v
    _, p, fn = scriptnet(SMALL_SHAPE)
    images = jax.random.uniform(jax.random.key(1), (2, *SMALL_SHAPE))
    g = T.layer_gradients(fn, p, images, 1, layer="pool2")
    shape = fn(p, images[:1]).activations["pool2"].shape
    v = jax.random.normal(jax.random.key(2), (2, *shape[1:]))
    for i in range(2):

        def logit(s, i=i):
            return fn(p, images[i : i + 1], perturb={"pool2": s * v[i][None]}).script[0, 1]

        _, forward = jax.jvp(logit, (0.0,), (1.0,))
        np.testing.assert_allclose(g[i] @ v[i].reshape(-1), forward, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("method", ["mean", "logistic"])
def test_tcav_score_is_one_or_zero_as_the_closed_form_says(method):
    params = toy_params()
    concept = toy_images(jax.random.key(3), 30, pixel0=(0.7, 1.0))
    random = toy_images(jax.random.key(4), 40, pixel0=(0.0, 0.6))
    h = lambda x: np.asarray(x.reshape(x.shape[0], -1)[:, :3])  # noqa: E731
    cav = T.fit_cav(h(concept), h(random), method=method)
    if method == "mean":
        w = h(concept).mean(0) - h(random).mean(0)
        np.testing.assert_allclose(cav.direction, w / np.linalg.norm(w), atol=1e-6)
    targets = jnp.array([0] * 6 + [1] * 6)
    x = toy_images(jax.random.key(5), 12)
    g = T.layer_gradients(linear_layer_apply, params, x, targets, layer="h")
    scores = [T.tcav_scores(g[targets == k], cav.direction) for k in (0, 1)]
    # the directional derivative is u_k . v for every input, so the score is 1[u_k . v > 0]
    expected = [float(params["u"][:, k] @ cav.direction > 0) for k in (0, 1)]
    assert expected == [1.0, 0.0]
    np.testing.assert_array_equal(scores, expected)
    assert float(cav.accuracy) >= 0.9


@pytest.mark.parametrize(("n", "d"), [(60, 5), (24, 50)])
def test_logistic_cav_matches_sklearn(n, d):
    rng = np.random.default_rng(6)
    y = np.arange(n) % 2 == 0
    x = (rng.normal(size=(n, d)) + 1.5 * y[:, None] * rng.normal(size=d)).astype(np.float32)
    l2 = 0.05
    cav = T.fit_cav(x[y], x[~y], l2=l2)
    ref = LogisticRegression(C=1 / (n * l2), tol=1e-10, max_iter=10_000).fit(x, y)
    norm = np.linalg.norm(ref.coef_[0])
    np.testing.assert_allclose(cav.direction, ref.coef_[0] / norm, atol=2e-4)
    np.testing.assert_allclose(cav.bias, ref.intercept_[0] / norm, atol=2e-4)
    np.testing.assert_allclose(cav.accuracy, ref.score(x, y), rtol=1e-6)


@pytest.mark.parametrize("method", ["mean", "logistic"])
def test_batched_cav_fit_equals_a_loop_of_single_fits(method):
    rng = np.random.default_rng(7)
    acts = rng.normal(size=(40, 12)).astype(np.float32)
    acts[:10] += 1.0
    positives = np.stack([np.arange(10)] * 4)
    negatives = rng.permutation(np.arange(10, 40))[:24].reshape(4, 6)
    batched = T.fit_cavs(acts, positives, negatives, method=method)
    for i in range(4):
        one = T.fit_cav(acts[positives[i]], acts[negatives[i]], method=method)
        np.testing.assert_allclose(batched.direction[i], one.direction, atol=1e-5)
        np.testing.assert_allclose(batched.bias[i], one.bias, atol=1e-5)
        assert float(batched.accuracy[i]) == float(one.accuracy)
    np.testing.assert_allclose(jnp.linalg.norm(batched.direction, axis=1), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_tcav_test_on_the_toy_model():
    params = toy_params()
    x = toy_images(jax.random.key(8), 10)
    concepts = {
        "bright": toy_images(jax.random.key(9), 10, pixel0=(0.8, 1.0)),
        "dark": toy_images(jax.random.key(10), 10, pixel0=(0.0, 0.2)),
        "plain": toy_images(jax.random.key(11), 10),
    }
    pool = toy_images(jax.random.key(12), 220)
    res = T.tcav(
        linear_layer_apply, params, x, 0, concepts, pool, layers="h", n_random=20, test="paper"
    )
    assert res.concepts == ("bright", "dark", "plain") and res.layers == ("h",)
    assert res.scores.shape == (1, 3, 20) and res.random_scores.shape == (1, 20)
    np.testing.assert_array_equal(res.scores[0, 0], 1.0)  # u_0 . v_bright > 0 for every CAV
    np.testing.assert_array_equal(res.scores[0, 1], 0.0)
    # the test is the t-test of these two samples, Holm-corrected over the 3 concepts
    expected = S.t_test(res.scores, res.random_scores[:, None]).p_value
    np.testing.assert_allclose(res.p_values, expected, rtol=1e-6)
    np.testing.assert_allclose(res.p_adjusted, S.adjust_p_values(expected), rtol=1e-6)
    np.testing.assert_array_equal(res.significant, res.p_adjusted <= 0.05)
    assert bool(res.significant[0, 1])  # every "dark" CAV scores 0: p ~ 1e-12
    assert 0.0 < float(res.random_scores.mean()) < 1.0


class QuadOutputs(NamedTuple):
    script: jax.Array
    embedding: jax.Array
    activations: dict


def quadratic_apply(params, images, relu=jax.nn.relu, perturb=None):
    """h = (x - 1/2) m, logits = h u + (h * h) w / 2: grad_h logit_k = u_k + w_k * h varies per image."""
    h = (images.reshape(images.shape[0], -1) - 0.5) @ params["m"]
    if perturb and "h" in perturb:
        h = h + perturb["h"]
    return QuadOutputs(h @ params["u"] + 0.5 * (h * h) @ params["w"], h, {"h": h})


def quadratic_params(d=16):
    keys = jax.random.split(jax.random.key(0), 3)
    return {
        "m": jax.random.normal(keys[0], (16, d)),
        "u": 0.3 * jax.random.normal(keys[1], (d, 2)),
        "w": jax.random.normal(keys[2], (d, 2)),
    }


@pytest.mark.slow
def test_exchangeable_test_is_the_prediction_t_test_of_the_pair_scores():
    # every number of the exchangeable test rebuilt by a plain loop of single CAV fits
    params = quadratic_params()
    x = toy_images(jax.random.key(1), 12)
    size, m = 5, 3
    concept = toy_images(jax.random.key(2), size)
    pool = toy_images(jax.random.key(3), size * (m + 1))
    res = T.tcav(quadratic_apply, params, x, 0, {"c": concept}, pool, layers="h", n_random=m,
                 random_size=size, seed=4, correction="none")  # fmt: skip
    sets = [pool[r] for r in T._random_sets(len(pool), m + 1, size, 4)]
    grads = T.layer_gradients(quadratic_apply, params, x, 0, layer="h")
    acts = lambda im: quadratic_apply(params, im).activations["h"]  # noqa: E731

    def s(a, b):  # the TCAV score of the CAV of set a against set b
        return float(T.tcav_scores(grads, T.fit_cav(acts(a), acts(b)).direction))

    everything = [concept, *sets]
    stat = [np.mean([s(a, b) for j, b in enumerate(everything) if j != i and j > 0]
                    + ([s(a, concept)] if i > 0 else [])) for i, a in enumerate(everything)]  # fmt: skip
    np.testing.assert_allclose(res.scores[0, 0], [s(concept, b) for b in sets], atol=1e-6)
    np.testing.assert_allclose(res.statistic[0, 0], stat[0], atol=1e-6)
    np.testing.assert_allclose(res.null_statistics[0, 0], stat[1:], atol=1e-6)
    # the prediction t-test by hand: t = (x - mean) / (s sqrt(1 + 1/n)), df = n - 1
    n = m + 1
    t = (stat[0] - np.mean(stat[1:])) / (np.std(stat[1:], ddof=1) * np.sqrt(1 + 1 / n))
    p = 2 * scipy_stats.t.sf(abs(t), n - 1)
    np.testing.assert_allclose(res.p_values[0, 0], p, rtol=1e-4, atol=1e-6)
    assert res.random_scores.shape == (1, (m + 1) * m) and res.test == "exchangeable"
    # the paper's test on the same fits equals the paper's own run (the same seed and sets)
    paper = T.tcav(quadratic_apply, params, x, 0, {"c": concept}, pool, layers="h", n_random=m,
                   random_size=size, seed=4, correction="none", test="paper")  # fmt: skip
    np.testing.assert_allclose(res.paper_p_adjusted, paper.p_adjusted, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(paper.paper_p_adjusted, paper.p_adjusted)


@pytest.mark.slow
def test_a_random_concept_is_significant_at_the_nominal_rate_only_with_the_exchangeable_test():
    # The null is known: every concept is a fresh draw from the random pool's distribution.
    # 100 draws x 3 concepts (sharing one draw's random sets) of the exchangeable test reject
    # at about alpha = 0.05 (binomial sd of the rate ~0.013, more with the sharing); the
    # paper's fixed-R_0 t-test rejects such concepts several times as often.
    params = quadratic_params()
    x = toy_images(jax.random.key(1), 40)
    size, m = 8, 9
    rates = {}
    for test, draws in (("exchangeable", 100), ("paper", 30)):
        p = []
        for d in range(draws):
            keys = jax.random.split(jax.random.key(1000 + d), 4)
            concepts = {f"r{i}": toy_images(keys[i], size) for i in range(3)}
            pool = toy_images(keys[3], size * (m + 1))
            res = T.tcav(quadratic_apply, params, x, 0, concepts, pool, layers="h", n_random=m,
                         random_size=size, test=test, correction="none", seed=d)  # fmt: skip
            p.append(np.asarray(res.p_values).ravel())
        rates[test] = float(np.mean(np.concatenate(p) <= 0.05))
    assert 0.02 <= rates["exchangeable"] <= 0.09, rates
    assert rates["paper"] >= 0.2, rates


def test_prediction_t_test_matches_scipy_and_handles_constant_samples():
    rng = np.random.default_rng(0)
    x, sample = rng.normal(size=(3,)), rng.normal(size=(3, 7))
    res = S.prediction_t_test(x, sample)
    n = 7
    t = (x - sample.mean(1)) / (sample.std(1, ddof=1) * np.sqrt(1 + 1 / n))
    np.testing.assert_allclose(res.statistic, t, rtol=1e-5)
    np.testing.assert_allclose(res.p_value, 2 * scipy_stats.t.sf(np.abs(t), n - 1), rtol=1e-4)
    const = S.prediction_t_test(np.array([0.5, 0.7]), np.full((2, 4), 0.5))
    np.testing.assert_array_equal(const.p_value, [1.0, 0.0])
    with pytest.raises(ValueError, match="sample must hold >= 2"):
        S.prediction_t_test(0.1, np.ones(1))


def test_tcav_bad_inputs():
    params = toy_params()
    x = toy_images(jax.random.key(0), 4)
    c = {"a": x}
    with pytest.raises(ValueError, match="random_images holds 10 images"):
        T.tcav(linear_layer_apply, params, x, 0, c, x.repeat(3, 0)[:10], layers="h")
    with pytest.raises(ValueError, match="unknown layer 'conv9'"):
        T.tcav(linear_layer_apply, params, x, 0, c, x, layers="conv9")
    with pytest.raises(ValueError, match="correction must be one of"):
        T.tcav(linear_layer_apply, params, x, 0, c, x, layers="h", correction="fdr")
    with pytest.raises(ValueError, match="test must be one of"):
        T.tcav(linear_layer_apply, params, x, 0, c, x, layers="h", test="welch")
    with pytest.raises(ValueError, match="positives must lie in"):
        T.fit_cavs(np.zeros((4, 2)), [[0, 9]], [[1, 2]])
    with pytest.raises(ValueError, match="directions must be float"):
        T.tcav_scores(np.zeros((4, 3)), np.zeros(2))
