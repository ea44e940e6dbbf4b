# %% [markdown]
# # 05 · Saliency: which pixels does the script decision rest on?
#
# > *The gradient of the true class score with respect to the image results in a saliency map where
# > pixels of higher intensity contribute the most to increasing the true class score ... one step of
# > back-propagation is sufficient.* ("Understanding Convolutional Neural Networks", "Image-specific
# > class saliency visualization")
#
# `scriptlab.interpret.saliency` has seven methods with one calling convention,
# `method(apply_fn, params, images, targets, *, options) -> float32[N, H, W]`, each one jitted and
# batched over images (and over noise samples / path steps):
#
# | method | what it is |
# |---|---|
# | gradient | Simonyan 2013: max over channels of abs(dS_c/dI) |
# | gradient_x_input | gradient times the image, summed over channels |
# | smoothgrad | the gradient averaged over noisy copies (Smilkov 2017) |
# | integrated_gradients | path integral of the gradient from a black image (Sundararajan 2017) |
# | guided_backprop | ReLUs pass only positive gradients at positive inputs (Springenberg 2014) |
# | deconvnet | ReLUs pass the positive part of the signal (Zeiler & Fergus 2014) |
# | grad_cam | ReLU of channel-weighted conv3 activations (Selvaraju 2017) |
#
# Our crops are rendered, so we know where the ink is. That lets us *score* the maps (how much of
# each map falls on ink, and is its peak on ink?) and then ask Adebayo et al.'s harder question:
# do the maps depend on what the network learned at all?

# %%
# Configuration
MODELS = ("baseline", "unlearn")
N_SHOW = 4  # crops in the side-by-side figure
N_SCORE = 64  # test crops in the localisation table
N_SANITY = 16  # crops in the sanity checks
TOLERANCE = 1  # pointing game: argmax within this many pixels of ink
OPTIONS = {"smoothgrad": {"n_samples": 16, "noise": 0.15}, "integrated_gradients": {"steps": 16}}
THRESHOLD = 0.5  # sanity checks: a method passes below this rank correlation
SEED = 0

# %%
import time

import ipywidgets as widgets
import matplotlib.pyplot as plt
import numpy as np

from scriptlab import data, viz, zoo
from scriptlab.interpret import localisation, sanity
from scriptlab.interpret import saliency as S
from scriptlab.model import build, functional

plt.rcParams.update({"figure.dpi": 72, "axes.titlesize": 9})
t_start = time.perf_counter()
ds = data.load("workshop", seed=0)
models = {name: zoo.load(name, progress=False) for name in (*MODELS, "shuffled")}

idx = np.sort(np.random.default_rng(SEED).choice(len(ds.test), N_SCORE, replace=False))
crops = ds.test.take(idx)
images, masks, targets = data.as_float(crops.images), crops.masks, crops.script


def maps_of(name, n):
    """Every method's maps of the model `name` for the first n crops."""
    m = models[name]
    return {
        meth: np.asarray(
            S.saliency(
                m.apply_fn, m.params, images[:n], targets[:n], method=meth, **OPTIONS.get(meth, {})
            )
        )
        for meth in S.METHODS
    }


# %%
# NBVAL_CHECK_OUTPUT
print(
    f"{len(idx)} test crops {images.shape}, ink masks {masks.shape}, "
    f"methods {len(S.METHODS)}, ink fraction {masks.mean():.3f}"
)


# %% [markdown]
# ## Methods side by side
#
# Rows: crops (with their ink mask); columns: methods. Each map is shown as abs(map), scaled to its
# own maximum. Top block baseline, bottom block unlearn, same crops (the first of the sanity-check
# crops, so the maps reuse that section's compiled code).

# %%
for name in MODELS:
    shown = maps_of(name, N_SANITY)
    viz.image_grid(
        [
            [images[i], masks[i], *(viz.abs_scaled(shown[meth][i]) for meth in S.METHODS)]
            for i in range(N_SHOW)
        ],
        row_labels=[ds.scripts[t] for t in targets[:N_SHOW]],
        col_titles=("crop", "ink", *S.METHODS),
        cmaps=(None, "gray", *["inferno"] * len(S.METHODS)),
        suptitle=name,
    )
    plt.show()

# %% [markdown]
# ## Localisation: how much of each map falls on ink?
#
# *ink mass* is the share of abs(map) on ink pixels; its chance level is the ink fraction (a map that
# ignores the image). *pointing* is the share of crops whose map peaks on ink (within
# `TOLERANCE` pixels); its chance level is the share of pixels that count as a hit.

# %%
# NBVAL_CHECK_OUTPUT
rows = [
    row
    for name in MODELS
    for row in localisation.localisation_table(
        models[name].apply_fn, models[name].params, images, masks, targets,
        tolerance=TOLERANCE, options=OPTIONS, model=name,
    )
]  # fmt: skip
COLUMNS = [("model", "model", "9s"), ("method", "method", "21s"), ("ink mass", "ink_mass", "8.2f"),
           ("chance", "chance", "6.2f"), ("lift", "lift", "5.2f"), ("pointing", "pointing", "8.2f"),
           ("chance", "pointing_chance", "6.2f")]  # fmt: skip
print(viz.text_table(rows, COLUMNS))
# Every method of the trained baseline puts more of its mass on ink than chance.
assert all(r["lift"] > 1.0 for r in rows if r["model"] == MODELS[0])

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 2.8))
x = np.arange(len(S.METHODS))
for k, name in enumerate(MODELS):
    sel = [r for r in rows if r["model"] == name]
    axes[0].bar(x + 0.4 * k, [r["ink_mass"] for r in sel], 0.4, label=name)
    axes[1].bar(x + 0.4 * k, [r["pointing"] for r in sel], 0.4, label=name)
axes[0].axhline(rows[0]["chance"], color="k", ls=":", label="chance")
axes[1].axhline(rows[0]["pointing_chance"], color="k", ls=":", label="chance")
for ax, t in zip(axes, ("ink mass", f"pointing game (tolerance {TOLERANCE})")):
    (
        ax.set_xticks(x + 0.2, [m.replace("_", "\n") for m in S.METHODS], fontsize=7),
        ax.set_title(t),
        ax.legend(fontsize=7),
    )
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Sanity checks (Adebayo et al. 2018)
#
# Good localisation is not enough: an edge detector also puts its mass on ink. **Cascading
# randomisation** re-initialises the baseline's layers from the top down (heads, dense, conv3, conv2,
# conv1, cumulatively) and compares each stage's maps with the trained model's (Spearman rank
# correlation of abs(maps), and SSIM). **Data randomisation** compares with the `shuffled` zoo model,
# trained on permuted script labels. A method that explains the *model* must change; one whose maps
# survive the randomisation is showing the image.

# %%
sub = slice(0, N_SANITY)
base = models[MODELS[0]]
fresh, _ = functional(build(len(ds.scripts), len(ds.styles), seed=SEED + 1))
cascade = sanity.cascading_check(
    base.apply_fn, base.params, fresh, images[sub], targets[sub], options=OPTIONS
)
shuffled = sanity.data_randomisation_check(
    base.apply_fn,
    base.params,
    models["shuffled"].params,
    images[sub],
    targets[sub],
    options=OPTIONS,
)

# %%
# NBVAL_CHECK_OUTPUT
stages = cascade["stages"]


def similarity_rows(metric):
    """One row per method: the metric at each cascade stage and against the shuffled model."""
    return [
        {
            "method": meth,
            **{r["stage"]: r[metric] for r in cascade["rows"] if r["method"] == meth},
            "shuffled": next(r[metric] for r in shuffled["rows"] if r["method"] == meth),
        }
        for meth in S.METHODS
    ]


SIMILARITY_COLUMNS = [("method", "method", "21s"), *[(s, s, "6.2f") for s in stages], ("shuffled", "shuffled", "8.2f")]  # fmt: skip
spearman_rows = similarity_rows("spearman_abs")
print("Spearman rank correlation of abs(maps) with the trained model's maps (1 = unchanged)")
print(viz.text_table(spearman_rows, SIMILARITY_COLUMNS))
print("\nSSIM of normalised abs(maps)")
print(viz.text_table(similarity_rows("ssim"), SIMILARITY_COLUMNS, header=False))
verdicts = sanity.verdicts(cascade["rows"], shuffled["rows"], threshold=THRESHOLD, stage="dense")
print(
    f"\nverdict (rank correlation < {THRESHOLD} once heads + dense are re-initialised, and vs the shuffled-label model)"
)
for v in verdicts:
    print(
        f"{v['method']:21s} cascade {v['cascade']:.2f}  shuffled {v['data']:.2f}  ->  {'PASS' if v['passes'] else 'FAIL'}"
    )
# The known result: guided backprop barely changes when the classifier is randomised.
gbp = next(v for v in verdicts if v["method"] == "guided_backprop")
grad = next(v for v in verdicts if v["method"] == "gradient")
assert gbp["cascade"] > grad["cascade"]

# %%
fig, ax = plt.subplots(figsize=(7, 3))
for row in spearman_rows:
    ax.plot(
        range(len(stages) + 1),
        [1.0, *(row[s] for s in stages)],
        "o-",
        label=row["method"],
        lw=2.5 if row["method"] == "guided_backprop" else 1,
    )
ax.set_xticks(range(len(stages) + 1), ["trained", *[f"+{s}" for s in stages]])
ax.axhline(0.5, color="k", ls=":")
(
    ax.set_ylabel("rank correlation with trained"),
    ax.set_title("cascading randomisation (top layer down)"),
)
ax.legend(fontsize=7, ncol=2)
plt.tight_layout()
plt.show()

i = 0
viz.image_grid(
    [
        [viz.abs_scaled(m) for m in (*cascade["maps"][meth][:, i], shuffled["maps"][meth][1][i])]
        for meth in S.METHODS
    ],
    row_labels=[meth.replace("_", " ") for meth in S.METHODS],
    col_titles=("trained", *[f"+{s}" for s in stages], "shuffled"),
    cmaps="inferno",
    cell=(1.6, 0.8),
)
plt.show()


# %% [markdown]
# ## Try it
#
# Pick a crop, a method and the class to explain (the true script, or any other: a good method
# should change with the class; guided backprop barely does).

# %%
def show_one(crop=0, method="gradient", target=-1):
    t = int(targets[crop]) if target < 0 else target
    maps = [
        S.saliency(
            m.apply_fn,
            m.params,
            images[crop : crop + 1],
            t,
            method=method,
            **OPTIONS.get(method, {}),
        )[0]
        for m in (models[name] for name in MODELS)
    ]
    viz.image_grid(
        [[images[crop], *(viz.abs_scaled(m) for m in maps)]],
        col_titles=[
            f"true: {ds.scripts[targets[crop]]}",
            *(f"{name}: {method} for {ds.scripts[t]}" for name in MODELS),
        ],
        cmaps="inferno",
        cell=(3.2, 1.6),
    )
    plt.show()


widgets.interact(
    show_one,
    crop=widgets.IntSlider(0, 0, N_SCORE - 1),
    method=list(S.METHODS),
    target=widgets.IntSlider(-1, -1, len(ds.scripts) - 1, description="class (-1 true)"),
);

# %%
print(f"notebook ran in {time.perf_counter() - t_start:.0f} s")

# %%
# NBVAL_CHECK_OUTPUT
# The claims of the closing text, checked, and the numbers it refers to.
verdict = {v["method"]: v for v in verdicts}
baseline_rows = [r for r in rows if r["model"] == MODELS[0]]
assert all(r["lift"] > 1.0 for r in rows)  # every method: more mass on ink than chance
assert sum(r["pointing"] > 2 * r["pointing_chance"] for r in rows) > len(rows) / 2
assert "guided_backprop" in [
    r["method"] for r in sorted(baseline_rows, key=lambda r: -r["lift"])[:2]
]
assert all(
    verdict[m]["passes"] for m in ("gradient_x_input", "smoothgrad", "deconvnet", "grad_cam")
)
assert not verdict["guided_backprop"]["passes"]
ig, grad = verdict["integrated_gradients"], verdict["gradient"]
assert abs(ig["cascade"] - THRESHOLD) < 0.05 and ig["data"] < THRESHOLD  # on the threshold
assert THRESHOLD <= grad["cascade"] < THRESHOLD + 0.1 and grad["data"] < THRESHOLD  # fails narrowly
print(
    f"threshold {THRESHOLD}\n"
    f"integrated gradients: cascade {ig['cascade']:.2f}, shuffled {ig['data']:.2f}\n"
    f"gradient: cascade {grad['cascade']:.2f}, shuffled {grad['data']:.2f}"
)

# %% [markdown]
# **What to take away.** Every method puts more of its mass on ink than chance, and most point at
# ink far more often than chance: by the localisation score alone they all look useful, and guided
# backprop looks among the best. The sanity checks disagree: guided backprop's maps barely change
# when the classifier on top is replaced by random weights, so its crisp ink outlines come from the
# image and the lower layers, not from what decides the script. Gradient x input, SmoothGrad,
# deconvnet and Grad-CAM change as they should and pass both checks. Integrated Gradients sits on the
# threshold (its rank correlation is printed above): retrained zoo models have put it just below and
# just above, so its cascade verdict is not robust, although its maps do change for the shuffled-label
# model. The plain gradient fails, narrowly: with heads and dense re-initialised its maps still
# rank-correlate a little above the threshold with the trained model's, although they do change for
# the shuffled-label model. Score a method against ground truth *and* against randomisation before
# trusting a picture.
