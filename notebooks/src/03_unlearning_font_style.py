# %% [markdown]
# # 03 · The style shortcut, and what removes it
#
# > *Let's have two heads for the last layer of the model, one head for the target y as usual, and
# > other head would be used to predict font-style! ...* (Dissecting the blackbox)
#
# The workshop data is biased on purpose: 90 % of each script's training crops are drawn in one
# style (Latin in hand, Cyrillic in serif, Greek in mono, ...). This notebook shows that the
# baseline learns that shortcut, that the essay's gradient flip does not remove it, and what does.
# Every number below comes from `scriptlab.experiment`; `scriptlab experiment` on the command line
# runs the whole table (every method, three seeds), this notebook a subset.

# %%
# Configuration
PRESET = "workshop"
SEEDS = 3
METHODS = (
    "baseline",
    "unlearn",
    "cdann",
    "balanced_cdann",
    "dfr",
    "unlearn_dfr",
    "cdann_dfr",
    "dfr_val",
    "cdann_dfr_val",
    "balanced_cdann_dfr_val",
)
REFERENCES = ("oracle",)

# %%
import ipywidgets as widgets
import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

from scriptlab import data, experiment, viz, zoo
from scriptlab.fonts import LCG
from scriptlab.model import gradient_flip

# %config InlineBackend.figure_formats = ["jpeg"]
viz.style()  # the series' figure style: readable labels, constrained layout
ds = data.load(PRESET)

# %% [markdown]
# ## The flip, in ten lines
#
# `gradient_flip(x, lam)` is a `jax.custom_vjp`: identity forward, `-lam * g` backward.

# %%
# NBVAL_CHECK_OUTPUT
f = lambda x, lam: jnp.sum(jnp.sin(gradient_flip(x, lam)))
x = jnp.array([0.0, 1.0, 2.0])
print("forward is the identity:  ", bool(f(x, 0.5) == jnp.sum(jnp.sin(x))))
np.testing.assert_allclose(jax.grad(f)(x, 0.5), -0.5 * np.cos(x), rtol=1e-6)
print("backward is -lam * grad:   True")

# %% [markdown]
# ## The experiment
#
# Each model is scored where a shortcut cannot hide: the worst (script, style) cell of the
# bias-conflicting split, the Latin/Cyrillic/Greek crops of the held-out font families, and
# Caveat's Cyrillic crops (the essay's Caveat failure). The **oracle** is the same recipe trained
# with styles uniform within each script: it shows what the data allows without the bias.
# Cold, this trains 15 models; warm it reads them from the zoo.

# %%
results = experiment.run(
    PRESET, SEEDS, methods=METHODS, references=REFERENCES, lam_sweep=(), progress=False
)
S = results["summary"]
print(experiment.table(results))

# %% [markdown]
# ## 1 · The model reads serif as Cyrillic
#
# Script accuracy on the conflict split per (script, style) cell, averaged over seeds. The baseline's
# holes sit where a script is drawn in another script's assigned style.

# %%
fig = experiment.heatmaps(results, ("baseline", "unlearn", "balanced_cdann_dfr_val", "oracle"))
plt.show()

# %%
# the script each crop was read as, kept by experiment.run for every model and seed
predicted = experiment.predicted(results, "baseline")  # seed 0, the zoo's "baseline"
bad = experiment.misread(ds, predicted, "heldout", script="latin", family="PT Serif")[:6]
fig = viz.image_row(
    ds.heldout.images[bad],
    [f"read as {ds.scripts[predicted['heldout'][i]]}" for i in bad],
    suptitle="Latin in PT Serif (held out), baseline",
)
plt.show()

# %%
# Models trained on another machine can give slightly different numbers, so CI checks the
# assertions, not the printed digits.
b, o = S["baseline"], S["oracle"]
for k in experiment.GOAL:
    print(f"{k:<16} baseline {b[k]['mean']:.3f}   oracle {o[k]['mean']:.3f}")
assert all(o[k]["mean"] > b[k]["mean"] + 0.1 for k in experiment.GOAL)
print("the oracle beats the baseline by > 0.1 on every symptom: the bias is the cause")

# %% [markdown]
# ## 2 · Why the essay's flip falls short
#
# The flip pushes the embedding towards *marginal* independence of style. Here style is
# correlated with script, which the task must encode, so that fights the task; and the script
# head still reads whatever style is left. The conditional adversary (`cdann`, one font head per
# script) asks only for independence *given* the script. Style left in the embedding, scored by
# fresh probes on held-out halves of the conflict split:

# %%
print(
    experiment.table(
        results,
        ("font_probe", "font_mlp_probe", "font_cond_probe", "font_from_script", "font_chance"),
    )
)

# %% [markdown]
# Is it the marginal flip fighting the task? Drawing every (script, style) group equally often
# makes style independent of script, so there the marginal and the conditional flip ask the same
# thing and neither fights the task. `balanced_cdann` (the conditional flip on group-balanced
# batches) still leaves most of each gap open: the flip is not enough, whatever it is conditioned
# on.

# %%
for k in experiment.GOAL:
    cdann, balanced, oracle = (S[m][k]["mean"] for m in ("cdann", "balanced_cdann", "oracle"))
    print(f"{k:<16} cdann {cdann:.3f}   balanced_cdann {balanced:.3f}   oracle {oracle:.3f}")
assert all(S["balanced_cdann"][k]["mean"] < S["oracle"][k]["mean"] - 0.1 for k in experiment.GOAL)
print("balanced_cdann stays more than 0.1 below the oracle on every symptom")

# %% [markdown]
# ## 3 · What works: a group-balanced head fitted on crops the trunk never saw
#
# Refitting only the linear script head so that every (script, style) group weighs the same (deep
# feature reweighting, Kirichenko et al. 2022) closes about half of each gap when the head is
# fitted
# on the training crops (`dfr`, `unlearn_dfr`, `cdann_dfr`). But the trunk has fitted its own
# training crops: on them its minority-style errors are fewer, and not the errors it makes on new
# crops. The baseline's accuracy on crops drawn in a minority style:

# %%
base = zoo.load("baseline", PRESET, progress=False)
minority = {}
for split in ("train", "val_conflict"):
    logits = experiment.predictions(base, ds, (split,))[split].script
    minority[split] = experiment.minority_accuracy(ds, logits, split)
    mean, worst, cell = minority[split]
    print(f"{split:<13} mean {mean:.2f}   worst cell {worst:.2f} ({cell})")
assert minority["train"][1] > minority["val_conflict"][1]

# %% [markdown]
# DFR as its authors define it fits the balanced head on held-out crops instead: `*_val` refits it
# on `val` plus `val_conflict` (3,500 crops the trunk never trained on), its weight penalty chosen
# on the half of `val_conflict` that the choice's fit left out. The `*_val` rows close the most of
# the conflict and Caveat gaps, on any trunk; the held-out-family gap is the smallest and the
# noisiest (one seed's spread is a fifth of it), so which `*_val` trunk clears half of all three
# gaps moves from one set of training runs to the next; the check below asks that one does. The
# full table (`scriptlab experiment`, in the README) has the same head on the balanced trunk
# without any flip (`balanced_dfr_val`): it does at least as well as with the flip, so the flip is
# not what helps. The table gives the share of each baseline-to-oracle gap a method closes (`*`:
# its worst seed beats the baseline's best).

# %%
print(experiment.goal_table(results))

# %%
# NBVAL_CHECK_OUTPUT
g = results["goal"]
best = max(g, key=lambda m: min(g[m][k]["closed"] for k in experiment.GOAL))
ok = all(g[best][k]["closed"] >= 0.5 and g[best][k]["separated"] for k in experiment.GOAL)
print("a method closes >= 50 % of all three gaps, every seed above the baseline's best:", ok)
assert ok
for k in ("conflict_worst", "caveat_cyrillic"):
    assert S["dfr_val"][k]["mean"] > S["dfr"][k]["mean"] + 0.05  # held-out fit beats train fit

# %%
half = [m for m in g if all(g[m][k]["closed"] >= 0.5 for k in experiment.GOAL)]
print("method closing the most of its smallest gap:", best)
print("methods closing >= 50 % of all three gaps:", ", ".join(half))

# %% [markdown]
# ## 4 · What it costs
#
# The shortcut is right 90 % of the time in-distribution, so giving it up costs test accuracy; the
# oracle, trained without the bias, pays about the same. The rest of the gap is data: a minority
# cell has about 75 training crops where the oracle has about 600, and held-out font families
# (Roboto, PT Serif, ...) are new to every model.

# %%
for name in dict.fromkeys(("baseline", "dfr_val", best, "oracle")):  # best may be dfr_val
    test, conflict, held = (S[name][k]["mean"] for k in ("test", "conflict", "heldout"))
    print(f"{name:<24} test {test:.3f}   conflict {conflict:.3f}   held-out {held:.3f}")

# %% [markdown]
# Held-out font families, Latin, Cyrillic and Greek: script accuracy per (script, family) cell,
# mean over seeds (`experiment.family_table`; `scriptlab experiment` writes every script's rows).

# %%
print(
    experiment.family_table(
        results,
        tuple(dict.fromkeys(("baseline", "unlearn", "dfr_val", best, "oracle"))),
        scripts=LCG,
    )
)

# %% [markdown]
# ## Browse the misread crops
#
# Pick a model, a script and a font family: the crops of the conflict and held-out splits that it
# reads wrong.

# %%
BROWSE = list(METHODS) + list(REFERENCES)


def browse(model="baseline", script="latin", family="PT Serif"):
    predicted = experiment.predicted(results, model)  # seed 0: no model runs on a move
    for split in ("conflict", "heldout"):
        idx = experiment.misread(ds, predicted, split, script=script, family=family)[:8]
        if len(idx):
            viz.image_row(
                ds.split(split).images[idx],
                [ds.scripts[predicted[split][i]] for i in idx],
                suptitle=f"{model}: {script} in {family} ({split}), read as",
            )
            plt.show()
            return
    print("no misread crops in that cell")


widgets.interact(
    browse,
    model=BROWSE,
    script=list(ds.scripts),
    family=list(ds.families),
);

# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/03_solutions.ipynb`.
#
# 1. **The essay's Caveat.** Caveat is a handwritten font that covers Latin and Cyrillic. With
#    `experiment.predictions(base, ds)`, measure the baseline's accuracy on Caveat crops of each
#    of the two scripts (test and conflict splits pooled) and what it reads Cyrillic Caveat as.
#    Is Caveat hard, or is something else going on?
# 2. **Predict, then check: the flip at lam = 3.** With `lam=3.0`, `apply_fn` puts
#    `gradient_flip` between the embedding and the font head. Predict how the gradient of the font
#    loss with respect to (a) the font head's weights and (b) `conv1`'s kernel changes against
#    `lam=None` (no flip). Check with `jax.grad` on the unlearn model (`zoo.load("unlearn", ...)`)
#    and 32 test crops. What would training with `lam_max = 3` (`train.dann_lambda`) then do to
#    the trunk late in training?
# 3. **Which model would you ship?** From `results["summary"]`, pick the method with the best
#    worst conflict cell (`conflict_worst`) among those that lose at most 6 points of test accuracy
#    against the baseline. What kind of method is it, and how much of the worst cell does it
#    recover?
