"""The training step: the loss of every mode, and one jitted optimiser update."""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from scriptlab import distributed
from scriptlab.augment import augment
from scriptlab.train.config import TrainConfig
from scriptlab.train.modes import dro_update

# Folded into the step's key for the augmentation's draws; dropout takes the key itself or
# fold_in(key, pass), pass < batch_size / micro_batch, so the streams never meet.
AUGMENT_STREAM = 0x61756700


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

    Unless ``cfg.augment`` is the identity, the batch is augmented first
    (``scriptlab.augment.augment``) with a key folded from the step's ``key``: the
    same seed gives the same crops. The identity traces exactly the step without it.

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
        if not cfg.augment.is_identity:
            x = augment(jax.random.fold_in(key, AUGMENT_STREAM), x, cfg.augment)
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
