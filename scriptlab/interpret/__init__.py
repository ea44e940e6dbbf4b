"""Interpretability transforms: pure, jitted, batched functions over an apply_fn.

Each method takes ``(apply_fn, params, images, ...)`` and works with any model
whose apply_fn returns an object with the fields it needs (``script``/``font``
logits, ``embedding``, ``activations``); see ``scriptlab.model.functional``.
"""
