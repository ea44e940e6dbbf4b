# %% [markdown]
# # 01 · The dataset: ten scripts, five font styles, one nuisance
#
# > *Let say we want to classify script from the image with text ... The output is the script of the
# > image text like latin, chinese, japanese, etc. ... Some layers might be "wasted" in learning the
# > color and font-style of the image text! ... for a particular font-style like "Caveat" the model
# > makes mistakes! How do we make our script detection model invariant of font-style?*
# > ("Dissecting the Blackbox")
#
# Script detection is a step of a real OCR pipeline: a crop known to contain text, and the question
# *which writing system is this?* The answer should depend on the shapes of the letters, not on the
# typeface, its weight or its colour. So we render crops where **font style is a labelled nuisance**:
# every crop carries its script (the task), its style (sans, serif, mono, hand, display), its font
# family, its text, its colours and a ground-truth **ink mask**. Later notebooks train a model to
# *unlearn* style, and score saliency maps against the ink.
#
# Everything here is `scriptlab.data` and `scriptlab.fonts`; fonts come from pinned pip packages, so
# every reader renders the same bytes.

# %%
# Configuration
PRESET = "workshop"  # "smoke" for a few seconds, "full" for 100k crops
SEED = 0

# %%
import numpy as np
import matplotlib.pyplot as plt

# %config InlineBackend.figure_formats = ["jpeg"]
import ipywidgets as widgets
from scriptlab import data, fonts, viz

viz.style()  # the series' figure style: readable labels, constrained layout

ds = data.load(PRESET, SEED)
summary = data.summary(ds)

# %%
# NBVAL_CHECK_OUTPUT
print("scripts:", ", ".join(ds.scripts))
print("styles: ", ", ".join(ds.styles))
print({k: v.images.shape for k, v in ds.splits.items()})
print("rho =", ds.config.rho, "| image", ds.config.image_size, "| dataset key", ds.key)

# %% [markdown]
# ## One crop per (script, style) cell
#
# Grey cells have no font in the pinned packages (no handwritten Greek, no serif Thai, ...). That
# sparsity is real: typefaces are not designed evenly across writing systems. The title of each crop
# is its font family.

# %%
fig = viz.style_grid(ds)
plt.show()

# %% [markdown]
# ## The font table
#
# Each row is one family in one style: the scripts its cmap covers (a family is listed for a script
# only when it renders at least 75 % of that script's words; the rest are never drawn in it), the
# weights used (variable fonts are instanced at several weights; the heaviest form the *display*
# class) and the pip package it comes from. `heldout` families only appear in the held-out split.

# %%
# NBVAL_CHECK_OUTPUT
for row in fonts.font_table():
    print(
        f"{row['family']:<22}{row['style']:<8}{'held-out' if row['heldout'] else '':<9}"
        f"{','.join(row['scripts']):<38}{row['package']}"
    )

# %% [markdown]
# ## Class balance and the bias knob
#
# Scripts are balanced in every split. Styles are not, on purpose: in train, val and test a fraction
# `rho` of every script is drawn in that script's *assigned* style (Latin in hand, Cyrillic in serif,
# Greek in mono, ...), the rest uniformly from its other styles. A model can then score well by
# reading style instead of letters, exactly the shortcut the unlearning notebook fights. The
# **conflict** split never uses a script's assigned style: it measures how much a model leans on the
# shortcut.

# %%
# NBVAL_CHECK_OUTPUT
counts = data.counts(ds)
print(f"{'train':<11}" + "".join(f"{s:>8}" for s in ds.styles) + "   assigned")
for script in ds.scripts:
    row = counts["train"][script]
    print(
        f"{script:<11}"
        + "".join(f"{row.get(s, 0):>8}" for s in ds.styles)
        + f"   {ds.styles[ds.bias_style(script)]}"
    )

# %%
# NBVAL_CHECK_OUTPUT
frac = data.bias_fraction(ds)
print("fraction of each script's training crops in its assigned style:")
print({k: round(v, 3) for k, v in frac.items()})
assert all(abs(f - ds.config.rho) < 0.01 for f in frac.values())
conflict_assigned = np.mean(
    ds.conflict.style == np.array([ds.bias_style(s) for s in ds.scripts])[ds.conflict.script]
)
print("conflict split crops in their script's assigned style:", conflict_assigned)
assert conflict_assigned == 0

# %% [markdown]
# What the knob does, in pictures: twelve Latin training crops at `rho = 0.9` (almost all
# handwritten, so "handwritten" almost means "Latin") next to twelve Latin crops of the conflict split.

# %%
latin = ds.scripts.index("latin")
train_latin = np.flatnonzero(ds.train.script == latin)[:12]
conf_latin = np.flatnonzero(ds.conflict.script == latin)[:12]
fig, axes = plt.subplots(2, 12, figsize=(15, 2.0))
for ax, i in zip(axes[0], train_latin):
    ax.imshow(ds.train.images[i])
    ax.set_title(ds.styles[ds.train.style[i]], fontsize=viz.SMALL)
for ax, i in zip(axes[1], conf_latin):
    ax.imshow(ds.conflict.images[i])
    ax.set_title(ds.styles[ds.conflict.style[i]], fontsize=viz.SMALL)
for ax in axes.ravel():
    ax.set_axis_off()
axes[0, 0].text(-5, 16, "train", ha="right")
axes[1, 0].text(-5, 16, "conflict", ha="right")
plt.show()

# %% [markdown]
# ## Held-out fonts
#
# Families never seen in training: a model that learned letter shapes should still read these.
# (Korean has only one Hangul family in the pinned packages, so it has no held-out crops.)

# %%
# NBVAL_CHECK_OUTPUT
held = sorted({ds.families[f] for f in np.unique(ds.heldout.family)})
seen = {
    ds.families[f]
    for name in ("train", "val", "test", "conflict")
    for f in np.unique(ds.split(name).family)
}
print("held-out families:", ", ".join(held))
assert not set(held) & seen

# %%
fig = viz.style_grid(ds, splits=("heldout",))
plt.show()

# %% [markdown]
# ## The ink mask
#
# Every crop records which pixels are glyph ink (before blur and noise). Saliency and occlusion maps
# are later scored by how much of their mass lands on it. Pixels under the mask are closer to the
# recorded text colour than the background pixels are, in essentially every crop:

# %%
# NBVAL_CHECK_OUTPUT
s = ds.test
dist = np.abs(s.images.astype(float) - s.color[:, None, None, :]).sum(-1)
on = np.array([d[m].mean() for d, m in zip(dist, s.masks)])
off = np.array([d[~m].mean() for d, m in zip(dist, s.masks)])
closer = np.mean(on < off)
print(f"ink mask closer to the text colour than the background in {closer:.1%} of test crops")
print(f"mean ink fraction: {s.masks.mean():.3f}")
assert np.mean(on < off) > 0.97

# %%
idx = np.arange(8)
fig, axes = plt.subplots(2, 8, figsize=(13, 2.0))
for k, i in enumerate(idx):
    # matplotlib cannot shape Thai, Arabic or Devanagari: titles name the script, the text is printed
    axes[0, k].imshow(s.images[i])
    axes[0, k].set_title(ds.scripts[s.script[i]])
    axes[1, k].imshow(s.masks[i], cmap="gray")
for ax in axes.ravel():
    ax.set_axis_off()
plt.show()
print("texts:", " | ".join(s.text[idx]))

# %% [markdown]
# ## Browse
#
# Pick a script, a style, a font and a seed. Crops come from the test, conflict and held-out splits;
# the second row shows each crop's ink mask.

# %%
pool = {name: ds.split(name) for name in ("test", "conflict", "heldout")}


def browse(script="latin", style="hand", family="(any)", seed=0):
    rows = []
    for name, sp in pool.items():
        sel = (sp.script == ds.scripts.index(script)) & (sp.style == ds.styles.index(style))
        if family != "(any)":
            sel &= sp.family == ds.families.index(family)
        rows += [(name, i) for i in np.flatnonzero(sel)]
    if not rows:
        print(f"no crops for {script} / {style} / {family}")
        return
    pick = np.random.default_rng(seed).permutation(len(rows))[:8]
    fig, axes = plt.subplots(2, 8, figsize=(13, 2.3), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    for k, j in enumerate(pick):
        name, i = rows[j]
        axes[0, k].imshow(pool[name].images[i])
        axes[0, k].set_title(f"{ds.families[pool[name].family[i]]}\n{name}", fontsize=viz.SMALL)
        axes[1, k].imshow(pool[name].masks[i], cmap="gray")
    plt.show()


widgets.interact(
    browse,
    script=list(ds.scripts),
    style=list(ds.styles),
    family=["(any)"] + list(ds.families),
    seed=widgets.IntSlider(0, 0, 20),
);

# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/01_solutions.ipynb`.
#
# 1. **The Hebrew shortcut.** The pinned packages have no handwritten or monospaced Hebrew. In
#    which styles do Hebrew *training* crops come, and what share of them is *display* (Hebrew's
#    assigned style)? What share of Hebrew *conflict* crops is display? (`data.counts`,
#    `data.bias_fraction`.)
# 2. **Ink per script.** Predict first: which script puts the most ink in a 32x64 crop, and which
#    the least? Then measure the mean of `ds.test.masks` per script. Why does this matter for
#    notebook 05, which scores saliency maps by the share of their mass on the ink?
# 3. **Turn the knob.** Render your own smoke dataset with half the crops in the assigned style,
#    `data.load("smoke", 0, rho=0.5, cache=False)` (a few seconds), and check that
#    `data.bias_fraction` follows the knob in train and that its conflict split still never uses
#    a script's assigned style.
