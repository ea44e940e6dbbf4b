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
import textwrap

import numpy as np
import matplotlib.pyplot as plt

# %config InlineBackend.figure_formats = ["jpeg"]
import ipywidgets as widgets
from scriptlab import data, fonts, metrics, viz

viz.style()  # the series' figure style: readable labels, constrained layout

ds = data.load(PRESET, SEED)

# %%
# NBVAL_CHECK_OUTPUT
print("scripts:", ", ".join(ds.scripts))
print("styles: ", ", ".join(ds.styles))
print("rho =", ds.config.rho, "| image", ds.config.image_size, "| dataset key", ds.key)
for name, split in ds.splits.items():
    print(f"{name:<13}{split.images.shape}")

# %% [markdown]
# ## One crop per (script, style) cell
#
# Grey cells have no font in the pinned packages (no handwritten Greek, no serif Thai, ...). That
# sparsity is real: typefaces are not designed evenly across writing systems. The title of each crop
# is its font family.

# %%
fig = viz.style_grid(ds, scale=1.3)
plt.show()

# %%
# NBVAL_CHECK_OUTPUT
# A cell is grey exactly when no training family covers that script in that style.
table = fonts.font_table()
covered = {(s, row["style"]) for row in table if not row["heldout"] for s in row["scripts"]}
drawn = {(ds.scripts[a], ds.styles[b]) for a, b in zip(ds.train.script, ds.train.style)}
print(f"{len(drawn)} of {len(ds.scripts) * len(ds.styles)} (script, style) cells have fonts")
assert drawn == covered

# %% [markdown]
# ## The font table
#
# `fonts.font_table()` has one row per family in one style: the scripts its cmap covers (a family
# is listed for a script only when it renders at least 75 % of that script's words; the rest are
# never drawn in it), the weights used (variable fonts are instanced at several weights; the
# heaviest form the *display* class) and the pip package it comes from. Held-out families only
# appear in the held-out split. First, how many families each (script, style) cell draws from,
# written *training + held-out*:

# %%
# NBVAL_CHECK_OUTPUT
print(f"{'families':<11}" + "".join(f"{st:>9}" for st in ds.styles))
for script in ds.scripts:
    cells = []
    for style in ds.styles:
        rows = [r for r in table if r["style"] == style and script in r["scripts"]]
        n_held = sum(r["heldout"] for r in rows)
        cells.append(f"{len(rows) - n_held} + {n_held}" if rows else "-")
    print(f"{script:<11}" + "".join(f"{c:>9}" for c in cells))

# %% [markdown]
# The table's rows for Latin, the script with the most fonts (*static*: a font without weight
# axes, used as it ships). The full table is `fonts.font_table()`, also written to the
# `summary.json` of `scriptlab dataset`.

# %%
# NBVAL_CHECK_OUTPUT
rows_per_script = {sc: sum(sc in r["scripts"] for r in table) for sc in ds.scripts}
assert max(rows_per_script, key=rows_per_script.get) == "latin"
print(f"{rows_per_script['latin']} of the table's {len(table)} rows cover Latin")
print(f"{'family':<18}{'style':<9}{'held out':<10}{'weights':<10}{'scripts':<29}package")
for row in table:
    if "latin" in row["scripts"]:
        weights = [w for w in row["weights"] if isinstance(w, int)]
        print(
            f"{row['family']:<18}{row['style']:<9}{'yes' if row['heldout'] else '':<10}"
            f"{','.join(map(str, weights)) or 'static':<10}{','.join(row['scripts']):<29}"
            f"{row['package'].removeprefix('fontpkg-')}"
        )

# %% [markdown]
# ## Class balance and the bias knob
#
# Scripts are balanced in every split (the held-out split, which has no Korean, up to one crop).
# Styles are not, on purpose: in train, val and test a fraction `rho` of every script is drawn in
# that script's *assigned* style (Latin in hand, Cyrillic in serif, Greek in mono, ...), the rest
# uniformly from the other styles it has fonts in. A model can then score well by reading style
# instead of letters, exactly the shortcut the unlearning notebook fights. The **conflict** split never uses a script's assigned style: it measures how much a
# model leans on the shortcut.

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
print("crops per script:")
for name, sp in ds.splits.items():
    n = np.bincount(sp.script, minlength=len(ds.scripts))
    n = n[n > 0]  # the scripts present in the split
    print(f"  {name:<13}{n.min()}" + (f" to {n.max()}" if n.max() > n.min() else ""))
    assert n.max() - n.min() <= 1  # balanced, up to the remainder of an uneven division
# the non-assigned styles are equally likely: each count within 4 binomial standard deviations
for script in ds.scripts:
    assigned = ds.styles[ds.bias_style(script)]
    rest = [n for st, n in counts["train"][script].items() if st != assigned]
    assert all(abs(n - np.mean(rest)) < 4 * np.sqrt(np.mean(rest)) for n in rest), script

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
# What the knob does, in pictures: eight Latin training crops at `rho = 0.9` (almost all
# handwritten) next to eight Latin crops of the conflict split. The shortcut is not one style for
# one script: Devanagari's assigned style is *hand* too, so a handwritten training crop is Latin or
# Devanagari, and the model still has to tell those two apart by their letters.

# %%
latin = ds.scripts.index("latin")
train_latin = np.flatnonzero(ds.train.script == latin)[:8]
conf_latin = np.flatnonzero(ds.conflict.script == latin)[:8]
fig, axes = plt.subplots(2, 8, figsize=(15, 2.8))
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

# %%
# NBVAL_CHECK_OUTPUT
hand = ds.train.style == ds.styles.index("hand")
share = {name: np.mean(ds.train.script[hand] == ds.scripts.index(name)) for name in ds.scripts}
print(f"handwritten training crops: {hand.sum()}")
print("of which", ", ".join(f"{k} {v:.1%}" for k, v in share.items() if v > 0))
assert share["latin"] < 0.6 and share["latin"] + share["devanagari"] > 0.95

# %% [markdown]
# ## Held-out fonts
#
# Families never seen in training: a model that learned letter shapes should still read these.
# (Korean has only one Hangul family in the pinned packages, so it has no held-out crops.)
# Scripts are balanced here too, over the nine scripts that have held-out fonts: a model that
# guesses scores 1/9 on this split, not 1/10.

# %%
# NBVAL_CHECK_OUTPUT
held = sorted({ds.families[f] for f in np.unique(ds.heldout.family)})
seen = {
    ds.families[f]
    for name in ("train", "val", "test", "conflict")
    for f in np.unique(ds.split(name).family)
}
print(textwrap.fill("held-out families: " + ", ".join(held), 100))
assert not set(held) & seen
held_scripts = {ds.scripts[i] for i in np.unique(ds.heldout.script)}
print("scripts without held-out crops:", sorted(set(ds.scripts) - held_scripts))
assert held_scripts == set(ds.scripts) - {"korean"}

# %%
fig = viz.style_grid(ds, splits=("heldout",), scale=1.3)
plt.show()

# %% [markdown]
# ## The ink mask
#
# Every crop records which pixels are glyph ink (before blur and noise). Saliency and occlusion maps
# are later scored by how much of their mass lands on it. Pixels under the mask are closer to the
# recorded text colour than the background pixels are, in every test crop.
#
# The test split is a sample of what the renderer draws, so a mean over it is an estimate. Numbers
# that estimate something are shown with a **95 % bootstrap interval** in brackets throughout the
# series: the crops are resampled with replacement 1,000 times (`metrics.bootstrap_interval`) and
# the interval holds the middle 95 % of the resampled values. Where several training seeds exist
# (notebook 03), `±` gives the spread over seeds instead.

# %%
# NBVAL_CHECK_OUTPUT
s = ds.test
dist = np.abs(s.images.astype(float) - s.color[:, None, None, :]).sum(-1)
on = (dist * s.masks).sum((1, 2)) / s.masks.sum((1, 2))  # mean distance on ink, per crop
off = (dist * ~s.masks).sum((1, 2)) / (~s.masks).sum((1, 2))
print(f"ink closer to the text colour than the background: {np.sum(on < off)} of {len(s)} crops")
ink = s.masks.reshape(len(s), -1).mean(1)  # per crop
low, high = metrics.bootstrap_interval(ink)
print(f"mean ink fraction: {ink.mean():.3f} [{low:.3f}, {high:.3f}]")
assert np.all(on < off)

# %% [markdown]
# Eight test crops over their masks. The titles name the script and the words are printed below
# the figure, because matplotlib does not shape Arabic, Thai or Devanagari text.

# %%
idx = np.arange(8)
fig, axes = plt.subplots(2, 8, figsize=(15, 2.8))
for k, i in enumerate(idx):
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
