"""Level (2) of notebook 11: the last layers of ScriptNet (dense + heads) on frozen pool3 features.

The conv trunk is frozen; ``top_loss`` runs ``top_params`` on
``embeddings(apply_fn, params, images, field="pool3")``. This part is
non-convex; use damping, and read the result as an approximation (Basu et al.
2021; Bae et al. 2022 show it tracks a proximal response rather than
leave-one-out). It hard-codes ScriptNet's layer names, so it belongs next to
the model (issue 14, item 3).

References: Basu, Pope & Feizi 2021, https://arxiv.org/abs/2006.14651; Bae et al. 2022,
https://arxiv.org/abs/2209.05364.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from scriptlab.interpret._common import check_choice
from scriptlab.interpret.influence.losses import LossFn, cross_entropy


def top_params(params) -> dict:
    """The dense layer and both heads of a ScriptNet params tree, as plain arrays.

    The conv trunk is left out (frozen); ``top_loss`` runs these on
    ``embeddings(apply_fn, params, images, field="pool3")``.
    """

    def lin(name):
        return {
            "kernel": jnp.asarray(params[name]["kernel"][...]),
            "bias": jnp.asarray(params[name]["bias"][...]),
        }

    return {"dense": lin("dense"), "script_head": lin("script_head"), "font_head": lin("font_head")}


class TopOutputs(NamedTuple):
    """Logits of the top layers of ScriptNet (same field names as model.Outputs).

    Attributes:
      script: float32[N, n_scripts].
      font: float32[N, n_styles].
      embedding: float32[N, hidden].
    """

    script: jax.Array
    font: jax.Array
    embedding: jax.Array


def top_apply(top, feats: jax.Array) -> TopOutputs:
    """ScriptNet from the flattened pool3 features float32[N, F] up: dense + ReLU, both heads (eval mode)."""
    from scriptlab.model import rms_normalise  # the font head reads the RMS-normalised embedding

    emb = jax.nn.relu(feats @ top["dense"]["kernel"] + top["dense"]["bias"])
    script = emb @ top["script_head"]["kernel"] + top["script_head"]["bias"]
    font = rms_normalise(emb) @ top["font_head"]["kernel"] + top["font_head"]["bias"]
    return TopOutputs(script, font, emb)


def top_loss(head: str = "script") -> LossFn:
    """Per-example cross-entropy of ``top_apply`` on one head ("script" or "font")."""
    check_choice("head", head, ("script", "font"))
    return cross_entropy(top_apply, head)
