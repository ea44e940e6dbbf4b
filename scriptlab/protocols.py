"""The model contract every interpretability method is written against, defined once.

Every function in ``scriptlab.interpret`` takes ``(apply_fn, params, images, ...)``
where ``apply_fn`` is an ``ApplyFn`` and its output a ``ModelOutputs``. Methods
need only the parts they read, and each module docstring names those parts:

====================  ====================================================
what a method reads   who reads it
====================  ====================================================
``out.<head>``        every class-score method (``head="script"`` / ``"font"``)
``out.embedding``     ``embedding.embed``, influence's frozen features
                      ``detection.style_readout`` with a probe
``out.activations``   activations, receptive, occlusion (layer targets),
                      class models of a layer, Grad-CAM
                      TCAV (CAVs of a layer's activations)
``relu=``             guided backprop and deconvnet
``perturb=``          Grad-CAM
                      TCAV (``tcav.layer_gradients``)
``out.<head>`` only   faithfulness (deletion, insertion and ROAD curves
                      score perturbed copies; no gradient is taken)
====================  ====================================================

Images, the one convention: every public function that takes ``images``
(every ``scriptlab.interpret`` method, ``train.predict``, ``train.evaluate``)
accepts float images in [0, 1] or uint8 images in 0..255, which it divides by
255 in float32 (``_common.uint8_to_float``: within one ulp of ``data.as_float``,
so a uint8 batch and its ``as_float`` give the same maps to float32 rounding).
Any other dtype (int32, bool) and float values outside [0, 1] (0..255 floats)
are rejected, as are NaN and infinite pixels; ``apply_fn`` itself always sees
float32 in [0, 1]. The checks are ``scriptlab.interpret._common.check_images``.

Array annotations: public functions carry jaxtyping shapes, ``Image[AnyArray, "n h w c"]``
(a name is one size wherever it appears in a call; ``*input``, any trailing axes, the same
ones throughout). Nothing checks them at run time, so the library's own ValueErrors come
first; tests/test_contracts.py checks them under pytest (``jaxtyping.jaxtyped`` with
beartype), as equinox does.

``apply_fn`` is passed to ``jax.jit`` as a static argument, so it must hash and
compare by value: two apply_fns of the same architecture should be equal, or
every new instance recompiles every method. ``scriptlab.model.functional``
returns one that is (its hash is the nnx GraphDef's).

References: optax ``_src/base.py`` (a contract as Protocols); equinox
``Module`` (static arguments that hash by value).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol, TypeAlias, runtime_checkable

import jax
import numpy as np
from jaxtyping import AbstractDtype, ArrayLike, Float, Integer, UInt8

AnyArray: TypeAlias = jax.Array | np.ndarray
"""An array argument: a jax or a numpy array (``Float[AnyArray, "n d"]``)."""

Targets: TypeAlias = Integer[ArrayLike, " n"] | Integer[ArrayLike, ""]
"""Class ids, one per image or one for all (``int`` or ``int[N]``)."""

if TYPE_CHECKING:  # type checkers see the array type itself, as with jaxtyping's own dtypes
    from typing import Annotated as Image
else:

    class Image(AbstractDtype):
        """jaxtyping dtype of the one image convention: float in [0, 1] or uint8 in 0..255."""

        dtypes = [*Float.dtypes, *UInt8.dtypes]


@runtime_checkable
class ModelOutputs(Protocol):
    """What ``apply_fn`` returns; ``scriptlab.model.Outputs`` is one.

    Attributes:
      script: float32[N, n_scripts] logits of the script head.
      font: float32[N, n_styles] logits of the font-style head.
      embedding: float32[N, D] the penultimate representation.
      activations: {layer name: float32[N, h, w, c] or float32[N, c]}, the named
        activations in forward order, after any ``perturb`` was added.
    """

    @property
    def script(self) -> jax.Array: ...

    @property
    def font(self) -> jax.Array: ...

    @property
    def embedding(self) -> jax.Array: ...

    @property
    def activations(self) -> Mapping[str, jax.Array]: ...


@runtime_checkable  # so a checked `apply_fn: ApplyFn` annotation (beartype) accepts any callable
class ApplyFn(Protocol):
    """A pure function of the parameters: ``apply_fn(params, images, **options) -> ModelOutputs``.

    It runs the model in evaluation mode (no dropout, no batch-statistics
    update), so it composes with ``jax.jit``, ``jax.grad`` (of images or
    params), ``jax.vmap`` and ``jax.jvp`` of ``jax.grad``. Methods call it on
    batches of one under ``vmap``, so a model that mixes images in a batch
    still gives per-image results. It must hash and compare by value (see the
    module docstring).
    """

    def __call__(
        self,
        params: Any,
        images: jax.Array,
        *,
        relu: Callable[[jax.Array], jax.Array] = ...,
        perturb: Mapping[str, jax.Array] | None = None,
        lam: jax.Array | float | None = None,
    ) -> ModelOutputs:
        """Run the model.

        Args:
          params: the parameters, any pytree (an nnx.State of nnx.Param leaves for ScriptNet).
          images: float32[N, H, W, C] in [0, 1].
          relu: the nonlinearity, swapped for guided backprop / deconvnet rules
            (default ``jax.nn.relu``).
          perturb: {layer name: float32[N, h, w, c]} added to that activation;
            differentiate at zeros for the gradient with respect to a layer.
          lam: gradient-flip strength on the font head; None (the default for
            explanations) applies no flip, so the font head's gradients are the
            true ones (``lam=1`` would negate them).

        Returns:
          A ``ModelOutputs``.
        """
        ...
