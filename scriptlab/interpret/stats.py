"""The statistics that judge an explanation: t-tests, multiple comparisons, ROC AUC, bootstrap.

Every estimate an interpretability study reports carries its uncertainty
(house style 17). This module holds the few tools for that, each in JAX and
batched (scipy is only a test dependency):

- ``t_test``: Student's or Welch's two-sided two-sample t-test, its p-value from
  the regularised incomplete beta function (Kim et al. 2018 test TCAV scores so);
- ``prediction_t_test``: is one new value drawn like a sample? The two-sided
  t-test of a single observation against n others (TCAV's exchangeable test);
- ``adjust_p_values``: Holm's step-down or Bonferroni's correction across a family;
- ``roc_auc``: the Mann-Whitney ROC AUC, ties counted as 1/2;
- ``resample_indices``, ``bootstrap`` and ``bootstrap_mean`` / ``bootstrap_difference``
  / ``bootstrap_auc``: seeded percentile intervals, every resample at once (vmap);
- ``seed_summary``: mean and spread of one number over training seeds.

References: Student 1908; Welch 1947; Holm 1979, A Simple Sequentially Rejective
Multiple Test Procedure; Mann & Whitney 1947 and Hanley & McNeil 1982 (AUC as the
Mann-Whitney statistic); Efron & Tibshirani 1993, An Introduction to the Bootstrap
(percentile intervals).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import betainc
from jax.scipy.stats import rankdata
from jaxtyping import Array, Bool, Float, Integer, Real

from scriptlab.interpret._common import (
    check_array,
    check_binary,
    check_choice,
    check_int,
    check_number,
)
from scriptlab.protocols import AnyArray

CORRECTIONS = ("holm", "bonferroni", "none")


class TTest(NamedTuple):
    """A two-sample t-test, batched over leading axes.

    Attributes:
      statistic: float32[...] t = (mean(a) - mean(b)) / standard error.
      p_value: float32[...] two-sided p-value.
      df: float32[...] degrees of freedom (n_a + n_b - 2, or Welch-Satterthwaite's).
    """

    statistic: jax.Array
    p_value: jax.Array
    df: jax.Array


class Estimate(NamedTuple):
    """A point estimate with its bootstrap percentile interval.

    Attributes:
      value: float32[...] the statistic on the data as given.
      low: float32[...] the (1 - level) / 2 quantile of the resampled statistic.
      high: float32[...] the (1 + level) / 2 quantile.
    """

    value: jax.Array
    low: jax.Array
    high: jax.Array


class SeedSummary(NamedTuple):
    """One quantity over S training seeds.

    Attributes:
      mean: float32[...] mean over seeds.
      std: float32[...] sample standard deviation (ddof = 1; 0 for one seed).
      low: float32[...] smallest value over seeds.
      high: float32[...] largest value over seeds.
      n: the number of seeds S.
    """

    mean: jax.Array
    std: jax.Array
    low: jax.Array
    high: jax.Array
    n: int


# --------------------------------------------------------------------------- t-test
def t_test(
    a: Real[AnyArray, "*batch na"], b: Real[AnyArray, "*other nb"], *, equal_var: bool = True
) -> TTest:
    """Two-sided two-sample t-test of equal means along the last axis, batched over the others.

    With ``equal_var`` (Student; scipy's ``ttest_ind`` default and what Kim et
    al.'s TCAV code calls): t = (mean_a - mean_b) / sqrt(s_p^2 (1/n_a + 1/n_b)),
    s_p^2 the pooled variance, df = n_a + n_b - 2. Otherwise Welch:
    t = (mean_a - mean_b) / sqrt(v_a/n_a + v_b/n_b) with the Welch-Satterthwaite df.
    The p-value is P(|T_df| >= |t|) = I_{df / (df + t^2)}(df / 2, 1 / 2), the
    regularised incomplete beta function. When both samples are constant the
    standard error is 0 (to float32 rounding): the p-value is then 1 for equal
    means and 0 otherwise (scipy returns NaN there).

    Args:
      a: float[..., n_a] samples, n_a >= 2.
      b: float[..., n_b] samples, n_b >= 2; the leading axes broadcast with ``a``'s.
      equal_var: pool the variances (Student) or not (Welch).

    Returns:
      A ``TTest`` of float32[...] arrays.

    References: Student 1908; Welch 1947; Kim et al. 2018 (the test TCAV uses),
    https://arxiv.org/abs/1711.11279.
    """
    a = check_array("a", a)
    b = check_array("b", b)
    for name, x in (("a", a), ("b", b)):
        if x.ndim < 1 or x.shape[-1] < 2:
            raise ValueError(f"{name} must hold >= 2 samples on its last axis, got shape {x.shape}")
    try:
        jnp.broadcast_shapes(a.shape[:-1], b.shape[:-1])
    except ValueError:
        raise ValueError(
            f"a and b must have broadcastable leading axes, got shapes {a.shape} and {b.shape}"
        ) from None
    return _t_test(a, b, equal_var=bool(equal_var))


@functools.partial(jax.jit, static_argnames=("equal_var",))
def _t_test(a, b, *, equal_var):
    na, nb = a.shape[-1], b.shape[-1]
    ma, mb = a.mean(-1), b.mean(-1)
    va, vb = a.var(-1, ddof=1), b.var(-1, ddof=1)
    if equal_var:
        df = jnp.full(jnp.broadcast_shapes(ma.shape, mb.shape), na + nb - 2, jnp.float32)
        pooled = ((na - 1) * va + (nb - 1) * vb) / (na + nb - 2)
        se2 = pooled * (1.0 / na + 1.0 / nb)
    else:
        qa, qb = va / na, vb / nb
        se2 = qa + qb
        denom = qa**2 / (na - 1) + qb**2 / (nb - 1)
        df = jnp.where(denom > 0, se2**2 / jnp.where(denom > 0, denom, 1.0), na + nb - 2.0)
    diff = ma - mb
    # XLA may round two means of equal samples differently: "zero" is zero to float32 rounding
    rounding = 8 * jnp.finfo(jnp.float32).eps * (jnp.abs(ma) + jnp.abs(mb))
    degenerate = jnp.sqrt(se2) <= rounding
    same = jnp.abs(diff) <= rounding
    t = diff / jnp.sqrt(jnp.where(degenerate, 1.0, se2))
    t = jnp.where(degenerate, jnp.where(same, 0.0, jnp.sign(diff) * jnp.inf), t)
    x = df / (df + jnp.where(degenerate, 1.0, t * t))
    p = betainc(df / 2.0, 0.5, jnp.clip(x, 0.0, 1.0))
    p = jnp.where(degenerate, jnp.where(same, 1.0, 0.0), p)
    return TTest(t, p, df)


def prediction_t_test(x: Real[AnyArray, " *batch"], sample: Real[AnyArray, "*other n"]) -> TTest:
    """Two-sided t-test of one observation ``x`` against a sample of n others, batched.

    If x and the n values of ``sample`` are exchangeable draws from one normal
    distribution, t = (x - mean) / (s sqrt(1 + 1/n)), s the sample's standard
    deviation (ddof 1), follows Student's t with n - 1 degrees of freedom (the
    prediction interval of a new observation). The same holds for an
    exchangeable normal vector with equal correlations (only contrasts enter t),
    which is what makes it TCAV's exchangeable test (``tcav.tcav``). As in
    ``t_test``, a constant sample gives p = 1 when x equals it and 0 otherwise.

    Args:
      x: float[...] the single observations.
      sample: float[..., n] the samples, n >= 2; leading axes broadcast with ``x``'s.

    Returns:
      A ``TTest`` of float32[...] arrays (df = n - 1).

    References: Student 1908; Geisser 1993, Predictive Inference (the t prediction
    interval); Kim et al. 2018, https://arxiv.org/abs/1711.11279.
    """
    x = check_array("x", x)
    sample = check_array("sample", sample)
    if sample.ndim < 1 or sample.shape[-1] < 2:
        raise ValueError(f"sample must hold >= 2 values on its last axis, got shape {sample.shape}")
    try:
        jnp.broadcast_shapes(x.shape, sample.shape[:-1])
    except ValueError:
        raise ValueError(
            f"x and sample must have broadcastable leading axes, got shapes {x.shape} and "
            f"{sample.shape}"
        ) from None
    return _prediction_t_test(x, sample)


@jax.jit
def _prediction_t_test(x, sample):
    n = sample.shape[-1]
    m = sample.mean(-1)
    se = jnp.sqrt(sample.var(-1, ddof=1) * (1.0 + 1.0 / n))
    diff = x - m
    rounding = 8 * jnp.finfo(jnp.float32).eps * (jnp.abs(x) + jnp.abs(m))
    degenerate = se <= rounding
    same = jnp.abs(diff) <= rounding
    t = diff / jnp.where(degenerate, 1.0, se)
    t = jnp.where(degenerate, jnp.where(same, 0.0, jnp.sign(diff) * jnp.inf), t)
    df = jnp.full(t.shape, n - 1, jnp.float32)
    z = df / (df + jnp.where(degenerate, 1.0, t * t))
    p = betainc(df / 2.0, 0.5, jnp.clip(z, 0.0, 1.0))
    p = jnp.where(degenerate, jnp.where(same, 1.0, 0.0), p)
    return TTest(t, p, df)


# --------------------------------------------------------------------------- multiple comparisons
def adjust_p_values(
    p_values: Real[AnyArray, "*shape"], *, method: str = "holm"
) -> Float[Array, "*shape"]:
    """Adjusted p-values for a family of tests: every entry of ``p_values`` is one test.

    Bonferroni: min(1, m p). Holm's step-down: sort p ascending, p_(1) <= ... <=
    p_(m); the adjusted p_(i) = max over j <= i of min(1, (m - j + 1) p_(j)).
    Reject where the adjusted p-value is <= alpha: both control the family-wise
    error rate at alpha, Holm with more power. "none" returns the p-values.

    Args:
      p_values: float[...] in [0, 1], any shape (e.g. [layers, concepts]); the
        family is all of its entries.
      method: one of ``CORRECTIONS``.

    Returns:
      float32[...] adjusted p-values, the shape of ``p_values``.

    References: Holm 1979, A Simple Sequentially Rejective Multiple Test Procedure;
    Dunn 1961 (Bonferroni).
    """
    check_choice("method", method, CORRECTIONS)
    p = check_array("p_values", p_values)
    if p.size == 0:
        raise ValueError(f"p_values is empty: shape {p.shape}")
    if float(p.min()) < 0 or float(p.max()) > 1:
        raise ValueError(
            f"p_values must lie in [0, 1], got [{float(p.min()):g}, {float(p.max()):g}]"
        )
    return _adjust(p, method=method)


@functools.partial(jax.jit, static_argnames=("method",))
def _adjust(p, *, method):
    flat = p.reshape(-1)
    m = flat.size
    if method == "none":
        return p
    if method == "bonferroni":
        return jnp.minimum(1.0, m * p)
    order = jnp.argsort(flat, stable=True)
    scaled = jnp.minimum(1.0, (m - jnp.arange(m)) * flat[order])
    stepped = jax.lax.cummax(scaled)
    return jnp.zeros_like(flat).at[order].set(stepped).reshape(p.shape)


# --------------------------------------------------------------------------- ROC AUC
def roc_auc(
    scores: Real[AnyArray, "*batch n"],
    labels: Bool[AnyArray, "*batch n"] | Integer[AnyArray, "*batch n"],
) -> Float[Array, "*batch"]:
    """ROC AUC of ``scores`` for the binary ``labels``: the Mann-Whitney statistic.

    AUC = P(s+ > s-) + P(s+ = s-) / 2 over a random positive and a random
    negative, computed from average ranks: (R+ - n+(n+ + 1)/2) / (n+ n-), R+ the
    sum of the positives' ranks. 1 means the scores put every positive above
    every negative, 0.5 is chance. Batched over leading axes (e.g. resamples).

    Args:
      scores: float[..., N].
      labels: bool[..., N] (or 0/1), with at least one positive and one negative per row.

    Returns:
      float32[...] in [0, 1].

    References: Mann & Whitney 1947; Hanley & McNeil 1982, The meaning and use of
    the area under a ROC curve.
    """
    scores = check_array("scores", scores)
    labels = check_binary("labels", labels, shape=scores.shape)
    pos = labels.sum(-1)
    if int(pos.min()) == 0 or int((labels.shape[-1] - pos).min()) == 0:
        raise ValueError("labels must hold at least one positive and one negative in every row")
    return _roc_auc(scores, labels)


@jax.jit
def _roc_auc(scores, labels):
    ranks = rankdata(scores, axis=-1)
    pos = labels.sum(-1).astype(jnp.float32)
    neg = labels.shape[-1] - pos
    rank_sum = jnp.where(labels, ranks, 0.0).sum(-1)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


# --------------------------------------------------------------------------- bootstrap
def resample_indices(
    n: int,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    strata: Integer[AnyArray, " n"] | Bool[AnyArray, " n"] | None = None,
) -> Integer[Array, "b n"]:
    """Bootstrap resamples of N items as indices, every resample drawn at once.

    Without ``strata`` each row draws N indices uniformly with replacement.
    With ``strata`` position j of every row is drawn uniformly from the items of
    j's own stratum, so every resample keeps each stratum's size (a stratified
    bootstrap; for an AUC it keeps both classes present).

    Args:
      n: the number of items, >= 1.
      n_resamples: B, >= 1.
      seed: the PRNG seed (same seed, same indices).
      strata: optional int[N] (or bool[N]) group of each item.

    Returns:
      int32[B, N] indices into the items.

    References: Efron & Tibshirani 1993, An Introduction to the Bootstrap.
    """
    n = check_int("n", n, 1)
    n_resamples = check_int("n_resamples", n_resamples, 1)
    seed = check_int("seed", seed)
    if strata is None:
        strata_arr = np.zeros(n, np.int32)
    else:
        strata_arr = np.asarray(strata)
        if strata_arr.shape != (n,) or not (
            strata_arr.dtype == np.bool_ or np.issubdtype(strata_arr.dtype, np.integer)
        ):
            raise ValueError(
                f"strata must be int[{n}] or bool[{n}], got {strata_arr.dtype}{list(strata_arr.shape)}"
            )
        strata_arr = np.unique(strata_arr, return_inverse=True)[1].astype(np.int32)
    return _resample(jax.random.key(seed), jnp.asarray(strata_arr), n_resamples)


@functools.partial(jax.jit, static_argnums=(2,))
def _resample(key, strata, n_resamples):
    n = strata.shape[0]
    order = jnp.argsort(strata, stable=True)  # the members of each stratum, contiguous
    counts = jnp.zeros(n, jnp.int32).at[strata].add(1)
    starts = jnp.cumsum(counts) - counts
    offset = jax.random.randint(key, (n_resamples, n), 0, counts[strata])
    return order[starts[strata] + offset].astype(jnp.int32)


def _quantiles(values, level):
    lo, hi = (1 - level) / 2, (1 + level) / 2
    return jnp.quantile(values, lo, axis=0), jnp.quantile(values, hi, axis=0)


def bootstrap(
    statistic: Callable[..., Any],
    *data: Real[AnyArray, "n ..."],
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
    strata: Integer[AnyArray, " n"] | Bool[AnyArray, " n"] | None = None,
) -> Estimate:
    """A percentile bootstrap interval of any statistic of per-item data.

    ``statistic(*data)`` is evaluated on the data as given and on every
    resample ``statistic(*(d[idx] for d in data))`` (``idx`` a row of
    ``resample_indices``), all resamples in one ``vmap``; the interval is the
    (1 - level) / 2 and (1 + level) / 2 quantiles (linear interpolation) of the
    resampled values. Items are resampled together across the arrays, so paired
    data stays paired.

    Args:
      statistic: a JAX function of the arrays, each [N, ...] -> float[...]; it is
        jitted as a static argument, so a module-level function compiles once per
        shape and a new lambda on every call.
      *data: arrays sharing the leading axis N (crops).
      n_resamples: B.
      level: the interval's coverage, in (0, 1).
      seed: PRNG seed of the resamples.
      strata: optional group of each item, kept in size by each resample.

    Returns:
      An ``Estimate`` of float32 arrays shaped like the statistic.

    References: Efron & Tibshirani 1993, An Introduction to the Bootstrap.
    """
    if not data:
        raise ValueError("bootstrap needs at least one data array")
    arrays = [jnp.asarray(d) for d in data]
    n = arrays[0].shape[0] if arrays[0].ndim else 0
    if n < 1 or any(a.ndim < 1 or a.shape[0] != n for a in arrays):
        raise ValueError(
            f"data arrays must share a leading axis N >= 1, got shapes {[a.shape for a in arrays]}"
        )
    level = check_number("level", level, low=0.0, high=1.0, open_low=True)
    if level >= 1:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    idx = resample_indices(n, n_resamples=n_resamples, seed=seed, strata=strata)
    return _bootstrap(statistic, idx, tuple(arrays), level)


@functools.partial(jax.jit, static_argnums=(0,))
def _bootstrap(statistic, idx, arrays, level):
    # one program for all resamples; a module-level statistic compiles once per shape
    value = statistic(*arrays)
    resampled = jax.vmap(lambda i: statistic(*(a[i] for a in arrays)))(idx)
    low, high = _quantiles(resampled, level)
    return Estimate(jnp.asarray(value, jnp.float32), low, high)


def _group_difference(values, group):
    """mean of values where group, minus the mean where not."""
    return jnp.sum(values * group) / jnp.sum(group) - jnp.sum(values * ~group) / jnp.sum(~group)


def bootstrap_mean(
    values: Real[AnyArray, " n"] | Bool[AnyArray, " n"],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """The mean of per-crop values (a share, for 0/1 or bool values) with its bootstrap interval.

    Args:
      values: float[N] or bool[N].
      n_resamples, level, seed: as ``bootstrap``.

    Returns:
      An ``Estimate`` of float32[] arrays.

    References: Efron & Tibshirani 1993, An Introduction to the Bootstrap.
    """
    values = check_array("values", jnp.asarray(values).astype(jnp.float32), ndim=1)
    return bootstrap(jnp.mean, values, n_resamples=n_resamples, level=level, seed=seed)


def bootstrap_difference(
    a: Real[AnyArray, " na"] | Bool[AnyArray, " na"],
    b: Real[AnyArray, " nb"] | Bool[AnyArray, " nb"],
    *,
    paired: bool = True,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """mean(a) - mean(b) with its bootstrap interval.

    Paired (a[i] and b[i] measured on the same crop i): the crops are resampled
    and the statistic is the mean of a - b. Unpaired: the two groups are
    resampled separately (a bootstrap stratified by group), each keeping its size.

    Args:
      a: float[N_a] or bool[N_a] per-crop values.
      b: float[N_b] or bool[N_b]; N_b = N_a when ``paired``.
      paired: whether a[i] and b[i] belong to one crop.
      n_resamples, level, seed: as ``bootstrap``.

    Returns:
      An ``Estimate`` of float32[] arrays.

    References: Efron & Tibshirani 1993, An Introduction to the Bootstrap.
    """
    a = check_array("a", jnp.asarray(a).astype(jnp.float32), ndim=1)
    b = check_array("b", jnp.asarray(b).astype(jnp.float32), ndim=1)
    opts = dict(n_resamples=n_resamples, level=level, seed=seed)
    if paired:
        if a.shape != b.shape:
            raise ValueError(f"paired a and b must have one shape, got {a.shape} and {b.shape}")
        return bootstrap(jnp.mean, a - b, **opts)
    values = jnp.concatenate([a, b])
    group = np.r_[np.ones(a.shape[0], bool), np.zeros(b.shape[0], bool)]
    return bootstrap(_group_difference, values, jnp.asarray(group), strata=group, **opts)


def bootstrap_auc(
    scores: Real[AnyArray, " n"],
    labels: Bool[AnyArray, " n"] | Integer[AnyArray, " n"],
    *,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """``roc_auc`` with a stratified bootstrap interval (positives and negatives resampled apart).

    Args:
      scores: float[N] per-crop statistic.
      labels: bool[N] (or 0/1) per-crop ground truth, both classes present.
      n_resamples, level, seed: as ``bootstrap``.

    Returns:
      An ``Estimate`` of float32[] arrays.

    References: Hanley & McNeil 1982; Efron & Tibshirani 1993.
    """
    scores = check_array("scores", scores, ndim=1)
    labels = check_binary("labels", labels, shape=scores.shape)
    roc_auc(scores, labels)  # checks both classes are present
    return bootstrap(
        _roc_auc, scores, labels, n_resamples=n_resamples, level=level, seed=seed, strata=labels
    )


# --------------------------------------------------------------------------- seeds
def seed_summary(values: Real[AnyArray, "s ..."]) -> SeedSummary:
    """Mean and spread over training seeds (the leading axis) of any per-seed quantity.

    Args:
      values: float[S, ...], one entry per seed, S >= 1.

    Returns:
      A ``SeedSummary`` of float32[...] arrays (std uses ddof = 1, and is 0 for S = 1).
    """
    v = check_array("values", values)
    if v.ndim < 1 or v.shape[0] < 1:
        raise ValueError(f"values must be float[S, ...] with S >= 1 seeds, got shape {v.shape}")
    s = v.shape[0]
    std = v.std(0, ddof=1) if s > 1 else jnp.zeros(v.shape[1:], jnp.float32)
    return SeedSummary(v.mean(0), std, v.min(0), v.max(0), int(s))
