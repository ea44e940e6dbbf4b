"""scriptlab: learn what goes on inside a convolutional network.

Modules (imported lazily, so ``import scriptlab`` is instant and dataset
worker processes never load JAX):

  validation  the argument checks every layer shares
  cache       the cache folder, atomic writes and per-entry locks
  fonts       the pip-installed font table and cmap checks
  data        the multi-script text-crop dataset (font style as a nuisance)
  twins       style counterfactuals: a crop re-rendered with only its font swapped
  augment     style augmentation (stroke, slant, elastic, affine, colour) inside the train step
  model       the dual-head CNN, ``gradient_flip`` and the functional view
  train       training modes, checkpoints
  distributed the device mesh: data-parallel training and transforms
  zoo         named trained models, cached on first use
  probe       linear probes on frozen features
  reliance    style reliance: does a prediction change with the font alone
  experiment  the font-style unlearning experiment
  workshop    what the notebooks need, prepared once (``scriptlab prepare``)
  archive     one file of trained zoo models (``scriptlab cache export / import``)
  interpret   saliency, class models, activations, occlusion, embeddings, influence
  viz         plotting helpers
  wrap        your own Flax NNX model as an ``ApplyFn`` (docs: "Use it on your own model")
"""

import importlib

__version__ = "0.1.0"
__all__ = [
    "archive",
    "augment",
    "cache",
    "data",
    "distributed",
    "experiment",
    "fonts",
    "interpret",
    "model",
    "probe",
    "reliance",
    "train",
    "twins",
    "validation",
    "viz",
    "wrap",
    "workshop",
    "zoo",
]


def __getattr__(name):
    if name in __all__:
        return importlib.import_module(f"scriptlab.{name}")
    raise AttributeError(f"module 'scriptlab' has no attribute {name!r}")
