"""Toy models shared by the tests, each with an answer known by hand (as equinox's tests/helpers.py).

A toy ``apply_fn`` follows ``scriptlab.protocols.ApplyFn`` as far as the methods under test
read it: it returns ``ToyOutputs`` and accepts the ``relu=`` / ``perturb=`` options.
Import them with ``from helpers import ...`` (pytest puts ``tests/`` on the path).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from scriptlab.model import build, functional

# H, W, C of the small ScriptNet: big enough for three 2x2 pools, fast to differentiate
SMALL_SHAPE = (8, 16, 3)


class ToyOutputs(NamedTuple):
    """The parts of ``ModelOutputs`` a toy model has (no font head, no embedding).

    Attributes:
      script: float32[N, K] logits.
      activations: {name: float32[N, ...]} named activations.
    """

    script: jax.Array
    activations: dict


def linear_apply(params, images, relu=jax.nn.relu, perturb=None):
    """A linear model, logit_c = <w_c, image>, with params ``{"w": float32[K, H, W, C]}``.

    Known answers: the gradient of logit c is w_c; integrated gradients are exactly
    w_c * (x - baseline); occluding a window with fill f changes logit c by
    sum over the window of w_c * (f - x). ``activations["map"]`` is the channel sum
    float32[N, H, W, 1], a layer target for occlusion.
    """
    logits = jnp.einsum("nhwc,khwc->nk", images, params["w"])
    return ToyOutputs(logits, {"map": images.sum(-1, keepdims=True)})


def scriptnet(image_shape=None, *, seed=0):
    """An untrained ScriptNet with 4 scripts and 3 font styles: (model, params, apply_fn).

    Args:
      image_shape: (H, W, C); None for the model's default (32, 64, 3).
      seed: the initialisation seed.
    """
    kwargs = {} if image_shape is None else {"image_shape": image_shape}
    model = build(4, 3, seed=seed, **kwargs)
    params, apply_fn = functional(model)
    return model, params, apply_fn
