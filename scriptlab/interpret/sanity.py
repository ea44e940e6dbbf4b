"""Sanity checks for saliency maps (Adebayo et al. 2018).

A saliency method that explains the *model* must change when the model does.
Two checks:

- cascading model-parameter randomisation: re-initialise the layers from the
  top down (heads, dense, conv3, conv2, conv1, cumulatively) and compare each
  stage's maps with the trained model's;
- data randomisation: compare with the maps of the same architecture trained
  on permuted labels.

Similarity is the Spearman rank correlation of the maps (as returned and of
their absolute values) and SSIM of the [0, 1]-normalised absolute maps; all
are computed per image, batched. High similarity after randomisation means the
method shows the image (edges, ink), not what the network learned: guided
backpropagation is the known failure.

References: Adebayo, Gilmer, Muelly, Goodfellow, Hardt & Kim 2018, Sanity Checks for
Saliency Maps, https://arxiv.org/abs/1810.03292; Wang, Bovik, Sheikh & Simoncelli 2004
(SSIM).
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from jax.scipy.stats import rankdata

from scriptlab.interpret._common import (
    check_array,
    check_choice,
    check_int,
    check_method_options,
    check_number,
)
from scriptlab.interpret.saliency import METHODS, saliency
from scriptlab.protocols import ApplyFn

# Top layer down; each stage re-initialises its layers on top of the previous ones.
CASCADE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("heads", ("script_head", "font_head")),
    ("dense", ("dense",)),
    ("conv3", ("conv3",)),
    ("conv2", ("conv2",)),
    ("conv1", ("conv1",)),
)


# --------------------------------------------------------------------------- similarity
def _check_maps(a, b, *, ndim: int | None = None):
    """Two batches of maps of one shape [N, ...], finite."""
    a = check_array("a", a, ndim=ndim)
    b = check_array("b", b, shape=a.shape)
    if a.ndim < 2:
        raise ValueError(
            f"a and b must be maps float[N, ...] with a batch axis, got shape {a.shape}"
        )
    return a, b


def spearman(a: jax.Array, b: jax.Array) -> jax.Array:
    """Spearman rank correlation of each pair of maps.

    Args:
      a, b: float[N, ...] (each map flattened).

    Returns:
      float32[N]; 0 where a map is constant.
    """
    a, b = _check_maps(a, b)
    return _spearman(a, b)


@jax.jit
def _spearman(a, b):
    # average ranks for ties, as scipy.stats.spearmanr
    ra = rankdata(a.reshape(a.shape[0], -1), axis=-1)
    rb = rankdata(b.reshape(b.shape[0], -1), axis=-1)
    ra = ra - ra.mean(-1, keepdims=True)
    rb = rb - rb.mean(-1, keepdims=True)
    denom = jnp.sqrt((ra**2).sum(-1) * (rb**2).sum(-1))
    return jnp.where(denom > 0, (ra * rb).sum(-1) / jnp.where(denom > 0, denom, 1.0), 0.0)


def normalise(maps: jax.Array) -> jax.Array:
    """Each map of |maps| scaled to [0, 1] (constant maps become 0)."""
    m = jnp.abs(check_array("maps", maps))
    lo = m.min(axis=(-2, -1), keepdims=True)
    span = m.max(axis=(-2, -1), keepdims=True) - lo
    return jnp.where(span > 0, (m - lo) / jnp.where(span > 0, span, 1.0), 0.0)


def ssim(a: jax.Array, b: jax.Array, *, window: int = 7) -> jax.Array:
    """Mean structural similarity of each pair of maps with values in [0, 1].

    Uniform ``window`` x ``window`` statistics over valid positions, sample
    covariance, K1 = 0.01, K2 = 0.03, data range 1 (scikit-image's defaults).

    Args:
      a, b: float[N, H, W].

    Returns:
      float32[N].

    References: Wang et al. 2004, Image Quality Assessment: From Error Visibility
    to Structural Similarity.
    """
    a, b = _check_maps(a, b, ndim=3)
    check_int("window", window, 2, min(a.shape[1:]) + 1)
    return _ssim(a, b, window=int(window))


@functools.partial(jax.jit, static_argnames=("window",))
def _ssim(a, b, *, window):
    c1, c2 = 0.01**2, 0.03**2
    n = window * window

    def mean(x):
        return (
            jax.lax.reduce_window(x, 0.0, jax.lax.add, (1, window, window), (1, 1, 1), "VALID") / n
        )

    ua, ub = mean(a), mean(b)
    cov = n / (n - 1)
    vaa = cov * (mean(a * a) - ua * ua)
    vbb = cov * (mean(b * b) - ub * ub)
    vab = cov * (mean(a * b) - ua * ub)
    s = ((2 * ua * ub + c1) * (2 * vab + c2)) / ((ua**2 + ub**2 + c1) * (vaa + vbb + c2))
    return s.mean(axis=(1, 2))


def similarity(original: jax.Array, other: jax.Array) -> dict[str, jax.Array]:
    """Per-image similarity of two batches of maps float32[N, H, W]:
    "spearman" (maps as given), "spearman_abs" (of |maps|) and "ssim" (of
    normalised |maps|), each float32[N]."""
    return {
        "spearman": spearman(original, other),
        "spearman_abs": spearman(jnp.abs(original), jnp.abs(other)),
        "ssim": ssim(normalise(original), normalise(other)),
    }


# --------------------------------------------------------------------------- randomisation
def _path_names(path) -> set[str]:
    return {str(getattr(k, "key", getattr(k, "name", getattr(k, "idx", "")))) for k in path}


def _layer_names(params) -> set[str]:
    """Every key on any leaf's path: the names a cascade may use."""
    return set().union(*(_path_names(p) for p, _ in jax.tree_util.tree_leaves_with_path(params)))


def randomise_layers(params, random_params, layers: tuple[str, ...]):
    """``params`` with every leaf under one of ``layers`` taken from ``random_params``.

    Works on any pytree whose paths name the layers (nnx.State, nested dicts).
    """
    leaves, treedef = jax.tree_util.tree_flatten_with_path(params)
    fresh = jax.tree_util.tree_leaves(random_params)
    if len(fresh) != len(leaves):
        raise ValueError(
            f"random_params must have the structure of params: {len(fresh)} leaves vs {len(leaves)}"
        )
    known = _layer_names(params)
    missing = [name for name in layers if name not in known]
    if missing:
        raise ValueError(f"layers {missing} are not in params (which has {sorted(known)})")
    out = [
        f if _path_names(p) & set(layers) else x for (p, x), f in zip(leaves, fresh, strict=True)
    ]
    return jax.tree_util.tree_unflatten(treedef, out)


def cascading_randomisation(params, random_params, cascade=CASCADE) -> list[tuple[str, object]]:
    """[("original", params), (stage, params with this and all earlier stages re-initialised), ...]."""
    known = _layer_names(params)
    missing = [name for _, layers in cascade for name in layers if name not in known]
    if missing:
        raise ValueError(
            f"cascade names layers {missing} that are not in params; pass cascade=((stage, "
            f"(layer, ...)), ...) naming your model's layers from the top down (the default, "
            f"CASCADE, is ScriptNet's)"
        )
    stages = [("original", params)]
    done: tuple[str, ...] = ()
    for label, layers in cascade:
        done = done + tuple(layers)
        stages.append((label, randomise_layers(params, random_params, done)))
    return stages


def _method_options(method: str, options: dict | None) -> dict:
    return check_method_options(options, METHODS).get(method, {})


def cascading_check(
    apply_fn: ApplyFn,
    params,
    random_params,
    images,
    targets,
    *,
    methods: tuple[str, ...] = METHODS,
    cascade=CASCADE,
    options: dict[str, dict] | None = None,
) -> dict:
    """Cascading model-parameter randomisation for several saliency methods.

    Args:
      apply_fn, params, images, targets: as ``saliency.saliency``.
      random_params: freshly initialised parameters of the same model (the
        re-initialisation draws; e.g. ``functional(build(..., seed=1))[0]``).
      methods: method names; options: per-method keyword options.
      cascade: (stage label, layer names) from the top of the network down.

    Returns:
      {"stages": labels after "original", "maps": {method: float32[S+1, N, H, W]},
       "rows": one dict per (method, stage) with mean spearman, spearman_abs, ssim}.

    References: Adebayo et al. 2018, Sanity Checks for Saliency Maps,
    https://arxiv.org/abs/1810.03292.
    """
    stages = cascading_randomisation(params, random_params, cascade)
    maps, rows = {}, []
    for method in methods:
        # one batched call per stage: the stages differ in weights, not shapes, so jit reuses one program
        per_stage = [saliency(apply_fn, p, images, targets, method=method, **_method_options(method, options))
                     for _, p in stages]  # fmt: skip
        maps[method] = jnp.stack(per_stage)
        for (label, _), m in zip(stages[1:], per_stage[1:], strict=True):
            sim = similarity(per_stage[0], m)
            rows.append(
                {"method": method, "stage": label, **{k: float(v.mean()) for k, v in sim.items()}}
            )
    return {"stages": [label for label, _ in stages[1:]], "maps": maps, "rows": rows}


def data_randomisation_check(
    apply_fn: ApplyFn,
    params,
    shuffled_params,
    images,
    targets,
    *,
    shuffled_apply_fn=None,
    methods: tuple[str, ...] = METHODS,
    options: dict[str, dict] | None = None,
) -> dict:
    """Maps of a model trained on true labels vs one trained on permuted labels.

    Args:
      shuffled_params: parameters of the model trained on shuffled labels.
      shuffled_apply_fn: its apply_fn (default: ``apply_fn``).
      Others as ``cascading_check``.

    Returns:
      {"maps": {method: (original float32[N, H, W], shuffled float32[N, H, W])},
       "rows": one dict per method with mean spearman, spearman_abs, ssim}.

    References: Adebayo et al. 2018, Sanity Checks for Saliency Maps,
    https://arxiv.org/abs/1810.03292.
    """
    shuffled_apply_fn = shuffled_apply_fn or apply_fn
    maps, rows = {}, []
    for method in methods:
        kw = _method_options(method, options)
        a = saliency(apply_fn, params, images, targets, method=method, **kw)
        b = saliency(shuffled_apply_fn, shuffled_params, images, targets, method=method, **kw)
        maps[method] = (a, b)
        rows.append({"method": method, **{k: float(v.mean()) for k, v in similarity(a, b).items()}})
    return {"maps": maps, "rows": rows}


def verdicts(cascade_rows: list[dict], data_rows: list[dict] | None = None, *, threshold: float = 0.5,
             metric: str = "spearman_abs", stage: str = "dense") -> list[dict]:  # fmt: skip
    """Which methods pass: similarity to the trained model's maps must drop below
    ``threshold`` once the classifier (heads and dense layer, ``stage``) is
    re-initialised, and (if given) for the model trained on shuffled labels.

    Returns:
      One dict per method: method, cascade (similarity at ``stage``),
      cascade_pass, data (similarity), data_pass, passes.
    """
    check_number("threshold", threshold)
    check_choice("metric", metric, ("spearman", "spearman_abs", "ssim"))
    stages = {row["stage"] for row in cascade_rows}
    if cascade_rows and stage not in stages:
        raise ValueError(f"stage must be one of {sorted(stages)}, got {stage!r}")
    out = []
    data = {r["method"]: r[metric] for r in (data_rows or [])}
    for row in cascade_rows:
        if row["stage"] != stage:
            continue
        m = row["method"]
        entry = {"method": m, "cascade": row[metric], "cascade_pass": row[metric] < threshold}
        if m in data:
            entry.update(data=data[m], data_pass=data[m] < threshold)
        entry["passes"] = entry["cascade_pass"] and entry.get("data_pass", True)
        out.append(entry)
    return out
