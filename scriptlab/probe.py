"""A fresh linear probe on frozen features: is the nuisance still decodable?

Gradient reversal can leave an attribute decodable even when the adversary
head is at chance (Elazar & Goldberg 2018), so unlearning is judged by a probe
trained after the fact and scored on held-out data (Barrett et al. 2019).
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax


class Probe(NamedTuple):
    """A fitted multinomial logistic regression on standardised features."""

    weights: jax.Array  # float32[D, K]
    bias: jax.Array  # float32[K]
    mean: jax.Array  # float32[D]
    scale: jax.Array  # float32[D]

    def predict(self, features) -> np.ndarray:
        z = (jnp.asarray(features) - self.mean) / self.scale
        return np.asarray(jnp.argmax(z @ self.weights + self.bias, -1))


def fit_probe(features, labels, n_classes: int, *, l2: float = 1e-3, steps: int = 300) -> Probe:
    """Fit a linear probe with full-batch Adam (deterministic: zero initialisation).

    Args:
      features: float32[N, D] frozen embeddings.
      labels: int[N] in [0, n_classes).
      l2: weight penalty.
      steps: optimisation steps.
    """
    x = jnp.asarray(features, jnp.float32)
    y = jnp.asarray(labels)
    if x.ndim != 2 or len(x) != len(y):
        raise ValueError(f"features must be [N, D] with N = len(labels); got {x.shape} and {y.shape}")
    mean, scale = x.mean(0), x.std(0) + 1e-6
    return _fit((x - mean) / scale, y, n_classes, l2, steps)._replace(mean=mean, scale=scale)


@jax.jit(static_argnums=(2, 4))
def _fit(z, y, n_classes, l2, steps):
    params = (jnp.zeros((z.shape[1], n_classes)), jnp.zeros(n_classes))
    tx = optax.adam(0.05)

    def loss(p):
        logits = z @ p[0] + p[1]
        ce = optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()
        return ce + l2 * jnp.sum(p[0] ** 2)

    def body(carry, _):
        p, s = carry
        g = jax.grad(loss)(p)
        u, s = tx.update(g, s, p)
        return (optax.apply_updates(p, u), s), None

    (p, _), _ = jax.lax.scan(body, (params, tx.init(params)), None, length=steps)
    return Probe(p[0], p[1], jnp.zeros(z.shape[1]), jnp.ones(z.shape[1]))


def probe_accuracy(train_x, train_y, test_x, test_y, n_classes: int) -> float:
    """Accuracy on (test_x, test_y) of a probe fitted on (train_x, train_y)."""
    probe = fit_probe(train_x, train_y, n_classes)
    return float(np.mean(probe.predict(test_x) == np.asarray(test_y)))
