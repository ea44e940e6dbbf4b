# %% [markdown]
# # 09 · Occlusion sensitivity: which regions does the score need?
#
# > *Blocking a region of an image and running it through a CNN will output scores when part of the
# > image is occluded. We can then sweep this occlusion through the image to see what part matters
# > the most by looking at regions that result in the smallest score for the class of interest. A plot
# > of these class scores as a function of position of occlusion produces an inverse heat map.*
# > ("Understanding Convolutional Neural Networks", after Zeiler & Fergus 2014)
#
# `scriptlab.interpret.occlusion.occlusion` slides a window (size, stride, fill: grey, the crop's mean
# colour, or its blur) over every crop and scores all windows of all crops in **one** jitted call
# (`lax.map` over vmapped chunks, memory bounded by `batch_size`). It returns Zeiler & Fergus's
# inverse heat map (the score per window position) and a per-pixel heat map (the mean drop of the
# score over the windows covering the pixel). We then score the heat maps against the ground-truth
# ink masks with the **same** localisation scores as the saliency notebook (05), so the two families
# can be compared.

# %%
# Configuration
PRESET = "workshop"
PATCH, STRIDE, FILL = 8, 2, "grey"
N_LOCAL = 48  # test crops for the localisation table
CROP = 5

# %%
import numpy as np
import matplotlib.pyplot as plt
import ipywidgets as widgets
from scriptlab import data, viz, zoo
from scriptlab.interpret.occlusion import occlusion, occlusion_localisation
from scriptlab.interpret.localisation import localisation_table

viz.style()  # the series' figure style: readable labels, constrained layout
ds = data.load(PRESET, seed=0, progress=False)
test = data.as_float(ds.test.images)
base = zoo.load("baseline", PRESET, progress=False)
targets = np.asarray(ds.test.script)

# %%
# NBVAL_CHECK_OUTPUT
res = occlusion(
    base.apply_fn, base.params, test[:8], targets[:8], patch=PATCH, stride=STRIDE, fill=FILL
)
print(
    "windows per crop:",
    res.scores.shape[1:],
    "=",
    res.scores.shape[1] * res.scores.shape[2],
    "| heat map",
    res.heatmap.shape[1:],
)


# %%
def overlay(ax, img, heat, title):
    ax.imshow(img)
    m = float(np.abs(heat).max()) or 1.0
    ax.imshow(heat, cmap="RdBu_r", vmin=-m, vmax=m, alpha=0.6)
    ax.set_title(title, fontsize=viz.SMALL)
    ax.axis("off")


fig, axes = plt.subplots(4, 3, figsize=(12, 6.0))
for a, i in enumerate(range(4)):
    axes[a, 0].imshow(ds.test.images[i])
    axes[a, 0].axis("off")
    label = f"{ds.scripts[targets[i]]} / {ds.styles[ds.test.style[i]]}"
    axes[a, 0].set_title(f"{label}: p = {float(res.base[i]):.2f}", fontsize=viz.SMALL)
    axes[a, 1].imshow(np.asarray(res.scores[i]), cmap="viridis", vmin=0, vmax=1)
    axes[a, 1].axis("off")
    axes[a, 1].set_title("p(true script) with the window at each position", fontsize=viz.SMALL)
    overlay(
        axes[a, 2],
        ds.test.images[i],
        np.asarray(res.heatmap[i]),
        "drop in p per pixel (red: needed)",
    )
plt.show()


# %% [markdown]
# Patch size, stride and fill change the picture; explore them (stride 1 at 8x8 is 1,425 windows, still one call):

# %%
@widgets.interact(
    crop=widgets.IntSlider(CROP, 0, 63),
    patch=widgets.IntSlider(PATCH, 2, 24, 2),
    stride=widgets.IntSlider(STRIDE, 1, 8),
    fill=["grey", "mean", "blur"],
    output=["probability", "logit"],
)
@viz.busy(message="occluding every window position ...")
def explore(crop=CROP, patch=PATCH, stride=STRIDE, fill=FILL, output="probability"):
    r = occlusion(
        base.apply_fn,
        base.params,
        test[crop : crop + 1],
        targets[crop],
        patch=patch,
        stride=stride,
        fill=fill,
        output=output,
    )
    fig, axes = plt.subplots(1, 3, figsize=(11, 1.9))
    axes[0].imshow(ds.test.images[crop])
    axes[0].imshow(ds.test.masks[crop], cmap="gray", alpha=0.25)
    axes[0].axis("off")
    axes[0].set_title(
        f"{ds.scripts[targets[crop]]}: {output} {float(r.base[0]):.2f}", fontsize=viz.SMALL
    )
    axes[1].imshow(np.asarray(r.scores[0]), cmap="viridis")
    axes[1].axis("off")
    axes[1].set_title(f"{r.scores.shape[1]}x{r.scores.shape[2]} windows", fontsize=viz.SMALL)
    overlay(axes[2], ds.test.images[crop], np.asarray(r.heatmap[0]), "drop per pixel")
    plt.show()


# %%
fig, axes = plt.subplots(1, 4, figsize=(13, 2.1))
axes[0].imshow(ds.test.images[CROP])
axes[0].axis("off")
axes[0].set_title("crop", fontsize=viz.SMALL)
for ax, fill in zip(axes[1:], ("grey", "mean", "blur")):
    r = occlusion(
        base.apply_fn,
        base.params,
        test[CROP : CROP + 1],
        targets[CROP],
        patch=PATCH,
        stride=STRIDE,
        fill=fill,
    )
    overlay(ax, ds.test.images[CROP], np.asarray(r.heatmap[0]), f"fill = {fill}")
plt.show()

# %% [markdown]
# ## Occluding for a unit instead of a class
#
# `layer=` scores a channel of an inner layer (its maximum over positions) instead of a class: which
# regions does this conv3 channel need?

# %%
ch = int(
    np.argmax(
        np.asarray(base.apply_fn(base.params, test[CROP : CROP + 1]).activations["conv3"][0]).max(
            (0, 1)
        )
    )
)
r = occlusion(
    base.apply_fn, base.params, test[CROP : CROP + 1], ch, patch=6, stride=1, layer="conv3"
)
fig, axes = plt.subplots(1, 2, figsize=(8, 2.1))
axes[0].imshow(ds.test.images[CROP])
axes[0].axis("off")
overlay(
    axes[1], ds.test.images[CROP], np.asarray(r.heatmap[0]), f"conv3 channel {ch}: drop of its max"
)
plt.show()

# %% [markdown]
# ## Localisation against the ink, next to the saliency family
#
# Same scores as notebook 05 (`scriptlab.interpret.localisation`): **ink mass** is the share of the
# map's (positive) mass on glyph ink, against the ink fraction (what an uninformative map gets);
# **pointing** is whether the map's peak lands on ink (within 1 pixel), against its chance rate.

# %%
x, m, t = test[:N_LOCAL], ds.test.masks[:N_LOCAL], targets[:N_LOCAL]
rows = []
for fill in ("grey", "blur"):
    r = occlusion(base.apply_fn, base.params, x, t, patch=PATCH, stride=STRIDE, fill=fill)
    s = {k: float(v.mean()) for k, v in occlusion_localisation(r.heatmap, m, tolerance=1).items()}
    rows.append(
        dict(
            method=f"occlusion {PATCH}x{PATCH}/{STRIDE} {fill}",
            ink_mass=s["ink_mass"],
            chance=s["ink_fraction"],
            lift=s["ink_mass"] / s["ink_fraction"],
            pointing=s["pointing"],
            pointing_chance=s["pointing_chance"],
        )
    )
rows += localisation_table(
    base.apply_fn,
    base.params,
    x,
    m,
    t,
    methods=("gradient", "integrated_gradients", "grad_cam"),
    tolerance=1,
    options={"integrated_gradients": {"steps": 16}},
)
columns = [
    ("method", "method", "26s"),
    ("ink mass", "ink_mass", "8.3f"),
    ("chance", "chance", "7.3f"),
    ("lift", "lift", "5.2f"),
    ("pointing", "pointing", "8.3f"),
    ("chance", "pointing_chance", "7.3f"),
]
print(viz.text_table(rows, columns))
blur = next(r for r in rows if r["method"].endswith("blur"))
assert blur["lift"] > 1.5 and blur["pointing"] > blur["pointing_chance"], (
    "blur-fill occlusion should localise on ink"
)

# %% [markdown]
# **What we find** (the numbers are in the table above and move a little between training runs).
# The fill matters more than anything else. A **grey** 8x8 patch is a strong, unnatural edit (it
# also shifts the per-crop colour statistics that the model standardises by), so the score also
# drops where the patch covers background, and its map is better than chance on the ink but
# behind the blur fill. A **blurred** patch removes the strokes but keeps the colours, and its map
# lands on the glyphs, on a par with Integrated Gradients in ink mass and ahead of plain gradients;
# the pointing game can favour the gradient methods, whose single sharpest pixel is usually on a
# stroke. The occlusion map is blurred by its own 8x8 window, which caps its ink mass. So the
# seed's use, "to verify that the CNN is placing emphasis on the right areas", works here best with
# a blur fill; the grey fill of the classic recipe finds the ink less reliably, because its map
# mixes the glyphs with where the network dislikes grey squares.

# %% [markdown]
# ## One call, not a loop
#
# The first way one writes occlusion is a Python loop: occlude one window, run one forward,
# repeat. Here is that loop (each step jitted), next to the single batched call, on one crop. Both
# give the same map; the loop pays a dispatch and a batch-of-one forward per window. The times
# below are the best of five runs each, on whatever else this machine is doing: the ratio says how
# much the batching buys *here*, and on a busy machine it can shrink towards 1.
# `benchmarks/bench_occlusion.py` measures it properly, against eager JAX and PyTorch loops too.

# %%
import time
import jax
import jax.numpy as jnp

x0, t0 = jnp.asarray(test[CROP]), int(targets[CROP])


@jax.jit
def one_window(r, c):  # the per-window reference: occlude one grey window, one forward
    x = jax.lax.dynamic_update_slice(x0, jnp.full((PATCH, PATCH, 3), 0.5), (r, c, 0))
    return jax.nn.softmax(base.apply_fn(base.params, x[None]).script[0])[t0]


windows = [
    (r, c) for r in range(0, 32 - PATCH + 1, STRIDE) for c in range(0, 64 - PATCH + 1, STRIDE)
]
one_call = lambda: (
    occlusion(
        base.apply_fn, base.params, test[CROP : CROP + 1], t0, patch=PATCH, stride=STRIDE
    ).scores
)
one_window(0, 0).block_until_ready(), one_call().block_until_ready()  # compile both first


def best_of(fn, repeat=5):
    """The fastest of ``repeat`` runs, in seconds, and the last result: the least disturbed time."""
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


t_loop, looped = best_of(lambda: np.array([one_window(r, c) for r, c in windows]))
t_call, batched = best_of(lambda: np.asarray(one_call()).ravel())
assert np.allclose(looped, batched, atol=1e-5), "the batched map must equal the per-window loop"
print(
    f"{len(windows)} windows, same map (best of 5) | loop {t_loop:.3f} s, one call {t_call:.3f} s"
)
print(f"the batched call is {t_loop / t_call:.1f}x faster here")

# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/09_solutions.ipynb`.
#
# 1. **A smaller window.** Occlude 32 test crops with a 4x4 blur window (stride 2) and compare the
#    ink mass and pointing score with the 8x8 window, using `occlusion_localisation`. Predict first:
#    does a finer window find the ink better, or does it miss strokes wider than itself?
# 2. **A window wider than a letter.** Repeat with 16x16 (stride 4). Predict what happens to the
#    pointing score against its chance level, and why.
