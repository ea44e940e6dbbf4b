import warnings

import numpy as np
import pytest

from scriptlab import data, fonts
from scriptlab.data import style_twins


def _stratified(split: data.Split, per_script: int) -> np.ndarray:
    """The first ``per_script`` crops of each script in a split."""
    return np.concatenate(
        [np.flatnonzero(split.script == s)[:per_script] for s in np.unique(split.script)]
    )


def _own_style_twins(ds, split: str, index: np.ndarray):
    """Each crop re-rendered in its own face: one request per own style, one slot each."""
    s = ds.split(split)
    out = []
    for style in np.unique(s.style[index]):
        rows = index[s.style[index] == style]
        twins = style_twins(ds, split, rows, (ds.styles[style],), heldout=False, cache=False)
        out.append((rows, twins))
    return out


def _check_own(ds, split: str, index: np.ndarray) -> int:
    s = ds.split(split)
    n = 0
    for rows, twins in _own_style_twins(ds, split, index):
        assert twins.own.all() and twins.valid.all()
        assert np.array_equal(twins.images[:, 0], s.images[rows]), split
        assert np.array_equal(twins.masks[:, 0], s.masks[rows]), split
        assert np.array_equal(twins.text, s.text[rows])
        assert np.array_equal(twins.script, s.script[rows])
        assert np.array_equal(twins.family[:, 0], s.family[rows])
        n += len(rows)
    return n


def test_own_font_twin_reproduces_the_crop_byte_for_byte(smoke):
    # two crops of every script in a biased, a conflict and the held-out-font split: a true counterfactual changes nothing
    # when the "new" font is the crop's own
    # (the slow test below checks every crop of every split)
    splits = ("test", "conflict", "heldout")
    n = sum(_check_own(smoke, split, _stratified(smoke.split(split), 2)) for split in splits)
    assert n >= 50


@pytest.mark.slow
def test_own_font_twin_reproduces_every_smoke_crop(smoke):
    for split in data.SPLITS:
        index = np.arange(len(smoke.split(split)))
        assert _check_own(smoke, split, index) == len(index)


def _support_of_blur(alpha: np.ndarray) -> np.ndarray:
    """Pixels whose 5x5 neighbourhood holds any ink coverage (the renderer's blur has 5 taps)."""
    h, w = alpha.shape
    p = np.pad(alpha > 0, 2)
    return np.any([p[i : i + h, j : j + w] for i in range(5) for j in range(5)], axis=0)


def test_another_font_changes_only_pixels_near_ink(smoke):
    """Outside both glyphs' coverage grown by the blur radius, a twin equals its crop bit for bit.

    The renderer paints blur(background * (1 - a) + colour * a) + noise. Where neither the
    crop's coverage a nor the twin's has a non-zero pixel within the 5x5 window of the
    separable 5-tap blur, both blurred values are the same arithmetic on the same
    background, and the noise field is the same draw: identical bytes. Coverage here is
    any alpha > 0 (anti-aliased edges and the bilinear rotation included), not the
    thresholded mask, so the statement is exact.
    """
    split = "conflict"
    s = smoke.split(split)
    index = _stratified(s, 2)
    twins = style_twins(smoke, split, index, cache=False)
    cfg = smoke.config
    script, _, face = data.split_plan(cfg, split)
    draws = data.draw_chunk(cfg, data.chunk_entropy(cfg, split, 0), script, face)
    h, w = cfg.image_size
    checked = differing = 0
    for i, k in zip(*np.nonzero(twins.valid & ~twins.own), strict=True):
        glyph = draws.glyphs[index[i]]
        own = data.glyph_alpha(fonts.FACES[face[index[i]]], glyph, h, w)
        new = data.glyph_alpha(fonts.FACES[twins.face[i, k]], glyph, h, w)
        assert np.array_equal(new >= 128, twins.masks[i, k])
        far = ~(_support_of_blur(own) | _support_of_blur(new))
        assert far.mean() > 0.2  # the check is not vacuous
        assert np.array_equal(twins.images[i, k][far], s.images[index[i]][far])
        checked += 1
        differing += not np.array_equal(twins.images[i, k], s.images[index[i]])
    assert checked >= 40 and differing == checked  # another face always changes the ink


def test_every_twin_is_covered_by_its_font_and_labelled(smoke):
    split = "test"
    s = smoke.split(split)
    index = _stratified(s, 4)
    twins = style_twins(smoke, split, index, cache=False)
    assert twins.slots == (*smoke.styles, "heldout")
    for i, k in zip(*np.nonzero(twins.valid), strict=True):
        face = fonts.FACES[twins.face[i, k]]
        assert fonts.covers(face, twins.text[i])  # no tofu, the dataset's own check
        assert twins.families[twins.family[i, k]] == face.family
        assert smoke.styles[twins.style[i, k]] == face.style
        script = smoke.scripts[twins.script[i]]
        if twins.slots[k] == "heldout":
            training = {
                f.family for st in fonts.styles_for(script) for f in fonts.faces_for(script, st)
            }
            assert face.heldout and face.family not in training
        else:
            assert face.style == twins.slots[k] and not face.heldout
    # an invalid slot is black, and no face of its kind covers the word
    assert (~twins.valid).any()
    for i, k in zip(*np.nonzero(~twins.valid), strict=True):
        assert not twins.images[i, k].any() and not twins.masks[i, k].any()
        script = smoke.scripts[twins.script[i]]
        slot = twins.slots[k]
        held = slot == "heldout"
        styles = fonts.styles_for(script, heldout=held) if held else (slot,)
        pool = [
            f
            for st in styles
            if st in fonts.styles_for(script, heldout=held)
            for f in fonts.faces_for(script, st, heldout=held)
        ]
        assert not any(fonts.covers(f, twins.text[i]) for f in pool)
    korean = twins.script == smoke.scripts.index("korean")
    assert korean.any() and not twins.valid[korean, -1].any()  # no held-out Korean face


def test_twins_are_deterministic_and_slots_independent(smoke):
    index = np.array([5, 0, 3, 140, 7])
    a = style_twins(smoke, "conflict", index, cache=False)
    b = style_twins(smoke.config, "conflict", index, cache=False)
    for x, y in zip(a, b, strict=True):
        assert np.array_equal(x, y)
    one = style_twins(smoke, "conflict", index, ("serif",), heldout=False, cache=False)
    k = a.slots.index("serif")
    assert np.array_equal(one.images[:, 0], a.images[:, k])
    assert np.array_equal(one.face[:, 0], a.face[:, k])
    # the order of the request does not matter
    rev = style_twins(smoke, "conflict", index[::-1], cache=False)
    assert np.array_equal(rev.images[::-1], a.images)
    # another seed picks other faces where a style has several
    many = np.arange(60)
    s0 = style_twins(smoke, "conflict", many, cache=False)
    s1 = style_twins(smoke, "conflict", many, cache=False, seed=1)
    assert np.array_equal(s0.valid, s1.valid)
    assert (s0.face != s1.face).any()
    assert np.array_equal(s0.face[s0.own], s1.face[s1.own])


@pytest.mark.slow
def test_twins_are_the_same_for_any_number_of_workers(smoke):
    index = np.arange(150)  # 900 twins: above the pool's threshold
    one = style_twins(smoke, "conflict", index, cache=False, workers=1)
    two = style_twins(smoke, "conflict", index, cache=False, workers=2)
    for x, y in zip(one, two, strict=True):
        assert np.array_equal(x, y)


def test_twins_cache_round_trip_and_repair(smoke, tmp_path, monkeypatch):
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    index = np.array([1, 2, 3])
    first = style_twins(smoke, "val", index, ("sans", "hand"))
    path = data.twins_path(smoke.config, "val", index, ("sans", "hand", "heldout"), 0)
    assert path.exists()
    again = style_twins(smoke, "val", index, ("sans", "hand"))
    for x, y in zip(first, again, strict=True):
        assert np.array_equal(x, y)
    path.write_bytes(path.read_bytes()[:100])  # a truncated file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        repaired = style_twins(smoke, "val", index, ("sans", "hand"))
    assert any("unreadable" in str(w.message) for w in caught)
    assert np.array_equal(repaired.images, first.images)


def test_a_dataset_from_another_renderer_is_refused(smoke):
    s = smoke.val
    text = s.text.copy()
    text[2] = "x"
    other = data.Dataset(
        smoke.config,
        {**smoke.splits, "val": data.Split(**{**s._asdict(), "text": text})},
        smoke.scripts,
        smoke.styles,
        smoke.families,
    )
    with pytest.raises(ValueError, match="differ"):
        style_twins(other, "val", [1, 2], ("sans",), cache=False)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        (("nope", 0), {}, "unknown split 'nope'"),
        (("test", 150), {}, r"index must lie in \[0, 150\)"),
        (("test", -1), {}, "index must lie"),
        (("test", 1.0), {}, "index must be an int"),
        (("test", [True]), {}, "index must be an int"),
        (("test", [[1, 2]]), {}, "shape"),
        (("test", []), {}, "index is empty"),
        (("test", 0, ("serif", "comic")), {}, "unknown style 'comic'"),
        (("test", 0, ("serif", "serif")), {}, "must not repeat"),
        (("test", 0, ()), {"heldout": False}, "no twin asked for"),
        (("test", 0), {"heldout": 1}, "heldout must be True or False"),
        (("test", 0), {"seed": -1}, "seed must be an integer >= 0"),
        (("test", 0), {"seed": 1.5}, "seed must be an integer >= 0"),
    ],
)
def test_bad_arguments_are_named(smoke, args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        style_twins(smoke, *args, cache=False, **kwargs)


def test_bad_dataset_argument(smoke):
    with pytest.raises(ValueError, match="ds_or_config must be"):
        style_twins(smoke.test, "test", 0)


# --------------------------------------------------------------------------- plain_twin
def test_plain_twin_picks_the_scripts_usual_style():
    """A hand-made Twins: each crop's twin in its script's usual style, or not ok."""
    from types import SimpleNamespace

    from scriptlab.twins import Twins, plain_twin

    n, slots = 4, ("serif", "hand", "heldout")
    images = np.arange(n * 3 * 2 * 2 * 3, dtype=np.uint8).reshape(n, 3, 2, 2, 3)
    masks = images[..., 0] % 2 == 0
    valid = np.ones((n, 3), bool)
    valid[2, 1] = False  # crop 2's hand twin could not be drawn
    own = np.zeros((n, 3), bool)
    own[3, 0] = True  # crop 3 is itself serif
    script = np.array([0, 1, 1, 0])  # usual styles: script 0 -> hand, script 1 -> serif
    twins = Twins(images, masks, valid, own, np.zeros((n, 3), np.int32), np.zeros((n, 3), np.int32),
                  np.zeros((n, 3), np.int32), script, np.array(["a"] * n), np.arange(n), slots,
                  ("f",))  # fmt: skip
    ds = SimpleNamespace(scripts=("s0", "s1"), styles=("serif", "hand"),
                         bias_style=lambda s: {"s0": 1, "s1": 0}[s])  # fmt: skip
    got = plain_twin(twins, ds)
    np.testing.assert_array_equal(got.slot, [1, 0, 0, 1])
    np.testing.assert_array_equal(got.ok, [True, True, True, True])
    for i, k in enumerate(got.slot):
        assert np.array_equal(got.images[i], images[i, k])
        assert np.array_equal(got.masks[i], masks[i, k])
    # crop 2's script is usually serif (slot 0, valid); make script 1 usually hand instead
    ds.bias_style = lambda s: 1
    got = plain_twin(twins, ds)
    np.testing.assert_array_equal(got.ok, [True, True, False, True])
    assert not got.images[2].any() and not got.masks[2].any()
    # a style with no slot: nothing ok
    ds.styles = ("serif", "hand", "mono")
    ds.bias_style = lambda s: 2
    assert not plain_twin(twins, ds).ok.any()
    with pytest.raises(ValueError, match="twins must be a scriptlab.twins.Twins"):
        plain_twin((images,), ds)


def test_plain_twin_own_face_is_not_a_swap():
    from types import SimpleNamespace

    from scriptlab.twins import Twins, plain_twin

    z = np.zeros((1, 1), np.int32)
    twins = Twins(np.ones((1, 1, 2, 2, 3), np.uint8), np.ones((1, 1, 2, 2), bool),
                  np.ones((1, 1), bool), np.ones((1, 1), bool), z, z, z, np.array([0]),
                  np.array(["a"]), np.arange(1), ("serif",), ("f",))  # fmt: skip
    ds = SimpleNamespace(scripts=("s0",), styles=("serif",), bias_style=lambda s: 0)
    got = plain_twin(twins, ds)
    assert not got.ok[0] and not got.images.any()
