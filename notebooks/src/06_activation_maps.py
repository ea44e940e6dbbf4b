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
from scriptlab import data, train, viz, zoo
from scriptlab.model import functional
from scriptlab.interpret.activations import (
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
    # (epoch, params) of a zoo run. Epoch 0 is rebuilt from the recipe's seed: the zoo's stored
    # epoch-0 snapshot currently equals the final weights (reported upstream).
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
def show_layer(ax, a, title, columns=16):
    ax.imshow(feature_grid(np.asarray(a), columns=columns), cmap="magma", vmin=0, vmax=1)
    ax.set_title(title)
    ax.axis("off")


fig, axes = plt.subplots(1, 4, figsize=(15, 3.2), gridspec_kw=dict(width_ratios=[1, 2.2, 2.2, 2.2]))
axes[0].imshow(ds.test.images[IMAGE])
axes[0].set_title(f"{ds.scripts[ds.test.script[IMAGE]]} / {ds.styles[ds.test.style[IMAGE]]}")
axes[0].axis("off")
for ax, name, cols in zip(axes[1:], CONVS, (4, 8, 8)):
    show_layer(ax, maps[name][IMAGE], f"{name} {tuple(maps[name].shape[1:])}", columns=cols)
plt.show()


# %% [markdown]
# Explore any crop and layer (the static figure above is the same view for one crop):

# %%
@widgets.interact(
    layer=widgets.Dropdown(options=["conv1", "conv2", "pool2", "conv3", "pool3"], value="conv2"),
    image=widgets.IntSlider(value=IMAGE, min=0, max=15),
)
def explore(layer="conv2", image=IMAGE):
    fig, (a0, a1) = plt.subplots(1, 2, figsize=(12, 3), gridspec_kw=dict(width_ratios=[1, 3]))
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
first = activation_maps(base.apply_fn, snaps[0][1], test[IMAGE : IMAGE + 1], layers=CONVS)
fig, axes = plt.subplots(2, 3, figsize=(14, 4.2), gridspec_kw=dict(width_ratios=[1, 2, 2]))
for j, (name, cols) in enumerate(zip(CONVS, (4, 8, 8))):
    show_layer(axes[0, j], first[name][0], f"epoch 0 (init): {name}", cols)
    show_layer(axes[1, j], maps[name][IMAGE], f"epoch {epochs[-1]} (trained): {name}", cols)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
z = {k: np.asarray(v["zero_fraction"]) for k, v in curve.items()}
h = {k: np.asarray(v["hoyer"]) for k, v in curve.items()}
verdict = {
    k: (
        "sparser"
        if z[k][-1] > z[k][0] + 0.02
        else "denser"
        if z[k][-1] < z[k][0] - 0.02
        else "about the same"
    )
    for k in z
}
print("zero fraction, init -> trained:", verdict)
assert all(z[k][-1] > z[k][0] + 0.05 for k in CONVS), (
    "trained conv activations should be sparser than at init"
)
# and nearly all of that change happens in the first epoch
assert all(z[k][1] - z[k][0] > 0.75 * (z[k][-1] - z[k][0]) for k in CONVS)

# %% [markdown]
# **What we find.** At initialisation about half of every layer's activations are zero (random
# weights, symmetric pre-activations) and the Hoyer sparseness of a map is about 0.5: dense blobs.
# After training the baseline's conv2 and conv3 switch off the large majority of their activations
# (the table above) and each map is far peakier; conv1 changes least. So the seed's direction is
# right, but "gradually" is not: nearly all of the change happens in the first epoch (the cell above
# asserts it); after it the curves are flat, drifting by a percent or two either way. Sparsity here
# is a fast consequence of learning selective features, not a slow trend.

# %% [markdown]
# ## Claim 2: dead filters and the learning rate
#
# A filter is *dead* when its activation map is blank (max <= 0) for **every** crop of the split:
# `dead_filters` keeps only each image's per-channel maximum while it streams the 2,000 test crops
# through `lax.map` chunks, so memory does not grow with the split.

# %%
dead = {
    name: dead_filters(m.apply_fn, m.params, test, layers=CONVS)
    for name, m in (("baseline", base), ("high_lr", hot))
}

# %%
print(f"{'model':9s} {'lr':>7s} " + " ".join(f"{k:>7s}" for k in CONVS) + "   total")
for name, m in (("baseline", base), ("high_lr", hot)):
    d = dead[name].dead
    n = sum(int(d[k].sum()) for k in CONVS)
    print(
        f"{name:9s} {m.config.lr:7.0e} "
        + " ".join(f"{int(d[k].sum()):3d}/{d[k].size:<3d}" for k in CONVS)
        + f"  {n:3d}/{sum(d[k].size for k in CONVS)}"
    )

# %%
# NBVAL_CHECK_OUTPUT
# How many filters die moves from one training run to the next; whether they die does not.
n_dead = {name: {k: int(dead[name].dead[k].sum()) for k in CONVS} for name in dead}
claims = {
    "the baseline has no dead filter": sum(n_dead["baseline"].values()) == 0,
    "high_lr kills over a tenth of its conv filters": sum(n_dead["high_lr"].values())
    > 0.1 * sum(dead["high_lr"].dead[k].size for k in CONVS),
}
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())

# %%
hot_maps = activation_maps(
    hot.apply_fn, hot.params, test[IMAGE : IMAGE + 1], layers=("conv2", "conv3")
)
fig, axes = plt.subplots(1, 2, figsize=(12, 2.8))
for ax, name in zip(axes, ("conv2", "conv3")):
    show_layer(
        ax,
        hot_maps[name][0],
        f"high_lr {name}: {int(dead['high_lr'].dead[name].sum())} channels dead on all test crops",
        16,
    )
plt.show()

# %% [markdown]
# When do they die? The same `sparsity_curve` over the `high_lr` snapshots also returns every
# channel's peak activation per epoch (on the first crops only, so it can only over-count dead
# channels compared with the whole split):

# %%
hot_epochs, hot_curve = sparsity_curve(
    hot.apply_fn, snapshots(hot), test[:N_SPARSITY], layers=CONVS
)
_, base_curve = sparsity_curve(base.apply_fn, snaps, test[:N_SPARSITY], layers=CONVS)
print("epoch  " + "  ".join(f"{'high_lr ' + k:>13s}" for k in CONVS) + "   baseline (all layers)")
for t, e in enumerate(hot_epochs):
    n_base = sum(int((np.asarray(base_curve[k]["peak"][t]) <= 0).sum()) for k in CONVS)
    print(
        f"{e:5d}  "
        + "  ".join(f"{int((np.asarray(hot_curve[k]['peak'][t]) <= 0).sum()):13d}" for k in CONVS)
        + f"   {n_base:10d}"
    )

# %% [markdown]
# **What we find.** Over all 2,000 test crops the baseline has **no** dead filter in any layer and
# at any epoch. The `high_lr` run (lr 1e-2, no warm-up, otherwise the same recipe) ends with dozens
# of its 112 conv filters dead, in conv2 and conv3 and none in conv1 (the exact count moves from one
# training run to the next), and most of them die in the first epoch: the first large Adam steps
# push their biases and weights to where the ReLU never opens, and a dead ReLU gets no gradient to
# come back. After epoch 1 the counts only drift by a few channels, through weight decay and the
# changing inputs below them. The seed's claim holds here.

# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/06_solutions.ipynb`.
#
# 1. **Dead on test, dead everywhere?** Run `dead_filters` for `high_lr` on the conflict split
#    (every script in fonts it never trained with) and compare the dead channels with those found
#    on test. Predict first: is "dead" a property of the weights or of the data?
# 2. **Why a dead filter cannot come back.** Take `jax.grad` of the script cross-entropy of
#    `high_lr` on 256 test crops with respect to its parameters, and look at the conv2 and conv3
#    kernel gradients channel by channel. Predict what the dead channels' gradients are, and what
#    that means for the rest of training.
