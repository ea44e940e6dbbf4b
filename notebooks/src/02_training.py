# %% [markdown]
# # 02 · Training the baseline script classifier
#
# The first seed's blackbox is the Keras mnist_convnet: conv, conv, pool, dropout, dense. Ours,
# `scriptlab.model.ScriptNet`, keeps that spirit for 32x64 text crops: a strided 4x4 stem
# convolution (it halves the resolution as conv + pool would, at half the cost), two 3x3
# convolutions each followed by 2x2 max-pooling, dropout, a 128-unit dense embedding and two linear
# heads, one for the script (the task) and one for the font style (the nuisance, used in the next
# notebook). The baseline trains the script head only.
#
# The model comes from `scriptlab.zoo`: trained on first use (about a minute on two idle cores) and
# cached, so this notebook runs in seconds afterwards.

# %%
# Configuration
PRESET = "workshop"
SEED = 0

# %%
import numpy as np
import matplotlib.pyplot as plt

# %config InlineBackend.figure_formats = ["jpeg"]
import ipywidgets as widgets
from scriptlab import data, metrics, train, viz, zoo

viz.style()  # the series' figure style: readable labels, constrained layout

ds = data.load(PRESET)
base = zoo.load("baseline", PRESET, seed=SEED)

# %%
# NBVAL_CHECK_OUTPUT
cost = base.model.cost()
mflops = cost["flops_per_image"] / 1e6
print(f"parameters: {cost['params']:,}   forward FLOPs per image: {mflops:.1f} M")
for name, act in base.apply_fn(base.params, ds.test.images[:2] / 255.0).activations.items():
    print(f"{name:<6} {tuple(act.shape[1:])}")

# %% [markdown]
# ## The recipe and the learning curves
#
# AdamW with a warm-up/cosine learning-rate schedule, gradient clipping, batch 64, dropout; one
# `jax.jit`-compiled step over a `(params, opt_state)` pytree. The step is fast because the strided
# stem halves the resolution in the very first layer, which keeps XLA's CPU convolutions small (see
# `benchmarks/bench_train.py`). The training time printed below is the one recorded when this
# model was trained, on whatever machine and under whatever load that was: the zoo often trains
# two models side by side, one core each, which is slower than one model alone on two cores
# (README, Benchmarks). Read it as an order of magnitude, not as a benchmark.

# %%
# NBVAL_CHECK_OUTPUT
cfg = base.config
print({k: getattr(cfg, k) for k in ("mode", "epochs", "batch_size", "lr", "dropout", "channels")})

# %%
h = base.history
ep = [r["epoch"] for r in h]
fig, axes = plt.subplots(1, 2, figsize=(9, 2.8))
axes[0].plot(ep, [r["script_loss"] for r in h], "o-")
axes[0].set_title("training script loss")
axes[1].plot(ep, [r["val_script_acc"] for r in h], "o-", label="val script accuracy")
axes[1].set_ylim(0, 1)
axes[1].legend()
axes[0].set_xlabel("epoch")
axes[1].set_xlabel("epoch")
plt.show()
print(f"training time: {h[-1]['seconds']:.0f} s for {cfg.epochs} epochs")

# %% [markdown]
# ## Where it is right, and where it is wrong
#
# The in-distribution test split shares the training bias (90 % of each script in its assigned style).
# The conflict split never uses a script's assigned style: if the model read letters only, the two
# accuracies would match.

# %%
pred = {}
for split in ("test", "conflict", "heldout"):
    s = ds.split(split)
    pred[split] = np.argmax(train.predict(base.apply_fn, base.params, s.images)[0], -1)
acc = {split: float(np.mean(pred[split] == ds.split(split).script)) for split in pred}
print({k: round(v, 3) for k, v in acc.items()})

# %%
# NBVAL_CHECK_OUTPUT
# The baseline leans on font style: accuracy drops when style and script disagree.
print(
    "in-distribution beats bias-conflicting by more than 10 points:",
    acc["test"] - acc["conflict"] > 0.10,
)
print("well above chance (0.1) everywhere:", min(acc.values()) > 0.4)
assert acc["test"] - acc["conflict"] > 0.10 and min(acc.values()) > 0.4

# %%
fig, axes = plt.subplots(1, 2, figsize=(12, 5.6))
for ax, split in zip(axes, ("test", "conflict")):
    c = metrics.confusion(ds.split(split).script, pred[split], len(ds.scripts))
    ax.imshow(c / c.sum(1, keepdims=True), cmap="Blues", vmin=0, vmax=1)
    ax.set_xticks(range(len(ds.scripts)), ds.scripts, rotation=90)
    ax.set_yticks(range(len(ds.scripts)), ds.scripts)
    ax.set_title(f"{split}: accuracy {acc[split]:.3f}")
    ax.set_xlabel("predicted")
    for i in range(len(ds.scripts)):
        for j in range(len(ds.scripts)):
            if c[i, j] and i != j and c[i, j] / c[i].sum() > 0.05:
                share = f"{c[i, j] / c[i].sum():.2f}"
                ax.text(j, i, share, ha="center", va="center", fontsize=viz.SMALL)
plt.show()

# %% [markdown]
# Latin, Cyrillic and Greek share many letter shapes, and Chinese and Japanese share Han characters;
# those are the pairs where a style shortcut pays, and where the conflict split shows confusions.
#
# ## Accuracy per script and per font
#
# Pooled over test, conflict and held-out crops. Caveat is the seed's font "the model gets wrong".

# %%
pool = [ds.split(s) for s in ("test", "conflict", "heldout")]
true = np.concatenate([s.script for s in pool])
p = np.concatenate([pred[s] for s in ("test", "conflict", "heldout")])
fam = np.concatenate([s.family for s in pool])
per_script = metrics.group_accuracy(true, p, true, ds.scripts)
per_font = metrics.group_accuracy(true, p, fam, ds.families)
order = sorted(per_font, key=lambda k: per_font[k][0])
# one row per family at a readable size: the figure grows with the number of families
height = 0.22 * len(order) + 1.0
fig, axes = plt.subplots(1, 2, figsize=(12, height), gridspec_kw={"width_ratios": [1, 2.2]})
axes[0].barh(list(per_script), [v[0] for v in per_script.values()])
axes[0].set_xlim(0, 1)
axes[0].set_title("accuracy per script")
colors = ["tab:red" if f == "Caveat" else "tab:blue" for f in order]
axes[1].barh(order, [per_font[f][0] for f in order], color=colors)
axes[1].set_xlim(0, 1)
axes[1].set_title("accuracy per font family (Caveat in red)")
axes[1].margins(y=0.01)
plt.show()
print(f"Caveat: {per_font['Caveat'][0]:.3f} over {per_font['Caveat'][1]} crops")


# %% [markdown]
# ## Explore the mistakes
#
# Pick a split and a true script; the crops it gets wrong are shown with their prediction and font.

# %%
def mistakes(split="conflict", script="cyrillic"):
    s = ds.split(split)
    wrong = np.flatnonzero((s.script == ds.scripts.index(script)) & (pred[split] != s.script))[:10]
    if len(wrong) == 0:
        print("no mistakes")
        return
    fig, axes = plt.subplots(1, len(wrong), figsize=(1.5 * len(wrong), 1.6), squeeze=False)
    for ax, i in zip(axes[0], wrong):
        ax.imshow(s.images[i])
        ax.set_axis_off()
        title = f"→{ds.scripts[pred[split][i]]}\n{ds.families[s.family[i]]}"
        ax.set_title(title, fontsize=viz.SMALL)
    plt.show()


widgets.interact(mistakes, split=["test", "conflict", "heldout"], script=list(ds.scripts));

# %% [markdown]
# ## Training your own
#
# `scriptlab.train.train` takes a `TrainConfig` and shows a tqdm bar; on the tiny smoke preset it
# finishes in seconds (the result is not meant to be good):

# %%
cfg_small = train.make_train_config(mode="baseline", preset="smoke", epochs=1, batch_size=32)
small = train.train(cfg_small)
print(small.history[-1])

# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/02_solutions.ipynb`.
#
# 1. **The worst script.** Which script does the baseline read worst on the conflict split, and
#    what does it take it for most often? Use `metrics.confusion` on `pred["conflict"]`. Does the
#    answer fit the style shortcut of notebook 01 (which style is that script's assigned one)?
# 2. **Does colour matter?** Predict first, then measure the test accuracy on grey crops (the
#    mean over the colour channels, repeated three times) and on inverted crops (`255 - images`).
#    Text and background colours are random in the dataset: what should the model have learned?
# 3. **Mirror writing.** Flip every test crop left to right (`images[:, :, ::-1]`) and measure the
#    accuracy again. Predict which scripts survive the mirror best, then check with
#    `metrics.group_accuracy`. What does the result say about what the model reads?
