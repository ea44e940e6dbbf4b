"""The training loop: the model, the data, the schedule, the feeder, the run."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh
from jaxtyping import Float64

from scriptlab import data as data_lib
from scriptlab import distributed
from scriptlab.model import ScriptNet, functional
from scriptlab.train.config import BALANCED, TrainConfig
from scriptlab.train.inference import evaluate
from scriptlab.train.modes import _lam, balanced_probabilities, group_ids
from scriptlab.train.step import TrainState, make_step
from scriptlab.validation import check_int


class TrainingDiverged(RuntimeError):
    """Loss became NaN/inf or exploded."""


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
    return data_lib.load(cfg.preset, cfg.data_seed, progress=progress, **cfg.data_overrides())


def lr_schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """The step-size schedule of ``train``: linear warm-up, cosine decay to 2 % of cfg.lr.

    TracIn weights each epoch snapshot by it (``epoch_learning_rates``).
    """
    return optax.warmup_cosine_decay_schedule(
        0.0, cfg.lr, min(cfg.warmup_steps, total_steps // 2), total_steps, cfg.lr * 0.02
    )


def epoch_learning_rates(
    config: TrainConfig, n_train: int, epochs: Sequence[int]
) -> Float64[np.ndarray, " checkpoints"]:
    """The mean step size of the epoch that ended at each snapshot (0 for epoch 0, the init).

    TracIn's weights for a zoo model's epoch snapshots: pass the result as
    ``interpret.influence.tracin_scores(..., learning_rates=...)``.

    Args:
      config: the ``TrainConfig`` the snapshots were trained with.
      n_train: training crops the run saw (``config.n_train`` or the split's size).
      epochs: the snapshots' epoch numbers (``[e for e, _ in zoo.load_epochs(...)]``).

    Returns:
      float64[C]: lr_c for ``tracin_scores``.
    """
    n_train = check_int("n_train", n_train, 1)
    steps_per_epoch = max(n_train // config.batch_size, 1)
    total = steps_per_epoch * config.epochs
    rates = np.asarray(jax.jit(lr_schedule(config, total))(np.arange(total)), np.float64)
    out = []
    for e in epochs:
        e = check_int("epochs[i]", e, 0, config.epochs + 1)
        out.append(0.0 if e == 0 else rates[(e - 1) * steps_per_epoch : e * steps_per_epoch].mean())
    return np.asarray(out)


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
