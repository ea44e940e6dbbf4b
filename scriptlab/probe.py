"""Fresh probes on frozen features: is the nuisance still decodable?

Gradient reversal can leave an attribute decodable even when the adversary
head is at chance (Elazar & Goldberg 2018), so unlearning is judged by probes
trained after the fact and scored on held-out data (Barrett et al. 2019):

  linear       multinomial logistic regression (``fit_probe``);
  MLP          one hidden ReLU layer (``fit_mlp_probe``): linear erasure (LEACE)
               can leave a concept that a nonlinear probe still reads;
  conditional  one linear probe per value of a second label (per script): does
               the embedding know the style beyond what the script already says?
               Its chance level is the majority style within each script.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scriptlab.validation import check_array, check_indices, check_int, check_number


class Probe(NamedTuple):
    """A fitted multinomial logistic regression on standardised features.

    Attributes:
      weights: float32[D, K]
      bias: float32[K]
      mean: float32[D]
      scale: float32[D]
    """

    weights: jax.Array
    bias: jax.Array
    mean: jax.Array
    scale: jax.Array

    def logits(self, features) -> jax.Array:
        """float32[N, K] class scores of float32[N, D] features."""
        features = check_array("features", features, shape=(None, self.weights.shape[0]))
        return (features - self.mean) / self.scale @ self.weights + self.bias

    def predict(self, features) -> np.ndarray:
        return np.asarray(jnp.argmax(self.logits(features), -1))


def fit_probe(
    features, labels, n_classes: int, *, l2: float = 1e-3, steps: int = 300, weights=None
) -> Probe:
    """Fit a linear probe with full-batch Adam (deterministic: zero initialisation).

    Args:
      features: float32[N, D] frozen embeddings.
      labels: int[N] in [0, n_classes).
      l2: weight penalty.
      steps: optimisation steps.
      weights: optional float[N] >= 0 example weights (the loss is their weighted
        mean), e.g. ``train.balanced_probabilities`` for a group-balanced refit.
    """
    x, y = _check(features, labels, n_classes)
    _check_fit(l2, steps)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    if weights is not None:
        w = np.asarray(weights, np.float32)
        if w.shape != (len(x),) or not np.all(np.isfinite(w)) or w.min() < 0 or w.sum() <= 0:
            raise ValueError(f"weights must be {len(x)} finite numbers >= 0 with a positive sum")
        w = jnp.asarray(w / w.sum())
        mean = w @ x  # standardise on the weighted distribution too
        scale = jnp.sqrt(w @ (x - mean) ** 2) + 1e-6
        wk, b = _fit_masked((x - mean) / scale, y, w[None], n_classes, l2, steps)
        return Probe(wk[0], b[0], mean, scale)
    return _fit((x - mean) / scale, y, n_classes, l2, steps)._replace(mean=mean, scale=scale)


def _minimise(loss, params, steps: int, lr: float = 0.05):
    """Full-batch Adam for ``steps`` steps, as one lax.scan."""
    tx = optax.adam(lr)

    def body(carry, _):
        p, s = carry
        g = jax.grad(loss)(p)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
    return p


@jax.jit(static_argnums=(2, 4))
def _fit(z, y, n_classes, l2, steps):
    params = (jnp.zeros((z.shape[1], n_classes)), jnp.zeros(n_classes))

    def loss(p):
        logits = z @ p[0] + p[1]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce + l2 * jnp.sum(p[0] ** 2)

    p = _minimise(loss, params, steps)
    return Probe(p[0], p[1], jnp.zeros(z.shape[1]), jnp.ones(z.shape[1]))


def _check(features, labels, n_classes: int, *, name: str = "features", dim: int | None = None):
    """Finite features [N, D] (D = ``dim`` for a test set, which may be empty; N >= 1 to
    fit on) and int labels in [0, n_classes)."""
    check_int("n_classes", n_classes, 1)
    x = check_array(name, features, shape=(None, dim) if dim else None, ndim=2)
    y = np.asarray(labels)
    if (len(x) == 0 and dim is None) or y.shape != (len(x),):
        raise ValueError(
            f"{name} must be [N, D] with N = len(labels) (N >= 1 to fit on); "
            f"got {x.shape} and {y.shape}"
        )
    y = check_indices(f"labels of {name}", y, n_classes, what="classes")
    return x, jnp.asarray(y, jnp.int32)


def _check_fit(l2, steps, **ints) -> None:
    check_number("l2", l2, low=0.0)
    check_int("steps", steps, 1)
    for name, value in ints.items():
        check_int(name, value, 1)


def probe_accuracy(train_x, train_y, test_x, test_y, n_classes: int) -> float:
    """Accuracy on (test_x, test_y) of a probe fitted on (train_x, train_y)."""
    probe = fit_probe(train_x, train_y, n_classes)
    test_x, test_y = _check(test_x, test_y, n_classes, name="test_x", dim=probe.weights.shape[0])
    return float(np.mean(probe.predict(test_x) == np.asarray(test_y)))


class MLPProbe(NamedTuple):
    """A fitted one-hidden-layer ReLU probe on standardised features.

    Attributes:
      w1: float32[D, H]
      b1: float32[H]
      w2: float32[H, K]
      b2: float32[K]
      mean: float32[D]
      scale: float32[D]
    """

    w1: jax.Array
    b1: jax.Array
    w2: jax.Array
    b2: jax.Array
    mean: jax.Array
    scale: jax.Array

    def predict(self, features) -> np.ndarray:
        features = check_array("features", features, shape=(None, self.w1.shape[0]))
        z = (features - self.mean) / self.scale
        return np.asarray(jnp.argmax(jax.nn.relu(z @ self.w1 + self.b1) @ self.w2 + self.b2, -1))


def fit_mlp_probe(
    features,
    labels,
    n_classes: int,
    *,
    hidden: int = 64,
    l2: float = 1e-3,
    steps: int = 500,
    seed: int = 0,
) -> MLPProbe:
    """Fit a one-hidden-layer ReLU probe with full-batch Adam (deterministic for a seed).

    Args:
      features: float32[N, D] frozen embeddings.
      labels: int[N] in [0, n_classes).
      hidden: hidden width.
      l2: weight penalty on both layers.
      steps: optimisation steps.
      seed: initialisation seed.
    """
    x, y = _check(features, labels, n_classes)
    _check_fit(l2, steps, hidden=hidden)
    check_int("seed", seed)
    mean, scale = x.mean(0), x.std(0) + 1e-6
    p = _fit_mlp((x - mean) / scale, y, jax.random.key(seed), n_classes, hidden, l2, steps)
    return MLPProbe(*p, mean, scale)


@jax.jit(static_argnums=(3, 4, 6))
def _fit_mlp(z, y, key, n_classes, hidden, l2, steps):
    d = z.shape[1]
    params = (
        jax.random.normal(key, (d, hidden)) * (2.0 / d) ** 0.5,
        jnp.zeros(hidden),
        jnp.zeros((hidden, n_classes)),
        jnp.zeros(n_classes),
    )

    def loss(p):
        logits = jax.nn.relu(z @ p[0] + p[1]) @ p[2] + p[3]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce + l2 * (jnp.sum(p[0] ** 2) + jnp.sum(p[2] ** 2))

    return _minimise(loss, params, steps, lr=0.01)


def mlp_probe_accuracy(train_x, train_y, test_x, test_y, n_classes: int) -> float:
    """Accuracy on (test_x, test_y) of an MLP probe fitted on (train_x, train_y)."""
    probe = fit_mlp_probe(train_x, train_y, n_classes)
    test_x, test_y = _check(test_x, test_y, n_classes, name="test_x", dim=probe.w1.shape[0])
    return float(np.mean(probe.predict(test_x) == np.asarray(test_y)))


def conditional_probe_accuracy(
    train_x,
    train_y,
    train_c,
    test_x,
    test_y,
    test_c,
    n_classes: int,
    n_conditions: int,
    *,
    l2: float = 1e-3,
    steps: int = 300,
) -> float:
    """Accuracy of one linear probe per condition (e.g. per script), each scored on its own crops.

    All probes are fitted at once (vmapped over masks of the condition values).

    Args:
      train_x, test_x: float32[N, D] frozen embeddings.
      train_y, test_y: int[N] the concept (e.g. style) in [0, n_classes).
      train_c, test_c: int[N] the condition (e.g. script) in [0, n_conditions).

    Returns:
      Accuracy over all test crops; compare with the majority class within each
      condition, not with the overall majority.
    """
    x, y = _check(train_x, train_y, n_classes, name="train_x")
    xt, yt = _check(test_x, test_y, n_classes, name="test_x", dim=x.shape[1])
    _check_fit(l2, steps, n_conditions=n_conditions)
    c, ct = np.asarray(train_c), np.asarray(test_c)
    for name, a in (("train_c", c), ("test_c", ct)):
        if a.shape != (len(a),):
            raise ValueError(f"{name} must be int[N], got shape {a.shape}")
        check_indices(name, a, n_conditions, what="conditions")
    if len(c) != len(x) or len(ct) != len(xt):
        raise ValueError(
            f"conditions must match the features: {len(c)} vs {len(x)}, {len(ct)} vs {len(xt)}"
        )
    mean, scale = x.mean(0), x.std(0) + 1e-6
    masks = jnp.asarray(c[None, :] == np.arange(n_conditions)[:, None], jnp.float32)
    w, b = _fit_masked((x - mean) / scale, y, masks, n_classes, l2, steps)
    logits = jnp.einsum("nd,ndk->nk", (xt - mean) / scale, w[ct]) + b[ct]
    return float(np.mean(np.asarray(jnp.argmax(logits, -1)) == np.asarray(yt)))


@jax.jit(static_argnums=(3, 5))
def _fit_masked(z, y, masks, n_classes, l2, steps):
    def one(mask):
        def loss(p):
            ce = optax.softmax_cross_entropy_with_integer_labels(z @ p[0] + p[1], y)
            return jnp.sum(mask * ce) / jnp.maximum(mask.sum(), 1.0) + l2 * jnp.sum(p[0] ** 2)

        return _minimise(loss, (jnp.zeros((z.shape[1], n_classes)), jnp.zeros(n_classes)), steps)

    return jax.vmap(one)(masks)
