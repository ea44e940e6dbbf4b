# %% [markdown]
# # 07 · Filters: what the kernels look like, and are noisy filters a symptom?
#
# > *Visualization of convolution filters can give insights on how well the model is trained, though
# > they are by themselves hard to interpret. Noisy filters usually mean that the network isn't trained
# > long enough, or is overfitting due to various reasons (small dataset, low regularization, etc).*
# > ("Understanding Convolutional Neural Networks")
#
# `scriptlab.interpret.filters` shows first-layer kernels as colour images and per input channel,
# deeper kernels as grids, and measures "noisy" with two scale-free roughness scores per filter:
# **tv** (normalised total variation) and **hf** (high-frequency energy: squared neighbour
# differences, the spectrum weighted by 2 - 2cos f). Both are scaled so that i.i.d. white noise (a
# freshly initialised layer) scores about **1** and a constant kernel **0**. We compare the
# initialisation, an early checkpoint, the trained baseline, the `overfit` run (512 crops, 40 epochs,
# no dropout, no weight decay) and the `high_lr` run.

# %%
# Configuration
PRESET = "workshop"
EARLY_EPOCH = 1

# %%
import numpy as np
import matplotlib.pyplot as plt
import ipywidgets as widgets
from scipy.stats import spearmanr
from scriptlab import data, metrics, train, viz, workshop, zoo
from scriptlab.model import functional
from scriptlab.interpret.activations import activation_change
from scriptlab.interpret.filters import (
    conv_kernel,
    filter_grid,
    filter_images,
    filter_noisiness,
)

viz.style()
ds = data.load(PRESET, seed=0, progress=False)
base = zoo.load("baseline", PRESET, progress=False)
snaps = dict(zoo.load_epochs("baseline", PRESET, progress=False))
# epoch 0: the initialisation, rebuilt from the recipe's seed
init, _ = functional(train.build_model(base.config, ds))
overfit = zoo.load("overfit", PRESET, progress=False)
checkpoints = {
    "init (epoch 0)": init,
    f"baseline epoch {EARLY_EPOCH}": snaps[EARLY_EPOCH],
    "baseline trained": base.params,
    "overfit": overfit.params,
    "high_lr": zoo.load("high_lr", PRESET, progress=False).params,
}
CONVS = ("conv1", "conv2", "conv3")

# %% [markdown]
# ## First-layer filters as images
#
# Each 4x4x3 kernel of the strided stem as one colour image (mid-grey = zero weight; each filter scaled by its own
# largest weight), and per input channel (R, G, B rows) below. The model standardises each crop's
# colours first, so colour in these kernels means colour *contrast*, not hue.

# %%
fig, axes = plt.subplots(len(checkpoints), 16, figsize=(14, 0.95 * len(checkpoints) + 0.4))
for i, (name, params) in enumerate(checkpoints.items()):
    imgs = filter_images(conv_kernel(params, "conv1"))
    for j in range(16):
        axes[i, j].imshow(imgs[j], interpolation="nearest")
        axes[i, j].set_xticks([])
        axes[i, j].set_yticks([])
    axes[i, 0].set_ylabel(name, rotation=0, ha="right", va="center")
plt.suptitle("conv1 filters (RGB)")
plt.show()

# %%
def channel_grid(params, n=8):
    """conv1's first n filters, one k x k tile per (input channel row, filter column)."""
    ch = filter_images(conv_kernel(params, "conv1"), mode="channels")[:n]  # [n, 3, 4, 4]
    _, c, k, _ = ch.shape
    grid = np.pad(
        ch.transpose(1, 0, 2, 3), ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=np.nan
    )
    return grid.transpose(0, 2, 1, 3).reshape(c * (k + 1), n * (k + 1))[:-1, :-1]


fig, axes = plt.subplots(2, 1, figsize=(13, 8))
for ax, name in zip(axes, ("init (epoch 0)", "baseline trained")):
    shown = ax.imshow(channel_grid(checkpoints[name]), cmap="RdBu_r", vmin=0, vmax=1)
    ax.set_title(f"{name}: conv1 filters 0-7, rows R, G, B")
    ax.set_xticks([])
    ax.set_yticks([])
bar = fig.colorbar(shown, ax=axes, shrink=0.8)
bar.set_label("weight / filter's largest |w|, mapped to [0, 1] (0.5: zero)")
plt.show()

# %% [markdown]
# Deeper filters: every (output, input) 3x3 slice of conv2, one row per output filter (the first 4
# outputs and 6 inputs shown; the same colour scale as above):

# %%
fig, axes = plt.subplots(2, 2, figsize=(13, 7.5))
for ax, name in zip(axes.flat, ("init (epoch 0)", "baseline trained", "overfit", "high_lr")):
    shown = ax.imshow(
        filter_grid(conv_kernel(checkpoints[name], "conv2"), max_in=6, max_out=4),
        cmap="RdBu_r",
        vmin=0,
        vmax=1,
    )
    ax.set_title(f"{name}: conv2 (rows: output, columns: input)")
    ax.axis("off")
bar = fig.colorbar(shown, ax=axes, shrink=0.6)
bar.set_label("weight / filter's largest |w|, mapped to [0, 1] (0.5: zero)")
plt.show()


# %%
@widgets.interact(
    checkpoint=list(checkpoints), layer=widgets.Dropdown(options=CONVS, value="conv2")
)
def show(checkpoint="baseline trained", layer="conv2"):
    k = conv_kernel(checkpoints[checkpoint], layer)
    rough = np.asarray(filter_noisiness(k, measure="tv"))
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(13, 3.5), gridspec_kw=dict(width_ratios=[3, 1]))
    a0.imshow(
        filter_grid(k, max_in=16, max_out=16),
        cmap="RdBu_r",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    a0.axis("off")
    a0.set_title(f"{checkpoint}: {layer} {tuple(k.shape)}")
    a1.hist(rough, bins=20)
    a1.axvline(1.0, color="k", ls="--")
    a1.set_title("tv per filter (1 = white noise)")
    plt.show()


# %% [markdown]
# ## How noisy? One number per layer and checkpoint
#
# Mean over the layer's filters (per filter: energy-weighted over its input-channel slices).

# %%
table = {
    name: {
        (layer, m): float(np.mean(filter_noisiness(conv_kernel(p, layer), measure=m)))
        for layer in CONVS
        for m in ("tv", "hf")
    }
    for name, p in checkpoints.items()
}
COLUMNS = [(layer, m) for layer in CONVS for m in ("tv", "hf")]
print("tv: total variation, hf: high-frequency energy (both 1 = white noise, 0 = constant)")
print(f"{'checkpoint':20s} " + " ".join(f"{layer + ' ' + m:>9s}" for layer, m in COLUMNS))
for name, row in table.items():
    print(f"{name:20s} " + " ".join(f"{row[col]:9.3f}" for col in COLUMNS))

# %%
# NBVAL_CHECK_OUTPUT
rough = {name: {col: table[name][col] for col in COLUMNS} for name in table}
init_, early, trained = (
    rough[k] for k in ("init (epoch 0)", f"baseline epoch {EARLY_EPOCH}", "baseline trained")
)
claims = {
    "init scores about 1 (a check of the measure)": all(abs(v - 1) < 0.15 for v in init_.values()),
    "trained filters are smoother than init in every layer": all(
        trained[l, "hf"] < init_[l, "hf"] for l in CONVS
    ),
    "epoch 1 lies between init and trained in conv2 and conv3": all(
        trained[l, m] <= early[l, m] <= init_[l, m]
        for l in ("conv2", "conv3")
        for m in ("tv", "hf")
    ),
    "high_lr's conv2 and conv3 are smoother than the baseline's": all(
        rough["high_lr"][l, "hf"] < trained[l, "hf"] for l in ("conv2", "conv3")
    ),
}
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())

# %% [markdown]
# ## Is `overfit` noisy because it overfits, or because it trained less?
#
# A fair test of "noisy filters mean overfitting" compares runs that took the same number of
# optimiser steps. The recipes differ in steps as well as in data and regularisation, so count
# them, and measure how far `overfit` actually overfits: script accuracy on its own 512 training
# crops and on the test split, with bootstrap 95 % intervals over the crops (resample the crops
# 1,000 times, `metrics.bootstrap_interval`; written `[low, high]` below).

# %%
def steps(cfg, epochs=None):
    n = cfg.n_train or len(ds.train.script)
    return n // cfg.batch_size * (cfg.epochs if epochs is None else epochs)


def accuracy(model, split):
    hits = np.asarray(
        train.predict(model.apply_fn, model.params, split.images)[0].argmax(-1) == split.script
    )
    return hits.mean(), *metrics.bootstrap_interval(hits.astype(float))


n_steps = {
    f"baseline epoch {EARLY_EPOCH}": steps(base.config, EARLY_EPOCH),
    "baseline trained": steps(base.config),
    "overfit": steps(overfit.config),
}
acc = {
    ("baseline", "test"): accuracy(base, ds.test),
    ("overfit", "its training crops"): accuracy(
        overfit, ds.train.take(slice(0, overfit.config.n_train))
    ),
    ("overfit", "test"): accuracy(overfit, ds.test),
}
for name, n in n_steps.items():
    print(f"{name:18s} {n:5d} optimiser steps")
for (name, split), (a, lo, hi) in acc.items():
    print(f"{name:9s} script accuracy on {split:18s} {a:.3f} [{lo:.3f}, {hi:.3f}]")

# %%
# NBVAL_CHECK_OUTPUT
claims = {
    "overfit took fewer steps than even the baseline's first epoch": n_steps["overfit"]
    < n_steps[f"baseline epoch {EARLY_EPOCH}"],
    "overfit fits its training crops (accuracy > 0.95)": acc["overfit", "its training crops"][0]
    > 0.95,
    "overfit's test accuracy is below the baseline's (intervals apart)": acc["overfit", "test"][2]
    < acc["baseline", "test"][1],
    "overfit's conv2 and conv3 are noisier than the baseline's at epoch 1": all(
        rough["overfit"][l, "hf"] > early[l, "hf"] for l in ("conv2", "conv3")
    ),
    "overfit's conv1 is as smooth as the trained baseline's (hf within 0.05)": abs(
        rough["overfit"]["conv1", "hf"] - trained["conv1", "hf"]
    )
    < 0.05,
}
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())

# %% [markdown]
# **What we find.** Training makes every layer's filters smoother than the initial white noise,
# and monotonically so in the deep layers: the epoch-1 checkpoint sits between the initialisation
# and the trained baseline (the checks above). So "noisy filters mean not trained long enough"
# holds in that sense.
#
# The `overfit` run does overfit: it fits its 512 training crops and scores far lower on test.
# Its deep filters are the noisiest of the trained runs. But it also took only 320 optimiser
# steps, fewer than the baseline's first epoch, and the baseline at epoch 1 is already smoother.
# This comparison cannot tell "overfitting" from "not trained long enough": both predict noisy
# filters here. The fair control is a run that takes as many steps as the baseline on the same 512
# crops (40 epochs become about 230); as a zoo recipe it would cost about as much as training the
# baseline, about a minute on 2 CPU cores, and it is not part of the zoo yet.
#
# Its conv1 filters keep the colour pattern of their initialisation (the first picture; exercise 1
# measures how far each run moved), yet by the roughness scores they are as smooth as the trained
# baseline's: the picture and the number answer different questions.
#
# The smooth deep filters of `high_lr` hide many dead units (notebook 06): smooth is not the same
# as healthy. And on 4x4 and 3x3 kernels "noisy" is a coarse notion; the measures are useful as a
# comparison across checkpoints of one architecture, not as an absolute test.

# %% [markdown]
# ## Can filters see the shortcut?
#
# Notebook 03's **baseline** reads font style as a proxy for the script; the **oracle**, trained
# with styles uniform within each script, does not; the **fix** (`dfr_val`) refits only the
# script head, on the baseline's frozen trunk. A filter is a unit's weights, so the first
# question is which units respond to style at all: on the conflict crops the baseline misreads
# and the oracle reads right (`workshop.telling_crops`), paired with their *plain twins* (the same
# crop with only the font swapped to its script's usual style, `data.plain_twin`),
# `activation_change(...).unit` gives each channel's style sensitivity: the mean change of its
# average activation from crop to twin, relative to its level (0: unmoved, 2: at most). Then we
# look at the filters of the most and least style-sensitive conv1 units, and ask whether their
# roughness (the `hf` score above) goes with style sensitivity.

# %%
N_TELLING = 32  # telling conflict crops (the same draw in notebooks 04-07)
baseline = zoo.load("baseline", PRESET, progress=False)  # notebook 03's models, seed 0
oracle = zoo.load("oracle", PRESET, progress=False)
trio = workshop.shortcut_trio(baseline, oracle, ds)
tell = workshop.telling_crops(trio, ds.conflict, n=N_TELLING, seed=0)
plain = data.plain_twin(data.style_twins(ds, "conflict", tell), ds)
crop_images, twin_images = ds.conflict.images[tell[plain.ok]], plain.images[plain.ok]
trunks = {name: p["trunk"] if name == "dfr_val" else p for name, (fn, p) in trio.items()}
sensitivity = {
    name: {k: np.asarray(v) for k, v in activation_change(fn, p, crop_images, twin_images, layers=CONVS).unit.items()}
    for name, (fn, p) in trio.items()
}  # fmt: skip
roughness = {
    name: {k: np.asarray(filter_noisiness(conv_kernel(t, k), measure="hf")) for k in CONVS}
    for name, t in trunks.items()
}
rank_corr = {
    (name, k): float(spearmanr(sensitivity[name][k], roughness[name][k]).statistic)
    for name in trio
    for k in CONVS
}
est = {
    (name, k): (float(np.median(v)), *metrics.bootstrap_interval(v, lambda x: np.median(x, axis=1)))
    for name, layers in sensitivity.items()
    for k, v in layers.items()
}
print(f"{int(plain.ok.sum())} telling crops; per unit style sensitivity, median over units "
      "[95 % interval]; Spearman with the filter's hf roughness")  # fmt: skip
print(f"{'layer':6s}" + "".join(f"{name:>30s}" for name in trio))
for k in CONVS:
    cells = [f"{est[n, k][0]:.2f} [{est[n, k][1]:.2f}, {est[n, k][2]:.2f}] r={rank_corr[n, k]:+.2f}"
             for n in trio]  # fmt: skip
    print(f"{k:6s}" + "".join(f"{c:>30s}" for c in cells))

# %%
SHOW_UNITS = 6
fig = plt.figure(figsize=(13, 5.2))
top, bottom = fig.subfigures(2, 1, height_ratios=[1.1, 1])
ax = top.subplots(1, 1)
for name, colour in (("baseline", "C3"), ("oracle", "C0")):
    ax.scatter(roughness[name]["conv3"], sensitivity[name]["conv3"], s=14, color=colour,
               label=f"{name} (dfr_val: the same units)" if name == "baseline" else name)  # fmt: skip
ax.set(xlabel="filter roughness (hf)", ylabel="style sensitivity",
       title="conv3: each unit's style sensitivity against its filter's roughness")  # fmt: skip
ax.legend(fontsize=8)
axes = bottom.subplots(2, 2 * SHOW_UNITS)
for row, name in enumerate(("baseline", "oracle")):
    order = np.argsort(-sensitivity[name]["conv1"])
    units = [*order[:SHOW_UNITS], *order[-SHOW_UNITS:]]
    images = filter_images(conv_kernel(trunks[name], "conv1"))
    for a, u in zip(axes[row], units, strict=True):
        a.imshow(images[u], interpolation="nearest")
        a.set_xticks([]), a.set_yticks([])
        a.set_title(f"#{u}: {sensitivity[name]['conv1'][u]:.2f}", fontsize=8)
    axes[row, 0].set_ylabel(name, rotation=0, ha="right", va="center")
bottom.suptitle(
    f"conv1 filters of the {SHOW_UNITS} most (left) and least (right) style-sensitive units",
    fontsize=10,
)
plt.show()

# %% [markdown]
# Units deep in the baseline respond more to the font than the oracle's do: in conv3 the
# median unit's style sensitivity is clearly higher (intervals apart), while in conv1 the two
# models are alike. So the trunk does hold a difference. But the filters do not show it: a
# unit's roughness is unrelated to its style sensitivity (|Spearman| below 0.3 in every layer
# and model), and to our eye the most and least style-sensitive conv1 filters look alike.
# Finding the units that carry style takes activations on style-swapped crops, not the
# weights. And the fix's filters are the baseline's, bit for bit: a fix that changes only the
# head is invisible to any view of the filters.

# %%
# NBVAL_CHECK_OUTPUT
same_filters = all(
    np.array_equal(conv_kernel(trunks["dfr_val"], k), conv_kernel(baseline.params, k))
    for k in CONVS
)
claims = {
    "the fix's filters equal the baseline's in every conv layer": same_filters,
    "conv3: the baseline's median unit is more style-sensitive (intervals apart)": est[
        "baseline", "conv3"
    ][1]
    > est["oracle", "conv3"][2],
    "conv1: the two models' intervals overlap": est["baseline", "conv1"][1]
    < est["oracle", "conv1"][2]
    and est["oracle", "conv1"][1] < est["baseline", "conv1"][2],
    "|Spearman(sensitivity, roughness)| < 0.3 in every layer and model": max(
        abs(r) for r in rank_corr.values()
    )
    < 0.3,
}
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())


# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/07_solutions.ipynb`.
#
# 1. **How far did training move the filters?** For each layer and checkpoint, measure the
#    relative distance from the initialisation, `|W - W0| / |W0|` (`conv_kernel` gives `W`).
#    Predict the order of epoch 1, the trained baseline, overfit and high_lr, then check. Which of
#    them took the fewest steps?
# 2. **Calibrate the measure.** Before trusting a roughness score, feed it kernels whose answer
#    you know: a constant kernel, i.i.d. Gaussian noise, a checkerboard (`(-1) ** (i + j)`) and a
#    smooth ramp, each shaped `[4, 4, 3, 16]`. Predict their `tv` and `hf` scores, then check.
# 3. **Smooth is not healthy.** `high_lr`'s deep filters look smooth. Count the conv2 and conv3
#    units of `high_lr` and of the baseline that never fire (maximum activation <= 0) on 256 test
#    crops, with `apply_fn(params, images).activations`. What does that say about reading filter
#    pictures on their own?
