# %% [markdown]
# # 06 · Activation maps: from dense blobs to sparse codes, and dead filters
#
# > *Activation maps: the result of a convolution of a layer with a kernel. For networks with ReLU
# > activations, the activations start out as dense blobs that gradually become sparse with more
# > training. This technique can be used to watch out for dead-filters (filters that result in a
# > blank activation map for all inputs) and are manifestations of high learning rates.*
# > ("Understanding Convolutional Neural Networks")
#
# Two claims, both measured here with `scriptlab.interpret.activations`:
#
# 1. **Sparsity grows with training.** `sparsity_curve` runs every epoch snapshot of the baseline
#    (`zoo.load_epochs`) over the same test crops in one jitted `lax.map` over epochs, and reports the
#    share of zero activations and the Hoyer sparseness of each feature map.
# 2. **Dead filters come from too-high learning rates.** `dead_filters` takes the maximum of every
#    channel over the *whole* test split (chunked, one jitted pass) and flags the channels that never
#    fire. We compare the baseline (lr 4e-3 with warm-up) with `high_lr` (lr 1e-2, no warm-up).

# %%
# Configuration
PRESET = "workshop"
N_SPARSITY = 256  # test crops for the sparsity curves
IMAGE = 3  # test crop shown in the maps

# %%
import numpy as np
import matplotlib.pyplot as plt
import ipywidgets as widgets
from scriptlab import data, metrics, train, viz, workshop, zoo
from scriptlab.model import functional
from scriptlab.interpret.activations import (
    activation_change,
    activation_maps,
    sparsity_curve,
    dead_filters,
    feature_grid,
)

viz.style()
ds = data.load(PRESET, seed=0, progress=False)
test = data.as_float(ds.test.images)
base = zoo.load("baseline", PRESET, progress=False)
hot = zoo.load("high_lr", PRESET, progress=False)
CONVS = ("conv1", "conv2", "conv3")


def snapshots(m):
    # (epoch, params) of a zoo run; epoch 0, the initialisation, is rebuilt from the recipe's seed
    init, _ = functional(train.build_model(m.config, ds))
    return [(0, init)] + [s for s in zoo.load_epochs(m.name, PRESET, progress=False) if s[0] > 0]


# %% [markdown]
# ## Every layer's feature maps in one pass
#
# `activation_maps` returns every named activation for a batch in one jitted call. Each tile is one
# channel, scaled to its own maximum (black: zero, i.e. the ReLU is off).

# %%
# NBVAL_CHECK_OUTPUT
maps = activation_maps(base.apply_fn, base.params, test[:16])
for name, a in maps.items():
    print(f"{name:6s} {tuple(a.shape)}")


# %%
def show_layer(ax, a, title, columns=8, dead=None):
    """One crop's feature maps [h, w, C] as tiles; channels flagged in `dead` get a cyan frame."""
    ax.imshow(feature_grid(np.asarray(a), columns=columns), cmap="magma", vmin=0, vmax=1)
    h, w = np.asarray(a).shape[:2]
    for c in np.flatnonzero(np.asarray(dead)) if dead is not None else ():
        r, q = divmod(int(c), columns)
        box = plt.Rectangle((q * (w + 1) - 0.5, r * (h + 1) - 0.5), w, h, fill=False, ec="c", lw=2)
        ax.add_patch(box)
    ax.set_title(title)
    ax.axis("off")


# one row per layer, 8 tiles a row, so that a conv3 map (8x16) is still about 60 px tall
fig, axes = plt.subplots(
    3, 2, figsize=(15, 13), gridspec_kw=dict(width_ratios=[1, 5], height_ratios=[2, 4, 8])
)
axes[0, 0].imshow(ds.test.images[IMAGE])
axes[0, 0].set_title(f"{ds.scripts[ds.test.script[IMAGE]]} / {ds.styles[ds.test.style[IMAGE]]}")
for ax in axes[:, 0]:
    ax.axis("off")
for ax, name in zip(axes[:, 1], CONVS):
    show_layer(
        ax,
        maps[name][IMAGE],
        f"{name}: {maps[name].shape[-1]} channels of {tuple(maps[name].shape[1:3])}",
    )
plt.show()


# %% [markdown]
# Explore any crop and layer (the static figure above is the same view for one crop):

# %%
@widgets.interact(
    layer=widgets.Dropdown(options=["conv1", "conv2", "pool2", "conv3", "pool3"], value="conv2"),
    image=widgets.IntSlider(value=IMAGE, min=0, max=15),
)
def explore(layer="conv2", image=IMAGE):
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(13, 8), gridspec_kw=dict(width_ratios=[1, 4]))
    a0.imshow(ds.test.images[image])
    a0.axis("off")
    show_layer(a1, maps[layer][image], layer, columns=8)
    plt.show()


# %% [markdown]
# ## Claim 1: do activations go from dense blobs to sparse?
#
# One jitted call maps the 5 snapshots (epoch 0 = initialisation) over the same crops.
# `zero_fraction` is the share of activations the ReLU switches off; `hoyer` is Hoyer's sparseness of
# each feature map over its positions (0: a flat blob, 1: a single spike), averaged over channels.

# %%
snaps = snapshots(base)
epochs, curve = sparsity_curve(base.apply_fn, snaps, test[:N_SPARSITY], layers=CONVS + ("dense",))
for stat, title in (("zero_fraction", "share of zero activations"), ("hoyer", "Hoyer sparseness")):
    print(f"{title}\nepoch " + " ".join(f"{k:>7s}" for k in curve))
    for t, e in enumerate(epochs):
        print(f"{e:5d} " + " ".join(f"{float(v[stat][t]):7.3f}" for v in curve.values()))

# %%
fig, axes = plt.subplots(1, 2, figsize=(10, 3))
for k, v in curve.items():
    axes[0].plot(epochs, v["zero_fraction"], "o-", label=k)
    axes[1].plot(epochs, v["hoyer"], "o-", label=k)
axes[0].set(xlabel="epoch", ylabel="share of zero activations", title="ReLU sparsity")
axes[1].set(xlabel="epoch", ylabel="Hoyer sparseness per map", title="blob (0) vs spike (1)")
axes[0].legend()
plt.show()

# %%
# the first 16 channels of each layer, at initialisation and trained, 4 tiles a row
first = activation_maps(base.apply_fn, snaps[0][1], test[IMAGE : IMAGE + 1], layers=CONVS)
fig, axes = plt.subplots(3, 2, figsize=(13, 10))
for j, name in enumerate(CONVS):
    show_layer(axes[j, 0], first[name][0, ..., :16], f"epoch 0 (init): {name}", 4)
    show_layer(axes[j, 1], maps[name][IMAGE, ..., :16], f"epoch {epochs[-1]} (trained): {name}", 4)
plt.show()

# %% [markdown]
# How sure are these shares? The table averages 256 crops; a **bootstrap** over the crops
# (`metrics.bootstrap_interval`: resample the 256 crops with replacement 1,000 times and keep the
# middle 95 % of the resampled means) gives a 95 % interval for each layer's change from
# initialisation to the trained baseline. Every interval in this series is computed this way.

# %%
# NBVAL_CHECK_OUTPUT
x_curve = test[:N_SPARSITY]
per_crop = {
    when: {
        k: np.asarray((v <= 0).mean(axis=tuple(range(1, v.ndim))))
        for k, v in activation_maps(base.apply_fn, p, x_curve, layers=CONVS + ("dense",)).items()
    }
    for when, p in (("init", snaps[0][1]), ("trained", snaps[-1][1]))
}
change = {}
for k in curve:
    d = per_crop["trained"][k] - per_crop["init"][k]
    change[k] = (d.mean(), *metrics.bootstrap_interval(d))
    print(
        f"{k:6s} zero share {d.mean():+.2f} (95 % interval {change[k][1]:+.2f} to {change[k][2]:+.2f})"
    )
# every layer is sparser after training, with the whole interval above zero
assert all(change[k][1] > 0 for k in curve)

# %%
# NBVAL_CHECK_OUTPUT
z = {k: np.asarray(v["zero_fraction"]) for k, v in curve.items()}
h = {k: np.asarray(v["hoyer"]) for k, v in curve.items()}
claims = {
    "init: about half of every layer is zero": all(abs(z[k][0] - 0.5) < 0.1 for k in z),
    "conv2 and conv3 end with over 80 % zeros": all(z[k][-1] > 0.8 for k in ("conv2", "conv3")),
    "conv1 changes least of the conv layers": min(CONVS, key=lambda k: z[k][-1] - z[k][0])
    == "conv1",
    "every conv map is peakier (Hoyer up by > 0.1)": all(h[k][-1] > h[k][0] + 0.1 for k in CONVS),
    "over 3/4 of the change happens in epoch 1": all(
        z[k][1] - z[k][0] > 0.75 * (z[k][-1] - z[k][0]) for k in CONVS
    ),
    "after epoch 1 no layer moves by more than 0.05": all(np.ptp(z[k][1:]) < 0.05 for k in z),
}
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())

# %% [markdown]
# **What we find.** At initialisation about half of every layer's activations are zero (random
# weights, symmetric pre-activations) and the Hoyer sparseness of a map is about 0.5: dense blobs.
# After training the baseline's conv2 and conv3 switch off over 80 % of their activations (the
# table above; the intervals show the change is far larger than its sampling error) and each map
# is peakier; conv1 changes least. So the seed's direction is
# right, but "gradually" is not: over three quarters of the change happens in the first epoch (the
# cell above checks each of these statements); after it the curves are flat, drifting by a few
# hundredths either way. Sparsity here
# is a fast consequence of learning selective features, not a slow trend.

# %% [markdown]
# ## Claim 2: dead filters and the learning rate
#
# A filter is *dead* when its activation map is blank (max <= 0) for **every** crop of the split:
# `dead_filters` keeps only each image's per-channel maximum while it streams the 2,000 test crops
# through `lax.map` chunks, so memory does not grow with the split.

# %%
runs = {"baseline": base, "high_lr": hot}
runs |= {f"baseline seed {i}": zoo.load("baseline", PRESET, seed=i, progress=False) for i in (1, 2)}
dead = {name: dead_filters(m.apply_fn, m.params, test, layers=CONVS) for name, m in runs.items()}

# %%
print(f"{'model':16s} {'lr':>7s} " + " ".join(f"{k:>7s}" for k in CONVS) + "   total")
for name, m in runs.items():
    d = dead[name].dead
    n = sum(int(d[k].sum()) for k in CONVS)
    print(
        f"{name:16s} {m.config.lr:7.0e} "
        + " ".join(f"{int(d[k].sum()):3d}/{d[k].size:<3d}" for k in CONVS)
        + f"  {n:3d}/{sum(d[k].size for k in CONVS)}"
    )

# %%
# NBVAL_CHECK_OUTPUT
n_dead = {name: {k: int(dead[name].dead[k].sum()) for k in CONVS} for name in dead}
claims = {
    "no baseline seed has a dead filter": all(
        sum(v.values()) == 0 for name, v in n_dead.items() if name != "high_lr"
    ),
    "high_lr kills over a tenth of its conv filters": sum(n_dead["high_lr"].values())
    > 0.1 * sum(dead["high_lr"].dead[k].size for k in CONVS),
    "high_lr: none in conv1, some in conv2 and conv3": n_dead["high_lr"]["conv1"] == 0
    and min(n_dead["high_lr"]["conv2"], n_dead["high_lr"]["conv3"]) > 0,
}
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())

# %% [markdown]
# The same crop through `high_lr`; a cyan frame marks each channel that is dead on every test crop
# (blank here, and on the other 1,999 crops too). A blank tile without a frame is a channel that is
# silent on this crop only.

# %%
hot_maps = activation_maps(
    hot.apply_fn, hot.params, test[IMAGE : IMAGE + 1], layers=("conv2", "conv3")
)
fig, axes = plt.subplots(2, 1, figsize=(13, 11), gridspec_kw=dict(height_ratios=[4, 8]))
for ax, name in zip(axes, ("conv2", "conv3")):
    show_layer(
        ax,
        hot_maps[name][0],
        f"high_lr {name}: {n_dead['high_lr'][name]} channels dead on all test crops (framed)",
        8,
        dead=dead["high_lr"].dead[name],
    )
plt.show()

# %% [markdown]
# When do they die? The same `sparsity_curve` over the `high_lr` snapshots also returns every
# channel's peak activation per epoch (on the first 256 crops only, so it can only over-count dead
# channels compared with the whole split):

# %%
hot_epochs, hot_curve = sparsity_curve(
    hot.apply_fn, snapshots(hot), test[:N_SPARSITY], layers=CONVS
)
_, base_curve = sparsity_curve(base.apply_fn, snaps, test[:N_SPARSITY], layers=CONVS)
silent = {k: np.asarray(hot_curve[k]["peak"]) <= 0 for k in CONVS}  # [epoch, channel]
print("epoch  " + "  ".join(f"{'high_lr ' + k:>13s}" for k in CONVS) + "   baseline (all layers)")
for t, e in enumerate(hot_epochs):
    n_base = sum(int((np.asarray(base_curve[k]["peak"][t]) <= 0).sum()) for k in CONVS)
    print(
        f"{e:5d}  "
        + "  ".join(f"{int(silent[k][t].sum()):13d}" for k in CONVS)
        + f"   {n_base:10d}"
    )

# %%
# NBVAL_CHECK_OUTPUT
# a channel "comes back" when it is silent on these crops at one epoch and fires at a later one
revived = {k: int((silent[k][1:-1] & ~silent[k][-1]).any(0).sum()) for k in CONVS}
claims = {
    "the baseline has no silent channel at any epoch": all(
        (np.asarray(base_curve[k]["peak"]) > 0).all() for k in CONVS
    ),
    "high_lr: most channels silent at the end were already silent after epoch 1": all(
        (silent[k][1] & silent[k][-1]).sum() > 0.5 * silent[k][-1].sum() for k in ("conv2", "conv3")
    ),
    "high_lr: some channels silent at epoch 1-3 fire again at the end": sum(revived.values()) > 0,
}
print("channels silent at epoch 1, 2 or 3 that fire at the end:", revived)
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())

# %% [markdown]
# **What we find.** Over all 2,000 test crops none of the three baseline seeds has a dead filter,
# and on the first 256 crops the baseline has no silent channel at any epoch. The `high_lr` run
# (lr 1e-2, no warm-up, otherwise the same recipe; the zoo trains it with one seed, so its count is
# one run's, not an estimate with an interval) ends with over a tenth of its 112 conv filters
# dead, in conv2 and conv3 and none in conv1, and most of them are already silent after the first
# epoch: the first large Adam steps push their biases and weights to where the ReLU never opens.
#
# Dead is not forever, though: the epoch table shows channels coming back (the check above counts
# them). A dead ReLU gets no gradient *through itself*, so its own kernel and bias stop moving, but
# its input is the output of the layers below, which keep training; when they change, its
# pre-activation can cross zero again. Dead filters are a real symptom of a too-high learning rate,
# as the seed says, but "dead" describes the weights at one moment, not a permanent state.

# %% [markdown]
# ## Can activation maps see the shortcut?
#
# Notebook 03's **baseline** reads font style as a proxy for the script; the **oracle**, trained
# with styles uniform within each script, does not; the **fix** (`dfr_val`) refits only the
# script head, on the baseline's frozen trunk. On the conflict crops the baseline misreads and
# the oracle reads right (`workshop.telling_crops`), paired with their *plain twins* (the same crop
# with only the font swapped to the style its true script usually has, `data.plain_twin`),
# `activation_change` measures how far each layer moves: ||a(crop) - a(twin)|| relative to the
# mean size of the two (0: unchanged, 2: at most). As a yardstick, the same measure between each
# crop and the next telling crop (other text, often another script and style).

# %%
N_TELLING = 32  # telling conflict crops (the same draw in notebooks 04-07)
LAYERS = CONVS + ("pool3", "dense")
baseline = zoo.load("baseline", PRESET, progress=False)  # notebook 03's models, seed 0
oracle = zoo.load("oracle", PRESET, progress=False)
trio = workshop.shortcut_trio(baseline, oracle, ds)
tell = workshop.telling_crops(trio, ds.conflict, n=N_TELLING, seed=0)
plain = data.plain_twin(data.style_twins(ds, "conflict", tell), ds)
tell, twin_images = tell[plain.ok], plain.images[plain.ok]
crop_images = ds.conflict.images[tell]
other_images = np.roll(crop_images, 1, axis=0)  # each crop against another telling crop
style_change = {
    name: activation_change(fn, p, crop_images, twin_images, layers=LAYERS).crop
    for name, (fn, p) in trio.items()
}
text_change = {
    name: activation_change(fn, p, crop_images, other_images, layers=LAYERS).crop
    for name, (fn, p) in trio.items()
}
est = {
    (name, k): (float(np.mean(v[k])), *metrics.bootstrap_interval(np.asarray(v[k])))
    for name, v in style_change.items()
    for k in LAYERS
}
print(f"{len(tell)} telling crops; activation change crop -> plain twin, 95 % intervals "
      "(crop -> another crop in brackets)")  # fmt: skip
print(f"{'layer':6s}" + "".join(f"{name:>30s}" for name in trio))
for k in LAYERS:
    cells = [f"{est[n, k][0]:.2f} [{est[n, k][1]:.2f}, {est[n, k][2]:.2f}] ({float(np.mean(text_change[n][k])):.2f})"
             for n in trio]  # fmt: skip
    print(f"{k:6s}" + "".join(f"{c:>30s}" for c in cells))

# %%
fig, ax = plt.subplots(figsize=(9, 3))
for name, colour in zip(style_change, ("C3", "C1", "C0"), strict=True):
    low_high = np.array([est[name, k][1:] for k in LAYERS]).T
    mean = [est[name, k][0] for k in LAYERS]
    ls = ":" if name == "dfr_val" else "-"
    ax.errorbar(np.arange(len(LAYERS)), mean, yerr=np.abs(low_high - mean), fmt="o" + ls, capsize=3,
                color=colour, label=f"{name}: crop -> plain twin" + (" (= baseline)" if name == "dfr_val" else ""))  # fmt: skip
    ax.plot([float(np.mean(text_change[name][k])) for k in LAYERS], "x--", color=colour, alpha=0.6,
            label=f"{name}: crop -> another crop")  # fmt: skip
ax.set_xticks(np.arange(len(LAYERS)), LAYERS)
ax.set(ylabel="relative activation change", title="what the font alone does to each layer")
ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
plt.show()

# %% [markdown]
# The first layer cannot tell the models apart: in conv1 the font moves the baseline and the
# oracle alike (both start from the same initial weights, seed 0). From conv2 on, the font
# moves the baseline more than the oracle, crop by crop, and the gap grows with every layer; it
# is largest by far in the dense layer, where the font alone moves the baseline's
# representation by over three quarters of what a different crop does and the oracle's by
# under two thirds (the per-crop differences below). The fix's activations are the baseline's,
# bit for bit in every layer: its new head sits after them, so a view of activations cannot
# see a fix that changes only the head.

# %%
# NBVAL_CHECK_OUTPUT
same_trunk = all(
    np.array_equal(style_change["dfr_val"][k], style_change["baseline"][k]) for k in LAYERS
)
diff = {
    k: np.asarray(style_change["baseline"][k]) - np.asarray(style_change["oracle"][k])
    for k in LAYERS
}
diff_ci = {k: metrics.bootstrap_interval(v) for k, v in diff.items()}
for k, v in diff.items():
    print(
        f"{k:6s} baseline - oracle, per crop: {v.mean():+.3f} [{diff_ci[k][0]:+.3f}, {diff_ci[k][1]:+.3f}]"
    )
share = {
    n: est[n, "dense"][0] / float(np.mean(text_change[n]["dense"])) for n in ("baseline", "oracle")
}
print("dense: font change / change to another crop:", {n: round(v, 2) for n, v in share.items()})
claims = {
    "the fix's activations equal the baseline's in every layer": same_trunk,
    "conv1: baseline - oracle interval contains 0": diff_ci["conv1"][0] < 0 < diff_ci["conv1"][1],
    "conv2 to dense: the baseline moves more (every interval above 0)": all(
        diff_ci[k][0] > 0 for k in LAYERS[1:]
    ),
    "the mean difference grows with every layer after conv1": all(
        diff[a].mean() < diff[b].mean() for a, b in zip(LAYERS[1:], LAYERS[2:])
    ),
    "dense: the font moves the baseline by over 3/4 of another crop, the oracle by under 2/3": share[
        "baseline"
    ]
    > 0.75
    and share["oracle"] < 2 / 3,
}
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())


# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/06_solutions.ipynb`.
#
# 1. **Dead on test, dead everywhere?** Run `dead_filters` for `high_lr` on the conflict split
#    (every script in fonts it never trained with) and compare the dead channels with those found
#    on test. Predict first: is "dead" a property of the weights or of the data?
# 2. **What a dead filter's gradient is.** Take `jax.grad` of the script cross-entropy of
#    `high_lr` on 256 test crops with respect to its parameters, and look at the conv2 and conv3
#    kernel gradients channel by channel. Predict what the dead channels' gradients are. If they
#    are zero, how can the epoch table above still show channels coming back?
