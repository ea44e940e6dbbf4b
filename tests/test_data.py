import dataclasses
import warnings

import numpy as np
import pytest

from scriptlab import data, fonts


def test_splits_shapes_and_dtypes(smoke):
    for name in data.SPLITS:
        s = smoke.split(name)
        n = len(s)
        assert n == smoke.config.sizes()[name]
        assert s.images.shape == (n, 32, 64, 3) and s.images.dtype == np.uint8
        assert s.masks.shape == (n, 32, 64) and s.masks.dtype == bool
        assert s.text.shape == (n,) and s.color.shape == (n, 3)
        assert all(len(t) > 0 for t in s.text)


@pytest.mark.slow
def test_deterministic_and_seed_dependent(smoke):
    again = data.load("smoke", seed=0, cache=False, progress=False, workers=2)
    for a, b in zip(smoke.train, again.train, strict=True):
        assert np.array_equal(a, b)
    other = data.load(
        "smoke",
        seed=1,
        cache=False,
        progress=False,
        n_train=64,
        n_val=0,
        n_test=0,
        n_conflict=0,
        n_heldout=0,
        workers=1,
    )
    assert not np.array_equal(other.train.images, smoke.train.images[:64])


def test_bias_fraction_matches_rho(smoke):
    for script, frac in data.bias_fraction(smoke).items():
        assert abs(frac - smoke.config.rho) < 0.02, script


def test_conflict_split_never_uses_the_assigned_style(smoke):
    c = smoke.conflict
    assigned = np.array([smoke.bias_style(s) for s in smoke.scripts])
    assert np.all(c.style != assigned[c.script])


def test_heldout_fonts_never_appear_in_training_splits(smoke):
    held = {
        i
        for i, f in enumerate(smoke.families)
        if any(x.heldout and x.family == f for x in fonts.FACES)
    }
    assert set(smoke.heldout.family.tolist()) <= held
    for name in ("train", "val", "test", "conflict"):
        assert not set(smoke.split(name).family.tolist()) & held, name


def test_every_covered_cell_is_populated():
    ds = data.load(
        "smoke",
        seed=0,
        progress=False,
        n_train=0,
        n_val=0,
        n_test=0,
        n_conflict=0,
        n_heldout=0,
        n_val_conflict=0,
    )
    assert sum(len(s) for s in ds.splits.values()) == 0
    big = data.load("workshop", progress=False)
    pooled = np.zeros((len(big.scripts), len(big.styles)), int)
    for name in ("train", "conflict"):
        np.add.at(pooled, (big.split(name).script, big.split(name).style), 1)
    for i, script in enumerate(big.scripts):
        for style in fonts.styles_for(script):
            assert pooled[i, big.styles.index(style)] > 0, (script, style)


def test_every_rendered_text_is_covered_by_its_font(smoke):
    for s in smoke.splits.values():
        for fam, script, text in zip(s.family, s.script, s.text, strict=True):
            faces = [
                f
                for f in fonts.FACES
                if f.family == smoke.families[fam] and smoke.scripts[script] in f.scripts
            ]
            assert any(fonts.covers(f, text) for f in faces), (smoke.families[fam], text)


def test_mask_marks_the_ink(smoke):
    s = smoke.test
    img = s.images.astype(float)
    dist = np.abs(img - s.color[:, None, None, :].astype(float)).sum(-1)
    on = np.array([dist[i][s.masks[i]].mean() for i in range(len(s))])
    off = np.array([dist[i][~s.masks[i]].mean() for i in range(len(s))])
    assert np.all(s.masks.reshape(len(s), -1).any(1))
    assert np.mean(on < off) > 0.97


def test_bad_config_errors_name_the_argument():
    with pytest.raises(ValueError, match=r"rho must be in \[0, 1\], got 1.5"):
        data.make_config("smoke", rho=1.5)
    with pytest.raises(ValueError, match=r"unknown preset 'huge'; allowed: smoke, workshop, full"):
        data.make_config("huge")
    with pytest.raises(ValueError, match=r"unknown script 'klingon'"):
        data.make_config("smoke", scripts=("latin", "klingon"))
    with pytest.raises(ValueError, match=r"unknown style 'gothic'"):
        data.make_config("smoke", styles=("sans", "gothic"))
    with pytest.raises(ValueError, match=r"styles must name at least one style"):
        data.make_config("smoke", styles=())
    with pytest.raises(ValueError, match=r"image_size"):
        data.make_config("smoke", image_size=(30, 64))
    with pytest.raises(fonts.FontCoverageError, match=r"korean.*hand"):
        data.make_config("smoke", scripts=("latin", "korean"), styles=("hand",))
    with pytest.raises(ValueError, match=r"unknown split 'dev'"):
        data.load("smoke", progress=False).split("dev")


def test_corrupt_cache_is_detected_and_regenerated(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    kw = dict(progress=False, n_train=40, n_val=8, n_test=8, n_conflict=8, n_heldout=8, workers=1)
    first = data.load("smoke", **kw)
    path = data.dataset_path(first.config)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.warns(UserWarning, match="unreadable"):
        second = data.load("smoke", **kw)
    assert np.array_equal(first.train.images, second.train.images)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        third = data.load("smoke", **kw)
    assert np.array_equal(first.test.masks, third.test.masks)


def test_missing_raqm_is_a_clear_error(monkeypatch):
    from PIL import features

    monkeypatch.setattr(features, "check", lambda name: False)
    with pytest.raises(RuntimeError, match="raqm"):
        data._check_raqm()


@pytest.mark.parametrize(
    "overrides, match",
    [
        (dict(scripts=("latin", "latin", "greek")), r"scripts must not repeat a script.*latin"),
        (dict(styles=("sans", "serif", "sans")), r"styles must not repeat a style.*sans"),
        (dict(scripts="latin"), r"scripts must be a sequence of script names"),
        (dict(seed=True), r"seed must be an integer >= 0, got True"),
        (dict(n_train=True), r"n_train must be an integer >= 0, got True"),
        (dict(n_val=2.5), r"n_val must be an integer >= 0, got 2.5"),
        (dict(rho=True), r"rho must be in \[0, 1\], got True"),
        (dict(image_size=(True, 64)), r"image_size must be \(H, W\)"),
        (dict(scripts=("latin",)), r"scripts must name at least two scripts"),
    ],
)
def test_every_construction_of_a_data_config_is_checked(overrides, match):
    """DataConfig checks itself (__post_init__): make_config, a direct build and replace alike."""
    with pytest.raises(ValueError, match=match):
        data.DataConfig(preset="smoke", **overrides)
    with pytest.raises(ValueError, match=match):
        dataclasses.replace(data.make_config("smoke"), **overrides)
    seed = overrides.pop("seed", 0)
    with pytest.raises(ValueError, match=match):
        data.make_config("smoke", seed, **overrides)


def test_a_data_config_takes_lists_as_tuples_with_the_same_key():
    cfg = data.make_config("smoke", scripts=["latin", "greek"], image_size=[32, 64])
    assert cfg.scripts == ("latin", "greek") and cfg.image_size == (32, 64)
    assert cfg.key() == data.make_config("smoke", scripts=("latin", "greek")).key()
    with pytest.raises(ValueError, match="unknown preset 'typo'"):
        data.DataConfig(preset="typo")
