"""The multi-script text-crop dataset, with font style as a labelled nuisance.

Each crop shows one real word in one of ten scripts, drawn with a pip-installed
font (``scriptlab.fonts``) through Pillow's raqm layout, so Arabic and Hebrew run
right-to-left and Devanagari and Thai are shaped. Nuisances: font style (the
label the unlearning experiment fights), font family and weight, text colour,
background colour and texture, position, scale, small rotation, blur and noise.

Splits:
  train, val, test  in-distribution; a fraction ``rho`` of each script is drawn
                    from that script's assigned style (``BIAS``), the rest
                    uniformly from its other styles (Kim et al. 2019).
  conflict          style never the script's assigned style.
  heldout           font families never seen in train/val/test/conflict.
  val_conflict      a second bias-conflicting split, for choosing hyperparameters of
                    shortcut-removal methods without looking at ``conflict``.

The same config and seed give byte-identical arrays whatever the number of
worker processes: each chunk of 256 crops has its own seed.

Layout: ``config`` (presets, ``DataConfig``, ``Dataset``), ``render`` (planning and drawing
crops), ``generate`` (chunks in worker processes), ``store`` (the cache: ``load``) and
``summaries``. Every name is importable from ``scriptlab.data`` as before. None of them
imports JAX: dataset worker processes import this package.
"""

# ruff: noqa: F401 -- the package namespace keeps every name the single module had (private
# ones included, for tests)
from scriptlab import fonts
from scriptlab.data.config import (
    BIAS,
    CHUNK,
    CONFLICT_SPLITS,
    DATA_VERSION,
    PRESETS,
    SPLITS,
    DataConfig,
    Dataset,
    Split,
    _bias_style,
    as_float,
    make_config,
)
from scriptlab.data.generate import (
    _concat,
    _generate,
    _render_chunk,
    chunk_entropy,
    map_chunks,
    split_plan,
)
from scriptlab.data.render import (
    Draws,
    Glyph,
    _bilinear_matrix,
    _blur,
    _check_raqm,
    _draw_glyph,
    _font,
    _luma,
    _plan,
    _settled_box,
    _styles,
    draw_chunk,
    glyph_alpha,
    paint,
)
from scriptlab.data.store import (
    _check_schema,
    _digest,
    _load,
    _save,
    _try_load,
    dataset_path,
    load,
)
from scriptlab.data.summaries import bias_fraction, counts, sample_grid, summary

# --------------------------------------------------------------------------- style twins

_TWINS = ("Twins", "style_twins", "twins_path", "PlainTwin", "plain_twin")


def __getattr__(name: str):
    # scriptlab.twins builds on this module, so its names are re-exported lazily:
    # ``from scriptlab.data import style_twins`` works without an import cycle.
    if name in _TWINS:
        from scriptlab import twins

        return getattr(twins, name)
    raise AttributeError(f"module 'scriptlab.data' has no attribute {name!r}")
