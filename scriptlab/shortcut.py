"""Can you see the shortcut? Every explanation method judged against style-swap ground truth.

The study (issue 26 §2 and §4) takes any models meeting ``scriptlab.protocols.ApplyFn``
(several training seeds each), one that relies on font style (the *relying* model, the
zoo's baseline) and one that does not (the *reference*, the oracle), and asks of each
kind of explanation whether it sees the reliance:

- ground truth (``scriptlab.reliance``): the share of conflict and test crops whose
  predicted script flips when only the font is swapped (``scriptlab.twins``);
- feature attribution (the 7 saliency methods and occlusion): Adebayo et al.'s K-SSD,
  CCM and FAM (``interpret.detection``) on conflict crops, where the *signal* is the
  crop's own (minority) style and its *plain twin* the same crop in the style its script
  is usually drawn in; a per-crop detection AUC of the map's change between crop and twin
  (and of its off-ink mass) against "the prediction flips"; and a false-alarm rate on
  the reference: the share of its crops whose map change exceeds the threshold that best
  separates flipping from non-flipping crops on the relying model (Youden's J);
- concepts: TCAV (``interpret.tcav``), every style a concept drawn from other scripts,
  plus one concept of random crops as a control, >= 20 random sets, every layer, Holm,
  with the exchangeable test (a random concept passes at about alpha) by default;
- training-point ranking (``RANKERS``): convex-head influence (Koh & Liang 2017) on the
  frozen embedding, TracIn at the final parameters and EK-FAC over every layer
  (``whole_net_scores``) rank training crops for each misread conflict crop; the share
  of the top k carrying the crop's style AND the wrongly predicted script, next to its
  base rate (``interpret.ranking``);
- embeddings: the share of the misread crops' k nearest training crops that share the
  style against those that share the script;
- class models (``interpret.classviz``): the style of each script's class model, read by
  a classifier that is not the model (a linear probe on the reference's embedding, or a
  given style reader);
- faithfulness (``interpret.faithfulness``): deletion, insertion and ROAD AUCs, with
  random and ink reference rows; localisation (``interpret.localisation``) and
  parameter randomisation (``interpret.sanity``) complete the summary table.

``study`` returns plain JSON (nested dicts, lists, floats, None for an undefined
number); ``cached_study`` stores it content-addressed. Every interval is a 95 %
percentile bootstrap over crops (``interpret.stats``); numbers "per seed" pair seed s of
the relying model with seed s of the reference.

References: Adebayo, Muelly, Abelson & Kim 2022, Post hoc Explanations may be Ineffective
for Detecting Unknown Spurious Correlation (ICLR), https://arxiv.org/abs/2212.04629;
Kim et al. 2018 (TCAV), https://arxiv.org/abs/1711.11279; Koh & Liang 2017,
https://arxiv.org/abs/1703.04730; Pruthi et al. 2020 (TracIn), https://arxiv.org/abs/2002.08484;
George et al. 2018 and Grosse et al. 2023 (EK-FAC), https://arxiv.org/abs/2308.03296; Petsiuk et al. 2018 and Rong et al. 2022 (faithfulness);
Adebayo et al. 2018 (randomisation), https://arxiv.org/abs/1810.03292.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

from scriptlab import data as data_lib
from scriptlab.cache import cache_dir, write_atomic
from scriptlab.interpret import detection, faithfulness, localisation, ranking, sanity, stats, tcav
from scriptlab.interpret.classviz import class_model
from scriptlab.interpret.embedding import embed
from scriptlab.interpret.influence import (
    ekfac_scores,
    fit_ekfac,
    fit_logistic,
    influence_scores,
    layerwise_loss,
    logistic_loss,
    tracin_scores,
)
from scriptlab.interpret.occlusion import occlusion
from scriptlab.interpret.saliency import METHODS as SALIENCY_METHODS
from scriptlab.interpret.saliency import saliency
from scriptlab.probe import fit_probe
from scriptlab.protocols import ApplyFn
from scriptlab.reliance import ANY, reliance, style_reliance
from scriptlab.twins import HELDOUT, plain_twin

STUDY_CODE_VERSION = 4
"""Bump when a change to this module changes the numbers ``study`` returns (cache keys hold it)."""
METHODS = (*SALIENCY_METHODS, "occlusion")
SPLITS = ("conflict", "test")
RANKERS = ("convex_head", "tracin_last", "ekfac")
"""Training-point rankers of the study: convex-head influence on the frozen embedding, TracIn
at the final parameters only (no epoch snapshots needed), EK-FAC over every layer."""
WHOLE_NET = ("tracin_last", "ekfac")


@dataclasses.dataclass(frozen=True)
class StudyConfig:
    """The sizes and options of one study (everything that decides its numbers).

    Attributes:
      n_crops: conflict and test crops each for the reliance ground truth, ranking and kNN.
      n_map_crops: conflict crops whose maps (and their twins' maps) are computed.
      n_faith_crops: crops per model of the faithfulness curves.
      faith_steps: points per faithfulness curve.
      road_iterations: conjugate-gradient steps of ROAD's imputation.
      n_train: training crops (a seeded subset) ranked by influence and kNN.
      k: top-k of the ranking and neighbour shares.
      influence_train: training crops (a seeded subset of the n_train) that the whole-network
        rankers (``WHOLE_NET``: TracIn, EK-FAC) rank and EK-FAC's curvature is fitted on.
      influence_queries: misread conflict crops per seed the whole-network rankers explain.
      tcav_crops: crops of the TCAV class; concept_size: examples per concept.
      n_random: random sets of TCAV (>= 20 as Kim et al.).
      tcav_test: TCAV's significance test, one of ``tcav.TESTS`` ("exchangeable", which
        holds its level; "paper", Kim et al.'s fixed-R_0 t-test, anti-conservative).
      class_steps: ascent steps of the class models.
      smoothgrad_samples, ig_steps: saliency options; occlusion_patch, occlusion_stride.
      n_boot: bootstrap resamples; seed: crop choice, random sets and bootstrap seed.
    """

    n_crops: int = 240
    n_map_crops: int = 48
    n_faith_crops: int = 16
    faith_steps: int = 11
    road_iterations: int = 64
    n_train: int = 3000
    k: int = 10
    influence_train: int = 800
    influence_queries: int = 32
    tcav_crops: int = 48
    concept_size: int = 24
    n_random: int = 20
    tcav_test: str = "exchangeable"
    class_steps: int = 128
    smoothgrad_samples: int = 16
    ig_steps: int = 16
    occlusion_patch: int = 8
    occlusion_stride: int = 4
    n_boot: int = 1000
    seed: int = 0


Model = tuple[ApplyFn, Any]


# --------------------------------------------------------------------------- small helpers
def _estimate(e: stats.Estimate | None) -> dict | None:
    if e is None:
        return None
    return {"value": _num(e.value), "low": _num(e.low), "high": _num(e.high)}


def _num(x) -> float | None:
    v = float(np.asarray(x))
    return v if math.isfinite(v) else None


def _mean(values, cfg: StudyConfig) -> dict | None:
    v = np.asarray(values, np.float32).ravel()
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    return _estimate(stats.bootstrap_mean(v, n_resamples=cfg.n_boot, seed=cfg.seed)) | {
        "n": int(v.size)
    }


def _auc(scores, labels, cfg: StudyConfig) -> dict | None:
    labels = np.asarray(labels, bool)
    if labels.all() or not labels.any():
        return None  # one class only: no AUC
    e = stats.bootstrap_auc(np.asarray(scores, np.float32), labels, n_resamples=cfg.n_boot,
                            seed=cfg.seed)  # fmt: skip
    return _estimate(e) | {"n_relies": int(labels.sum()), "n": int(labels.size)}


def _seeds(value) -> list[Model]:
    """(apply_fn, params) or a sequence of them (one per training seed) -> a list."""
    if isinstance(value, tuple) and len(value) == 2 and callable(value[0]):
        return [value]
    runs = list(value) if isinstance(value, Sequence) else []
    if not runs or not all(isinstance(r, tuple) and len(r) == 2 and callable(r[0]) for r in runs):
        raise ValueError(
            "each model must be (apply_fn, params) or a non-empty list of them (one per seed), "
            f"got {type(value).__name__}"
        )
    return runs


def _spatial_layer(apply_fn: ApplyFn, params, shape) -> str | None:
    """The last activation with a spatial map [N, h, w, c] (Grad-CAM's layer), or None."""
    out = jax.eval_shape(
        lambda x: apply_fn(params, x), jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    )
    names = [k for k, v in out.activations.items() if len(v.shape) == 4]
    return names[-1] if names else None


def _layers(apply_fn: ApplyFn, params, shape) -> list[str]:
    out = jax.eval_shape(
        lambda x: apply_fn(params, x), jax.ShapeDtypeStruct((1, *shape), jnp.float32)
    )
    return list(out.activations)


def attribution_maps(
    apply_fn: ApplyFn, params, images, targets, cfg: StudyConfig, methods=METHODS
) -> dict[str, jax.Array]:
    """Every method's map of ``images`` for class ``targets``: {method: float32[N, H, W]}.

    The 7 saliency methods (``interpret.saliency``; Grad-CAM on the last spatial layer,
    skipped for a model without one) and occlusion's heat map (``interpret.occlusion``).

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn``; params: its parameters.
      images: uint8[N, H, W, 3] or float32 in [0, 1]; targets: int[N] script ids.
      cfg: the study's options (SmoothGrad samples, IG steps, occlusion patch).
      methods: names from ``METHODS``.

    Returns:
      {method: float32[N, H, W]}.

    References: Simonyan 2013; Selvaraju 2017; Zeiler & Fergus 2014 (see interpret.saliency).
    """
    options = {
        "smoothgrad": {"n_samples": cfg.smoothgrad_samples},
        "integrated_gradients": {"steps": cfg.ig_steps},
    }
    out = {}
    for method in methods:  # 8 methods, each one batched call
        if method == "occlusion":
            out[method] = occlusion(
                apply_fn, params, images, targets, patch=cfg.occlusion_patch,
                stride=cfg.occlusion_stride,
            ).heatmap  # fmt: skip
        elif method == "grad_cam":
            layer = _spatial_layer(apply_fn, params, images.shape[1:])
            if layer is not None:
                out[method] = saliency(
                    apply_fn, params, images, targets, method=method, layer=layer
                )
        else:
            out[method] = saliency(
                apply_fn, params, images, targets, method=method, **options.get(method, {})
            )
    return out


def _randomised(params, seed: int):
    """Each parameter array with its entries permuted (seeded): same values, no learned structure.

    A model-agnostic stand-in for re-initialisation in Adebayo et al. 2018's randomisation
    test: the scale of every layer stays, what training arranged is gone.
    """
    leaves, treedef = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    out = [
        jax.random.permutation(k, jnp.ravel(x)).reshape(jnp.shape(x)) if jnp.size(x) > 1 else x
        for k, x in zip(keys, leaves, strict=True)
    ]
    return jax.tree.unflatten(treedef, out)


@dataclasses.dataclass(frozen=True)
class _FloatLeavesLoss:
    """Cross-entropy of ``head`` for a model whose params hold non-float leaves (ids, lookup tables).

    Called with the params' leaves as float32 (``float_leaves``): each leaf is cast back to its
    own dtype inside, so integer leaves get zero gradient and the float ones their own.
    Hashes by value (a static jit argument).
    """

    apply_fn: ApplyFn
    head: str
    treedef: Any
    dtypes: tuple

    def __call__(self, leaves, x, y):
        cast = [jnp.asarray(v).astype(d) for v, d in zip(leaves, self.dtypes, strict=True)]
        params = jax.tree.unflatten(self.treedef, cast)
        x = x.astype(jnp.float32) / 255.0 if x.dtype == jnp.uint8 else x  # as the layer-wise view
        logits = getattr(self.apply_fn(params, x), self.head)
        return optax.softmax_cross_entropy_with_integer_labels(logits, y)


def _float_leaves(params):
    leaves, treedef = jax.tree.flatten(params)
    dtypes = tuple(jnp.result_type(v) for v in leaves)
    return [jnp.asarray(v, jnp.float32) for v in leaves], treedef, dtypes


def whole_net_scores(
    apply_fn: ApplyFn,
    params,
    train_x,
    train_y,
    test_x,
    test_y,
    *,
    estimator: str,
    head: str = "script",
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[jax.Array | None, bool, str]:
    """One whole-network ranker's scores of every training crop for every test crop.

    - "tracin_last": TracInCP (Pruthi et al. 2020) at one checkpoint, the final parameters,
      with learning rate 1: grad L(z_test) . grad L(z) over every parameter. A model's epoch
      snapshots are not part of ``ApplyFn``'s contract (and the zoo's oracle keeps none), so
      the study uses this last-checkpoint variant for every model alike; > 0 supports the test
      label (``largest=True``).
    - "ekfac": I_up,loss with the EK-FAC inverse Gauss-Newton (George et al. 2018; Grosse et
      al. 2023) fitted on ``train_x`` with labels sampled from the model (seeded), l2 = 0 and
      each layer damped by 0.1 x its mean eigenvalue; < 0 supports it (``largest=False``).

    Both read the network through ``influence.layerwise_loss(apply_fn, head)`` (any NNX model
    of ``nnx.Conv`` / ``nnx.Linear`` layers). For a model it cannot see layer by layer,
    TracIn falls back to ``vmap`` of ``grad`` over every float parameter (integer leaves held
    fixed) and EK-FAC, which needs the layers, is skipped: scores None and the reason.

    Args:
      apply_fn: a ``scriptlab.protocols.ApplyFn``; params: its parameters.
      train_x: uint8 or float32[N, H, W, 3] training crops; train_y: int[N] their labels.
      test_x: [T, H, W, 3] test crops; test_y: int[T] the labels whose loss is explained
        (for a misread crop, the script it was wrongly read as).
      estimator: one of ``WHOLE_NET``.
      head: the output field of logits.
      seed: EK-FAC's sampled labels.
      batch_size: training crops per jitted chunk.

    Returns:
      (scores float32[T, N] or None, largest: rank by the largest scores, note: "" or why None).

    References: Pruthi et al. 2020, https://arxiv.org/abs/2002.08484; George et al. 2018,
    https://arxiv.org/abs/1806.03884; Grosse et al. 2023, https://arxiv.org/abs/2308.03296.
    """
    if estimator not in WHOLE_NET:
        raise ValueError(f"estimator must be one of {WHOLE_NET}, got {estimator!r}")
    train_y, test_y = jnp.asarray(train_y, jnp.int32), jnp.asarray(test_y, jnp.int32)
    loss = layerwise_loss(apply_fn, head)
    try:
        loss.layers(params, jnp.asarray(train_x[:1]))
        note = ""
    except ValueError as e:
        loss, note = None, str(e)
    if estimator == "ekfac":
        if loss is None:
            return None, False, "EK-FAC needs the layer-wise view: " + note
        factors = fit_ekfac(loss, params, train_x, seed=seed, batch_size=batch_size)
        scores = ekfac_scores(loss, params, train_x, train_y, test_x, test_y, factors=factors,
                              l2=0.0, batch_size=batch_size)  # fmt: skip
        return scores, False, ""
    if loss is None:
        leaves, treedef, dtypes = _float_leaves(params)
        loss, params = _FloatLeavesLoss(apply_fn, head, treedef, dtypes), leaves
        note = "per-example gradients by vmap (no layer-wise view)"
    scores = tracin_scores(loss, [params], train_x, train_y, test_x, test_y,
                           learning_rates=[1.0], batch_size=batch_size)  # fmt: skip
    return scores, True, note


def _youden(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """The threshold t (flag score >= t) maximising TPR - FPR, or None with one class only."""
    if labels.all() or not labels.any():
        return None
    cand = np.unique(scores)
    flagged = scores[None, :] >= cand[:, None]
    j = flagged[:, labels].mean(1) - flagged[:, ~labels].mean(1)
    return float(cand[int(np.argmax(j))])


def _pick(n_total: int, n: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n_total, min(n, n_total), replace=False))


# --------------------------------------------------------------------------- the study
def study(
    models: Mapping[str, Model | Sequence[Model]],
    ds: data_lib.Dataset,
    *,
    relying: str = "baseline",
    reference: str = "oracle",
    n_crops: int | None = None,
    seeds: int | None = None,
    config: StudyConfig | None = None,
    style_reader: Model | None = None,
    tcav_script: str | None = None,
    methods: tuple[str, ...] = METHODS,
    cache_twins: bool = True,
    progress: bool = False,
) -> dict:
    """Turn every explanation method on the font-style shortcut and judge it by ground truth.

    Args:
      models: {name: (apply_fn, params) or a list of them, one per training seed}; every
        apply_fn a ``scriptlab.protocols.ApplyFn`` whose ``script`` head reads ``ds.scripts``.
      ds: the dataset (its conflict, test and train splits are used).
      relying: the name of the model that relies on style (the baseline).
      reference: the name of the model that does not (the oracle).
      n_crops: overrides ``config.n_crops``.
      seeds: use the first ``seeds`` runs of every model (default all).
      config: a ``StudyConfig`` (sizes and options).
      style_reader: (apply_fn, params) whose ``font`` head reads the class models' style;
        default a linear probe fitted on the reference model's embedding of training crops.
      tcav_script: the class TCAV explains (default "latin" if present, else the first).
      methods: attribution methods, names from ``METHODS``.
      cache_twins: read/write the style twins in the cache (``data.style_twins``).
      progress: print a line per stage.

    Returns:
      A JSON-able dict: "config", "models", "relying", "reference", "seeds", "crops",
      "reliance", "maps", "detection", "tcav", "ranking", "neighbours", "class_models",
      "faithfulness", "localisation", "randomisation", "summary", "explorer".
      Every estimate is {"value", "low", "high"} (95 % bootstrap); undefined ones None.

    References: Adebayo, Muelly, Abelson & Kim 2022, https://arxiv.org/abs/2212.04629.
    """
    cfg = config or StudyConfig()
    if not isinstance(cfg, StudyConfig):
        raise ValueError(f"config must be a StudyConfig, got {type(cfg).__name__}")
    if n_crops is not None:
        cfg = dataclasses.replace(cfg, n_crops=int(n_crops))
    if not isinstance(models, Mapping) or not models:
        raise ValueError(
            f"models must be a non-empty dict {{name: (apply_fn, params)}}, got {models!r}"
        )
    for name, role in ((relying, "relying"), (reference, "reference")):
        if name not in models:
            raise ValueError(f"{role}={name!r} is not among the models ({', '.join(models)})")
    if relying == reference:
        raise ValueError(f"relying and reference must be different models, got {relying!r} twice")
    for m in methods:
        if m not in METHODS:
            raise ValueError(f"unknown method {m!r} in methods; allowed: {', '.join(METHODS)}")
    if cfg.tcav_test not in tcav.TESTS:
        raise ValueError(f"config.tcav_test must be one of {tcav.TESTS}, got {cfg.tcav_test!r}")
    if seeds is not None and (not isinstance(seeds, int) or seeds < 1):
        raise ValueError(f"seeds must be an integer >= 1 or None, got {seeds!r}")
    runs = {name: _seeds(v)[:seeds] for name, v in models.items()}
    names = list(runs)
    n_pairs = min(len(runs[relying]), len(runs[reference]))
    t0 = time.perf_counter()

    def say(line: str) -> None:
        if progress:
            print(f"{line} ({time.perf_counter() - t0:.0f} s)", flush=True)

    rng = np.random.default_rng(cfg.seed)
    scripts, styles = ds.scripts, ds.styles

    # ---- ground truth: style twins and reliance
    crops = {s: _pick(len(ds.split(s)), cfg.n_crops, rng) for s in SPLITS}
    twins = {
        s: data_lib.style_twins(
            ds, s, crops[s], seed=cfg.seed, cache=cache_twins, progress=progress
        )
        for s in SPLITS
    }
    style_cols = [k for k, slot in enumerate(twins["conflict"].slots) if slot != HELDOUT]
    rel = {
        name: {
            s: [reliance(a, p, ds.split(s).images[crops[s]], twins[s]) for a, p in runs[name]]
            for s in SPLITS
        }
        for name in names
    }
    out: dict[str, Any] = {
        "version": STUDY_CODE_VERSION,
        "config": dataclasses.asdict(cfg),
        "models": names,
        "relying": relying,
        "reference": reference,
        "seeds": {n: len(r) for n, r in runs.items()},
        "scripts": list(scripts),
        "styles": list(styles),
        "slots": list(twins["conflict"].slots),
        "crops": {s: crops[s].tolist() for s in SPLITS},
    }
    out["reliance"] = {
        name: {s: _reliance_summary(rel[name][s], cfg) for s in SPLITS} for name in names
    }
    say("study: reliance done")

    # ---- attribution maps on conflict crops with a plain twin (the script's usual style)
    plain = plain_twin(twins["conflict"], ds)
    truth_c = ds.conflict.script[crops["conflict"]]
    pos = np.flatnonzero(plain.ok)[: cfg.n_map_crops]  # positions within the conflict crops
    crop_images = ds.conflict.images[crops["conflict"][pos]]
    crop_masks = ds.conflict.masks[crops["conflict"][pos]]
    twin_images = plain.images[pos]
    targets = jnp.asarray(truth_c[pos], jnp.int32)
    crop_maps, change, off_ink, relies = {}, {}, {}, {}
    for name in names:
        crop_maps[name], change[name], off_ink[name], relies[name] = [], [], [], []
        for s, (a, p) in enumerate(runs[name]):
            mc = attribution_maps(a, p, crop_images, targets, cfg, methods)
            mt = attribution_maps(a, p, twin_images, targets, cfg, methods)
            crop_maps[name].append(mc)
            change[name].append({m: np.asarray(detection.fam(mc[m], mt[m])) for m in mc})
            off_ink[name].append({m: np.asarray(detection.map_statistic(mc[m], masks=crop_masks))
                                  for m in mc})  # fmt: skip
            relies[name].append(rel[name]["conflict"][s].flip[pos][:, style_cols].any(1))
        say(f"study: maps of {name} done")
    used = [m for m in methods if m in crop_maps[relying][0]]
    out["maps"] = {
        name: {
            "relies": _mean(np.concatenate(relies[name]), cfg),
            **{
                m: {
                    "change": _mean(np.concatenate([c[m] for c in change[name]]), cfg),
                    "auc_change": _auc(
                        np.concatenate([c[m] for c in change[name]]),
                        np.concatenate(relies[name]),
                        cfg,
                    ),  # fmt: skip
                    "auc_off_ink": _auc(
                        np.concatenate([c[m] for c in off_ink[name]]),
                        np.concatenate(relies[name]),
                        cfg,
                    ),  # fmt: skip
                }
                for m in used
            },
        }
        for name in names
    }
    out["detection"] = {m: _detection(m, crop_maps, change, relies, relying, reference, n_pairs,
                                      names, cfg) for m in used}  # fmt: skip
    say("study: detection done")

    # ---- TCAV
    out["tcav"] = _tcav_study(runs, ds, cfg, rng, tcav_script, (relying, reference))
    say("study: TCAV done")

    # ---- training-point ranking and neighbours on a subset of training crops
    train_idx = _pick(len(ds.train), cfg.n_train, rng)
    out["ranking"], out["neighbours"], explorer = _ranking_study(
        runs, ds, cfg, crops["conflict"], pos, train_idx, relying, reference, n_pairs
    )
    say("study: ranking and neighbours done")

    # ---- class models, read by a classifier that is not the model
    out["class_models"] = _class_models(runs, ds, cfg, train_idx, reference, style_reader)
    say("study: class models done")

    # ---- faithfulness, localisation, randomisation (seed 0)
    nf = min(cfg.n_faith_crops, len(pos))
    out["faithfulness"] = {}
    for name in names:
        a, p = runs[name][0]
        maps = {m: v[:nf] for m, v in crop_maps[name][0].items()}
        maps["random"] = faithfulness.random_maps(crop_images[:nf], seed=cfg.seed)
        maps["ink"] = faithfulness.ink_maps(crop_masks[:nf], seed=cfg.seed)
        out["faithfulness"][name] = faithfulness.faithfulness_rows(
            a, p, crop_images[:nf], targets[:nf], maps, steps=cfg.faith_steps, seed=cfg.seed,
            road_iterations=cfg.road_iterations, model=name,
        )  # fmt: skip
    say("study: faithfulness done")
    out["localisation"] = {
        name: localisation.localisation_rows(crop_maps[name][0], crop_masks, model=name)
        for name in (relying, reference)
    }
    a, p = runs[relying][0]
    shuffled = attribution_maps(a, _randomised(p, cfg.seed), crop_images[:nf], targets[:nf], cfg,
                                used)  # fmt: skip
    out["randomisation"] = {}
    for m in used:
        sim = float(
            sanity.similarity(crop_maps[relying][0][m][:nf], shuffled[m])["spearman_abs"].mean()
        )
        out["randomisation"][m] = {"spearman_abs": _num(sim), "passes": bool(sim < 0.5)}
    out["summary"] = _summary(out, used)
    explorer["crops"] = crops["conflict"][pos].tolist()
    explorer["plain_slot"] = plain.slot[pos].tolist()
    explorer["train"] = train_idx.tolist()
    explorer["readings"] = {
        name: {
            "pred": rel[name]["conflict"][0].pred[pos].tolist(),
            "twin_pred": rel[name]["conflict"][0].twin_pred[pos].tolist(),
        }
        for name in names
    }
    out["explorer"] = explorer
    return _strict(out)


def _strict(obj):
    """JSON-ready: numpy scalars and arrays to Python, NaN and inf to None."""
    if isinstance(obj, dict):
        return {str(k): _strict(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_strict(v) for v in obj]
    if isinstance(obj, (np.ndarray, jax.Array)):
        return _strict(np.asarray(obj).tolist())
    if isinstance(obj, (np.bool_, bool)):
        return bool(obj)
    if isinstance(obj, (np.integer, int)):
        return int(obj)
    if isinstance(obj, (np.floating, float)):
        return float(obj) if math.isfinite(float(obj)) else None
    return obj


def _reliance_summary(runs, cfg: StudyConfig) -> dict:
    pooled = style_reliance(runs, n_resamples=cfg.n_boot, seed=cfg.seed)
    per_seed = [style_reliance(r, n_resamples=cfg.n_boot, seed=cfg.seed)[ANY] for r in runs]
    return {
        "pooled": {k: v._asdict() for k, v in pooled.items()},
        "per_seed": [v._asdict() for v in per_seed],
    }


def _detection(m, crop_maps, change, relies, relying, reference, n_pairs, names, cfg) -> dict:
    """K-SSD, CCM, FAM, the per-crop AUC and the false alarm of one method, seeds pooled."""
    kssd, ccm, fam_rel, fam_ref = [], [], [], []
    for s in range(n_pairs):
        d = np.asarray(detection.kssd(crop_maps[relying][s][m], crop_maps[reference][s][m]))
        kssd.append(d[relies[relying][s]])
        ccm.append(d[~relies[relying][s]])
        fam_rel.append(change[relying][s][m])
        fam_ref.append(change[reference][s][m])
    kssd, ccm = np.concatenate(kssd), np.concatenate(ccm)
    fam_rel, fam_ref = np.concatenate(fam_rel), np.concatenate(fam_ref)
    opts = dict(n_resamples=cfg.n_boot, seed=cfg.seed)
    row = {
        "kssd": _mean(kssd, cfg),
        "ccm": _mean(ccm, cfg),
        "kssd_minus_ccm": _estimate(stats.bootstrap_difference(kssd, ccm, paired=False, **opts))
        if kssd.size and ccm.size else None,
        "fam_reference": _mean(fam_ref, cfg),
        "fam_relying": _mean(fam_rel, cfg),
        "alarm_gap": _estimate(stats.bootstrap_difference(fam_rel, fam_ref, paired=True, **opts)),
    }  # fmt: skip
    scores = np.concatenate([c[m] for c in change[relying]])
    labels = np.concatenate(relies[relying])
    row["auc"] = _auc(scores, labels, cfg)
    t = _youden(scores, labels)
    row["threshold"] = t
    row["flagged"] = {
        name: None if t is None else _mean(np.concatenate([c[m] for c in change[name]]) >= t, cfg)
        for name in names
    }
    row["false_alarm"] = row["flagged"][reference]
    return row


def _tcav_study(runs, ds, cfg: StudyConfig, rng, tcav_script, names) -> dict:
    """Each style a concept (crops of that style from other scripts) and a random-crop control.

    Asked of the models ``names`` only (the relying model and the reference: TCAV's question
    is whether the first is sensitive to its bias style and the second is not; the
    exchangeable test's 20+ random sets per layer make each model the study's dearest step).
    """
    scripts, styles = ds.scripts, ds.styles
    target = tcav_script or ("latin" if "latin" in scripts else scripts[0])
    if target not in scripts:
        raise ValueError(f"tcav_script must be one of the dataset's scripts, got {target!r}")
    k = scripts.index(target)
    train, test = ds.train, ds.test
    cls = np.flatnonzero(test.script == k)
    images = test.images[cls[: cfg.tcav_crops]]
    concepts, taken = {}, set()
    for j, style in enumerate(styles):
        pool = np.flatnonzero((train.style == j) & (train.script != k))
        if len(pool) >= 2:
            chosen = _pick(len(pool), cfg.concept_size, rng)
            concepts[style] = train.images[pool[chosen]]
            taken.update(pool[chosen].tolist())
    rest = np.setdiff1d(np.arange(len(train)), np.fromiter(taken, int, len(taken)))
    order = rest[rng.permutation(len(rest))]
    control = order[: cfg.concept_size]
    concepts["random crops"] = train.images[control]
    pool = train.images[order[cfg.concept_size : cfg.concept_size * (cfg.n_random + 2)]]
    bias = styles[ds.bias_style(target)]
    out = {"script": target, "bias_style": bias, "concepts": list(concepts), "models": {},
           "test": cfg.tcav_test}  # fmt: skip
    for name in names:
        per_seed = []
        for a, p in runs[name]:
            r = tcav.tcav(
                a, p, images, k, concepts, pool, layers=_layers(a, p, images.shape[1:]),
                n_random=cfg.n_random, random_size=cfg.concept_size, seed=cfg.seed,
                test=cfg.tcav_test,
            )  # fmt: skip
            per_seed.append({
                "layers": list(r.layers),
                "score": np.asarray(r.scores.mean(-1)).tolist(),
                "random_score": np.asarray(r.random_scores.mean(-1)).tolist(),
                "null_sd": np.asarray(r.null_statistics.std(-1, ddof=1)).tolist(),
                "p_value": np.asarray(r.p_values).tolist(),
                "p_adjusted": np.asarray(r.p_adjusted).tolist(),
                "significant": np.asarray(r.significant).tolist(),
                "paper_p_adjusted": np.asarray(r.paper_p_adjusted).tolist(),
                "paper_significant": np.asarray(r.paper_p_adjusted <= 0.05).tolist(),
            })  # fmt: skip
        sig = np.array([s["significant"] for s in per_seed])  # [S, L, C]
        paper = np.array([s["paper_significant"] for s in per_seed])
        out["models"][name] = {
            "per_seed": per_seed,
            "seeds_significant": {
                c: int(sig[:, :, j].any(1).sum()) for j, c in enumerate(concepts)
            },
            "layers_significant": {c: sig[:, :, j].sum(1).tolist() for j, c in enumerate(concepts)},
            "paper_seeds_significant": {
                c: int(paper[:, :, j].any(1).sum()) for j, c in enumerate(concepts)
            },
        }
    return out


def _ranking_study(runs, ds, cfg: StudyConfig, conflict_idx, pos, train_idx, relying, reference,
                   n_pairs):  # fmt: skip
    """Influence top-k shares per ranker (relying vs reference) and kNN shares (every model).

    The queries are the conflict crops seed s of the relying model misreads, asked of
    seed s of every model with the same labels (its style and the wrongly predicted
    script), so the models are compared on the same crops. Convex-head influence ranks
    all ``n_train`` training crops for every misread crop; the whole-network rankers
    (``WHOLE_NET``) rank a seeded subset of ``influence_train`` of them for at most
    ``influence_queries`` misread crops per seed (their cost grows with both).
    """
    train = ds.train
    n_scripts = len(ds.scripts)
    train_keys = np.stack([train.style[train_idx], train.script[train_idx]], 1)
    # the whole-network rankers' training crops: positions in train_idx (own stream, so the
    # other numbers of the study do not move with influence_train)
    sub = _pick(len(train_idx), cfg.influence_train, np.random.default_rng([cfg.seed, 1]))
    rank_out = {
        est: {name: {"per_seed": [], "train": len(train_idx) if est == "convex_head" else len(sub)}
              for name in (relying, reference)}
        for est in RANKERS
    }  # fmt: skip
    nn_out = {name: {"per_seed": []} for name in runs}
    explorer: dict[str, Any] = {"neighbours": {}, "influential": {}}
    ranked = {est: {relying: [], reference: []} for est in RANKERS}
    near = {name: [] for name in runs}
    base_pred = []
    for s in range(len(runs[relying])):
        a, p = runs[relying][s]
        from scriptlab.train import predict

        logits = np.asarray(predict(a, p, ds.conflict.images[conflict_idx])[0])
        pred = logits.argmax(1)
        base_pred.append(pred)

    def add(est, name, scores, keys, largest):
        sh = ranking.ranking_shares(scores, keys, train_keys if est == "convex_head"
                                    else train_keys[sub], k=min(cfg.k, scores.shape[1]),
                                    largest=largest)  # fmt: skip
        ranked[est][name].append((np.asarray(sh.joint), np.asarray(sh.joint_base_rate),
                                  np.asarray(sh.share)))  # fmt: skip
        rank_out[est][name]["per_seed"].append({"n": len(keys), "joint": float(sh.joint.mean()),
                                                "base_rate": float(sh.joint_base_rate.mean())})  # fmt: skip

    for name, seeds in runs.items():
        for s, (a, p) in enumerate(seeds):
            emb_train = embed(a, p, train.images[train_idx])
            if s >= len(base_pred):
                continue
            pred = base_pred[s]
            truth = ds.conflict.script[conflict_idx]
            wrong = np.flatnonzero(pred != truth)
            q_idx = conflict_idx[wrong]
            emb_q = embed(a, p, ds.conflict.images[q_idx]) if len(wrong) else None
            emb_map = embed(a, p, ds.conflict.images[conflict_idx[pos]])
            k = min(cfg.k, len(train_idx))
            if len(wrong):
                keys = np.stack([ds.conflict.style[q_idx], truth[wrong], pred[wrong]], 1)
                nk = np.concatenate([train_keys, train_keys[:, 1:2]], 1)
                sh = ranking.neighbour_shares(emb_q, emb_train, keys, nk, k=k)
                near[name].append(np.asarray(sh.share))
                nn_out[name]["per_seed"].append({"n": len(wrong)})
            if s == 0:
                sh = ranking.neighbour_shares(emb_map, emb_train, np.zeros(len(pos), np.int32),
                                              np.zeros(len(train_idx), np.int32), k=k)  # fmt: skip
                explorer["neighbours"][name] = train_idx[np.asarray(sh.indices)].tolist()
            if name not in (relying, reference) or s >= n_pairs:
                continue
            head, _ = fit_logistic(emb_train, train.script[train_idx], n_classes=n_scripts, l2=1e-2)
            q_all = emb_map if emb_q is None else jnp.concatenate([emb_q, emb_map])
            labels = np.concatenate([pred[wrong], pred[pos]]).astype(np.int32)
            scores = influence_scores(logistic_loss, head, emb_train,
                                      jnp.asarray(train.script[train_idx], jnp.int32), q_all,
                                      jnp.asarray(labels), l2=1e-2, method="exact").scores  # fmt: skip
            if len(wrong):
                keys = np.stack([ds.conflict.style[q_idx], pred[wrong]], 1)
                add("convex_head", name, scores[: len(wrong)], keys, largest=False)
                # the whole-network rankers on a bounded number of the misread crops
                few = wrong[: cfg.influence_queries]
                for est in WHOLE_NET:
                    sc, largest, note = whole_net_scores(
                        a, p, train.images[train_idx[sub]], train.script[train_idx[sub]],
                        ds.conflict.images[conflict_idx[few]], pred[few], estimator=est,
                        seed=cfg.seed,
                    )  # fmt: skip
                    if note:
                        rank_out[est][name]["note"] = note
                    if sc is not None:
                        add(est, name, sc, keys[: len(few)], largest)
            if s == 0:
                top = jax.lax.top_k(-scores[len(wrong) :], k)[1]
                explorer["influential"][name] = train_idx[np.asarray(top)].tolist()
    for est, per_model in ranked.items():
        for name, parts in per_model.items():
            if parts:
                joint = np.concatenate([j for j, _, _ in parts])
                base = np.concatenate([b for _, b, _ in parts])
                share = np.concatenate([c for _, _, c in parts])
                rank_out[est][name].update(
                    joint=_mean(joint, cfg), base_rate=_num(base.mean()),
                    style=_mean(share[:, 0], cfg), script=_mean(share[:, 1], cfg),
                    lift=_estimate(stats.bootstrap_difference(joint, base, paired=True,
                                                              n_resamples=cfg.n_boot, seed=cfg.seed)),
                )  # fmt: skip
    for name, parts in near.items():
        if parts:
            share = np.concatenate(parts)
            nn_out[name].update(style=_mean(share[:, 0], cfg), script=_mean(share[:, 1], cfg),
                                wrong_script=_mean(share[:, 2], cfg))  # fmt: skip
    nn_out["base_rate"] = {
        "style": _num(np.mean([np.mean(train.style[train_idx] == st) for st in ds.conflict.style[conflict_idx]])),
        "script": _num(np.mean([np.mean(train.script[train_idx] == sc) for sc in ds.conflict.script[conflict_idx]])),
    }  # fmt: skip
    return rank_out, nn_out, explorer


def _class_models(runs, ds, cfg: StudyConfig, train_idx, reference, style_reader) -> dict:
    """Each script's class model per model and seed, its style read by another classifier."""
    train, test = ds.train, ds.test
    n_styles = len(ds.styles)
    if style_reader is None:
        ra, rp = runs[reference][0]
        probe = fit_probe(embed(ra, rp, train.images[train_idx]), train.style[train_idx], n_styles)
        reader = "linear probe on the embedding of " + reference
    else:
        (ra, rp), probe = style_reader, None
        reader = "font head of the given style reader"
    test_probs = detection.style_readout(ra, rp, test.images[:500], probe=probe)
    reader_acc = float(np.mean(np.asarray(test_probs).argmax(1) == test.style[:500]))
    out = {"reader": reader, "reader_test_accuracy": reader_acc, "models": {}}
    shape = tuple(train.images.shape[1:])
    for name, seeds in runs.items():
        probs = []
        for a, p in seeds:
            cm = class_model(a, p, objective=("head", "script"), image_shape=shape,
                             steps=cfg.class_steps, lr=0.05, l2=1e-3, jitter=2, tv=2e-3,
                             seed=cfg.seed)  # fmt: skip
            probs.append(np.asarray(detection.style_readout(ra, rp, cm.images, probe=probe)))
        probs = np.stack(probs)  # [S, n_scripts, n_styles]
        bias = np.array([ds.bias_style(s) for s in ds.scripts])
        out["models"][name] = {
            "probability": probs.mean(0).tolist(),
            "bias_style_probability": probs[:, np.arange(len(bias)), bias].tolist(),
        }
    return out


def _summary(out: dict, used) -> list[dict]:
    """One row per method: detects reliance, false alarm, faithfulness, localisation, randomisation."""
    relying = out["relying"]
    faith = {r["method"]: r for r in out["faithfulness"][relying]}
    loc = {r["method"]: r for r in out["localisation"][relying]}
    rows = []
    for m in used:
        d = out["detection"][m]
        auc = d["auc"]
        rows.append({
            "method": m,
            "auc": auc,
            "detects": bool(auc is not None and auc["low"] is not None and auc["low"] > 0.5),
            "alarm_gap": d["alarm_gap"],
            "false_alarm": d["false_alarm"],
            "road_gap": faith[m]["road_gap"] if m in faith else None,
            "road_gap_random": faith["random"]["road_gap"],
            "deletion": faith[m]["deletion"] if m in faith else None,
            "lift": loc[m]["lift"] if m in loc else None,
            "randomisation": out["randomisation"][m]["spearman_abs"],
            "randomisation_passes": out["randomisation"][m]["passes"],
        })  # fmt: skip
    return rows


# --------------------------------------------------------------------------- tables and cache
def _ci(e: dict | None, digits: int = 2) -> str:
    if e is None or e.get("value") is None:
        return "-"
    lo, hi = e.get("low"), e.get("high")
    if lo is None or hi is None:
        return f"{e['value']:.{digits}f}"
    return f"{e['value']:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def _share(d: dict | None) -> str:
    if d is None or d.get("share") is None:
        return "-"
    return f"{d['share']:.3f} [{d['low']:.3f}, {d['high']:.3f}]"


def _md(header: list[str], rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def tables(results: dict) -> dict[str, str]:
    """Markdown tables of a ``study`` result: reliance, detection, faithfulness, tcav, ranking, summary.

    Args:
      results: what ``study`` returned (or its JSON read back).

    Returns:
      {table name: markdown text}.
    """
    rel, ref = results["relying"], results["reference"]
    out = {}
    rows = []
    for name in results["models"]:
        r = results["reliance"][name]
        per_seed = ", ".join(f"{s['share']:.3f}" for s in r["conflict"]["per_seed"])
        rows.append([name, _share(r["conflict"]["pooled"]["any"]), _share(r["test"]["pooled"]["any"]),
                     _share(r["conflict"]["pooled"].get("heldout")), per_seed])  # fmt: skip
    out["reliance"] = _md(
        ["model", "conflict: flips with style", "test: flips with style",
         "conflict: flips, held-out family", "conflict per seed"], rows)  # fmt: skip
    rows = []
    for m, d in results["detection"].items():
        rows.append([m, _ci(d["auc"]), _ci(d["false_alarm"]), _ci(d["flagged"].get(rel)),
                     _ci(d["alarm_gap"], 3), _ci(d["kssd"]), _ci(d["ccm"]),
                     _ci(d["kssd_minus_ccm"], 3)])  # fmt: skip
    out["detection"] = _md(
        ["method", f"AUC: map change picks {rel}'s flipping crops", f"false alarm ({ref} crops flagged)",
         f"{rel} crops flagged", f"FAM {rel} - FAM {ref}", "K-SSD", "CCM", "K-SSD - CCM"], rows)  # fmt: skip
    rows = []
    for name, fr in results["faithfulness"].items():
        for r in fr:
            rows.append([name, r["method"], f"{r['deletion']:.3f}", f"{r['insertion']:.3f}",
                         f"{r['road_morf']:.3f}", f"{r['road_lerf']:.3f}", f"{r['road_gap']:+.3f}"])  # fmt: skip
    out["faithfulness"] = _md(
        ["model", "method", "deletion (low good)", "insertion (high good)", "ROAD MoRF (low)",
         "ROAD LeRF (high)", "ROAD gap (high)"], rows)  # fmt: skip
    t = results["tcav"]
    rows = []
    for name, m in t["models"].items():
        n = len(m["per_seed"])
        cells = [f"{m['seeds_significant'][c]}/{n}" for c in t["concepts"]]
        if "paper_seeds_significant" in m:
            cells = [f"{x} (paper: {m['paper_seeds_significant'][c]}/{n})"
                     for x, c in zip(cells, t["concepts"], strict=True)]  # fmt: skip
        rows.append([name, *cells])
    out["tcav"] = (
        f"TCAV of class {t['script']!r}: seeds with the concept significant at some layer "
        f"({t.get('test', 'paper')} test, Holm-corrected, {results['config']['n_random']} "
        "random sets)\n\n" + _md(["model", *t["concepts"]], rows)
    )
    rows = []
    for est, per_model in results["ranking"].items():
        for name, r in per_model.items():
            if "joint" in r:
                rows.append([est, name, _ci(r["joint"], 3), f"{r['base_rate']:.3f}",
                             _ci(r["lift"], 3), str(sum(s["n"] for s in r["per_seed"])),
                             str(r["train"])])  # fmt: skip
            else:
                rows.append([est, name, "-", "-", "-", "0", r.get("note", "")])
    out["ranking"] = _md(
        ["ranker", "model", "top-k share: misread style AND wrong script", "base rate",
         "share - base", "misread crops", "training crops ranked"], rows)  # fmt: skip
    rows = []
    for name in results["models"]:
        r = results["neighbours"][name]
        if "style" in r:
            rows.append([name, _ci(r["style"], 3), _ci(r["script"], 3), _ci(r["wrong_script"], 3)])
    base = results["neighbours"]["base_rate"]
    out["neighbours"] = (
        _md(["model", "kNN share: same style", "same (true) script", "the wrongly read script"], rows)
        + f"\n\nbase rates: style {base['style']:.3f}, script {base['script']:.3f}"
    )  # fmt: skip
    rows = []
    for r in results["summary"]:
        rows.append([r["method"], ("yes " if r["detects"] else "no ") + _ci(r["auc"]),
                     _ci(r["false_alarm"]),
                     "-" if r["road_gap"] is None else f"{r['road_gap']:+.3f} (random {r['road_gap_random']:+.3f})",
                     "-" if r["lift"] is None else f"{r['lift']:.2f}",
                     f"{r['randomisation']:.2f} ({'pass' if r['randomisation_passes'] else 'fail'})"])  # fmt: skip
    out["summary"] = _md(
        ["method", "detects reliance (per-crop AUC)", f"false alarm on {ref}",
         "faithfulness (ROAD gap)", "localisation (ink lift)",
         "randomisation (similarity after)"], rows)  # fmt: skip
    return out


def study_key(model_keys: Mapping[str, Sequence[str]], ds_key: str, settings: Mapping) -> str:
    """The content address of a study: its models' keys, the data, the settings and the code version.

    Args:
      model_keys: {name: [a key per seed that names everything deciding its parameters]}.
      ds_key: the dataset's ``key``.
      settings: every other argument that decides the numbers (config, roles, methods).

    Returns:
      12 hex digits.
    """
    blob = json.dumps([STUDY_CODE_VERSION, ds_key, dict(model_keys), dict(settings)],
                      sort_keys=True, default=str)  # fmt: skip
    return hashlib.sha256(blob.encode()).hexdigest()[:12]


def cached_study(
    key: str,
    compute: Callable[[], dict],
    *,
    folder: str | Path | None = None,
    cache: bool = True,
) -> dict:
    """``compute()`` once per ``key`` (``study_key``): read from, or written to, the cache.

    Args:
      key: the study's content address.
      compute: a function returning ``study``'s result.
      folder: the folder (default ``cache_dir() / "studies"``).
      cache: False computes without reading or writing.

    Returns:
      The result, as JSON reads it back (so a fresh and a cached run look the same).
    """
    where = Path(folder) if folder is not None else cache_dir() / "studies"
    path = where / f"study-{key}.json"
    if cache and path.exists():
        try:
            got = json.loads(path.read_text())
            if isinstance(got, dict) and got.get("version") == STUDY_CODE_VERSION:
                return got
        except (OSError, ValueError):
            pass
    result = json.loads(json.dumps(_strict(compute()), allow_nan=False))
    if cache:
        where.mkdir(parents=True, exist_ok=True)
        write_atomic(path, json.dumps(result, allow_nan=False).encode())
    return result


# --------------------------------------------------------------------------- the zoo's study
ZOO_MODELS = ("baseline", "unlearn", "oracle")
"""The zoo models of the workshop study (``scriptlab prepare`` trains them); rho99 joins if cached."""
ZOO_FIX = "dfr_val"
"""The best fix of notebook 03: a group-balanced head fitted on held-out crops, on the baseline."""
WORKSHOP_CONFIG = StudyConfig()


def zoo_study(
    preset: str = "workshop",
    seeds: int = 3,
    *,
    config: StudyConfig | None = None,
    progress: bool = True,
    cache: bool = True,
) -> dict:
    """The study on the zoo's models, computed once and cached content-addressed.

    Models: ``ZOO_MODELS`` at seeds 0..seeds-1 (trained through the zoo cache if missing),
    ``rho99`` only where every seed is already cached (never trained here), and the fix
    ``ZOO_FIX`` (``experiment.fit_posthoc`` on each baseline seed, composed with its trunk
    by ``experiment.posthoc_model``). The class models' style is read by a linear probe on
    the oracle's embedding (``study``'s default), so no extra model is needed. The cache key
    (``study_key``) holds the zoo models' config keys, the dataset key, the study's
    settings, ``experiment.EVAL_CODE_VERSION`` and ``STUDY_CODE_VERSION``.

    Args:
      preset: the zoo preset ("workshop"; "smoke" for a quick run).
      seeds: training seeds per model, >= 1.
      config: a ``StudyConfig`` (default ``WORKSHOP_CONFIG``).
      progress: print a line per stage.
      cache: read and write the study cache.

    Returns:
      ``study``'s result, as JSON reads it back.
    """
    from scriptlab import experiment, zoo
    from scriptlab.train import dataset_for

    if not isinstance(seeds, int) or seeds < 1:
        raise ValueError(f"seeds must be an integer >= 1, got {seeds!r}")
    cfg = config or WORKSHOP_CONFIG
    names = list(ZOO_MODELS)
    if all(zoo.is_cached("rho99", preset, s) for s in range(seeds)):
        names.insert(1, "rho99")
    keys = {n: [zoo.config(n, preset, s).key() for s in range(seeds)] for n in names}
    keys[ZOO_FIX] = [f"{k}+{ZOO_FIX}+eval{experiment.EVAL_CODE_VERSION}" for k in keys["baseline"]]
    ds_cfg = zoo.config("baseline", preset)
    settings = {"config": dataclasses.asdict(cfg), "relying": "baseline", "reference": "oracle",
                "methods": METHODS, "preset": preset}  # fmt: skip

    def compute() -> dict:
        ds = dataset_for(ds_cfg, progress=progress)
        models = {}
        for n in names:
            loaded = [zoo.load(n, preset, seed=s, progress=progress) for s in range(seeds)]
            models[n] = [(m.apply_fn, m.params) for m in loaded]
            if n == "baseline":
                models[ZOO_FIX] = [
                    experiment.posthoc_model(m, experiment.fit_posthoc(m, ds, ZOO_FIX))
                    for m in loaded
                ]
        return study(models, ds, config=cfg, progress=progress)

    key = study_key(keys, dataset_for_key(ds_cfg), settings)
    return cached_study(f"{preset}-{seeds}-{key}", compute, cache=cache)


def dataset_for_key(train_config) -> str:
    """The dataset key of a zoo ``TrainConfig`` without rendering it (``data.make_config``)."""
    return data_lib.make_config(
        train_config.preset, train_config.data_seed, **train_config.data_overrides()
    ).key()


def write(results: dict, out: str | Path) -> list[Path]:
    """Write ``detection.json`` and ``detection.md`` (every table of ``tables``) into ``out``."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    md = "\n\n".join(f"## {name}\n\n{text}" for name, text in tables(results).items())
    paths = [out / "detection.json", out / "detection.md"]
    write_atomic(paths[0], json.dumps(results, indent=1, allow_nan=False).encode())
    write_atomic(paths[1], ("# Can you see the shortcut?\n\n" + md + "\n").encode())
    return paths
