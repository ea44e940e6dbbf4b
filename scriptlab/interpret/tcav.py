"""Testing with Concept Activation Vectors (TCAV, Kim et al. 2018).

A concept (a font style, say) is given by example images. At a layer l:

1. A concept activation vector (CAV) v_C is the unit normal of a linear boundary
   that separates the layer's activations of the concept's examples from those
   of a set of random examples, pointing towards the concept (``fit_cavs``).
2. The conceptual sensitivity of class k at an input x is the directional
   derivative S_{C,k,l}(x) = grad_h logit_k(h) . v_C, h = f_l(x) the flattened
   activation (``layer_gradients`` gives the gradients).
3. The TCAV score is the share of class-k inputs with S > 0 (``tcav_scores``).

A CAV can separate any two sets, so a score alone says little. The test
(``tcav``) draws M + 1 >= 21 disjoint random sets and asks whether the concept
scores like one more random set would:

- "exchangeable" (the default): every random set is scored as a concept
  against all the others and the concept, exactly as the concept is scored
  against all the random sets, so under the null (the concept is a random
  set) the M + 2 set statistics are exchangeable; the concept's statistic is
  tested against the M + 1 random ones (``stats.prediction_t_test``);
- "paper": Kim et al.'s code, one fixed random set R_0 against the other M and
  the concept against the same M, compared by a two-sided two-sample t-test.
  Both samples share one set each (the concept, R_0), which the t-test takes
  for independent draws, so it rejects a random concept far more often than
  alpha (``tests/test_tcav.py`` measures it).

The p-values of all concepts x layers are corrected for multiple comparisons
(Holm or Bonferroni, ``scriptlab.interpret.stats``).

``apply_fn`` is a ``scriptlab.protocols.ApplyFn``; TCAV reads
``out.activations[layer]`` (flattened per image), ``getattr(out, head)``
logits, and passes ``perturb=`` to differentiate a logit with respect to a
layer, as Grad-CAM does.

References: Kim, Wattenberg, Gilmer, Cai, Wexler, Viegas & Sayres 2018,
Interpretability Beyond Feature Attribution: Quantitative Testing with Concept
Activation Vectors (TCAV), https://arxiv.org/abs/1711.11279; Adebayo, Muelly,
Abelson & Kim 2022, Post hoc Explanations may be Ineffective for Detecting Unknown
Spurious Correlation (ICLR), https://arxiv.org/abs/2212.04629.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jaxtyping import Array, Float, Integer, Real

from scriptlab.interpret._common import (
    check_array,
    check_batch_size,
    check_choice,
    check_images,
    check_indices,
    check_int,
    check_layers,
    check_number,
    check_targets,
    forward_chunks,
    map_rows,
    probe_outputs,
)
from scriptlab.interpret.stats import CORRECTIONS, adjust_p_values, prediction_t_test, t_test
from scriptlab.protocols import AnyArray, ApplyFn, Image, Targets

CAV_METHODS = ("logistic", "mean")
TESTS = ("exchangeable", "paper")


class CAV(NamedTuple):
    """Concept activation vectors: unit normals of concept-vs-random boundaries.

    Attributes:
      direction: float32[..., D] unit vectors v (the concept's side is v . h + bias > 0).
      bias: float32[...] offset of the boundary, in the units of the unit normal.
      accuracy: float32[...] share of the fitted examples on their own side.

    The "logistic" fit works in float32 on the Gram matrix, which squares the
    examples' condition number: directions agree with a float64 solver to about 1e-4.
    """

    direction: jax.Array
    bias: jax.Array
    accuracy: jax.Array


class TCAVResult(NamedTuple):
    """TCAV scores and their significance, per layer and concept.

    With M = ``n_random`` and K the random sets each concept is fitted against
    (K = M + 1 for the "exchangeable" test, M for "paper"):

    Attributes:
      concepts: the concept names, in order (C of them).
      layers: the layer names, in order (L of them).
      scores: float32[L, C, K] TCAV score of each concept-vs-random-set CAV.
      random_scores: float32[L, R] TCAV score of each random-vs-random CAV ("paper":
        R_0 vs R_i, R = M; "exchangeable": R_i vs R_j for every ordered pair i != j,
        row-major, R = (M + 1) M).
      accuracy: float32[L, C, K] fit accuracy of each concept CAV.
      random_accuracy: float32[L, R'] fit accuracy of each fitted random CAV
        ("exchangeable": R' = (M + 1) M / 2, the pairs i < j; R_j vs R_i is its mirror).
      statistic: float32[L, C] the concept's mean score (what is tested).
      null_statistics: float32[L, C, K'] what it is tested against: "paper", the
        M scores R_0 vs R_i; "exchangeable", the M + 1 random sets' mean scores.
      p_values: float32[L, C] the two-sided test of the statistic against the null.
      p_adjusted: float32[L, C] the p-values corrected across all L x C tests.
      significant: bool[L, C] p_adjusted <= alpha.
      paper_p_adjusted: float32[L, C] the paper's t-test on the same CAVs (C vs R_1..R_M
        against R_0 vs R_1..R_M, all among the exchangeable test's fits), corrected the
        same way: the two tests side by side at no extra cost (= p_adjusted for "paper").
      test: the test, one of ``TESTS``.
    """

    concepts: tuple[str, ...]
    layers: tuple[str, ...]
    scores: jax.Array
    random_scores: jax.Array
    accuracy: jax.Array
    random_accuracy: jax.Array
    statistic: jax.Array
    null_statistics: jax.Array
    p_values: jax.Array
    p_adjusted: jax.Array
    significant: jax.Array
    paper_p_adjusted: jax.Array
    test: str = "exchangeable"


# --------------------------------------------------------------------------- CAVs
def fit_cavs(
    activations: Real[AnyArray, "n d"],
    positives: Integer[AnyArray, "m p"],
    negatives: Integer[AnyArray, "m q"],
    *,
    method: str = "logistic",
    l2: float = 0.01,
    steps: int = 30,
) -> CAV:
    """Fit M CAVs at once, each separating rows ``positives[i]`` from rows ``negatives[i]``.

    "logistic" minimises L2-regularised logistic regression with an unpenalised bias,
    mean_j log(1 + exp(-y_j (w . h_j + b))) + l2 / 2 ||w||^2 (y = +1 for positives,
    -1 for negatives; sklearn's ``LogisticRegression(C=1 / (n l2))`` with n = P + Q).
    The examples are centred on their mean m (which moves only the bias), and the
    optimum w lies in the span of the n centred examples H_c, so it is found
    exactly in n dimensions: their Gram matrix K = H_c H_c^T = U diag(lam) U^T
    gives coordinates Z = U diag(sqrt(lam)) with Z Z^T = K, and ``steps`` Newton
    steps (each the best of 10 halvings of the Newton step, taken unless it raises
    the objective; zero start, deterministic) fit (c, b) on Z; then
    w = H_c^T U diag(lam^-1/2) c and the bias is b - w . m.
    "mean" takes w = mean(positives) - mean(negatives) and puts the boundary
    half-way between the two means. ``direction`` is w / ||w||.

    Every set is fitted in one ``vmap`` over M, each from its own rows' Gram
    matrix (M (P + Q)^2 D multiply-adds: less than all N rows' N^2 D when the
    sets are small against a large pool).

    Args:
      activations: float[N, D] a layer's flattened activations of every example.
      positives: int[M, P] rows of the concept examples of each CAV.
      negatives: int[M, Q] rows of the random examples of each CAV.
      method: one of ``CAV_METHODS``.
      l2: the weight penalty of "logistic", > 0.
      steps: Newton steps of "logistic", >= 1.

    Returns:
      A ``CAV`` of float32[M, D], [M] and [M] arrays.

    References: Kim et al. 2018 (TCAV), https://arxiv.org/abs/1711.11279.
    """
    check_choice("method", method, CAV_METHODS)
    l2 = check_number("l2", l2, low=0.0, open_low=True)
    steps = check_int("steps", steps, 1)
    h = check_array("activations", activations, ndim=2)
    pos = check_indices("positives", positives, h.shape[0], what="rows of activations")
    neg = check_indices("negatives", negatives, h.shape[0], what="rows of activations")
    for name, idx in (("positives", pos), ("negatives", neg)):
        if idx.ndim != 2 or idx.shape[1] < 1:
            raise ValueError(f"{name} must be int[M, size >= 1], got shape {idx.shape}")
    if pos.shape[0] != neg.shape[0] or pos.shape[0] < 1:
        raise ValueError(
            f"positives and negatives must hold the same number M >= 1 of sets, got "
            f"{pos.shape[0]} and {neg.shape[0]}"
        )
    return _fit_cavs(
        h, jnp.asarray(pos, jnp.int32), jnp.asarray(neg, jnp.int32), jnp.float32(l2),
        method=method, steps=steps,
    )  # fmt: skip


def fit_cav(
    concept: Real[AnyArray, "p d"],
    random: Real[AnyArray, "q d"],
    *,
    method: str = "logistic",
    l2: float = 0.01,
    steps: int = 30,
) -> CAV:
    """One CAV of concept activations against random activations (``fit_cavs`` with M = 1).

    Args:
      concept: float[P, D] flattened layer activations of the concept's examples.
      random: float[Q, D] those of random examples.
      method, l2, steps: as ``fit_cavs``.

    Returns:
      A ``CAV`` of float32[D], [] and [] arrays.

    References: Kim et al. 2018 (TCAV), https://arxiv.org/abs/1711.11279.
    """
    concept = check_array("concept", concept, ndim=2)
    random = check_array("random", random, shape=(None, concept.shape[1]))
    p, q = concept.shape[0], random.shape[0]
    cav = fit_cavs(
        jnp.concatenate([concept, random]),
        np.arange(p)[None],
        np.arange(p, p + q)[None],
        method=method,
        l2=l2,
        steps=steps,
    )
    return jax.tree.map(lambda a: a[0], cav)


def _newton_logistic(z, y, l2, steps):
    """(c, b) minimising mean softplus(-y (z c + b)) + l2 / 2 |c|^2 by damped Newton."""
    n, r = z.shape
    x = jnp.concatenate([z, jnp.ones((n, 1), z.dtype)], axis=1)
    penalty = jnp.concatenate([jnp.full(r, l2), jnp.zeros(1)])
    halvings = 0.5 ** jnp.arange(10, dtype=z.dtype)

    def objective(theta):
        return jnp.mean(jax.nn.softplus(-y * (x @ theta))) + 0.5 * jnp.sum(penalty * theta**2)

    def step(theta, _):
        s = jax.nn.sigmoid(-y * (x @ theta))
        grad = x.T @ (-y * s) / n + penalty * theta
        hess = (x.T * (s * (1 - s))) @ x / n + jnp.diag(penalty + 1e-7)
        delta = jnp.linalg.solve(hess, grad)
        trials = theta - halvings[:, None] * delta
        values = jax.vmap(objective)(trials)
        best = jnp.argmin(values)
        # <=: near the optimum float32 cannot resolve the decrease a Newton step still makes
        return jnp.where(values[best] <= objective(theta), trials[best], theta), None

    theta, _ = jax.lax.scan(step, jnp.zeros(r + 1, z.dtype), None, length=steps)
    return theta[:r], theta[r]


@functools.partial(jax.jit, static_argnames=("method", "steps"))
def _fit_cavs(h, pos, neg, l2, *, method, steps):
    p, q = pos.shape[1], neg.shape[1]
    y = jnp.concatenate([jnp.ones(p), -jnp.ones(q)])
    hi = jax.lax.Precision.HIGHEST

    def one(rows):
        x = h[rows]
        if method == "mean":
            mp, mq = x[:p].mean(0), x[p:].mean(0)
            w, centre = mp - mq, 0.5 * (mp + mq)
            offset = 0.0
        else:
            # centred examples: ReLU activations share a large mean, which would dominate
            # the Gram matrix's spectrum and cost float32 digits in the others
            centre = x.mean(0)
            xc = x - centre
            k = jnp.matmul(xc, xc.T, precision=hi)
            lam, u = jnp.linalg.eigh(k)
            keep = lam > lam.max() * k.shape[0] * jnp.finfo(k.dtype).eps
            root = jnp.sqrt(jnp.where(keep, lam, 0.0))
            c, offset = _newton_logistic(u * root, y, l2, steps)
            alpha = u @ jnp.where(keep, c / jnp.where(keep, root, 1.0), 0.0)
            w = jnp.matmul(alpha, xc, precision=hi)
        # the boundary w . (h - centre) + offset = 0
        bias = offset - jnp.dot(w, centre, precision=hi)
        margin = jnp.matmul(x, w, precision=hi) + bias
        norm = jnp.linalg.norm(w)
        safe = jnp.where(norm > 0, norm, 1.0)
        return CAV(w / safe, bias / safe, jnp.mean(margin * y > 0))

    return jax.vmap(one)(jnp.concatenate([pos, neg], axis=1))


# --------------------------------------------------------------------------- sensitivities
def layer_gradients(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    *,
    layer: str,
    head: str = "script",
    batch_size: int = 32,
) -> Float[Array, "n d"]:
    """The gradient of each image's target logit with respect to a layer's activation.

    grad_h logit_k(h) at h = f_l(x), flattened: the directional derivative of
    Kim et al. along a CAV v is this gradient dotted with v. Computed by adding
    ``perturb={layer: zeros}`` and differentiating at zero, one image at a time
    under ``lax.map`` (vmapped in chunks of ``batch_size``).

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn``.
      params: the model parameters.
      images: float32[N, H, W, C] in [0, 1] (or uint8).
      targets: int or int[N], the class k of each image.
      layer: a name in ``out.activations``.
      head: output field holding the logits.
      batch_size: images per vmapped chunk.

    Returns:
      float32[N, D], D the layer's size per image.

    References: Kim et al. 2018 (TCAV), https://arxiv.org/abs/1711.11279.
    """
    images = check_images(images)
    out = probe_outputs(apply_fn, params, images, head)
    targets = check_targets(targets, images.shape[0], getattr(out, head).shape[-1])
    (layer,) = check_layers(apply_fn, params, images.shape[1:], layer)
    return _layer_gradients(
        apply_fn, params, images, targets, head=head, layer=layer,
        batch_size=check_batch_size(batch_size),
    )  # fmt: skip


@functools.partial(jax.jit, static_argnames=("apply_fn", "head", "layer", "batch_size"))
def _layer_gradients(apply_fn, params, images, targets, *, head, layer, batch_size):
    def one(row):
        image, target = row
        shape = jax.eval_shape(lambda x: apply_fn(params, x).activations[layer], image[None]).shape

        def logit(delta):
            return getattr(apply_fn(params, image[None], perturb={layer: delta}), head)[0, target]

        return jax.grad(logit)(jnp.zeros(shape, images.dtype)).reshape(-1)

    return map_rows(one, (images, targets), batch_size=batch_size)


def tcav_scores(
    gradients: Real[AnyArray, "n d"], directions: Real[AnyArray, "*m d"]
) -> Float[Array, "*m"]:
    """TCAV scores: the share of inputs whose directional derivative along each CAV is positive.

    TCAV_Q(C, k, l) = |{x in X_k : grad_h logit_k(f_l(x)) . v_C > 0}| / |X_k|.

    Args:
      gradients: float[N, D] ``layer_gradients`` of the class-k inputs X_k.
      directions: float[..., D] CAV directions (``CAV.direction``).

    Returns:
      float32[...] in [0, 1].

    References: Kim et al. 2018 (TCAV), https://arxiv.org/abs/1711.11279.
    """
    g = check_array("gradients", gradients, ndim=2)
    v = check_array("directions", directions)
    if v.ndim < 1 or v.shape[-1] != g.shape[1]:
        raise ValueError(
            f"directions must be float[..., D = {g.shape[1]}] like gradients, got shape {v.shape}"
        )
    return _tcav_scores(g, v)


@jax.jit
def _tcav_scores(g, v):
    s = jnp.einsum("nd,...d->...n", g, v, precision=jax.lax.Precision.HIGHEST)
    return jnp.mean(s > 0, axis=-1)


# --------------------------------------------------------------------------- the test
def _random_sets(n_pool: int, n_sets: int, size: int, seed: int) -> np.ndarray:
    """n_sets disjoint random subsets of the pool, int[n_sets, size], from one seeded permutation."""
    perm = jax.random.permutation(jax.random.key(seed), n_pool)
    return np.asarray(perm[: n_sets * size]).reshape(n_sets, size)


def tcav(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    targets: Targets,
    concepts: Mapping[str, Image[AnyArray, "_ h w c"]],
    random_images: Image[AnyArray, "r h w c"],
    *,
    layers: str | Sequence[str],
    head: str = "script",
    n_random: int = 20,
    random_size: int | None = None,
    method: str = "logistic",
    l2: float = 0.01,
    steps: int = 30,
    test: str = "exchangeable",
    equal_var: bool = True,
    correction: str = "holm",
    alpha: float = 0.05,
    seed: int = 0,
    batch_size: int = 32,
) -> TCAVResult:
    """TCAV with its significance test: is class k sensitive to each concept, at each layer?

    For every layer: ``random_images`` is split, by one seeded permutation, into
    M + 1 disjoint random sets of ``random_size`` images, R_0 ... R_M
    (M = ``n_random``), and each CAV's TCAV score on ``images`` is
    ``tcav_scores``. Write s(X, Y) for the score of the CAV of X against Y.

    ``test="exchangeable"`` (default): the concept C gets M + 1 CAVs, C vs R_i
    (i = 0..M), and its statistic T_C = mean_i s(C, R_i). Every random set gets
    the same treatment against the others and C,
    T_{R_j} = (sum_{i != j} s(R_j, R_i) + s(R_j, C)) / (M + 1), so if C were one
    more random set (of the same size) the M + 2 statistics would be
    exchangeable: T_C is tested against the M + 1 T_{R_j} by
    ``stats.prediction_t_test`` (df = M). The CAV of Y vs X is that of X vs Y
    negated (the logistic and the mean fit are antisymmetric in the labels), so
    the (M + 1) M / 2 pairs i < j are fitted once and s(Y, X) is scored with
    the negated direction.

    ``test="paper"`` (Kim et al.'s code): C vs R_i and R_0 vs R_i (i = 1..M),
    two samples of M scores compared by a two-sided t-test (``stats.t_test``;
    Student's, as the paper's code, or Welch's with ``equal_var=False``). Both
    samples hinge on one set each (C, R_0), so a random concept that differs
    from R_0 by chance passes far more often than ``alpha``.

    A concept is significant at a layer when its p-value, corrected across all
    concepts x layers (``stats.adjust_p_values``), is <= ``alpha``. Kim et al.
    report the mean score only where the test passes.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn``.
      params: the model parameters.
      images: float32[N, H, W, C] the inputs X_k whose sensitivity is measured
        (typically crops of class k).
      targets: int or int[N], the class k of each image (its ``head`` logit).
      concepts: {name: float32[P_c, H, W, C]} example images of each concept, P_c >= 1
        (for the exchangeable test's null to be exact, P_c = ``random_size``).
      random_images: float32[R, H, W, C] the pool the random sets are drawn from.
      layers: one name in ``out.activations`` or several.
      head: output field holding the logits.
      n_random: M, the number of random sets besides R_0 (>= 2; the paper uses >= 20... 500).
      random_size: images per random set; default min(R // (M + 1), max P_c).
      method, l2, steps: the CAV fit (``fit_cavs``).
      test: one of ``TESTS``.
      equal_var: the "paper" test's Student's (True) or Welch's (False) t-test.
      correction: one of ``stats.CORRECTIONS``, across concepts x layers.
      alpha: the family-wise significance level, in (0, 1).
      seed: seed of the random sets.
      batch_size: images per chunk of the forward and backward passes.

    Returns:
      A ``TCAVResult``.

    References: Kim et al. 2018 (TCAV), https://arxiv.org/abs/1711.11279; Holm 1979.
    """
    check_choice("test", test, TESTS)
    check_choice("correction", correction, CORRECTIONS)
    check_choice("method", method, CAV_METHODS)
    alpha = check_number("alpha", alpha, low=0.0, high=1.0, open_low=True)
    n_random = check_int("n_random", n_random, 2)
    seed = check_int("seed", seed)
    if not isinstance(concepts, Mapping) or not concepts:
        raise ValueError(
            f"concepts must be a non-empty dict {{name: images}}, got {type(concepts).__name__}"
        )
    images = check_images(images, keep_uint8=True)
    shape = images.shape[1:]
    concept_images = {}
    for name, c in concepts.items():
        c = check_images(c, name=f"concepts[{name!r}]", keep_uint8=True)
        if c.shape[1:] != shape:
            raise ValueError(
                f"concepts[{name!r}] must be images of shape {shape}, got {c.shape[1:]}"
            )
        concept_images[name] = c
    pool = check_images(random_images, name="random_images", keep_uint8=True)
    if pool.shape[1:] != shape:
        raise ValueError(f"random_images must be images of shape {shape}, got {pool.shape[1:]}")
    layers = check_layers(apply_fn, params, shape, layers)
    largest = max(c.shape[0] for c in concept_images.values())
    if random_size is None:
        size = min(pool.shape[0] // (n_random + 1), largest)
    else:
        size = check_int("random_size", random_size, 2)
    if size < 2 or size * (n_random + 1) > pool.shape[0]:
        raise ValueError(
            f"random_images holds {pool.shape[0]} images: n_random + 1 = {n_random + 1} disjoint "
            f"random sets of random_size = {size} (>= 2) need {max(size, 2) * (n_random + 1)}"
        )
    sets = _random_sets(pool.shape[0], n_random + 1, size, seed)
    cav_options = dict(method=method, l2=l2, steps=steps)
    exchangeable = test == "exchangeable"
    partners = sets if exchangeable else sets[1:]  # the random sets each concept is fitted against
    if exchangeable:
        first, second = np.triu_indices(n_random + 1, 1)
        rand_pos, rand_neg = sets[first], sets[second]
    else:
        rand_pos, rand_neg = np.repeat(sets[:1], n_random, 0), sets[1:]

    fields = {k: [] for k in ("scores", "random_scores", "accuracy", "random_accuracy",
                              "statistic", "null", "paper")}  # fmt: skip
    for layer in layers:
        grads = layer_gradients(
            apply_fn, params, images, targets, layer=layer, head=head, batch_size=batch_size
        )
        pool_acts = forward_chunks(apply_fn, params, pool, layer=layer, batch_size=batch_size)
        rand = fit_cavs(pool_acts, rand_pos, rand_neg, **cav_options)
        per_concept, per_accuracy, reverse = [], [], []
        for c in concept_images.values():
            acts = forward_chunks(apply_fn, params, c, layer=layer, batch_size=batch_size)
            p = acts.shape[0]
            cav = fit_cavs(
                jnp.concatenate([acts, pool_acts]),
                np.broadcast_to(np.arange(p), (len(partners), p)),
                partners + p,
                **cav_options,
            )
            per_concept.append(tcav_scores(grads, cav.direction))
            per_accuracy.append(cav.accuracy)
            reverse.append(tcav_scores(grads, -cav.direction))  # s(R_i, C)
        concept_scores = jnp.stack(per_concept)  # [C, K]
        fields["scores"].append(concept_scores)
        fields["accuracy"].append(jnp.stack(per_accuracy))
        fields["random_accuracy"].append(rand.accuracy)
        fields["statistic"].append(concept_scores.mean(-1))
        forward = tcav_scores(grads, rand.direction)
        if exchangeable:
            pair = _pair_matrix(forward, tcav_scores(grads, -rand.direction), first, second)
            off = ~np.eye(n_random + 1, dtype=bool)
            fields["random_scores"].append(pair[off])  # ordered pairs i != j, row-major
            # T_{R_j} = (sum_{i != j} s(R_j, R_i) + s(R_j, C)) / (M + 1), per concept
            fields["null"].append((pair.sum(1) + jnp.stack(reverse)) / (n_random + 1))
            # the paper's samples among these fits: C vs R_1..R_M, R_0 vs R_1..R_M
            fields["paper"].append((concept_scores[:, 1:], pair[0, 1:]))
        else:
            fields["random_scores"].append(forward)
            fields["null"].append(jnp.broadcast_to(forward, concept_scores.shape))
            fields["paper"].append((concept_scores, forward))
    paper = fields.pop("paper")
    stacked = {k: jnp.stack(v) for k, v in fields.items()}
    paper_p = t_test(
        jnp.stack([a for a, _ in paper]),
        jnp.stack([b for _, b in paper])[:, None, :],
        equal_var=equal_var,
    ).p_value
    if exchangeable:
        p_values = prediction_t_test(stacked["statistic"], stacked["null"]).p_value
    else:
        p_values = paper_p
    p_adjusted = adjust_p_values(p_values, method=correction)
    return TCAVResult(
        concepts=tuple(concept_images),
        layers=tuple(layers),
        scores=stacked["scores"],
        random_scores=stacked["random_scores"],
        accuracy=stacked["accuracy"],
        random_accuracy=stacked["random_accuracy"],
        statistic=stacked["statistic"],
        null_statistics=stacked["null"],
        p_values=p_values,
        p_adjusted=p_adjusted,
        significant=p_adjusted <= alpha,
        paper_p_adjusted=adjust_p_values(paper_p, method=correction),
        test=test,
    )


def _pair_matrix(forward, backward, first, second) -> jax.Array:
    """float32[M + 1, M + 1]: s(R_i, R_j) from the pairs i < j and their mirrors; 0 on the diagonal."""
    n = int(max(first.max(), second.max())) + 1
    m = jnp.zeros((n, n), jnp.float32)
    return m.at[first, second].set(forward).at[second, first].set(backward)
