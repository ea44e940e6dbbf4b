# %% [markdown]
# # 04 · Class model visualisation: what image does the network want to see?
#
# > *Let $S_c(I)$ be the score of class $c$ ... This method tries to find $I$ that maximises $S_c$ ...
# > the weights are frozen, but the image is updated in each step ... Images that are gibberish mean
# > that the network hasn't learned to discriminate that class well.*
# > ("Understanding Convolutional Neural Networks", "Generating an image that maximises a class score")
#
# Simonyan et al. (2013) climb $S_c(I) - \lambda \lVert I \rVert_2^2$ from the zero (mean) image by
# gradient ascent on the **unnormalised** score (the logit, not the softmax: the softmax can rise by
# pushing other classes down). `scriptlab.interpret.classviz.class_model` does this for every class
# of a head at once (one jitted call: `vmap` over classes, `lax.scan` over steps), with the
# regularisers that make the pictures readable on a small network: jitter, blur, clipping, total
# variation and a decorrelated Fourier parametrisation.
#
# We compare two zoo models: **baseline** (trained on scripts only) and **unlearn** (trained on
# scripts with a font-style head behind a gradient flip). The seed's prediction: classes a network
# has not learned to discriminate come out as gibberish. So for unlearn the *script* images should
# still show stroke-like structure, while its *font-style* images should say little.

# %%
# Configuration
MODELS = ("baseline", "unlearn")
STEPS = 128  # ascent steps (lax.scan)
LR = 0.05  # Adam step size
L2 = 1e-3  # Simonyan's lambda on ||I - 0.5||^2
JITTER = 2  # random roll in pixels before each forward pass
TV = 2e-3  # total-variation weight
SEED = 0

# %%
import time

import ipywidgets as widgets
import jax
import matplotlib.pyplot as plt
import numpy as np

from scriptlab import data, viz, zoo
from scriptlab.interpret import classviz

viz.style()  # the series' figure style: readable labels, constrained layout
t_start = time.perf_counter()
ds = data.load("workshop", seed=0)
models = {name: zoo.load(name, progress=False) for name in MODELS}
# Every zoo model is the same ScriptNet, so one apply_fn serves all parameter sets and
# each method compiles once per shape instead of once per model.
apply_fn = models[MODELS[0]].apply_fn
probe = data.as_float(ds.test.images[:8])
for m in models.values():
    np.testing.assert_allclose(
        apply_fn(m.params, probe).script, m.apply_fn(m.params, probe).script, atol=1e-5
    )
READABLE = dict(steps=STEPS, lr=LR, l2=L2, jitter=JITTER, tv=TV, seed=SEED)
# The font head sits behind the gradient flip during training (backward -lam * g); the
# functional apply_fn applies no flip by default, so its gradients are the true ones.

# %% [markdown]
# ## One image per script class, baseline vs unlearn
#
# Each column is one model; each row the image that maximises one script logit.

# %%
script_viz = {
    name: classviz.class_model(apply_fn, m.params, objective=("head", "script"), **READABLE)
    for name, m in models.items()
}
fig, axes = plt.subplots(
    len(ds.scripts), len(MODELS), figsize=(2.6 * len(MODELS), 0.75 * len(ds.scripts))
)
for j, name in enumerate(MODELS):
    for i, script in enumerate(ds.scripts):
        axes[i, j].imshow(np.asarray(script_viz[name].images[i]))
        axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
        if j == 0:
            axes[i, j].set_ylabel(script, rotation=0, ha="right", va="center")
    axes[0, j].set_title(name)
fig.suptitle("argmax_I  S_script(I) - L2 ||I||^2 - TV(I)")
plt.show()


# %%
def own_class_table(results, head):
    names = ds.scripts if head == "script" else ds.styles
    rows, misread = {}, []
    for name, m in models.items():
        logits = np.asarray(getattr(apply_fn(m.params, results[name].images), head))
        prob = np.asarray(jax.nn.softmax(logits))
        k = len(logits)
        misread += [
            f"{name}: the {names[c]} image is read as {names[p]} "
            f"(logit {logits[c, p]:.0f} against {logits[c, c]:.0f})"
            for c, p in enumerate(logits.argmax(1))
            if p != c
        ]
        rows[name] = (
            prob[np.arange(k), np.arange(k)].mean(),
            (logits.argmax(1) == np.arange(k)).mean(),
            np.asarray(results[name].scores)[0].mean(),
            np.asarray(results[name].scores)[-1].mean(),
        )
    titles = ("own-class p", "argmax=target", "logit start", "logit end")
    print(f"{'model':10s} " + " ".join(f"{t:>{w}s}" for t, w in zip(titles, (12, 14, 12, 10))))
    for name, (p, hit, s0, s1) in rows.items():
        print(f"{name:10s} {p:12.2f} {hit:14.0%} {s0:12.2f} {s1:10.2f}")
    print("\n".join(misread) or "every image is read as its own class")
    return rows


script_rows = own_class_table(script_viz, "script")

# %%
# NBVAL_CHECK_OUTPUT
claims = {
    "every ascent raised its target logit": all(s1 > s0 for _, _, s0, s1 in script_rows.values()),
    "both models read at least 8 of the 10 script images as their own class": all(
        hit >= 0.8 for _, hit, _, _ in script_rows.values()
    ),
}
for claim, holds in claims.items():
    print(f"{claim}: {holds}")
assert all(claims.values())

# %% [markdown]
# The ascent climbs the *unnormalised* score, and nothing stops it from raising other classes' logits
# on the way. Where an image is read as another class (the list above), in our runs it is a Latin,
# Cyrillic or Greek image read as one of the other two: the strokes that make a crop look Cyrillic
# to this network also make it look Latin, the confusion notebook 03 measures on real crops. Which
# classes cross over moves from one training run to the next, so the check above asks for most
# classes, not all.

# %% [markdown]
# ## Font-style classes: learned vs unlearned
#
# The same procedure on the **font** head (the flip only acts during training; `apply_fn` passes
# true gradients through the font head by default). The baseline never trained its font head (it is a
# readout of a trunk that was free to keep style), the unlearn model trained it adversarially: the
# trunk was pushed to hide style. Compare the pictures, and how far each ascent had to push the
# logit.

# %%
font_viz = {
    name: classviz.class_model(apply_fn, m.params, objective=("head", "font"), **READABLE)
    for name, m in models.items()
}
fig, axes = plt.subplots(
    len(ds.styles), len(MODELS), figsize=(2.6 * len(MODELS), 0.75 * len(ds.styles))
)
for j, name in enumerate(MODELS):
    for i, style in enumerate(ds.styles):
        axes[i, j].imshow(np.asarray(font_viz[name].images[i]))
        axes[i, j].set_xticks([]), axes[i, j].set_yticks([])
        if j == 0:
            axes[i, j].set_ylabel(style, rotation=0, ha="right", va="center")
    axes[0, j].set_title(name)
fig.suptitle("argmax_I  S_font(I): font-style classes")
plt.show()
font_rows = own_class_table(font_viz, "font")

# %% [markdown]
# ## Ascent curves
#
# `scores[t, c]` is the (jittered) logit before step t. The ascent climbs for every class; how high
# and how fast tells how easily each model can be talked into a class.

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 2.6), sharey=True)
for ax, (title, runs) in zip(axes, (("script head", script_viz), ("font head", font_viz))):
    for name, ls in zip(MODELS, ("-", "--")):
        ax.plot(np.asarray(runs[name].scores).mean(1), ls, label=name)
    ax.set_title(title), ax.set_xlabel("step"), ax.legend()
axes[0].set_ylabel("mean target logit")
plt.show()

# %% [markdown]
# ## What the regularisers do
#
# One class, one model, five recipes: Simonyan's plain L2 ascent; + jitter and TV; + periodic blur;
# the decorrelated Fourier parametrisation; and grayscale. Without regularisers the ascent finds
# high-frequency patterns the network scores highly but no person would call a script.

# %%
CLASS = 0
RECIPES = {
    "plain L2 (Simonyan)": dict(steps=STEPS, lr=LR, l2=L2),
    "+ jitter + TV": READABLE,
    "+ blur": dict(READABLE, blur_sigma=0.7, blur_every=4),
    "Fourier": dict(READABLE, parametrisation="fourier", tv=0.0),
    "grayscale": dict(READABLE, grayscale=True),
}
base = models[MODELS[0]]
recipe_viz = {
    label: classviz.class_model(apply_fn, base.params, targets=[CLASS], **kw)
    for label, kw in RECIPES.items()
}
# constrained layout places the suptitle above the two-line panel titles
fig, axes = plt.subplots(1, len(RECIPES), figsize=(2.4 * len(RECIPES), 2.0))
for ax, (label, r) in zip(axes, recipe_viz.items()):
    ax.imshow(np.asarray(r.images[0]))
    ax.set_title(f"{label}\nlogit {float(r.scores[-1, 0]):.1f}")
    ax.axis("off")
fig.suptitle(f"{MODELS[0]}: class '{ds.scripts[CLASS]}'")
plt.show()

# %% [markdown]
# ## A single channel of a layer
#
# The same machinery maximises the mean activation of one channel: `objective=("layer", "conv2", c)`
# (the activations notebook uses this again). Here eight conv2 channels of the baseline in one call.

# %%
channels = classviz.class_model(
    apply_fn, base.params, objective=("layer", "conv2"), targets=list(range(8)), **READABLE
)
fig, axes = plt.subplots(1, 8, figsize=(14, 1.3))
for c, ax in enumerate(axes):
    ax.imshow(np.asarray(channels.images[c])), ax.axis("off"), ax.set_title(f"conv2:{c}")
plt.show()


# %% [markdown]
# ## Try it
#
# Pick a model, a head and class, the L2 weight, the number of steps and a recipe. (Steps and
# recipe change the compiled program, so the first run of a new setting takes a few seconds;
# the L2 weight is traced and does not recompile.)

# %%
def show_class(model=MODELS[0], head="script", cls=0, l2=L2, steps=STEPS, recipe="+ jitter + TV"):
    names = ds.scripts if head == "script" else ds.styles
    cls = min(cls, len(names) - 1)
    kw = dict(RECIPES[recipe], l2=l2, steps=steps)
    r = classviz.class_model(
        apply_fn, models[model].params, objective=("head", head), targets=[cls], **kw
    )
    fig, (a, b) = plt.subplots(1, 2, figsize=(7, 1.6), gridspec_kw={"width_ratios": [2, 1.4]})
    a.imshow(np.asarray(r.images[0])), a.axis("off"), a.set_title(f"{model}: {head} '{names[cls]}'")
    b.plot(np.asarray(r.scores[:, 0])), b.set_xlabel("step"), b.set_title("target logit")
    plt.show()


widgets.interact(
    viz.busy(show_class, message="optimising the input image ..."),
    model=list(MODELS),
    head=["script", "font"],
    cls=widgets.IntSlider(0, 0, len(ds.scripts) - 1),
    l2=widgets.FloatLogSlider(value=L2, base=10, min=-5, max=-1),
    steps=widgets.IntSlider(STEPS, 16, 512, 16),
    recipe=list(RECIPES),
);

# %%
# NBVAL_CHECK_OUTPUT
print(
    "images per head:",
    tuple(script_viz[MODELS[0]].images.shape),
    tuple(font_viz[MODELS[0]].images.shape),
)
print(
    "scores per head:",
    tuple(script_viz[MODELS[0]].scores.shape),
    tuple(font_viz[MODELS[0]].scores.shape),
)

# %%
print(f"notebook ran in {time.perf_counter() - t_start:.0f} s")

# %% [markdown]
# **Reading the pictures.** The baseline's script images repeat short stroke fragments across the
# crop: the network needs no word shapes, only the local curvature and stroke patterns a 3-conv net
# can see in its receptive fields, tiled wherever they raise the score. If the unlearn model's script
# images keep such structure, unlearning style did not cost it the script features. For the font head,
# look at the logit each ascent reaches and how easily the images are read as their target: the
# pictures are the seed's test of whether a class was learned, and the table beside them keeps that
# test honest.

# %% [markdown]
# ## Exercises
#
# Solutions: `notebooks/solutions/04_solutions.ipynb`. Use one recipe for all three (for example
# `READABLE` with `steps=64`): `l2` and the parameters are traced, so after the first call each
# new run reuses the compiled program and takes well under a second.
#
# 1. **Do the two models agree?** Score each model's script class images with the *other* model.
#    How many of the ten does it read as their target class? What does that say about how much of
#    a class image is specific to the network that made it?
# 2. **Predict, then check: 100 times more L2.** Rerun the baseline's script images with
#    `l2=1e-1`. Predict what happens to the images' contrast (the mean of `|I - 0.5|`) and to how
#    often each is read as its own class, then check.
# 3. **Local or global evidence?** Roll each baseline class image 4 pixels to the right
#    (`np.roll(images, 4, axis=2)`) and score it again. If the network needed whole word shapes,
#    the logit would collapse; if it adds up local stroke evidence, most of it survives. Which is
#    it?
