import numpy as np
import pytest
from PIL import ImageFont

from scriptlab import fonts
from scriptlab.words import WORDS


def test_every_script_has_two_styles_and_every_style_three_scripts():
    for script in fonts.SCRIPTS:
        assert len(fonts.styles_for(script)) >= 2, script
    for style in fonts.STYLES:
        n = sum(style in fonts.styles_for(s) for s in fonts.SCRIPTS)
        assert n >= 3, (style, n)


def test_caveat_is_a_handwritten_training_font():
    caveat = [f for f in fonts.faces_for("latin", "hand") if f.family == "Caveat"]
    assert caveat and not caveat[0].heldout


def test_cmap_check_rejects_missing_glyphs():
    caveat = fonts.faces_for("latin", "hand")[0]
    assert fonts.covers(caveat, "bread")
    assert not fonts.covers(caveat, "한국어")
    assert "한국어" not in fonts.words_for(caveat, "latin")


def test_words_for_never_contains_a_notdef_glyph():
    from fontTools.ttLib import TTFont

    seen = set()
    for face in fonts.FACES:
        path = fonts.font_path(face)
        if path in seen:
            continue
        seen.add(path)
        with TTFont(path, lazy=True) as tt:
            cmap = tt.getBestCmap()
            for script in face.scripts:
                for word in fonts.words_for(face, script):
                    glyphs = [cmap.get(ord(c)) for c in word if not c.isspace()]
                    assert all(g not in (None, ".notdef") for g in glyphs), (face.family, word)


def test_empty_cell_names_the_cell_and_a_package():
    with pytest.raises(fonts.FontCoverageError, match=r"korean.*hand.*fontpkg-nanum-pen-script"):
        fonts.faces_for("korean", "hand")


def test_unknown_script_or_style_names_allowed_values():
    with pytest.raises(ValueError, match=r"unknown script 'klingon'; allowed: latin"):
        fonts.faces_for("klingon", "sans")
    with pytest.raises(ValueError, match=r"unknown style 'gothic'; allowed: sans"):
        fonts.faces_for("latin", "gothic")


def test_variable_fonts_render_at_several_weights():
    from scriptlab.data import _font

    light, heavy = [f for f in fonts.FACES if f.family == "Noto Sans" and f.weight in (350, 900)]
    ink = [np.asarray(_font(f, 24).getmask("Wasser")).sum() for f in (light, heavy)]
    assert ink[1] > 1.3 * ink[0]


def test_heldout_families_are_disjoint_from_training_families():
    train = {f.family for f in fonts.FACES if not f.heldout}
    held = {f.family for f in fonts.FACES if f.heldout}
    assert held and not train & held


def test_complex_scripts_are_shaped_by_raqm():
    face = fonts.faces_for("arabic", "sans")[0]
    path = str(fonts.font_path(face))
    raqm = ImageFont.truetype(path, 24, layout_engine=ImageFont.Layout.RAQM)
    basic = ImageFont.truetype(path, 24, layout_engine=ImageFont.Layout.BASIC)
    word = WORDS["arabic"][0]
    assert not np.array_equal(np.asarray(raqm.getmask(word)), np.asarray(basic.getmask(word)))


def test_cmap_code_points_match_fonttools_best_cmap_on_every_face():
    """``_cmap`` skips deriving glyph names; the code points must be fontTools' own."""
    from fontTools.ttLib import TTFont

    for path in sorted({fonts.font_path(f) for f in fonts.FACES}):
        with TTFont(path) as font:
            expected = frozenset(font.getBestCmap())
        assert fonts._cmap(path) == expected, path
