# %% [markdown]
# # 08 · Top-activating patches and receptive fields
#
# > *Every neuron is associated with its receptive field. Finding what in its receptive field maximally
# > activates a neuron can shed some light on what in the image is important for a neuron. However in
# > many cases, there is no single neuron special to a visual feature of the image.*
# > ("Understanding Convolutional Neural Networks")
#
# `scriptlab.interpret.receptive` computes every layer's receptive field analytically from
# `ScriptNet.geometry()` (XLA's SAME padding included) and checks it against the empirical one: the
# input pixels where a unit's gradient is nonzero. `top_activating` then finds, for every channel of
# a layer, the k crops that drive it hardest, in one batched pass over the split (`lax.map` chunks +
# `lax.top_k`), and `receptive_crops` cuts out each unit's receptive field. Finally: do units fire on
# **script-specific strokes** or on **font style**? Per channel, how pure are its top-k crops in
# script labels and in style labels, for the baseline and for the model trained to *unlearn* style?

# %%
# Configuration
PRESET = "workshop"
LAYER = "conv3"  # layer for the top-k search
K = 9  # crops per channel
PURITY_SPLIT = "conflict"  # each script in styles it rarely trained with; subset below

# %%
import numpy as np
import matplotlib.pyplot as plt
import ipywidgets as widgets
from scriptlab import data, metrics, viz, zoo
from scriptlab.model import ScriptNet
from scriptlab.interpret.receptive import (
    receptive_fields,
    receptive_box,
    trunk_fn,
    empirical_receptive_field,
    support_box,
    top_activating,
    receptive_crops,
    label_purity,
)

viz.style()
ds = data.load(PRESET, seed=0, progress=False)
test = data.as_float(ds.test.images)
models = {
    "baseline": zoo.load("baseline", PRESET, progress=False),
    "unlearn": zoo.load("unlearn", PRESET, progress=False),
}
base = models["baseline"]

# %% [markdown]
# ## Receptive fields: analytic vs empirical
#
# `size` is the field's extent, `jump` the input distance between neighbouring units, `left` the
# input coordinate of unit 0's first pixel (negative: SAME padding reaches outside the image) and
# `start` its centre. The empirical field differentiates the trained conv/pool stack (ReLUs as
# identities and max pools as sums so the gradient covers the whole field; the per-image
# standardisation before conv1 is left out: it couples every pixel to every unit through the mean and
# standard deviation, a global, not a local, dependence). Five units per layer, corners included.

# %%
# NBVAL_CHECK_OUTPUT
H, W = test.shape[1:3]
rfs = receptive_fields(ScriptNet.geometry(), (H, W))
f = trunk_fn(base.model)
titles = f"{'size':>5s} {'jump':>5s} {'left':>5s} {'start':>6s}"
print(f"{'layer':6s} {'grid':>7s} {titles}  empirical == analytic")
all_ok = True
for name, rf in rfs.items():
    h, w = rf.shape
    units = [(0, 0), (h - 1, w - 1), (h // 2, w // 2), (0, w - 1), (h - 1, 0)]
    masks = empirical_receptive_field(
        f, (H, W, 3), name, [u[0] for u in units], [u[1] for u in units]
    )
    ok = all(
        support_box(mk) == tuple(int(v) for v in receptive_box(rf, i, j, (H, W)))
        for (i, j), mk in zip(units, masks)
    )
    all_ok &= ok
    numbers = f"{rf.size[0]:5d} {rf.jump[0]:5d} {rf.left[0]:5d} {rf.start[0]:6.1f}"
    print(f"{name:6s} {h:3d}x{w:<3d} {numbers}  {'yes' if ok else 'NO'} (5 units)")
assert all_ok

# %%
rf = rfs[LAYER]
i, j = rf.shape[0] // 2, rf.shape[1] // 2
mask = empirical_receptive_field(f, (H, W, 3), LAYER, i, j)
t, l, b, r = receptive_box(rf, i, j, (H, W))
fig, axes = plt.subplots(1, 2, figsize=(9, 2.2))
axes[0].imshow(mask, cmap="gray")
axes[0].set_title(f"{LAYER} unit ({i}, {j}): nonzero gradient")
axes[1].imshow(ds.test.images[0])
axes[1].add_patch(plt.Rectangle((l - 0.5, t - 0.5), r - l, b - t, fill=False, ec="r", lw=2))
axes[1].set_title(f"analytic box {rf.size[0]}x{rf.size[1]}")
for a in axes:
    a.axis("off")
plt.show()

# %% [markdown]
# ## The top-k crops of every channel, in one pass
#
# To ask whether a channel prefers a script or a style, its top crops must come from crops where
# the two are not tied together. On `test` they are: nearly every crop of a script is in that
# script's usual style (notebook 01), so a channel whose top crops share a script also share a
# style. The `conflict` split draws scripts in unusual styles, but even there some scripts come in
# one style only. So we keep the conflict crops whose script occurs there in at least two styles
# and whose style occurs in at least two scripts, and check that neither label predicts the other:

# %%
# NBVAL_CHECK_OUTPUT
split = ds.split(PURITY_SPLIT)
keep = np.ones(len(split.script), bool)
for _ in range(3):  # dropping a style can leave a script with one style: repeat until stable
    pairs = {(a, b) for a, b in zip(split.script[keep], split.style[keep])}
    n_styles = {a: sum(1 for p in pairs if p[0] == a) for a, _ in pairs}
    n_scripts = {b: sum(1 for p in pairs if p[1] == b) for _, b in pairs}
    keep &= np.array(
        [
            n_styles.get(a, 0) > 1 and n_scripts.get(b, 0) > 1
            for a, b in zip(split.script, split.style)
        ]
    )
sub = split.take(np.flatnonzero(keep))
x = data.as_float(sub.images)
table = np.zeros((len(ds.scripts), len(ds.styles)), int)
np.add.at(table, (sub.script, sub.style), 1)
style_given_script = (table.max(1) / np.maximum(table.sum(1), 1)).max()
script_given_style = (table.max(0) / np.maximum(table.sum(0), 1)).max()
print(
    f"{len(sub.script)} conflict crops, {len(set(sub.script))} scripts, {len(set(sub.style))} styles"
)
print(f"largest share of one style within a script: {style_given_script:.2f}")
print(f"largest share of one script within a style: {script_given_style:.2f}")
# neither label can make the other's purity reach the 0.8 used for "units" below
assert style_given_script < 0.8 and script_given_style < 0.8

# %% [markdown]
# Each row below is one channel of the baseline's `conv3`: its 9 strongest crops of that subset,
# each cut to the receptive field of the unit where the channel peaks (white: padding outside the
# image), titled with the first letters of its script / style.

# %%
top = {name: top_activating(m.apply_fn, m.params, x, LAYER, k=K) for name, m in models.items()}
crops = receptive_crops(x, rf, top["baseline"].index, top["baseline"].row, top["baseline"].col)
print("crops", crops.shape, "(channels, k, size_h, size_w, 3)")


# %%
def show_channels(channels, t, crops, title):
    # a crop is 18 pixels: panels of about an inch, titles at the style's smallest size
    fig, axes = plt.subplots(len(channels), K, figsize=(K * 1.15, len(channels) * 1.35 + 0.4))
    for a, ch in enumerate(channels):
        for q in range(K):
            n = int(t.index[ch, q])
            ax = axes[a, q]
            ax.imshow(np.asarray(crops[ch, q]))
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(
                f"{ds.scripts[sub.script[n]][:4]}/{ds.styles[sub.style[n]][:4]}",
                fontsize=viz.SMALL,
                pad=2,
            )
        axes[a, 0].set_ylabel(f"ch {ch}", rotation=0, ha="right", va="center")
    fig.suptitle(title)  # constrained layout keeps it clear of the first row's titles
    plt.show()


sp = label_purity(sub.script, top["baseline"].index, len(ds.scripts))
show_channels(
    list(np.argsort(-sp, kind="stable")[:4]) + list(np.argsort(sp, kind="stable")[:2]),
    top["baseline"],
    crops,
    f"baseline {LAYER}: the 4 most script-pure channels, then the 2 least",
)


# %%
# every channel's top patches of one (model, layer), computed once: a channel move only redraws
tops = viz.Cached(
    lambda key: top_activating(models[key[0]].apply_fn, models[key[0]].params, test, key[1], k=K)
)


@widgets.interact(
    model=list(models),
    layer=widgets.Dropdown(options=["conv1", "conv2", "conv3", "pool3"], value=LAYER),
    channel=widgets.IntSlider(0, 0, 63),
)
@viz.busy(
    message="finding every channel's top patches ...",
    when=lambda model, layer, **_: (model, layer) not in tops,
)
def explore(model="baseline", layer=LAYER, channel=0):
    t = tops[model, layer]
    channel = min(channel, t.index.shape[0] - 1)
    c = receptive_crops(
        test,
        rfs[layer],
        t.index[channel : channel + 1],
        t.row[channel : channel + 1],
        t.col[channel : channel + 1],
    )
    fig, axes = plt.subplots(2, K, figsize=(K * 1.45, 2.8))
    for q in range(K):
        n = int(t.index[channel, q])
        rr, cc = int(t.row[channel, q]), int(t.col[channel, q])
        top_, left, bottom, right = receptive_box(rfs[layer], rr, cc, (H, W))
        axes[0, q].imshow(ds.test.images[n])
        axes[0, q].add_patch(
            plt.Rectangle((left - 0.5, top_ - 0.5), right - left, bottom - top_, fill=False, ec="r")
        )
        axes[1, q].imshow(np.asarray(c[0, q]))
        label = f"{ds.scripts[ds.test.script[n]][:5]}/{ds.styles[ds.test.style[n]][:4]}"
        axes[0, q].set_title(f"{label}\n{float(t.value[channel, q]):.1f}", fontsize=viz.SMALL)
        for a in axes[:, q]:
            a.axis("off")
    plt.show()


# %% [markdown]
# ## Strokes or style? Label purity of each channel's top-k
#
# On that subset, for every channel of conv1, conv2 and conv3 (pool3 would repeat conv3: a
# channel's maximum over positions survives max pooling): the share of its top-9 crops carrying
# the most common **script**, and the most common **style**. A *script unit* has script purity
# >= 0.8 with style purity below 0.8; a *style unit* the reverse. Chance is what 9 crops drawn at
# random from the subset score: their mean purity, and the number of channels that would pass as
# units by luck (expected count, from 4,000 random draws of 9).

# %%
rng = np.random.default_rng(0)
random_index = np.argsort(rng.random((4000, len(sub.script))), axis=1)[:, :K]
rand_ps = label_purity(sub.script, random_index, len(ds.scripts))
rand_pt = label_purity(sub.style, random_index, len(ds.styles))
chance = {
    "script": rand_ps.mean(),
    "style": rand_pt.mean(),
    "script_unit": ((rand_ps >= 0.8) & (rand_pt < 0.8)).mean(),
    "style_unit": ((rand_pt >= 0.8) & (rand_ps < 0.8)).mean(),
}
rows, purity = [], {}
for name, m in models.items():
    for layer in ("conv1", "conv2", "conv3"):
        t = top_activating(m.apply_fn, m.params, x, layer, k=K)
        ps = label_purity(sub.script, t.index, len(ds.scripts))
        pt = label_purity(sub.style, t.index, len(ds.styles))
        purity[name, layer] = ps, pt
        n = len(ps)
        rows.append(
            dict(
                model=name,
                layer=layer,
                script=f"{ps.mean():.2f} [{' '.join(f'{v:.2f}' for v in metrics.bootstrap_interval(ps))}]",
                style=f"{pt.mean():.2f} [{' '.join(f'{v:.2f}' for v in metrics.bootstrap_interval(pt))}]",
                script_units=f"{((ps >= 0.8) & (pt < 0.8)).sum()}/{n} ({chance['script_unit'] * n:.1f})",
                style_units=f"{((pt >= 0.8) & (ps < 0.8)).sum()}/{n} ({chance['style_unit'] * n:.1f})",
            )
        )
print(
    f"chance purity of {K} random crops: script {chance['script']:.2f}, style {chance['style']:.2f}"
)
columns = [
    ("model", "model", "9s"),
    ("layer", "layer", "6s"),
    ("script purity", "script", ">17s"),
    ("style purity", "style", ">17s"),
    ("script units", "script_units", ">13s"),
    ("style units", "style_units", ">13s"),
]
print(viz.text_table(rows, columns))

# %% [markdown]
# Purity is the mean over the layer's channels, with a 95 % bootstrap interval over the channels
# in brackets (resample the channels 1,000 times, `metrics.bootstrap_interval`, keep the middle
# 95 % of the means). Unit counts are followed by the count expected by chance in parentheses.

# %%
# NBVAL_CHECK_OUTPUT
def low(v):
    return metrics.bootstrap_interval(v)[0]


def units(name, layer):
    ps, pt = purity[name, layer]
    return ((ps >= 0.8) & (pt < 0.8)).sum(), ((pt >= 0.8) & (ps < 0.8)).sum()


def high(v):
    return metrics.bootstrap_interval(v)[1]


LAYERS = ("conv1", "conv2", "conv3")
ps3, pt3 = purity["baseline", "conv3"]
claims = {
    "every layer of both models: script and style purity above chance": all(
        low(ps) > chance["script"] and low(pt) > chance["style"] for ps, pt in purity.values()
    ),
    "baseline: script purity rises from conv1 to conv3": ps3.mean()
    > purity["baseline", "conv1"][0].mean(),
    "baseline: style purity does not (conv3 <= conv1)": pt3.mean()
    <= purity["baseline", "conv1"][1].mean(),
    "baseline conv3: more script units than style units": units("baseline", "conv3")[0]
    > units("baseline", "conv3")[1],
    "both models' conv3: script and style units well above chance counts": all(
        min(units(n, "conv3")) > 3 * max(chance["script_unit"], chance["style_unit"]) * 64
        for n in models
    ),
    "at most one script unit in conv1 and conv2 of either model": all(
        units(n, l)[0] <= 1 for n in models for l in ("conv1", "conv2")
    ),
    "unlearn's conv3 style purity is not below the baseline's (intervals overlap)": high(
        purity["unlearn", "conv3"][1]
    )
    >= low(pt3),
}
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())

# %% [markdown]
# **What we find.** On crops where script and style are not tied together, each channel's top
# crops are purer than chance in both labels, in every layer and in both models. Script purity
# grows with depth (conv1 to conv3) while style purity does not: the first layers respond to how a
# crop is drawn (stroke width, colour contrast, serifs) as much as to what is drawn, and script
# selectivity is built up later. In the baseline's conv3 there are more clean script units than
# style units, and both counts are far above what 9 random crops would give; below conv3 there is
# at most one script unit per layer. (On the `test` split, where every script comes in its usual
# style, these two kinds of unit could not be told apart: a script unit there is a style unit too.)
#
# The unlearned model keeps style units in its conv3, and their style purity is not lower than
# the baseline's: the gradient flip acts on the 128-d embedding, so the conv trunk can keep
# style-selective channels as long as the dense layer does not pass style on. As the seed says,
# there is rarely a single neuron special to one feature: a few clean units among 64, and with
# k = 9 a channel's purity is itself noisy (the intervals above are over channels, from one
# training run of each model).

# %% [markdown]
# ## Can top-activating patches see the shortcut?
#
# Notebook 03's three models, on the same crops: the **baseline**, which reads font style; the
# **fix** (`dfr_val`: a group-balanced script head fitted on held-out crops, on the baseline's
# frozen trunk); and the **oracle**, trained with styles uniform within each script. The crops are
# *telling* ones (`workshop.telling_crops`): conflict crops the baseline misreads and the oracle
# reads right. For each we take the 3 conv3 channels it drives hardest (its peak as a share of the
# channel's strongest crop, `receptive.unit_shares`) and ask what their top-9 crops share with
# it: its **style** or its **script**? The top crops are searched in the subset above, where the
# two labels are untied, with the telling crops left out.

# %%
from scriptlab import workshop
from scriptlab.interpret.receptive import unit_shares

N_TELLING, UNITS = 32, 3
oracle = zoo.load("oracle", PRESET, progress=False)
trio = workshop.shortcut_trio(base, oracle, ds)
tell = workshop.telling_crops(trio, ds.conflict, n=N_TELLING, seed=0)
pool = split.take(np.setdiff1d(np.flatnonzero(keep), tell))  # split is the conflict split
xq, xp = data.as_float(ds.conflict.images[tell]), data.as_float(pool.images)
query_keys = np.stack([ds.conflict.style[tell], ds.conflict.script[tell]], 1)
pool_keys = np.stack([pool.style, pool.script], 1)
drive = {}
for name, (apply_fn, params) in trio.items():
    t = top_activating(apply_fn, params, xp, LAYER, k=K)
    peaks = np.asarray(apply_fn(params, xq).activations[LAYER]).max((1, 2))
    drive[name] = t, unit_shares(peaks, t, query_keys, pool_keys, units=UNITS)


def interval(v):
    lo, hi = metrics.bootstrap_interval(v)
    return f"{v.mean():.2f} [{lo:.2f}, {hi:.2f}]"


base_rate = drive["baseline"][1].base_rate.mean(0)
print(
    f"{len(tell)} telling crops; {len(pool.script)} crops searched; base rate: "
    f"style {base_rate[0]:.2f}, script {base_rate[1]:.2f}"
)
print(f"{'model':9s} {'same style [95 %]':>18s} {'same script [95 %]':>19s}")
for name, (_, u) in drive.items():
    print(f"{name:9s} {interval(u.share[:, 0]):>18s} {interval(u.share[:, 1]):>19s}")

# %%
# the first two telling crops; per model, the top 5 crops of the channel each drives hardest
SHOW = 5
fig, axes = plt.subplots(4, SHOW + 1, figsize=(8.4, 5.4))
for row, (q, name) in enumerate((q, n) for q in range(2) for n in ("baseline", "oracle")):
    t, u = drive[name]
    ch = int(u.units[q, 0])
    c = receptive_crops(xp, rf, t.index[ch : ch + 1], t.row[ch : ch + 1], t.col[ch : ch + 1])
    axes[row, 0].imshow(ds.conflict.images[tell[q]])
    label = f"{ds.scripts[query_keys[q, 1]][:4]}/{ds.styles[query_keys[q, 0]][:4]}"
    who = "baseline = fix" if name == "baseline" else name
    axes[row, 0].set_title(f"{label}\n{who}: ch {ch}", fontsize=viz.SMALL)
    for j in range(SHOW):
        n = int(t.index[ch, j])
        axes[row, j + 1].imshow(np.asarray(c[0, j]))
        title = f"{ds.scripts[pool.script[n]][:4]}/{ds.styles[pool.style[n]][:4]}"
        axes[row, j + 1].set_title(title, fontsize=viz.SMALL)
for a in axes.ravel():
    a.axis("off")
fig.suptitle("telling crop, then the top crops of the conv3 channel it drives hardest")
plt.show()

# %% [markdown]
# The fix is the baseline's trunk with another head, so its conv3 channels, their top crops and
# the channels a crop drives are the baseline's, exactly: a view of the trunk cannot see a fix
# made in the head. In both models, the top crops of the channels a telling crop drives share its
# style more often than the base rate, and the two models' style shares cannot be told apart. The
# difference is in the script: the oracle's channels carry the telling crop's script more often
# than the base rate and than the baseline's, while the baseline's do not rise above the base
# rate. What tells the two models apart here is not more style in the baseline's units but less
# script (intervals are paired over the telling crops, against each crop's base rate).

# %%
# NBVAL_CHECK_OUTPUT
(tb, ub), (tf, uf), (_, uo) = (drive[n] for n in ("baseline", "dfr_val", "oracle"))


def above_zero(d):
    return metrics.bootstrap_interval(d)[0] > 0


def includes_zero(d):
    lo, hi = metrics.bootstrap_interval(d)
    return lo < 0 < hi


claims = {
    "the fix's top crops and driven channels are the baseline's": all(
        np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(tb, tf)
    )
    and np.array_equal(ub.units, uf.units),
    "both models: style share above its base rate": all(
        above_zero(u.share[:, 0] - u.base_rate[:, 0]) for u in (ub, uo)
    ),
    "style share, oracle - baseline: interval includes zero": includes_zero(
        uo.share[:, 0] - ub.share[:, 0]
    ),
    "oracle: script share above its base rate": above_zero(uo.share[:, 1] - uo.base_rate[:, 1]),
    "script share, oracle - baseline: above zero": above_zero(uo.share[:, 1] - ub.share[:, 1]),
    "baseline: script share minus base rate, interval includes zero": includes_zero(
        ub.share[:, 1] - ub.base_rate[:, 1]
    ),
}
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())

# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/08_solutions.ipynb`.
#
# 1. **Receptive fields by hand.** From `ScriptNet.geometry()` (each layer's kernel, stride and
#    padding), work out conv3's receptive-field size and jump with the recurrences
#    `size += (kernel - 1) * jump`, `jump *= stride`, then check against `receptive_fields`. What
#    share of a 32x64 crop does one conv3 unit see?
# 2. **A unit for Hebrew final letters.** Five Hebrew letters take another form at the end of a
#    word (ך ם ן ף ץ). Among the baseline's conv3 channels, find the one whose peak activation
#    (the maximum over positions) best separates the Hebrew test crops whose text holds a final
#    letter from those whose text does not (`ds.test.text`). Do its top-9 Hebrew crops hold final
#    letters more often than Hebrew crops do in general? Then check the same channel on the
#    conflict split's Hebrew crops: does the finding hold on crops it was not chosen on?
