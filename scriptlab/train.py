"""Training the dual-head model: baseline, multitask, unlearn (gradient flip) and ascent.

Modes (the font head always sees ordinary gradients unless stated):
  baseline   script loss only; the font head is not trained.
  multitask  script loss + font loss, ordinary gradients everywhere.
  unlearn    script loss + font loss through ``gradient_flip`` with the DANN
             schedule lam(p) = lam_max * (2 / (1 + exp(-10 p)) - 1): the font
             head learns to read style while the trunk is pushed to hide it.
             The first ``adv_warmup`` of training keeps lam = 0 (pre-training
             before the reversal bites stabilises it, as Kim et al. 2019 found).
  ascent     the literal recipe of the essay "Dissecting the Blackbox": script
             loss MINUS font loss, so the font head and the trunk both climb the
             font loss.
  cdann      ``unlearn`` with one font head per script, each read at the crop's
             true script (Li et al. 2018): the flip then removes style *given*
             the script (conditional invariance) instead of all the style that
             correlates with the script (marginal invariance, which fights the
             task when style and script are correlated).
  balanced   script loss only, with every (script, style) group drawn equally
             often (Idrissi et al. 2022): the minority styles of each script
             weigh as much as its assigned one.
  groupdro   balanced sampling plus online group DRO (Sagawa et al. 2020): the
             loss is a weighted mean of per-group losses whose weights climb
             (exponentiated gradient, step ``dro_eta``) on the worst groups.

``balance=True`` adds group-balanced sampling to any mode (``balanced`` and
``groupdro`` always use it). Under balanced sampling style is independent of
script, so the marginal flip of ``unlearn`` no longer fights the task.

The step is a plain ``jax.jit`` over a (params, opt_state) pytree (Flax's
performance guide: no graph walking per step); ``lam`` is a traced scalar, so
the schedule never recompiles.

References: Ganin & Lempitsky 2015, https://arxiv.org/abs/1409.7495; Kim et al.
2019, https://arxiv.org/abs/1812.10352; Elazar & Goldberg 2018,
https://arxiv.org/abs/1808.06640; Li et al. 2018 (conditional invariant adversarial
networks, ECCV); Sagawa et al. 2020 (group DRO), https://arxiv.org/abs/1911.08731;
Idrissi et al. 2022, https://arxiv.org/abs/2110.14503.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scriptlab import cache, distributed
from scriptlab import data as data_lib
from scriptlab.interpret._common import (
    check_batch_size,
    check_images,
    map_rows,
    probe_outputs,
    uint8_to_float,
)
from scriptlab.model import ScriptNet, functional
from scriptlab.protocols import ApplyFn
from scriptlab.validation import check_bool, check_int, check_name, check_number

MODES = ("baseline", "multitask", "unlearn", "ascent", "cdann", "balanced", "groupdro")
ADVERSARIAL = ("unlearn", "cdann")  # modes whose font loss reaches the trunk through the flip
BALANCED = ("balanced", "groupdro")  # modes that always draw every (script, style) group equally

# Part of every TrainConfig.key(), so zoo models trained by older code are not loaded as if new.
# Bump it whenever a change moves the trained bits (the loss, the optimiser, the step, the model's
# forward pass, initialisation): tests/test_golden.py fails until it is bumped.
TRAINING_CODE_VERSION = 1


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Everything that determines a trained model."""

    mode: str = "baseline"
    preset: str = "workshop"
    seed: int = 0
    data_seed: int = 0
    rho: float | None = None  # None: the dataset preset's default
    epochs: int = 4
    batch_size: int = 64
    # Rows per forward/backward pass inside one step. The step still takes the whole batch's
    # mean gradient (the passes' gradients are averaged); only float rounding and the dropout
    # draws differ from one pass. 16 rows keep a pass's activations in the CPU's cache: 1.5-1.8x
    # the images/s of one 64-row pass on 2 cores (benchmarks/bench_train.py). groupdro,
    # whose weights need the whole batch's group losses, always takes one pass.
    micro_batch: int = 16
    lr: float = 4e-3
    warmup_steps: int = 50
    weight_decay: float = 1e-4
    clip_norm: float = 1.0  # global gradient-norm clip: keeps the adversarial modes stable
    lam_max: float = 0.3
    adv_warmup: float = (
        0.25  # unlearn: fraction of training with lam = 0 (pre-train, Kim et al. 2019)
    )
    font_weight: float = 1.0
    dropout: tuple[float, float] = (0.1, 0.3)
    channels: tuple[int, int, int] = (16, 32, 64)
    n_train: int | None = None  # train on the first n training crops only
    shuffle_labels: bool = False  # permute script labels (Adebayo data randomisation)
    snapshots: bool = False  # keep params after every epoch (epoch 0 = init)
    max_loss: float = (
        50.0  # stop as diverged when the script loss exceeds this (CE starts near 2.3)
    )
    dro_eta: float = 0.1  # groupdro: step size of the group weights' exponentiated gradient
    balance: bool = False  # draw every (script, style) group equally (always on in BALANCED modes)

    def __post_init__(self):
        """Every construction is checked: ``make_train_config``, a restore, ``replace``.

        Sequences become tuples (a config read back from JSON holds lists).

        Raises:
          ValueError: naming the field, the value and what is allowed.
        """
        check_name("mode", self.mode, MODES)
        check_name("preset", self.preset, tuple(data_lib.PRESETS))
        for name, low in (
            ("seed", 0),
            ("data_seed", 0),
            ("epochs", 1),
            ("batch_size", 1),
            ("micro_batch", 1),
            ("warmup_steps", 0),
        ):
            object.__setattr__(self, name, check_int(name, getattr(self, name), low))
        if self.n_train is not None:
            object.__setattr__(self, "n_train", check_int("n_train", self.n_train, 1))
        if self.batch_size % self.micro_batch:
            raise ValueError(
                f"micro_batch must divide batch_size, got micro_batch={self.micro_batch} and "
                f"batch_size={self.batch_size}"
            )
        if self.rho is not None:
            check_number("rho", self.rho, low=0.0, high=1.0)
        try:
            check_number("lr", self.lr, low=0.0, open_low=True)
        except ValueError:
            raise ValueError(f"lr must be a positive finite number, got {self.lr!r}") from None
        check_number("weight_decay", self.weight_decay, low=0.0)
        check_number("clip_norm", self.clip_norm, low=0.0, open_low=True)
        check_number("lam_max", self.lam_max, low=0.0)
        check_number("adv_warmup", self.adv_warmup, low=0.0, high=1.0)
        if self.adv_warmup == 1.0:
            raise ValueError("adv_warmup must be in [0, 1), got 1.0 (the flip would never start)")
        check_number("font_weight", self.font_weight)
        check_number("max_loss", self.max_loss, low=0.0, open_low=True)
        check_number("dro_eta", self.dro_eta, low=0.0)
        for name in ("shuffle_labels", "snapshots", "balance"):
            check_bool(name, getattr(self, name))
        object.__setattr__(self, "dropout", _checked_tuple("dropout", self.dropout, 2, _rate))
        object.__setattr__(self, "channels", _checked_tuple("channels", self.channels, 3, _width))

    def key(self) -> str:
        fields = dataclasses.asdict(self) | {"training_code_version": TRAINING_CODE_VERSION}
        blob = json.dumps(fields, sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


def _rate(name: str, value) -> float:
    check_number(name, value, low=0.0, high=1.0)
    if value == 1.0:
        raise ValueError(f"{name} must be a drop rate in [0, 1), got 1.0")
    return value


def _width(name: str, value) -> int:
    return check_int(name, value, 1)


def _checked_tuple(name: str, values, length: int, check) -> tuple:
    """``values`` as a tuple of ``length`` entries, each passed through ``check(label, v)``."""
    if isinstance(values, str) or not isinstance(values, Sequence) or len(values) != length:
        raise ValueError(f"{name} must be a sequence of {length} values, got {values!r}")
    return tuple(check(f"{name}[{i}]", v) for i, v in enumerate(values))


def make_train_config(**kwargs) -> TrainConfig:
    """A validated TrainConfig (clear errors naming the bad argument)."""
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    for name in kwargs:
        if name not in fields:
            raise ValueError(
                f"unknown training option {name!r}; allowed: {', '.join(sorted(fields))}"
            )
    return TrainConfig(**kwargs)


class TrainingDiverged(RuntimeError):
    """Loss became NaN/inf or exploded."""


class TrainState(NamedTuple):
    """Parameters and optimiser state: the pytree the jitted step maps to a new one.

    Attributes:
      params: the model's nnx.Param state.
      opt_state: the optax state.
      group_weights: float32[n_groups] group DRO's weights over (script, style)
        groups (they sum to 1); None in every other mode.
    """

    params: Any
    opt_state: Any
    group_weights: Any = None


class Result(NamedTuple):
    """A trained model with its configuration and per-epoch metrics.

    Attributes:
      model: the trained ScriptNet.
      config: the ``TrainConfig`` it was trained with.
      history: one dict of losses and validation accuracies per epoch.
      data_key: the cache key of the dataset it was trained on.
      snapshots: (epoch, params) when config.snapshots
    """

    model: ScriptNet
    config: TrainConfig
    history: list[dict]
    data_key: str
    snapshots: list[tuple[int, Any]]


def dann_lambda(progress, lam_max: float = 1.0):
    """DANN schedule lam(p) = lam_max * (2 / (1 + exp(-10 p)) - 1), p in [0, 1]."""
    return lam_max * (2.0 / (1.0 + jnp.exp(-10.0 * progress)) - 1.0)


def _lam(cfg: TrainConfig, progress: float) -> float:
    if cfg.mode in ADVERSARIAL:
        p = max(0.0, (progress - cfg.adv_warmup) / (1.0 - cfg.adv_warmup))
        return float(dann_lambda(p, cfg.lam_max)) if progress >= cfg.adv_warmup else 0.0
    # lam = -1 makes the flip an identity in the backward pass: ordinary gradients.
    return -1.0


def group_ids(script, style, n_styles: int):
    """The (script, style) group of every crop: ``script * n_styles + style``."""
    return np.asarray(script) * n_styles + np.asarray(style)


def balanced_probabilities(groups) -> np.ndarray:
    """Per-example sampling probabilities that draw every occurring group equally often.

    Args:
      groups: int[N] group ids.

    Returns:
      float64[N], summing to 1; each occurring group's examples sum to 1 / (groups present).
    """
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) == 0:
        raise ValueError(f"groups must be a non-empty 1-d array of ids, got shape {groups.shape}")
    _, inverse, counts = np.unique(groups, return_inverse=True, return_counts=True)
    return 1.0 / (len(counts) * counts[inverse])


def dro_update(weights, group_losses, present, eta):
    """One exponentiated-gradient step of group DRO's weights (Sagawa et al. 2020, Alg. 1).

    Args:
      weights: float32[G] current weights, summing to 1.
      group_losses: float32[G] mean loss of each group in the batch.
      present: bool[G] groups with at least one example in the batch; the others keep
        their weight (before renormalisation).
      eta: step size.

    Returns:
      float32[G] new weights, summing to 1.
    """
    w = weights * jnp.exp(jnp.where(present, eta * group_losses, 0.0))
    return w / w.sum()


def _loss_fn(graphdef, rest, cfg: TrainConfig, n_groups: int):
    font_sign = {
        "baseline": 0.0,
        "multitask": 1.0,
        "unlearn": 1.0,
        "ascent": -1.0,
        "cdann": 1.0,
        "balanced": 0.0,
        "groupdro": 0.0,
    }[cfg.mode]

    def loss_fn(params, images, script, style, group, lam, key, group_weights):
        model = nnx.merge(graphdef, params, rest, copy=True)
        extra = {"font_script": script} if cfg.mode == "cdann" else {}
        out = model(images, lam=lam, dropout_key=key, **extra)
        per_example = optax.softmax_cross_entropy_with_integer_labels(out.script, script)
        script_loss = per_example.mean()
        font_loss = optax.softmax_cross_entropy_with_integer_labels(out.font, style).mean()
        if cfg.mode != "groupdro":
            total = script_loss + font_sign * cfg.font_weight * font_loss
            return total, (script_loss, font_loss, group_weights)
        counts = jax.ops.segment_sum(jnp.ones_like(per_example), group, n_groups)
        group_losses = jax.ops.segment_sum(per_example, group, n_groups) / jnp.maximum(counts, 1)
        q = dro_update(group_weights, jax.lax.stop_gradient(group_losses), counts > 0, cfg.dro_eta)
        return jnp.sum(q * group_losses), (script_loss, font_loss, q)

    return loss_fn


def make_step(
    graphdef,
    rest,
    cfg: TrainConfig,
    tx: optax.GradientTransformation,
    n_groups: int,
    mesh: Mesh | None = None,
):
    """The jitted train step: (state, images uint8, script, style, group, lam, key) -> (state, losses).

    With a ``mesh`` the batch comes split along its ``data`` axis and the state
    replicated (``scriptlab.distributed``); the state and losses leave
    replicated, so the compiler averages the gradients across devices. The
    step's code is the same either way.
    """
    loss_fn = _loss_fn(graphdef, rest, cfg, n_groups)
    passes = 1 if cfg.mode == "groupdro" else cfg.batch_size // cfg.micro_batch
    value_and_grad = jax.value_and_grad(loss_fn, has_aux=True)

    def step(state: TrainState, images, script, style, group, lam, key):
        x = images.astype(jnp.float32) / 255.0
        if passes == 1:
            (total, (sl, fl, q)), grads = value_and_grad(
                state.params, x, script, style, group, lam, key, state.group_weights
            )
        else:
            # Pass j takes rows j, j + passes, ...: on a mesh every pass is split across all
            # devices. The passes are unrolled (a lax.scan of convolutions is far slower on CPU).
            rows = lambda a, j: a.reshape(a.shape[0] // passes, passes, *a.shape[1:])[:, j]
            outs = [
                value_and_grad(
                    state.params,
                    rows(x, j),
                    rows(script, j),
                    rows(style, j),
                    rows(group, j),
                    lam,
                    jax.random.fold_in(key, j),
                    state.group_weights,
                )
                for j in range(passes)
            ]
            mean = lambda *a: sum(a) / passes
            (total, (sl, fl, _)), grads = jax.tree.map(mean, *outs)
            q = state.group_weights
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(params, opt_state, q), jnp.stack([total, sl, fl])

    if mesh is None:
        return jax.jit(step)
    whole, rows = (NamedSharding(mesh, PartitionSpec(*s)) for s in ((), (distributed.DATA,)))
    return jax.jit(
        step,
        in_shardings=(whole, rows, rows, rows, rows, whole, whole),
        out_shardings=(whole, whole),
    )


def predict(apply_fn: ApplyFn, params, images, *, batch_size: int = 250):
    """Script logits, font logits and embeddings for uint8 images, in memory-bounded chunks.

    Args:
      images: uint8[N, H, W, 3] (or float32 in [0, 1]).

    Returns:
      (script_logits float32[N, S], font_logits float32[N, F], embedding float32[N, D]).
    """
    batch_size = check_batch_size(batch_size)
    if np.shape(images)[:1] == (0,):  # an empty split predicts nothing
        return _predict(apply_fn, params, jnp.asarray(images), batch_size)
    images = check_images(images, keep_uint8=True)  # the convention of scriptlab.protocols
    probe_outputs(apply_fn, params, jnp.zeros((1, *images.shape[1:]), jnp.float32), "script")
    return _predict(apply_fn, params, images, batch_size)


@jax.jit(static_argnums=(0, 3))
def _predict(apply_fn, params, images, batch_size):
    x = uint8_to_float(images) if images.dtype == jnp.uint8 else images
    n = x.shape[0]
    n_batches = -(-n // batch_size)
    x = jnp.pad(x, ((0, n_batches * batch_size - n),) + ((0, 0),) * (x.ndim - 1))
    x = x.reshape(n_batches, batch_size, *x.shape[1:])

    def one(batch):
        out = apply_fn(params, batch)
        return out.script, out.font, out.embedding

    outs = map_rows(one, x)
    return tuple(o.reshape(n_batches * batch_size, *o.shape[2:])[:n] for o in outs)


def evaluate(apply_fn: ApplyFn, params, split: data_lib.Split) -> dict[str, float]:
    """Script and font-head accuracy on a split."""
    if len(split) == 0:
        return {"script_acc": float("nan"), "font_acc": float("nan")}
    # on every process, also when a mesh spans several (the rows come back split)
    s, f, _ = distributed.to_host(predict(apply_fn, params, split.images))
    for name, labels, logits in (("script", split.script, s), ("style", split.style, f)):
        if int(np.max(labels)) >= logits.shape[1] or int(np.min(labels)) < 0:
            raise ValueError(
                f"split.{name} labels lie in [{np.min(labels)}, {np.max(labels)}], but the model's "
                f"{'font' if name == 'style' else name} head has {logits.shape[1]} classes "
                f"(a model trained on another dataset?)"
            )
    return {
        "script_acc": float(np.mean(np.argmax(s, -1) == split.script)),
        "font_acc": float(np.mean(np.argmax(f, -1) == split.style)),
    }


def build_model(cfg: TrainConfig, ds: data_lib.Dataset) -> ScriptNet:
    h, w = ds.config.image_size
    return ScriptNet(
        len(ds.scripts),
        len(ds.styles),
        channels=cfg.channels,
        dropout=cfg.dropout,
        image_shape=(h, w, 3),
        conditional=cfg.mode == "cdann",
        rngs=nnx.Rngs(cfg.seed),
    )


def dataset_for(cfg: TrainConfig, *, progress: bool = True) -> data_lib.Dataset:
    overrides = {} if cfg.rho is None else {"rho": cfg.rho}
    return data_lib.load(cfg.preset, cfg.data_seed, progress=progress, **overrides)


def lr_schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """The step-size schedule of ``train``: linear warm-up, cosine decay to 2 % of cfg.lr.

    TracIn (``interpret.influence.tracin``) weights each epoch snapshot by it.
    """
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, min(cfg.warmup_steps, total_steps // 2), total_steps, cfg.lr * 0.02
    )


def train(
    cfg: TrainConfig | None = None,
    ds: data_lib.Dataset | None = None,
    *,
    progress: bool = True,
) -> Result:
    """Train a ScriptNet; deterministic for a given config.

    Args:
      cfg: the TrainConfig (default: baseline on the workshop preset).
      ds: the dataset (default: ``dataset_for(cfg)``).
      progress: tqdm bar over steps.

    Raises:
      TrainingDiverged: naming the step, the loss and the likely cause.
    """
    from tqdm.auto import tqdm

    cfg = cfg or TrainConfig()
    mesh = distributed.active_mesh()
    if mesh is not None:
        distributed.check_divides("batch_size", cfg.batch_size, mesh)
    ds = ds or dataset_for(cfg, progress=progress)
    train_split = ds.train if cfg.n_train is None else ds.train.take(slice(0, cfg.n_train))
    n = len(train_split)
    if n < cfg.batch_size:
        raise ValueError(f"batch_size {cfg.batch_size} is larger than the training set ({n} crops)")
    rng = np.random.default_rng(cfg.seed)
    script_labels = train_split.script
    if cfg.shuffle_labels:
        script_labels = rng.permutation(script_labels)

    model = build_model(cfg, ds)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    steps_per_epoch = n // cfg.batch_size
    total_steps = steps_per_epoch * cfg.epochs
    schedule = lr_schedule(cfg, total_steps)
    tx = optax.chain(
        optax.clip_by_global_norm(cfg.clip_norm),
        optax.adamw(schedule, weight_decay=cfg.weight_decay),
    )
    n_groups = len(ds.scripts) * len(ds.styles)
    groups = group_ids(script_labels, train_split.style, len(ds.styles))
    probs = balanced_probabilities(groups) if cfg.balance or cfg.mode in BALANCED else None
    dro_q = jnp.full(n_groups, 1.0 / n_groups) if cfg.mode == "groupdro" else None
    state = TrainState(params, tx.init(params), dro_q)
    step = make_step(graphdef, rest, cfg, tx, n_groups, mesh)
    if mesh is not None:
        state = distributed.replicate(state, mesh)
    _, apply_fn = functional(model)

    batch = _feeder(
        mesh, cfg.batch_size, train_split.images, script_labels, train_split.style,
        groups.astype(np.int32),
    )  # fmt: skip
    key = jax.random.key(cfg.seed)
    # copy: nnx.update at the end writes the trained weights into the split-off Variables
    snapshots = [(0, jax.tree.map(jnp.copy, params))] if cfg.snapshots else []
    history: list[dict] = []
    # one refresh a second: a notebook kernel sends every refresh as a message, and ten a
    # second over a cold training run can keep a busy kernel's output queue behind
    bar = tqdm(
        total=total_steps,
        desc=f"{cfg.mode}",
        unit="step",
        disable=not progress or not distributed.is_main_process(),
        mininterval=1.0,
    )
    t0 = time.perf_counter()
    k = 0
    for epoch in range(1, cfg.epochs + 1):
        if probs is None:
            order = jnp.asarray(rng.permutation(n)[: steps_per_epoch * cfg.batch_size])
        else:  # with replacement: a minority group's crops are drawn several times an epoch
            order = jnp.asarray(rng.choice(n, steps_per_epoch * cfg.batch_size, p=probs))
        losses = []
        for b in range(steps_per_epoch):
            idx = order[b * cfg.batch_size : (b + 1) * cfg.batch_size]
            lam = _lam(cfg, k / max(total_steps - 1, 1))
            key, sub = jax.random.split(key)
            state, loss = step(state, *batch(idx), jnp.float32(lam), sub)
            loss = np.asarray(loss)
            if not np.all(np.isfinite(loss)) or loss[1] > cfg.max_loss:
                bar.close()
                raise TrainingDiverged(
                    f"training diverged at step {k} (epoch {epoch}): script loss {loss[1]:.4g}, "
                    f"font loss {loss[2]:.4g}. Likely cause: "
                    + (
                        f"mode 'ascent' drives the font loss to infinity (font_weight={cfg.font_weight}); "
                        "use mode 'unlearn' or a smaller font_weight"
                        if cfg.mode == "ascent"
                        else f"the learning rate is too high (lr={cfg.lr}) or lam_max too large ({cfg.lam_max})"
                    )
                )
            losses.append(loss)
            k += 1
            bar.update(1)
        params = state.params if mesh is None else _on_host(state.params)
        val = evaluate(apply_fn, params, ds.val)
        mean = np.mean(losses, 0)
        history.append(
            {
                "epoch": epoch,
                "loss": float(mean[0]),
                "script_loss": float(mean[1]),
                "font_loss": float(mean[2]),
                "val_script_acc": val["script_acc"],
                "val_font_acc": val["font_acc"],
                "lam": _lam(cfg, (k - 1) / max(total_steps - 1, 1)),
                "seconds": time.perf_counter() - t0,
            }
        )
        bar.set_postfix(val_script=f"{val['script_acc']:.3f}", val_font=f"{val['font_acc']:.3f}")
        if cfg.snapshots:
            snapshots.append((epoch, params))
    bar.close()
    nnx.update(model, params)
    return Result(model, cfg, history, ds.key, snapshots)


@jax.jit
def _gather(idx, *columns):
    """The rows ``idx`` of every column, in one dispatch (not one per column)."""
    return tuple(c[idx] for c in columns)


def _feeder(mesh: Mesh | None, size: int, *columns):
    """batch(idx) -> the step's inputs for the global rows ``idx`` (int[size]) of ``columns``.

    One device: a gather from the columns held on the device. A mesh: each
    process gathers its own rows of the batch on the host, and they become one
    array split along ``data`` (``distributed.shard_batch``).
    """
    if mesh is None:
        on_device = [jnp.asarray(c) for c in columns]
        return lambda idx: _gather(idx, *on_device)
    mine = distributed.local_rows(size, mesh)
    host = [np.asarray(c) for c in columns]

    def batch(idx):
        rows = np.asarray(idx)[mine]
        return distributed.shard_batch(tuple(c[rows] for c in host), mesh, size)

    return batch


def _on_host(tree):
    """A replicated state as plain single-device arrays: what a one-device run returns
    (``jax.device_put``: under ``jax.set_mesh`` ``jnp.asarray`` would replicate them)."""
    return jax.tree.map(jax.device_put, distributed.to_host(tree))


# --------------------------------------------------------------------------- checkpoints


def save(result: Result, directory: str | Path) -> Path:
    """Write checkpoint.msgpack (flax serialization, no pickle) and checkpoint.json.

    In a multi-process run process 0 writes and every process returns once it has
    (each holds the same trained model; every process may then ``restore``).
    """
    directory = Path(directory)
    failed = None
    if distributed.is_main_process():
        try:
            _write_checkpoint(result, directory)
        except (OSError, ValueError) as err:  # the others must not wait for it forever
            failed = err
    distributed.sync(f"scriptlab.train.save:{directory}")
    if failed is not None:
        raise failed
    return directory


def _write_checkpoint(result: Result, directory: Path) -> None:
    from flax import serialization

    if directory.exists() and not directory.is_dir():
        raise ValueError(f"cannot save a checkpoint into {directory}: it is a file, not a folder")
    directory.mkdir(parents=True, exist_ok=True)
    cache.clean_temporaries(directory)
    blobs = {"checkpoint.msgpack": nnx.state(result.model, nnx.Param).to_pure_dict()}
    for epoch, params in result.snapshots:
        blobs[f"epoch_{epoch:03d}.msgpack"] = params.to_pure_dict()
    digests = {}
    for name, tree in blobs.items():
        blob = serialization.msgpack_serialize(tree)
        digests[name] = hashlib.sha256(blob).hexdigest()
        cache.write_atomic(directory / name, blob)
    meta = {
        "config": dataclasses.asdict(result.config),
        "config_key": result.config.key(),
        "data_key": result.data_key,
        "history": result.history,
        "snapshots": [e for e, _ in result.snapshots],
        "sha256": digests,
    }
    # written last: a checkpoint.json means every file it names is complete
    cache.write_atomic(directory / "checkpoint.json", json.dumps(meta, indent=1).encode())


def _config_from_json(d: dict) -> TrainConfig:
    return TrainConfig(**d)  # __post_init__ checks every field and makes the lists tuples


def restore(
    directory: str | Path, cfg: TrainConfig | None = None, ds: data_lib.Dataset | None = None
) -> Result:
    """Load a checkpoint written by ``save``.

    Args:
      cfg: if given, must equal the stored config (else a clear ValueError).
      ds: if given, its key must equal the stored dataset key.
    """
    directory = Path(directory)
    meta_path = directory / "checkpoint.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"no checkpoint.json in {directory}")
    meta, stored = _read_meta(meta_path)
    if cfg is not None and cfg != stored:
        diff = {
            f.name: (getattr(stored, f.name), getattr(cfg, f.name))
            for f in dataclasses.fields(TrainConfig)
            if getattr(stored, f.name) != getattr(cfg, f.name)
        }
        raise ValueError(
            f"checkpoint in {directory} was trained with a different config: "
            f"(stored, requested) = {diff}"
        )
    if ds is not None and ds.key != meta["data_key"]:
        raise ValueError(
            f"checkpoint in {directory} was trained on dataset {meta['data_key']}, not {ds.key}"
        )
    loaded = _read(directory / "checkpoint.msgpack", meta)
    n_scripts, n_font_logits = _head_sizes(loaded, directory)
    conditional = stored.mode == "cdann"
    n_styles = n_font_logits // n_scripts if conditional else n_font_logits
    if ds is not None and (n_scripts, n_styles) != (len(ds.scripts), len(ds.styles)):
        raise ValueError(
            f"checkpoint in {directory} has heads for {n_scripts} scripts and {n_styles} styles; "
            f"the dataset has {len(ds.scripts)} scripts and {len(ds.styles)} styles"
        )
    h, w = data_lib.make_config(stored.preset).image_size
    abstract = nnx.eval_shape(
        lambda: ScriptNet(
            n_scripts,
            n_styles,
            channels=stored.channels,
            dropout=stored.dropout,
            image_shape=(h, w, 3),
            conditional=conditional,
            rngs=nnx.Rngs(0),
        )
    )
    graphdef, state = nnx.split(abstract)
    _check_shapes(state.to_pure_dict(), loaded, directory)
    nnx.replace_by_pure_dict(state, loaded)
    model = nnx.merge(graphdef, state)
    snaps = []
    for epoch in meta.get("snapshots", []):
        params = nnx.state(model, nnx.Param)
        blob = _read(directory / f"epoch_{epoch:03d}.msgpack", meta)
        _check_shapes(params.to_pure_dict(), blob, directory)
        params = jax.tree.map(lambda x: x, params)
        nnx.replace_by_pure_dict(params, blob)
        snaps.append((epoch, params))
    return Result(model, stored, meta["history"], meta["data_key"], snaps)


def add_checksums(directory: str | Path) -> bool:
    """Record sha256 and config key in a checkpoint saved before they existed; True if it did.

    The files' present bytes become the reference (call it after a successful
    ``restore``), so a later bit flip is caught. Checkpoints that have them are left alone.
    """
    directory = Path(directory)
    meta, stored = _read_meta(directory / "checkpoint.json")
    if "sha256" in meta:
        return False
    names = ["checkpoint.msgpack", *(f"epoch_{e:03d}.msgpack" for e in meta["snapshots"])]
    meta["sha256"] = {n: hashlib.sha256((directory / n).read_bytes()).hexdigest() for n in names}
    meta["config_key"] = stored.key()
    cache.write_atomic(directory / "checkpoint.json", json.dumps(meta, indent=1).encode())
    return True


_META = {"config": dict, "data_key": str, "history": list, "snapshots": list}


def _read_meta(path: Path) -> tuple[dict, TrainConfig]:
    """checkpoint.json and its config, checked for structure and against its config key."""
    try:
        meta = json.loads(path.read_text())
        if not isinstance(meta, dict):
            raise TypeError(f"the top level is a {type(meta).__name__}, not an object")
        for key, kind in _META.items():
            if not isinstance(meta.get(key), kind):
                raise TypeError(f"{key!r} must be a {kind.__name__}, got {meta.get(key)!r:.60}")
        stored = _config_from_json(meta["config"])
    except (ValueError, TypeError, KeyError) as err:
        raise ValueError(f"{path} is malformed: {err}") from err
    if "config_key" in meta and stored.key() != meta["config_key"]:
        raise ValueError(
            f"{path}: the stored config hashes to {stored.key()}, not its recorded "
            f"config_key {meta['config_key']} (edited or corrupt)"
        )
    return meta, stored


def _read(path: Path, meta: dict) -> dict:
    """A msgpack parameter file, checked against its sha256 and for finite float32 arrays.

    Checkpoints saved before checksums were recorded (no "sha256" in the meta)
    are still read; their arrays are checked all the same.
    """
    from flax import serialization

    blob = path.read_bytes()
    want = meta.get("sha256", {}).get(path.name) if isinstance(meta.get("sha256"), dict) else None
    if "sha256" in meta and hashlib.sha256(blob).hexdigest() != want:
        raise ValueError(f"checksum mismatch in {path}: the file is corrupt or was replaced")
    try:
        tree = serialization.msgpack_restore(blob)
    except Exception as err:  # msgpack raises several types on truncated input
        raise ValueError(f"{path} is not a readable msgpack file: {err}") from err
    if not isinstance(tree, dict):
        raise ValueError(f"{path} does not hold a parameter dict")
    for where, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        name = jax.tree_util.keystr(where)
        if not isinstance(leaf, np.ndarray) or leaf.dtype != np.float32:
            raise ValueError(
                f"{path}: parameter {name} must be a float32 array, got "
                f"{getattr(leaf, 'dtype', type(leaf).__name__)}"
            )
        if not np.isfinite(leaf).all():
            raise ValueError(f"{path}: parameter {name} contains NaN or infinite values")
    return tree


def _head_sizes(raw: dict, where: Path) -> tuple[int, int]:
    try:
        return raw["script_head"]["bias"].shape[0], raw["font_head"]["bias"].shape[0]
    except (KeyError, TypeError, AttributeError, IndexError) as err:
        raise ValueError(f"checkpoint in {where} lacks the script/font head biases") from err


def _check_shapes(template: dict, loaded: dict, where: Path, prefix: str = "") -> None:
    """Every array the model expects is in the checkpoint, with the same shape."""
    for k, v in template.items():
        name = f"{prefix}{k}"
        if k not in loaded:
            raise ValueError(f"checkpoint in {where} lacks parameter {name!r}")
        if isinstance(v, dict):
            _check_shapes(v, loaded[k], where, name + "/")
        elif tuple(v.shape) != tuple(np.shape(loaded[k])):
            raise ValueError(
                f"checkpoint in {where}: {name} has shape {np.shape(loaded[k])}, "
                f"the model expects {tuple(v.shape)}"
            )
