"""Style reliance: how a model's script reading moves when only the font changes.

The ground truth the explanation methods are judged against (issue 26). For each
crop and each of its style twins (``scriptlab.twins``: the same crop re-rendered
with only the font swapped), the change in the true script's logit and
probability, and whether the predicted script flips. A model that reads the
script from letter shapes keeps its reading; one that reads the font style as a
proxy for the script changes it.

A model's *style reliance* is the share of crops whose prediction changes with
style alone: under any swap to another style, under a swap to each style, and
under a swap to a family held out of training. Its 95 % interval is a percentile
bootstrap over crops (``interpret.stats.bootstrap``, every key in one program); several
models (seeds) on the same crops are resampled together, crop by crop.

``apply_fn`` is a ``scriptlab.protocols.ApplyFn``; reliance reads its ``script``
logits, through the library's chunked forward pass (``train.predict``).

References: Adebayo, Muelly, Abelson & Kim 2022, "Post hoc explanations may be
ineffective for detecting unknown spurious correlation" (ICLR): a planted signal is
ground truth for judging explanations; Efron & Tibshirani 1993 (percentile bootstrap).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np

from scriptlab.interpret.stats import bootstrap
from scriptlab.protocols import ApplyFn
from scriptlab.twins import HELDOUT, Twins

ANY = "any"  # the key of "any swap to another style" in style_reliance


class Reliance(NamedTuple):
    """One model's reading of crops and their style twins (N crops, S twin slots).

    Attributes:
      logit: float32[N] the true script's logit on the crop.
      prob: float32[N] its softmax probability.
      pred: int32[N] the predicted script on the crop.
      twin_logit: float32[N, S] the true script's logit on each twin (NaN if invalid).
      twin_prob: float32[N, S] its probability (NaN if invalid).
      twin_pred: int32[N, S] the predicted script on each twin (-1 if invalid).
      d_logit: float32[N, S] twin_logit - logit.
      d_prob: float32[N, S] twin_prob - prob.
      flip: bool[N, S] the prediction changed under a swap (False where not ``swapped``).
      swapped: bool[N, S] the twin exists and is in another face (``valid & ~own``).
      slots: the S slot names of the twins.
    """

    logit: np.ndarray
    prob: np.ndarray
    pred: np.ndarray
    twin_logit: np.ndarray
    twin_prob: np.ndarray
    twin_pred: np.ndarray
    d_logit: np.ndarray
    d_prob: np.ndarray
    flip: np.ndarray
    swapped: np.ndarray
    slots: tuple[str, ...]


class Share(NamedTuple):
    """A share of crops with its bootstrap interval.

    Attributes:
      share: the share (mean over models of each model's share).
      low: the interval's lower end.
      high: the interval's upper end.
      n: the number of crops it is over.
    """

    share: float
    low: float
    high: float
    n: int


def reliance(
    apply_fn: ApplyFn, params: Any, images, twins: Twins, *, batch_size: int = 250
) -> Reliance:
    """A model's script reading of crops and of their style twins.

    Args:
      apply_fn, params: the model (``scriptlab.protocols.ApplyFn``); its ``script`` head is read.
      images: uint8[N, H, W, 3] (or float32 in [0, 1]) the crops the twins were made from.
      twins: their ``Twins`` (``scriptlab.data.style_twins``); ``twins.script`` is the truth.
      batch_size: images per forward chunk.

    Returns:
      ``Reliance`` over N crops and the twins' S slots.

    References: Adebayo et al. 2022 (ground truth for spurious-signal detection).
    """
    from scriptlab import train

    if not isinstance(twins, Twins):
        raise ValueError(f"twins must be a scriptlab.twins.Twins, got {type(twins).__name__}")
    n, s = twins.valid.shape
    shape = tuple(getattr(images, "shape", ()))
    if shape != (n, *twins.images.shape[2:]):
        raise ValueError(
            f"images must be the twins' crops, shape {(n, *twins.images.shape[2:])}, got {shape}"
        )
    crop, slot = np.nonzero(twins.valid)
    batch = np.concatenate([np.asarray(images), twins.images[crop, slot].astype(images.dtype)])
    logits = np.asarray(train.predict(apply_fn, params, batch, batch_size=batch_size)[0])
    n_scripts = logits.shape[1]
    if twins.script.max() >= n_scripts:
        raise ValueError(
            f"twins.script holds script ids up to {twins.script.max()}, but apply_fn's "
            f"script head has {n_scripts} classes"
        )
    logp = logits - _logsumexp(logits)
    truth = np.concatenate([twins.script, twins.script[crop]])
    true_logit = np.take_along_axis(logits, truth[:, None], 1)[:, 0]
    true_prob = np.exp(np.take_along_axis(logp, truth[:, None], 1)[:, 0])
    pred = logits.argmax(1).astype(np.int32)

    def grid(values, fill, dtype):
        out = np.full((n, s), fill, dtype)
        out[crop, slot] = values[n:]
        return out

    twin_logit = grid(true_logit, np.nan, np.float32)
    twin_prob = grid(true_prob, np.nan, np.float32)
    twin_pred = grid(pred, -1, np.int32)
    swapped = twins.valid & ~twins.own
    return Reliance(
        logit=true_logit[:n].astype(np.float32),
        prob=true_prob[:n].astype(np.float32),
        pred=pred[:n],
        twin_logit=twin_logit,
        twin_prob=twin_prob,
        twin_pred=twin_pred,
        d_logit=twin_logit - true_logit[:n, None].astype(np.float32),
        d_prob=twin_prob - true_prob[:n, None].astype(np.float32),
        flip=swapped & (twin_pred != pred[:n, None]),
        swapped=swapped,
        slots=tuple(twins.slots),
    )


def _logsumexp(x: np.ndarray) -> np.ndarray:
    m = x.max(1, keepdims=True)
    return m + np.log(np.exp(x - m).sum(1, keepdims=True))


def style_reliance(
    results: Reliance | Sequence[Reliance],
    *,
    n_resamples: int = 2000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, Share]:
    """The share of crops whose predicted script changes with the font style alone.

    Keys: ``"any"`` (some swap to another style flips it; the held-out slot not
    counted), each style slot, and ``"heldout"`` when the twins have one. Each share
    is over the crops that have a swapped twin for the key (a crop's own style is
    no swap). With several models (seeds) on the same crops, the share is the mean
    of their shares. The bootstrap resamples all N crops, for every model and key
    together, and takes each key's share over the resampled crops it applies to.

    Args:
      results: one ``Reliance`` or several on the same crops and twins.
      n_resamples, level, seed: the bootstrap's, as ``interpret.stats.bootstrap``.

    Returns:
      {key: ``Share``}; a key with no crop has share NaN and n 0.

    References: Efron & Tibshirani 1993 (percentile bootstrap).
    """
    runs = [results] if isinstance(results, Reliance) else list(results)
    if not runs or not all(isinstance(r, Reliance) for r in runs):
        raise ValueError("results must be a Reliance or a non-empty sequence of them")
    first = runs[0]
    for r in runs[1:]:
        if r.slots != first.slots or not np.array_equal(r.swapped, first.swapped):
            raise ValueError("results must all be over the same crops and twins (slots, swaps)")
    flips = np.stack([r.flip for r in runs])  # [M, N, S]
    styles = [k for k, name in enumerate(first.slots) if name != HELDOUT]
    columns = {ANY: styles} | {name: [k] for k, name in enumerate(first.slots)}
    # per crop and key: does the key apply (a swapped twin), and the share of models it flips
    rows = np.stack([first.swapped[:, cols].any(1) for cols in columns.values()], 1)
    hits = np.stack([flips[:, :, cols].any(2).mean(0) for cols in columns.values()], 1)
    est = bootstrap(
        _shares, hits, rows.astype(np.float64), n_resamples=n_resamples, level=level, seed=seed
    )
    share = _shares(hits, rows)
    return {
        key: Share(float(share[k]), float(est.low[k]), float(est.high[k]), int(rows[:, k].sum()))
        if rows[:, k].any()
        else Share(float("nan"), float("nan"), float("nan"), 0)
        for k, key in enumerate(columns)
    }


def _shares(hits, rows):
    """Per key, the mean of ``hits`` over the crops where ``rows``: float[N, K] -> float[K]."""
    return (hits * rows).sum(0) / rows.sum(0)
