"""Can an explanation see a shortcut? Adebayo et al. 2022's measures, adapted to a style signal.

Adebayo, Muelly, Abelson & Kim (2022) plant a spurious signal in training data,
train a model that relies on it (the *relying* model) and one that does not
(the *reference* model, trained without the signal), and ask whether
explanations tell them apart. Their signals are visible patches with a known
location; a font style has no location, so the ground-truth explanation they
compare with does not exist, and the comparisons here are between maps:

- K-SSD (known spurious signal detection, ``kssd``): on crops that carry the
  signal, the distance between the relying model's map and the reference
  model's map of the same crop. A method that shows the reliance gives a large
  distance.
- CCM (cause for concern, ``ccm``): the same distance on crops where the signal
  plays no role (say, crops whose prediction no style swap changes). It is the
  part of the two models' difference that has nothing to do with the signal:
  K-SSD is evidence of detection only where it exceeds CCM.
- FAM (false alarm, ``fam``): on the reference model alone, the distance
  between its maps of signal crops and of paired crops without the signal (the
  same text in another style). A method whose maps change with the signal on a
  model that ignores it raises false alarms; compare with the same distance on
  the relying model.

Every measure is per crop, float32[N], from one ``map_distance``; aggregate with
``scriptlab.interpret.stats`` (bootstrap intervals, seed summaries).

A per-crop view (``detection_auc``): does a statistic of a crop's map
(``map_statistic``: attribution mass off the ink, map entropy, or any score)
separate the crops whose prediction flips under the style swap from those that
do not? The ROC AUC with a stratified bootstrap interval answers it.

Class models are judged by reading their style with a classifier that is not the
model explained (``style_readout``).

References: Adebayo, Muelly, Abelson & Kim 2022, Post hoc Explanations may be
Ineffective for Detecting Unknown Spurious Correlation (ICLR),
https://arxiv.org/abs/2212.04629; Adebayo et al. 2018 (map similarity measures),
https://arxiv.org/abs/1810.03292; Wang et al. 2004 (SSIM).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from jaxtyping import Array, Bool, Float, Integer, Real

from scriptlab.interpret._common import (
    check_array,
    check_batch_size,
    check_binary,
    check_choice,
    check_images,
    forward_chunks,
    probe_outputs,
)
from scriptlab.interpret.localisation import localisation_scores
from scriptlab.interpret.sanity import normalise, spearman, ssim
from scriptlab.interpret.stats import Estimate, bootstrap_auc
from scriptlab.protocols import AnyArray, ApplyFn, Image

MEASURES = ("ssim", "spearman", "spearman_abs")
STATISTICS = ("off_ink", "entropy")


# --------------------------------------------------------------------------- map comparisons
def map_distance(
    a: Real[AnyArray, "n h w"],
    b: Real[AnyArray, "n h w"],
    *,
    measure: str = "ssim",
    window: int = 7,
) -> Float[Array, " n"]:
    """One minus the similarity of each pair of maps: the distance every measure here uses.

    "ssim": 1 - SSIM of the maps' absolute values, each scaled to [0, 1]
    (``sanity.normalise`` and ``sanity.ssim``, ``window`` x ``window``).
    "spearman": 1 - the Spearman rank correlation of the signed maps.
    "spearman_abs": 1 - the Spearman rank correlation of their absolute values.
    Each lies in [0, 2]; 0 means the same map (up to scale for SSIM, up to a
    monotone map for Spearman).

    Args:
      a, b: float[N, H, W] maps; a[i] is compared with b[i].
      measure: one of ``MEASURES``.
      window: the SSIM window, 2 <= window <= min(H, W).

    Returns:
      float32[N].

    References: Adebayo et al. 2018 and 2022, https://arxiv.org/abs/1810.03292,
    https://arxiv.org/abs/2212.04629; Wang et al. 2004 (SSIM).
    """
    check_choice("measure", measure, MEASURES)
    a = check_array("a", a, ndim=3)
    b = check_array("b", b, shape=a.shape)
    if measure == "ssim":
        return 1.0 - ssim(normalise(a), normalise(b), window=window)
    if measure == "spearman_abs":
        a, b = jnp.abs(a), jnp.abs(b)
    return 1.0 - spearman(a, b)


def kssd(
    relying_maps: Real[AnyArray, "n h w"],
    reference_maps: Real[AnyArray, "n h w"],
    *,
    measure: str = "ssim",
) -> Float[Array, " n"]:
    """K-SSD, known spurious signal detection: relying vs reference model, on signal crops.

    ``map_distance(relying_maps, reference_maps)``, where both are maps of the
    same N crops that carry the signal (the style the relying model reads),
    explaining the same class. Large: the method shows a difference where the
    relying model uses the signal. Read it against ``ccm``.

    Args:
      relying_maps: float[N, H, W] the relying model's maps.
      reference_maps: float[N, H, W] the reference model's maps of the same crops.
      measure: one of ``MEASURES``.

    Returns:
      float32[N] per-crop distances in [0, 2].

    References: Adebayo, Muelly, Abelson & Kim 2022 (K-SSD),
    https://arxiv.org/abs/2212.04629.
    """
    return map_distance(relying_maps, reference_maps, measure=measure)


def ccm(
    relying_maps: Real[AnyArray, "n h w"],
    reference_maps: Real[AnyArray, "n h w"],
    *,
    measure: str = "ssim",
) -> Float[Array, " n"]:
    """CCM, cause for concern: relying vs reference model, on crops where the signal plays no role.

    ``map_distance(relying_maps, reference_maps)`` on crops whose prediction the
    signal does not decide (the caller picks them, e.g. from the style-swap
    ground truth). It measures how different the two models' maps are for
    reasons other than the signal: the baseline K-SSD must exceed.

    Args:
      relying_maps: float[N, H, W] the relying model's maps.
      reference_maps: float[N, H, W] the reference model's maps of the same crops.
      measure: one of ``MEASURES``.

    Returns:
      float32[N] per-crop distances in [0, 2].

    References: Adebayo, Muelly, Abelson & Kim 2022 (CCM),
    https://arxiv.org/abs/2212.04629.
    """
    return map_distance(relying_maps, reference_maps, measure=measure)


def fam(
    signal_maps: Real[AnyArray, "n h w"],
    plain_maps: Real[AnyArray, "n h w"],
    *,
    measure: str = "ssim",
) -> Float[Array, " n"]:
    """FAM, false alarm: one model's maps of signal crops vs its maps of their plain twins.

    ``map_distance(signal_maps, plain_maps)``, where signal_maps[i] explains a
    crop with the signal and plain_maps[i] the same crop without it (the same
    text rendered in another style), both from the reference model, which does
    not rely on the signal. Large: the method's maps change with the signal on
    a model that ignores it, a false alarm. Computed on the relying model, the
    same distance is the change a true alarm should exceed.

    Args:
      signal_maps: float[N, H, W] maps of the crops with the signal.
      plain_maps: float[N, H, W] maps of their twins without it.
      measure: one of ``MEASURES``.

    Returns:
      float32[N] per-crop distances in [0, 2].

    References: Adebayo, Muelly, Abelson & Kim 2022 (FAM),
    https://arxiv.org/abs/2212.04629.
    """
    return map_distance(signal_maps, plain_maps, measure=measure)


# --------------------------------------------------------------------------- per-crop detection
def map_statistic(
    maps: Real[AnyArray, "n h w"],
    *,
    statistic: str = "off_ink",
    masks: Bool[AnyArray, "n h w"] | None = None,
) -> Float[Array, " n"]:
    """A per-crop summary of a map, for ``detection_auc``.

    "off_ink": the share of |map| off the ink mask, 1 - ``localisation_scores``'
    ink mass (a map of zeros counts as chance: 1 - the ink fraction). A model
    reading style rather than letter shapes might spread attribution off the ink.
    "entropy": the Shannon entropy of p = |map| / sum |map|, divided by
    log(H W), so 1 is a uniform map and 0 one pixel (a map of zeros: 1).

    Args:
      maps: float[N, H, W] attribution maps (the sign is ignored).
      statistic: one of ``STATISTICS``.
      masks: bool[N, H, W] ink masks, for "off_ink".

    Returns:
      float32[N] in [0, 1].

    References: Adebayo, Muelly, Abelson & Kim 2022, https://arxiv.org/abs/2212.04629.
    """
    check_choice("statistic", statistic, STATISTICS)
    maps = check_array("maps", maps, ndim=3)
    if statistic == "off_ink":
        if masks is None:
            raise ValueError('statistic="off_ink" needs masks=bool[N, H, W] ink masks')
        return 1.0 - localisation_scores(maps, masks)["ink_mass"]
    if maps.shape[1] * maps.shape[2] < 2:
        raise ValueError(f"maps must have at least 2 pixels for an entropy, got shape {maps.shape}")
    return _entropy(maps)


@jax.jit
def _entropy(maps):
    flat = jnp.abs(maps.reshape(maps.shape[0], -1))
    total = flat.sum(-1, keepdims=True)
    p = jnp.where(total > 0, flat / jnp.where(total > 0, total, 1.0), 1.0 / flat.shape[1])
    h = -jnp.sum(jnp.where(p > 0, p * jnp.log(jnp.where(p > 0, p, 1.0)), 0.0), -1)
    return h / jnp.log(flat.shape[1])


def detection_auc(
    relies: Bool[AnyArray, " n"] | Integer[AnyArray, " n"],
    *,
    scores: Real[AnyArray, " n"] | None = None,
    maps: Real[AnyArray, "n h w"] | None = None,
    statistic: str = "off_ink",
    masks: Bool[AnyArray, "n h w"] | None = None,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> Estimate:
    """Does a per-crop score pick out the crops that rely on the signal? ROC AUC and interval.

    The AUC (``stats.roc_auc``: Mann-Whitney, ties 1/2) of ``scores`` for the
    ground truth ``relies`` (e.g. "the prediction flips when only the style is
    swapped"), with a percentile interval from a bootstrap stratified by
    ``relies`` (``stats.bootstrap_auc``). 0.5 is chance; below 0.5 the score
    ranks the other way. Give ``scores`` directly, or ``maps`` and a
    ``statistic`` (``map_statistic``).

    Args:
      relies: bool[N] (or 0/1) ground truth per crop, both values present.
      scores: float[N] a per-crop score, or None to compute it from ``maps``.
      maps: float[N, H, W] attribution maps (when ``scores`` is None).
      statistic, masks: as ``map_statistic``.
      n_resamples, level, seed: the bootstrap's (``stats.bootstrap``).

    Returns:
      A ``stats.Estimate`` of float32[] arrays.

    References: Adebayo, Muelly, Abelson & Kim 2022, https://arxiv.org/abs/2212.04629;
    Hanley & McNeil 1982 (AUC).
    """
    if (scores is None) == (maps is None):
        raise ValueError("give exactly one of scores= (float[N]) and maps= (float[N, H, W])")
    if scores is None:
        scores = map_statistic(maps, statistic=statistic, masks=masks)
    scores = check_array("scores", scores, ndim=1)
    relies = check_binary("relies", relies, shape=scores.shape)
    return bootstrap_auc(scores, relies, n_resamples=n_resamples, level=level, seed=seed)


# --------------------------------------------------------------------------- class models
def style_readout(
    apply_fn: ApplyFn,
    params,
    images: Image[AnyArray, "n h w c"],
    *,
    head: str = "font",
    probe: Any = None,
    batch_size: int = 64,
) -> Float[Array, "n k"]:
    """The style of images (class models, say) as read by a classifier that is not the model explained.

    Without ``probe``: softmax of ``getattr(apply_fn(params, images), head)``,
    e.g. the font head of another network (a style classifier). With ``probe``:
    softmax of ``probe.logits(out.embedding)``, a probe fitted on frozen
    embeddings of ``apply_fn`` (``scriptlab.probe.Probe`` has that method).
    Images are run in chunks of ``batch_size``, one image per call.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn``, the reader.
      params: its parameters.
      images: float32[N, H, W, C] in [0, 1] (or uint8).
      head: the logits field read when ``probe`` is None.
      probe: None, or an object with ``logits(float32[N, D]) -> float32[N, K]``.
      batch_size: images per chunk.

    Returns:
      float32[N, K] style probabilities, rows summing to 1.

    References: Adebayo, Muelly, Abelson & Kim 2022, https://arxiv.org/abs/2212.04629;
    Nguyen, Yosinski & Clune 2016 (class models judged by a separate reader).
    """
    images = check_images(images, keep_uint8=True)
    batch_size = check_batch_size(batch_size)
    if probe is None:
        probe_outputs(apply_fn, params, images[:1].astype(jnp.float32), head)
        logits = forward_chunks(apply_fn, params, images, layer=head, batch_size=batch_size)
    else:
        if not callable(getattr(probe, "logits", None)):
            raise ValueError(
                f"probe must have a logits(features) method (scriptlab.probe.Probe), "
                f"got {type(probe).__name__}"
            )
        features = forward_chunks(apply_fn, params, images, layer=None, batch_size=batch_size)
        logits = jnp.asarray(probe.logits(features))
    return _softmax(logits)


@jax.jit
def _softmax(logits):
    return jax.nn.softmax(logits, axis=-1)
