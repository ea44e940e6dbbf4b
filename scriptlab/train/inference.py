"""A trained model's outputs: batched predictions and split accuracies."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from scriptlab import data as data_lib
from scriptlab import distributed
from scriptlab.interpret._common import (
    check_batch_size,
    check_images,
    map_rows,
    probe_outputs,
    uint8_to_float,
)
from scriptlab.protocols import ApplyFn


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
