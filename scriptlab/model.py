"""The dual-head script/font CNN, the gradient flip, and a pure functional view.

Architecture (``ScriptNet``), in the spirit of the Keras mnist_convnet the first
seed starts from (conv, conv, pool, dropout, dense), resized for 32x64 crops:

    standardise: per-image, per-channel mean/std (colours are a nuisance)
    conv1 4x4x16 stride 2 SAME, ReLU (a strided stem, as ResNet's)
    conv2 3x3x32 SAME, ReLU -> pool2 2x2
    conv3 3x3x64 SAME, ReLU -> pool3 2x2 -> dropout 0.25
    dense 128, ReLU (the embedding) -> dropout 0.5
    script head: Linear(128, n_scripts)
    font head:   RMS-normalise -> gradient_flip -> Linear(128, n_styles), or, with
                 ``conditional=True``, one such head per script (Linear(128,
                 n_scripts * n_styles)), read at the crop's script: the adversary
                 of a conditional invariant network (Li et al. 2018)

XLA's CPU convolutions, not the dense layers, dominate the step time, and the
costliest part is the first layer at full resolution with only 3 input
channels. A strided 4x4 stem in place of conv 3x3 + pool 2x2 sees the same
field (4x4 pixels per unit), and a reshape-based max pool avoids XLA:CPU's
slow select-and-scatter gradient. benchmarks/bench_train.py measures the train
step against a re-creation of the first design, and the default channels
(16, 32, 64) against (32, 64, 64), which train slower for no accuracy gain on
this task.
The trunk is one table (``layer_table``, a ``LayerSpec`` per row): the modules, the
forward pass and its taps, ``trunk()``, ``geometry()``, ``cost()`` and ``LAYERS``
all read it, so a layer is added in one place
(``channels=(16, 32, 64, 64)`` adds conv4 + pool4).
``cost()`` gives the parameter count and FLOPs: 10 scripts x 5 styles ->
0.29 M parameters and 10.8 MFLOP per image forward.

References: Ganin & Lempitsky 2015 (gradient reversal), https://arxiv.org/abs/1409.7495;
Kim et al. 2019, https://arxiv.org/abs/1812.10352.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
from flax import nnx


class Outputs(NamedTuple):
    """What the model returns: both heads' logits, the embedding and named activations.

    Attributes:
      script: float32[N, n_scripts] logits of the script head.
      font: float32[N, n_styles] logits of the font-style head.
      embedding: float32[N, hidden], the penultimate representation.
      activations: {layer name: float32[N, h, w, c] or float32[N, hidden]} in forward order.
    """

    script: jax.Array
    font: jax.Array
    embedding: jax.Array
    activations: dict[str, jax.Array]


class LayerGeometry(NamedTuple):
    """One spatial layer of the trunk: kernel size, stride and SAME/VALID padding.

    Attributes:
      name: the layer's key in ``Outputs.activations``.
      kernel: side of the square kernel (or pooling window) in pixels.
      stride: step between windows in pixels, the same along both axes.
      padding: "SAME" or "VALID", as in ``jax.lax.conv_general_dilated``.
    """

    name: str
    kernel: int
    stride: int
    padding: str


class LayerSpec(NamedTuple):
    """One row of ScriptNet's layer table: the trunk's layers in forward order.

    Every view of the architecture derives from the table: the modules ``__init__``
    builds, the forward pass and its activation taps, ``geometry()``, ``cost()``,
    ``LAYERS`` / ``CONV_LAYERS`` and ``trunk`` (``interpret.receptive.trunk_fn``).

    Attributes:
      name: the module attribute (conv, dense) and the key in ``Outputs.activations``.
      kind: "conv" (followed by the nonlinearity), "pool" (2x2 max, stride 2) or
        "dense" (the embedding, last: dropout, flatten, Linear, nonlinearity).
      width: output channels (conv) or features (dense); 0 for a pool.
      kernel: side of the square kernel or pooling window (0 for dense).
      stride: step between windows (1 for dense).
      padding: "SAME" or "VALID", as in ``jax.lax.conv_general_dilated``.
    """

    name: str
    kind: str
    width: int = 0
    kernel: int = 0
    stride: int = 1
    padding: str = "SAME"

    def geometry(self) -> LayerGeometry:
        return LayerGeometry(self.name, self.kernel, self.stride, self.padding)


KINDS = ("conv", "pool", "dense")


def layer_table(channels: Sequence[int] = (16, 32, 64), hidden: int = 128) -> tuple[LayerSpec, ...]:
    """ScriptNet's trunk for ``channels``: a strided 4x4 stem, then a 3x3 conv + 2x2 pool per block.

    ``channels=(16, 32, 64)`` gives conv1, conv2, pool2, conv3, pool3, dense; one more
    entry adds conv4 + pool4 (and halves the dense layer's input grid).
    """
    if isinstance(channels, str) or not isinstance(channels, Sequence) or not channels:
        raise ValueError(f"channels must be a non-empty sequence of widths, got {channels!r}")
    table = [LayerSpec("conv1", "conv", channels[0], 4, 2, "SAME")]
    for i, width in enumerate(channels[1:], start=2):
        table += [
            LayerSpec(f"conv{i}", "conv", width, 3, 1, "SAME"),
            LayerSpec(f"pool{i}", "pool", 0, 2, 2, "VALID"),
        ]
    return (*table, LayerSpec("dense", "dense", hidden))


DEFAULT_TABLE = layer_table()
LAYERS = tuple(row.name for row in DEFAULT_TABLE)  # activation taps of the default ScriptNet
CONV_LAYERS = tuple(row.name for row in DEFAULT_TABLE if row.kind == "conv")


def _check_table(table) -> tuple[LayerSpec, ...]:
    """The table as a tuple of LayerSpec: known kinds, distinct names, one dense layer, last."""
    table = tuple(LayerSpec(*row) for row in table)
    names = [row.name for row in table]
    if len(set(names)) != len(names):
        raise ValueError(f"layers must have distinct names, got {names}")
    for row in table:
        if row.kind not in KINDS:
            raise ValueError(
                f"layer {row.name!r} has kind {row.kind!r}; allowed: {', '.join(KINDS)}"
            )
        if row.kind == "pool" and (row.kernel, row.stride, row.padding) != (2, 2, "VALID"):
            raise ValueError(
                f"pool {row.name!r} must be 2x2, stride 2, VALID (the one pool), got {row}"
            )
        if row.kind == "conv" and (row.width < 1 or row.kernel < 1 or row.stride < 1):
            raise ValueError(f"conv {row.name!r} needs width, kernel and stride >= 1, got {row}")
        if row.name in ("script_head", "font_head"):
            raise ValueError(f"layer name {row.name!r} is taken by a head")
    if [row.kind for row in table].count("dense") != 1 or table[-1].kind != "dense":
        raise ValueError(
            f"layers must end in exactly one dense layer, got kinds {[r.kind for r in table]}"
        )
    if table[0].kind != "conv":
        raise ValueError(f"layers must start with a conv, got {table[0]}")
    return table


@jax.custom_vjp
def gradient_flip(x: jax.Array, lam: jax.Array) -> jax.Array:
    """Identity forward, ``-lam * g`` backward (Ganin & Lempitsky 2015).

    Args:
      x: any array.
      lam: scalar array; traced, so a schedule that changes it never recompiles.

    Returns:
      ``x`` unchanged. The cotangent that flows back to ``x`` is ``-lam * g``;
      ``lam`` itself receives a zero cotangent.
    """
    return x


def _flip_fwd(x, lam):
    return x, lam


def _flip_bwd(lam, g):
    return (-lam * g).astype(g.dtype), jnp.zeros_like(lam)


gradient_flip.defvjp(_flip_fwd, _flip_bwd)


def standardise(images: jax.Array) -> jax.Array:
    """Per-image, per-channel zero mean and unit variance.

    Text and background colours are random nuisances; removing each crop's own
    colour statistics first lets the convolutions spend their capacity on strokes.
    """
    mean = images.mean(axis=(-3, -2), keepdims=True)
    var = jnp.mean((images - mean) ** 2, axis=(-3, -2), keepdims=True)
    # the tiny constant keeps the gradient finite on a constant image (jnp.std's is NaN)
    return (images - mean) / (jnp.sqrt(var + 1e-12) + 0.05)


def rms_normalise(h: jax.Array) -> jax.Array:
    """Scale each embedding to unit RMS before the font head.

    Under gradient reversal the trunk could otherwise "hide" style by inflating
    the embedding until the font head's loss explodes (and the script head with
    it); normalised, it can only hide style by changing direction.
    """
    return h / (jnp.sqrt(jnp.mean(h**2, axis=-1, keepdims=True)) + 1e-3)


@jax.custom_jvp
def _max_pool(x: jax.Array) -> jax.Array:
    """2x2 max pool, stride 2, written as a reshape and a max.

    Same values and same gradient as ``nnx.max_pool``: the whole cotangent of a
    window goes to its first maximum in row-major order (the max-pool switch of
    Zeiler & Fergus, PyTorch's ``MaxPool2d`` and XLA's select-and-scatter), not
    split among tied maxima as autodiff of ``max`` would. The gradient is an
    elementwise select rather than XLA:CPU's slow select-and-scatter
    (benchmarks/bench_train.py). Ties matter only where the ReLU's backward
    does not zero them (deconvnet): plain and guided gradients are unchanged.
    """
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).max(axis=(2, 4))


def _sum_pool(x: jax.Array) -> jax.Array:
    """2x2 sum pool, stride 2: the linear stand-in of ``_max_pool`` (same windows)."""
    n, h, w, c = x.shape
    return x.reshape(n, h // 2, 2, w // 2, 2, c).sum(axis=(2, 4))


def _pool_switches(x: jax.Array) -> jax.Array:
    """bool[N, H/2, 2, W/2, 2, C]: True at each 2x2 window's first maximum (row-major)."""
    n, h, w, c = x.shape
    xr = x.reshape(n, h // 2, 2, w // 2, 2, c)
    eq = xr == xr.max(axis=(2, 4))[:, :, None, :, None, :]
    e00, e01, e10, e11 = eq[:, :, 0, :, 0], eq[:, :, 0, :, 1], eq[:, :, 1, :, 0], eq[:, :, 1, :, 1]
    top = jnp.stack([e00, e01 & ~e00], axis=3)
    bottom = jnp.stack([e10 & ~(e00 | e01), e11 & ~(e00 | e01 | e10)], axis=3)
    return jnp.stack([top, bottom], axis=2)


@_max_pool.defjvp
def _pool_jvp(primals, tangents):
    # A JVP rule rather than a VJP: its transpose is the switch-routed gradient, and it
    # still composes with forward mode (jax.jvp of jax.grad: Hessian-vector products).
    (x,), (t,) = primals, tangents
    n, h, w, c = x.shape
    routed = jnp.where(
        _pool_switches(x), t.reshape(n, h // 2, 2, w // 2, 2, c), jnp.zeros((), t.dtype)
    )
    return _max_pool(x), routed.sum(axis=(2, 4))


def _dropout(x: jax.Array, rate: float, key: jax.Array | None) -> jax.Array:
    if key is None or rate == 0.0:
        return x
    keep = jax.random.bernoulli(key, 1.0 - rate, x.shape)
    return jnp.where(keep, x / (1.0 - rate), 0.0)


class ScriptNet(nnx.Module):
    """Dual-head CNN: a script head (the task) and a font-style head (the nuisance).

    Args:
      n_scripts: number of script classes.
      n_styles: number of font-style classes.
      channels: output channels of conv1, conv2, ...: a strided stem, then one 3x3 conv
        and 2x2 pool per further entry (``layer_table``).
      hidden: width of the dense embedding.
      dropout: (after the trunk, after the embedding) drop rates.
      image_shape: (H, W, C) of the inputs, used for ``cost()``.
      conditional: one font head per script instead of one shared font head.
      layers: the layer table itself (``LayerSpec`` rows in forward order), in place of
        the one ``channels`` and ``hidden`` describe.
      rngs: nnx.Rngs for parameter initialisation.
    """

    def __init__(
        self,
        n_scripts: int,
        n_styles: int,
        *,
        channels: Sequence[int] = (16, 32, 64),
        hidden: int = 128,
        dropout: tuple[float, float] = (0.25, 0.5),
        image_shape: tuple[int, int, int] = (32, 64, 3),
        conditional: bool = False,
        layers: Sequence[LayerSpec] | None = None,
        rngs: nnx.Rngs,
    ):
        table = _check_table(layer_table(channels, hidden) if layers is None else layers)
        h, w, c = image_shape
        grid = _grid(table, h, w)
        if grid is None:
            factor = _downsampling(table)
            raise ValueError(
                f"image_shape must have H and W divisible by {factor}, got {image_shape}"
            )
        self.layers = table
        self.image_shape = tuple(image_shape)
        self.dropout = tuple(dropout)
        width = c
        # modules are made in table order, then the heads: the order the rngs draw in
        for row in table:
            if row.kind == "conv":
                conv = nnx.Conv(
                    width, row.width, (row.kernel, row.kernel), strides=(row.stride, row.stride),
                    padding=row.padding, rngs=rngs,
                )  # fmt: skip
                setattr(self, row.name, conv)
                width = row.width
            elif row.kind == "dense":
                (gh, gw), hidden = grid[-1], row.width
                setattr(self, row.name, nnx.Linear(gh * gw * width, hidden, rngs=rngs))
        self.script_head = nnx.Linear(hidden, n_scripts, rngs=rngs)
        self.conditional = bool(conditional)
        self.n_styles = n_styles
        self.font_head = nnx.Linear(hidden, n_styles * (n_scripts if conditional else 1), rngs=rngs)

    def __call__(
        self,
        images: jax.Array,
        *,
        lam: jax.Array | float | None = None,
        dropout_key: jax.Array | None = None,
        relu: Callable[[jax.Array], jax.Array] = jax.nn.relu,
        perturb: Mapping[str, jax.Array] | None = None,
        font_script: jax.Array | None = None,
    ) -> Outputs:
        """Forward pass.

        Args:
          images: float32[N, H, W, 3] in [0, 1].
          lam: gradient-flip strength for the font head (forward is unaffected);
            None (the default) leaves the font head's gradients ordinary, which is
            what explanations want. Training passes the schedule's value.
          dropout_key: PRNG key; dropout is applied only when one is given.
          relu: the nonlinearity, swappable for guided backprop / deconvnet rules.
          perturb: optional {layer name: array} added to that activation; pass zeros
            and differentiate to get gradients with respect to a layer (Grad-CAM).
          font_script: int[N] script ids whose font head a conditional model reads
            (training passes the true labels); None reads the predicted script's.
            Ignored by a model with one font head.

        Returns:
          Outputs(script, font, embedding, activations).
        """
        perturb = perturb or {}
        acts: dict[str, jax.Array] = {}

        def tap(name, x):
            if name in perturb:
                x = x + perturb[name]
            acts[name] = x
            return x

        k1 = k2 = None
        if dropout_key is not None:
            k1, k2 = jax.random.split(dropout_key)
        x = self._trunk(standardise(images), relu, _max_pool, tap)
        dense = self.layers[-1]  # the table's one dense row, last: the embedding
        x = _dropout(x, self.dropout[0], k1)
        x = x.reshape(x.shape[0], -1)
        emb = tap(dense.name, relu(getattr(self, dense.name)(x)))
        h = _dropout(emb, self.dropout[1], k2)
        script = self.script_head(h)
        h_font = rms_normalise(h)
        if lam is not None:
            h_font = gradient_flip(h_font, jnp.asarray(lam, h.dtype))
        font = self.font_head(h_font)
        if self.conditional:
            which = jnp.argmax(script, -1) if font_script is None else font_script
            per_script = font.reshape(font.shape[0], -1, self.n_styles)
            font = jnp.take_along_axis(per_script, which[:, None, None], axis=1)[:, 0]
        return Outputs(script, font, emb, acts)

    def _trunk(self, x, relu, pool, tap) -> jax.Array:
        """The table's conv and pool rows in order, each output passed through ``tap(name, x)``."""
        for row in self.layers:
            if row.kind == "conv":
                x = tap(row.name, relu(getattr(self, row.name)(x)))
            elif row.kind == "pool":
                x = tap(row.name, pool(x))
        return x

    def trunk(self, images: jax.Array, *, linear: bool = False) -> dict[str, jax.Array]:
        """The conv/pool stack of the layer table on raw images: {layer name: activation}.

        No per-image standardisation: it makes every unit depend on every pixel, so the
        stack alone is what receptive fields describe (``interpret.receptive.trunk_fn``).
        With ``linear=True`` the ReLUs are identities and the max pools sum their windows,
        so a unit's gradient is nonzero on its whole receptive field (same geometry).

        Args:
          images: float32[N, H, W, C].

        Returns:
          {name: float32[N, h, w, c]} for every conv and pool row, in table order.
        """
        acts: dict[str, jax.Array] = {}

        def tap(name, x):
            acts[name] = x
            return x

        if linear:
            self._trunk(images, lambda v: v, _sum_pool, tap)
        else:
            self._trunk(images, jax.nn.relu, _max_pool, tap)
        return acts

    def geometry(self=None) -> tuple[LayerGeometry, ...]:
        """Spatial layers of the trunk in order, for receptive-field arithmetic.

        ``model.geometry()`` reads the model's own table; ``ScriptNet.geometry()`` (on the
        class) the default one.
        """
        table = DEFAULT_TABLE if self is None else self.layers
        return tuple(row.geometry() for row in table if row.kind != "dense")

    def cost(self) -> dict[str, int]:
        """Parameter count and forward multiply-add FLOPs (2 per MAC) per image."""
        h, w, _ = self.image_shape
        flops = 0
        for row, (oh, ow) in zip(self.layers, _grid(self.layers, h, w), strict=True):
            if row.kind == "conv":
                kh, kw, cin, cout = getattr(self, row.name).kernel.value.shape
                flops += 2 * oh * ow * kh * kw * cin * cout
        for name in [r.name for r in self.layers if r.kind == "dense"] + [
            "script_head",
            "font_head",
        ]:
            flops += 2 * getattr(self, name).kernel.value.size
        _, params, _ = nnx.split(self, nnx.Param, ...)
        n_params = sum(x.size for x in jax.tree.leaves(params))
        return {"params": int(n_params), "flops_per_image": int(flops)}


def _downsampling(table) -> int:
    """The product of the spatial strides: what H and W must divide by."""
    return math.prod(row.stride for row in table if row.kind != "dense")


def _grid(table, h: int, w: int) -> list[tuple[int, int]] | None:
    """The (H, W) each row of the table outputs (a dense row: its input grid); None if a
    stride does not divide its input."""
    out = []
    for row in table:
        if row.kind != "dense":
            if h % row.stride or w % row.stride:
                return None
            h, w = h // row.stride, w // row.stride
        out.append((h, w))
    return out


# Imports for the functional view only, kept with it while ScriptNet is edited above;
# they belong in the import block at the top of the file.
import dataclasses  # noqa: E402

from scriptlab.protocols import ApplyFn  # noqa: E402, F401  (re-exported for zoo)


def _value_key(state: nnx.State) -> tuple:
    """A hashable stand-in for a (small) non-Param state: tree structure, shapes and bytes."""
    leaves, treedef = jax.tree.flatten(state)
    parts = []
    for leaf in leaves:
        if isinstance(leaf, jax.core.Tracer):  # no value to compare: fall back to identity
            parts.append(("tracer", id(leaf)))
            continue
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            leaf = jax.random.key_data(leaf)
        a = jax.device_get(leaf)
        parts.append((a.shape, a.dtype.str, a.tobytes()))
    return treedef, tuple(parts)


@dataclasses.dataclass(frozen=True, eq=False)
class Functional:
    """ScriptNet as a pure ``ApplyFn`` (``scriptlab.protocols``) that jit caches by value.

    Holds the nnx GraphDef and the non-Param state; two models of the same
    architecture give equal, equally hashed instances, so a method jitted with
    ``apply_fn`` static compiles once for both.

    Attributes:
      graphdef: the model's nnx.GraphDef (static structure, hashes by value).
      rest: the non-Param state (empty for ScriptNet), a constant of the function.
    """

    graphdef: nnx.GraphDef
    rest: nnx.State
    _key: tuple = dataclasses.field(init=False, repr=False)

    def __post_init__(self):
        object.__setattr__(self, "_key", (self.graphdef, _value_key(self.rest)))

    def __hash__(self) -> int:
        return hash(self._key)

    def __eq__(self, other) -> bool:
        return isinstance(other, Functional) and self._key == other._key

    def __repr__(self) -> str:  # the GraphDef's own repr runs to pages
        kind = getattr(self.graphdef.nodes[0], "type", None)
        return f"Functional({getattr(kind, '__name__', kind)}, hash={hash(self):#x})"

    def __call__(self, params, images, *, relu=jax.nn.relu, perturb=None, lam=None) -> Outputs:
        """Evaluation-mode forward pass (no dropout); see ``scriptlab.protocols.ApplyFn``."""
        m = nnx.merge(self.graphdef, params, self.rest, copy=True)
        return m(images, relu=relu, perturb=perturb, lam=lam)


def functional(model: nnx.Module) -> tuple[Any, Functional]:
    """Split a model once into (params, apply_fn) for plain jax transforms.

    Args:
      model: a ScriptNet (any nnx.Module whose ``__call__`` takes ``relu``,
        ``perturb`` and ``lam``).

    Returns:
      (params, apply_fn): params an nnx.State pytree of nnx.Param leaves, and
      apply_fn a ``Functional``, the ``scriptlab.protocols.ApplyFn`` contract
      (evaluation mode; ``lam=None`` applies no gradient flip). apply_fns of two
      models with the same architecture compare equal, so they share jitted code.
    """
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    return params, Functional(graphdef, rest)


def build(n_scripts: int, n_styles: int, *, seed: int = 0, **kwargs) -> ScriptNet:
    """Make a freshly initialised ``ScriptNet`` from an integer seed."""
    return ScriptNet(n_scripts, n_styles, rngs=nnx.Rngs(seed), **kwargs)
