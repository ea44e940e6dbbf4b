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
from scriptlab import data, train, viz, zoo
from scriptlab.model import functional
from scriptlab.interpret.filters import (
    conv_kernel,
    filter_grid,
    filter_images,
    filter_noisiness,
)

viz.style()  # the series' figure style: readable labels, constrained layout
ds = data.load(PRESET, seed=0, progress=False)
base = zoo.load("baseline", PRESET, progress=False)
snaps = dict(zoo.load_epochs("baseline", PRESET, progress=False))
# epoch 0 is rebuilt from the recipe's seed: the zoo's stored epoch-0 snapshot currently equals the
# final weights (reported upstream)
init, _ = functional(train.build_model(base.config, ds))
checkpoints = {
    "init (epoch 0)": init,
    f"baseline epoch {EARLY_EPOCH}": snaps[EARLY_EPOCH],
    "baseline trained": base.params,
    "overfit": zoo.load("overfit", PRESET, progress=False).params,
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
fig, axes = plt.subplots(len(checkpoints), 16, figsize=(12, 0.9 * len(checkpoints) + 0.3))
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
fig, axes = plt.subplots(1, 2, figsize=(12, 2.2))
for ax, name in zip(axes, ("init (epoch 0)", "baseline trained")):
    ch = filter_images(conv_kernel(checkpoints[name], "conv1"), mode="channels")  # [16, 3, 4, 4]
    n, c, k, _ = ch.shape  # one k x k tile per (channel row, filter column), NaN gaps between
    grid = np.pad(
        ch.transpose(1, 0, 2, 3), ((0, 0), (0, 0), (0, 1), (0, 1)), constant_values=np.nan
    )
    grid = grid.transpose(0, 2, 1, 3).reshape(c * (k + 1), n * (k + 1))[:-1, :-1]
    ax.imshow(grid, cmap="RdBu_r", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title(f"{name}: conv1 per channel (rows R, G, B)")
    ax.set_xticks([])
    ax.set_yticks([])
plt.show()

# %% [markdown]
# Deeper filters: every (output, input) 3x3 slice of conv2, one row per output filter (first 16 shown):

# %%
fig, axes = plt.subplots(1, 3, figsize=(15, 4))
for ax, name in zip(axes, ("init (epoch 0)", "baseline trained", "overfit")):
    ax.imshow(
        filter_grid(conv_kernel(checkpoints[name], "conv2"), max_in=16, max_out=16),
        cmap="RdBu_r",
        vmin=0,
        vmax=1,
        interpolation="nearest",
    )
    ax.set_title(f"{name}: conv2 (rows: output, cols: input)")
    ax.axis("off")
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
print(f"{'checkpoint':20s} " + " ".join(f"{layer + ' ' + m:>9s}" for layer, m in COLUMNS))
for name, row in table.items():
    print(f"{name:20s} " + " ".join(f"{row[col]:9.3f}" for col in COLUMNS))

# %%
# NBVAL_CHECK_OUTPUT
# the initialisation is i.i.d. noise, so both scores sit near 1 there (a check of the measure)
assert all(abs(table["init (epoch 0)"][(l, m)] - 1) < 0.15 for l in CONVS for m in ("tv", "hf"))
print("init scores ~1 (white noise): ok")
# trained deep filters are smoother than the initial noise (large margins)
assert all(
    table["baseline trained"][(l, "hf")] < table["init (epoch 0)"][(l, "hf")] - 0.1
    for l in ("conv2", "conv3")
)
print("trained conv2/conv3 smoother than init: ok")

# %% [markdown]
# **What we find** (read the numbers off the table above; they move a little from one training run
# to the next). Training makes every layer's filters smoother than the initial white noise, and
# monotonically so: the epoch-1 checkpoint sits between the initialisation and the trained
# baseline in the deep layers. So "noisy filters mean not trained long enough" holds in that sense.
# The **overfit** run (512 crops, 40 epochs, no dropout or weight decay, far fewer steps than the
# baseline) moved its filters least from their initialisation; compare its rows with the
# baseline's: where its deep filters stay closer to noise, the recipe cannot tell "overfitting"
# from "not trained long enough", since it also took fewer steps. The smooth deep filters of
# `high_lr` hide many dead units (notebook 06): smooth is not the same as healthy. And on 4x4 and
# 3x3 kernels "noisy" is a coarse notion; the
# measures are useful as a comparison across checkpoints of one architecture, not as an absolute test.

# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/07_solutions.ipynb`.
#
# 1. **How far did training move the filters?** For each layer and checkpoint, measure the
#    relative distance from the initialisation, `|W - W0| / |W0|` (`conv_kernel` gives `W`).
#    Predict the order of epoch 1, the trained baseline, overfit and high_lr, then check.
# 2. **Calibrate the measure.** Before trusting a roughness score, feed it kernels whose answer
#    you know: a constant kernel, i.i.d. Gaussian noise, a checkerboard (`(-1) ** (i + j)`) and a
#    smooth ramp, each shaped `[4, 4, 3, 16]`. Predict their `tv` and `hf` scores, then check.
# 3. **Smooth is not healthy.** `high_lr`'s deep filters look smooth. Count the conv2 and conv3
#    units of `high_lr` and of the baseline that never fire (maximum activation <= 0) on 256 test
#    crops, with `apply_fn(params, images).activations`. What does that say about reading filter
#    pictures on their own?
