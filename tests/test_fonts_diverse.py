"""The opt-in "diverse" font table, and the default table's keys that it must not move."""

import dataclasses

import numpy as np
import pytest

from scriptlab import data, fonts, train
from scriptlab.data import _font
from scriptlab.data.render import _draw_glyph, glyph_alpha
from scriptlab.words import WORDS

DIVERSE = fonts.TABLES["diverse"]
NEW = tuple(f for f in DIVERSE if f not in fonts.FACES)

# pip offers no second family for these scripts (no fontpkg-noto-serif-sc/jp/kr, -nanum-*,
# -zcool-*, -yomogi on the registry): their held-out pools stay as in the default table.
ONE_FAMILY_ON_PIP = ("chinese", "japanese", "korean")


def _families(script: str, *, heldout: bool, table: str) -> set[str]:
    return {
        f.family
        for style in fonts.styles_for(script, heldout=heldout, table=table)
        for f in fonts.faces_for(script, style, heldout=heldout, table=table)
    }


# --------------------------------------------------------------------------- default unchanged


# Recorded before DataConfig/TrainConfig grew ``fonts``: the cached datasets and zoo models
# are filed under these. They also hash Pillow's version and the font files' bytes, so a
# Pillow or font package upgrade moves them legitimately (and must move them).
DATA_KEYS = {
    ("smoke", ()): "92ab0cd0e0ff5564",
    ("workshop", ()): "530aa81f610a5bd9",
    ("workshop", (("rho", 0.2),)): "a95951d9e048329e",
}
TRAIN_KEYS = {
    (): "bb03ef722c41",
    (("mode", "baseline"), ("preset", "smoke")): "3899f0931633",
    (("mode", "unlearn"), ("rho", 0.2)): "968723a6faeb",
}


def test_default_table_keys_are_the_keys_from_before_the_fonts_field():
    for (preset, overrides), key in DATA_KEYS.items():
        cfg = data.make_config(preset, **dict(overrides))
        assert cfg.fonts == "default"
        assert cfg.key() == key, (preset, overrides)
        assert data.make_config(preset, fonts="default", **dict(overrides)).key() == key
    for overrides, key in TRAIN_KEYS.items():
        assert train.make_train_config(**dict(overrides)).key() == key, overrides


def test_the_diverse_table_moves_both_keys():
    cfg = data.make_config("smoke")
    assert dataclasses.replace(cfg, fonts="diverse").key() != cfg.key()
    tcfg = train.make_train_config(mode="baseline", preset="smoke")
    assert dataclasses.replace(tcfg, fonts="diverse").key() != tcfg.key()


def test_the_default_table_is_faces():
    assert fonts.TABLES["default"] is fonts.FACES
    assert fonts.table_faces() is fonts.FACES
    assert fonts.families() == fonts.FAMILIES
    assert DIVERSE[: len(fonts.FACES)] == fonts.FACES  # default ids keep their meaning


def test_unknown_table_names_the_allowed_ones():
    with pytest.raises(ValueError, match=r"unknown fonts 'fancy'; allowed: default, diverse"):
        data.make_config("smoke", fonts="fancy")
    with pytest.raises(ValueError, match=r"unknown fonts 'fancy'; allowed: default, diverse"):
        train.make_train_config(fonts="fancy")
    with pytest.raises(ValueError, match=r"unknown table 'fancy'; allowed: default, diverse"):
        fonts.faces_for("latin", "sans", table="fancy")


def test_train_config_passes_the_table_to_the_dataset():
    assert train.make_train_config().data_overrides() == {}
    cfg = train.make_train_config(fonts="diverse", rho=0.5)
    assert cfg.data_overrides() == {"rho": 0.5, "fonts": "diverse"}
    assert data.make_config(cfg.preset, cfg.data_seed, **cfg.data_overrides()).fonts == "diverse"


# --------------------------------------------------------------------------- the diverse table


def test_diverse_covers_every_cell_the_default_covers():
    for heldout in (False, True):
        for script in fonts.SCRIPTS:
            default = fonts.styles_for(script, heldout=heldout)
            diverse = fonts.styles_for(script, heldout=heldout, table="diverse")
            assert set(default) <= set(diverse), (script, heldout)


def test_diverse_holds_out_whole_families_and_every_default_held_out_one():
    train_families = {f.family for f in DIVERSE if not f.heldout}
    held = {f.family for f in DIVERSE if f.heldout}
    assert not train_families & held
    assert {f.family for f in fonts.FACES if f.heldout} <= held
    assert {f.family for f in fonts.FACES if not f.heldout} <= train_families


def test_every_script_has_two_held_out_families_where_pip_has_them():
    for script in fonts.SCRIPTS:
        held = _families(script, heldout=True, table="diverse")
        if script in ONE_FAMILY_ON_PIP:
            assert held == _families(script, heldout=True, table="default"), script
        else:
            assert len(held) >= 2, (script, held)
        # more training families than the default table everywhere pip has them
        more = len(_families(script, heldout=False, table="diverse")) > len(
            _families(script, heldout=False, table="default")
        )
        assert more or script in ONE_FAMILY_ON_PIP + ("thai",), script


def test_every_new_face_covers_the_scripts_it_is_listed_for():
    for face in NEW:
        assert face.style in fonts.STYLES, face
        for script in face.scripts:
            n = len(fonts.words_for(face, script))
            assert n >= fonts.MIN_WORD_COVERAGE * len(WORDS[script]), (face, script, n)


def test_new_faces_never_draw_a_notdef_glyph():
    from fontTools.ttLib import TTFont

    for path in sorted({fonts.font_path(f) for f in NEW}):
        faces = [f for f in NEW if fonts.font_path(f) == path]
        with TTFont(path, lazy=True) as tt:
            cmap = tt.getBestCmap()
            for face in faces:
                for script in face.scripts:
                    for word in fonts.words_for(face, script):
                        glyphs = [cmap.get(ord(c)) for c in word if not c.isspace()]
                        assert all(g not in (None, ".notdef") for g in glyphs), (face, word)


def test_every_new_face_inks_every_word_and_fits_a_crop():
    """No blank renders: each covered word leaves ink, and a dataset crop of it has ink too."""
    rng = np.random.default_rng(0)
    for face in NEW:
        font = _font(face, 20)
        for script in face.scripts:
            words = fonts.words_for(face, script)
            ink = [np.asarray(font.getmask(w)).max() for w in words]
            assert min(ink) > 0, (face, script, words[int(np.argmin(ink))])
            for _ in range(3):
                glyph = _draw_glyph(rng, face, script, 32, 64)
                assert (glyph_alpha(face, glyph, 32, 64) >= 128).sum() >= 10, (face, glyph.text)


def test_display_weights_are_heavier_than_the_same_familys_sans():
    """The variable faces' wght value reaches Pillow (a missed axis would draw them alike)."""
    for family in {f.family for f in NEW if f.style == "display"}:
        sans = [f for f in NEW if f.family == family and f.style == "sans"]
        display = [f for f in NEW if f.family == family and f.style == "display"]
        if not sans:
            continue
        script = display[0].scripts[0]
        text = fonts.words_for(display[0], script)[0]
        ink = [np.asarray(_font(f, 24).getmask(text)).sum() for f in (sans[0], display[-1])]
        assert ink[1] > 1.15 * ink[0], (family, ink)


# --------------------------------------------------------------------------- a diverse dataset

SMALL = dict(n_train=96, n_val=32, n_test=32, n_conflict=32, n_heldout=64, n_val_conflict=32)


@pytest.fixture(scope="module")
def diverse_small():
    return data.load("smoke", 0, fonts="diverse", cache=False, workers=1, progress=False, **SMALL)


def test_a_diverse_dataset_is_deterministic(diverse_small):
    again = data.load("smoke", 0, fonts="diverse", cache=False, workers=1, progress=False, **SMALL)
    for name in data.SPLITS:
        for a, b in zip(diverse_small.split(name), again.split(name), strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b), name


def test_a_diverse_dataset_draws_new_families_and_holds_out_its_held_out_ones(diverse_small):
    ds = diverse_small
    assert ds.families == fonts.families("diverse")
    held = {f.family for f in DIVERSE if f.heldout}
    new = {f.family for f in NEW} - {f.family for f in fonts.FACES}
    for name in data.SPLITS:
        used = {ds.families[i] for i in ds.split(name).family}
        assert (used <= held) if name == "heldout" else not used & held, name
    assert {ds.families[i] for i in ds.train.family} & new
    assert {ds.families[i] for i in ds.heldout.family} & new


def test_a_missing_diverse_package_names_the_extra(monkeypatch):
    import importlib.util

    face = next(f for f in NEW if f.family == "Zeyada")
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda n, *a: None if n == face.module else real(n, *a)
    )
    fonts.font_path.cache_clear()
    try:
        with pytest.raises(
            fonts.FontPackageError, match=r"fontpkg-zeyada.*scriptlab\[diverse-fonts\]"
        ):
            fonts.font_path(face)
    finally:
        fonts.font_path.cache_clear()


def test_style_twins_of_a_diverse_dataset_use_its_table(diverse_small):
    ds = diverse_small
    index = np.arange(24)
    twins = data.style_twins(ds, "test", index, workers=1, cache=False)
    assert twins.families == fonts.families("diverse")
    i, k = np.nonzero(twins.own)
    assert len(i) and np.array_equal(twins.images[i, k], ds.test.images[index[i]])
    faces = fonts.table_faces("diverse")
    held = {f.family for f in DIVERSE if f.heldout}
    slot = twins.slots.index("heldout")
    for row in np.flatnonzero(twins.valid[:, slot]):
        assert faces[twins.face[row, slot]].family in held


def test_a_diverse_dataset_round_trips_through_the_cache(diverse_small, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    kw = dict(fonts="diverse", workers=1, progress=False, **SMALL)
    data.load("smoke", 0, **kw)
    back = data.load("smoke", 0, **kw)  # read from the file just written
    assert back.seconds == 0.0 and back.families == fonts.families("diverse")
    assert data.dataset_path(back.config).name.endswith(f"{diverse_small.key}.npz")
    for name in data.SPLITS:
        for a, b in zip(diverse_small.split(name), back.split(name), strict=True):
            assert np.array_equal(a, b), name
