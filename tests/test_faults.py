"""Fault injection on every cache file kind (issue 13): bit flips, truncation, wrong
structure, another config's file, a read-only cache, a missing font package and
concurrent writers. Every reader either serves the right thing or says why not;
none serves a wrong result silently. Models are random-init (nothing is trained).
"""

import json
import multiprocessing
import os
import warnings

import numpy as np
import pytest
from flax import nnx

from scriptlab import data, fonts, train, zoo

TINY = dict(n_train=16, n_val=4, n_test=4, n_conflict=4, n_heldout=4, n_val_conflict=4)


# --------------------------------------------------------------------------- checkpoints
def _result(smoke, cfg=None, n_scripts=None):
    """A random-init Result for ``cfg`` on ``smoke`` (with an epoch-0 snapshot)."""
    cfg = cfg or train.make_train_config(preset="smoke", epochs=1, snapshots=True)
    model = train.build_model(cfg, smoke)
    if n_scripts is not None:
        h, w = smoke.config.image_size
        model = train.ScriptNet(
            n_scripts, len(smoke.styles), image_shape=(h, w, 3), rngs=nnx.Rngs(0),
            channels=cfg.channels, dropout=cfg.dropout,
        )  # fmt: skip
    snaps = [(0, nnx.state(model, nnx.Param))] if cfg.snapshots else []
    return train.Result(model, cfg, [{"epoch": 1}], smoke.key, snaps)


@pytest.fixture
def saved(tmp_path, smoke):
    result = _result(smoke)
    return train.save(result, tmp_path / "ckpt"), result


def _flip_byte(path, offset=None):
    blob = bytearray(path.read_bytes())
    i = len(blob) // 2 if offset is None else offset
    blob[i] ^= 0x01
    path.write_bytes(bytes(blob))


def _resign(directory, name):
    """Record the current sha256 of ``name``, so only the content check can catch it."""
    import hashlib

    meta = json.loads((directory / "checkpoint.json").read_text())
    meta["sha256"][name] = hashlib.sha256((directory / name).read_bytes()).hexdigest()
    (directory / "checkpoint.json").write_text(json.dumps(meta))


def test_checkpoint_roundtrip_is_exact(saved, smoke):
    where, result = saved
    back = train.restore(where, result.config, smoke)
    a = nnx.state(result.model, nnx.Param).to_pure_dict()
    b = nnx.state(back.model, nnx.Param).to_pure_dict()
    for x, y in zip(
        jax_leaves(a), jax_leaves(b), strict=True
    ):  # every array identical, bit for bit
        np.testing.assert_array_equal(x, y)
    meta = json.loads((where / "checkpoint.json").read_text())
    assert meta["config_key"] == result.config.key()
    assert set(meta["sha256"]) == {"checkpoint.msgpack", "epoch_000.msgpack"}


def jax_leaves(tree):
    import jax

    return jax.tree.leaves(tree)


@pytest.mark.parametrize("name", ["checkpoint.msgpack", "epoch_000.msgpack"])
def test_checkpoint_bit_flip_is_caught(saved, name):
    where, _ = saved
    _flip_byte(where / name)
    with pytest.raises(ValueError, match="checksum mismatch"):
        train.restore(where)


@pytest.mark.parametrize("name", ["checkpoint.msgpack", "epoch_000.msgpack"])
def test_checkpoint_truncation_is_caught_even_with_a_matching_checksum(saved, name):
    where, _ = saved
    blob = (where / name).read_bytes()
    (where / name).write_bytes(blob[: len(blob) // 3])
    with pytest.raises(ValueError, match="checksum mismatch"):
        train.restore(where)
    _resign(where, name)
    with pytest.raises(ValueError, match="msgpack|lacks|parameter"):
        train.restore(where)


@pytest.mark.parametrize(
    "meta",
    [
        "[1, 2, 3]",
        '{"config": "baseline"}',
        '{"config": {"mode": "baseline"}, "data_key": 1, "history": [], "snapshots": []}',
        '{"config": {"nonsense": 1}, "data_key": "x", "history": [], "snapshots": []}',
        '{"config": {',
        "",
    ],
)
def test_malformed_checkpoint_json_is_a_value_error(saved, meta):
    where, _ = saved
    (where / "checkpoint.json").write_text(meta)
    with pytest.raises(ValueError, match="malformed"):
        train.restore(where)


def test_edited_config_is_caught_by_the_config_key(saved):
    where, _ = saved
    meta = json.loads((where / "checkpoint.json").read_text())
    meta["config"]["lr"] = 0.5
    (where / "checkpoint.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="config_key"):
        train.restore(where)


@pytest.mark.parametrize(
    ("how", "match"),
    [
        (lambda k: k.astype(np.float16), "float32"),
        (lambda k: k.astype(np.int32), "float32"),
        (lambda k: np.where(k == k.flat[0], np.nan, k).astype(np.float32), "NaN"),
        (lambda k: np.full_like(k, np.inf), "NaN or infinite"),
    ],
)
def test_bad_kernels_are_rejected(saved, how, match):
    from flax import serialization

    where, _ = saved
    tree = serialization.msgpack_restore((where / "checkpoint.msgpack").read_bytes())
    tree["conv1"]["kernel"] = how(tree["conv1"]["kernel"])
    (where / "checkpoint.msgpack").write_bytes(serialization.msgpack_serialize(tree))
    _resign(where, "checkpoint.msgpack")
    with pytest.raises(ValueError, match=match):
        train.restore(where)


def test_restore_rejects_heads_that_do_not_fit_the_dataset(tmp_path, smoke):
    where = train.save(_result(smoke, n_scripts=3), tmp_path / "three")
    assert len(smoke.scripts) != 3
    with pytest.raises(ValueError, match="heads for 3 scripts"):
        train.restore(where, ds=smoke)
    train.restore(where)  # without a dataset to check against, it loads


def test_legacy_checkpoint_without_checksums_still_loads(saved, smoke):
    where, result = saved
    meta = json.loads((where / "checkpoint.json").read_text())
    del meta["sha256"], meta["config_key"]
    (where / "checkpoint.json").write_text(json.dumps(meta))
    train.restore(where, result.config, smoke)


def test_save_refuses_a_file_and_a_symlink(tmp_path, smoke):
    result = _result(smoke)
    (tmp_path / "file").write_text("x")
    with pytest.raises(ValueError, match="is a file"):
        train.save(result, tmp_path / "file")
    outside = tmp_path / "outside.json"
    outside.write_text("keep")
    (tmp_path / "dir").mkdir()
    (tmp_path / "dir" / "checkpoint.json").symlink_to(outside)
    with pytest.raises(ValueError, match="symbolic link"):
        train.save(result, tmp_path / "dir")
    assert outside.read_text() == "keep"


def test_save_cleans_temporaries_of_dead_writers_only(saved, smoke):
    where, result = saved
    dead = where / f".checkpoint.msgpack.{_dead_pid()}.tmp"
    alive = where / ".checkpoint.msgpack.1.tmp"  # pid 1 is always running
    dead.write_bytes(b"half")
    alive.write_bytes(b"busy")
    train.save(result, where)
    assert not dead.exists() and alive.exists()
    assert not [p for p in where.iterdir() if f".{os.getpid()}." in p.name]


def _dead_pid() -> int:
    proc = multiprocessing.get_context("spawn").Process(target=int)
    proc.start()
    proc.join()
    return proc.pid


# --------------------------------------------------------------------------- zoo
@pytest.fixture
def zoo_cache(tmp_path, monkeypatch, smoke):
    """A zoo cache holding a random-init 'baseline' for the smoke preset; training is faked."""
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    cfg = zoo.config("baseline", "smoke")
    where = zoo.path(cfg, "baseline")
    train.save(_result(smoke, cfg), where)
    calls = []

    def fake_train(c, progress=True):
        calls.append(c)
        return _result(smoke, c)

    monkeypatch.setattr(train, "train", fake_train)
    return where, calls


@pytest.mark.parametrize(
    "meta", ["[]", '{"config": 3}', '{"config": {"mode": 1}, "history": 2}', "{", ""]
)
def test_zoo_retrains_over_a_structurally_wrong_checkpoint_json(zoo_cache, meta):
    where, calls = zoo_cache
    (where / "checkpoint.json").write_text(meta)
    with pytest.warns(UserWarning, match="unreadable"):
        zoo.load("baseline", "smoke", progress=False)
    assert len(calls) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        zoo.load("baseline", "smoke", progress=False)  # repaired: restored, not retrained
    assert len(calls) == 1


def test_zoo_retrains_over_a_flipped_checkpoint(zoo_cache):
    where, calls = zoo_cache
    _flip_byte(where / "checkpoint.msgpack")
    with pytest.warns(UserWarning, match="checksum"):
        zoo.load("baseline", "smoke", progress=False)
    assert len(calls) == 1


def test_zoo_loads_from_a_cache_it_cannot_lock(zoo_cache):
    """A read-only cache: the lock file cannot be opened for writing (here it is a folder,
    which fails for root too), yet the cached model loads and nothing is trained."""
    where, calls = zoo_cache
    lock = where.with_name(where.name + ".lock")
    lock.unlink(missing_ok=True)
    lock.mkdir()
    zoo.load("baseline", "smoke", progress=False)
    assert calls == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores file permissions")
def test_zoo_loads_from_a_read_only_cache(zoo_cache):
    where, calls = zoo_cache
    folders = [where.parent, where]
    for f in folders:
        f.chmod(0o555)
    try:
        zoo.load("baseline", "smoke", progress=False)
    finally:
        for f in folders:
            f.chmod(0o755)
    assert calls == []


# --------------------------------------------------------------------------- dataset cache
@pytest.fixture
def data_cache(tmp_path, monkeypatch, smoke):
    """The smoke dataset saved by the current writer into a fresh cache."""
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    path = data.dataset_path(smoke.config)
    data._save(smoke, path)
    return path


def test_dataset_file_of_another_seed_is_not_served(data_cache, smoke):
    other = data.make_config("smoke", 1)
    os.replace(data_cache, data.dataset_path(other))
    with pytest.raises(ValueError, match="holds dataset"):
        data._load(other, data.dataset_path(other))


@pytest.mark.parametrize(
    ("field", "change"),
    [
        ("images", lambda a: a[:, :-1]),
        ("images", lambda a: a.astype(np.float32)),
        ("script", lambda a: a.astype(np.int64)),
        ("script", lambda a: a + 100),
        ("masks", lambda a: a[:-1]),
    ],
)
def test_self_consistent_dataset_file_with_a_wrong_schema_is_rejected(
    data_cache, smoke, field, change
):
    bad = data.Split(**{**smoke.test._asdict(), field: change(getattr(smoke.test, field))})
    ds = data.Dataset(
        smoke.config, {**smoke.splits, "test": bad}, smoke.scripts, smoke.styles, smoke.families
    )
    data._save(ds, data_cache)  # a valid digest over the wrong arrays
    with pytest.raises(ValueError, match=f"test/{field}"):
        data._load(smoke.config, data_cache)
    data._save(smoke, data_cache)
    data._load(smoke.config, data_cache)


def test_dataset_cache_in_a_folder_that_cannot_be_locked_still_loads(data_cache, smoke):
    lock = data_cache.with_name(data_cache.name + ".lock")
    lock.mkdir()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        ds = data.load("smoke", 0, progress=False)
    assert np.array_equal(ds.test.images, smoke.test.images)


def test_dataset_render_cleans_temporaries_of_killed_writers(tmp_path, monkeypatch):
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    path = data.dataset_path(data.make_config("smoke", 5, **TINY))
    path.parent.mkdir(parents=True)
    stale = path.with_name(f"{path.name}.{_dead_pid()}.tmp.npz")
    stale.write_bytes(b"half")
    data.load("smoke", 5, progress=False, workers=1, **TINY)
    assert not stale.exists() and path.exists()


def _render(args):
    cache, seed = args
    os.environ["SCRIPTLAB_CACHE"] = cache
    from scriptlab import data as d

    return d.load("smoke", seed, progress=False, workers=1, **TINY).seconds > 0


def test_two_processes_asking_for_one_dataset_render_it_once(tmp_path):
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(2) as pool:
        rendered = pool.map(_render, [(str(tmp_path), 7)] * 2)
    assert sorted(rendered) == [False, True]


# --------------------------------------------------------------------------- fonts
def test_missing_font_package_is_an_error_naming_it(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    gone = fonts.faces_for("latin", "hand")[0].module
    fonts.font_path.cache_clear()
    fonts.words_for.cache_clear()
    try:
        with monkeypatch.context() as m:
            m.setattr(
                importlib.util,
                "find_spec",
                lambda name, *a: None if name == gone else real(name, *a),
            )
            with pytest.raises(fonts.FontPackageError, match=gone.replace("_", "[-_]")):
                fonts.styles_for("latin")
            with pytest.raises(fonts.FontPackageError):
                data.make_config("smoke", 0).key()
    finally:
        fonts.font_path.cache_clear()
        fonts.words_for.cache_clear()
    assert "hand" in fonts.styles_for("latin")


def test_unloadable_font_file_is_an_error_naming_the_package(monkeypatch):
    face = fonts.faces_for("greek", "serif")[0]

    def broken(path):
        raise OSError("not a font")

    monkeypatch.setattr(fonts, "_cmap", broken)
    fonts.words_for.cache_clear()
    try:
        with pytest.raises(fonts.FontPackageError, match=face.package):
            fonts.covers(face, "abc")
    finally:
        fonts.words_for.cache_clear()


def test_dataset_key_depends_on_the_font_bytes(monkeypatch):
    key = data.make_config("smoke", 0).key()
    monkeypatch.setattr(fonts, "_file_digest", lambda path: "0" * 16)
    assert data.make_config("smoke", 0).key() != key


# --------------------------------------------------------------------------- scripts without a main guard
def test_script_without_main_guard_fails_clearly_instead_of_hanging(tmp_path, smoke):
    import subprocess
    import sys

    env = {**os.environ, "SCRIPTLAB_CACHE": str(tmp_path), "XLA_FLAGS": ""}
    os.environ["SCRIPTLAB_CACHE"], old = str(tmp_path), os.environ.get("SCRIPTLAB_CACHE")
    try:
        data._save(smoke, data.dataset_path(smoke.config))  # nothing to render
    finally:
        if old is None:
            del os.environ["SCRIPTLAB_CACHE"]
        else:
            os.environ["SCRIPTLAB_CACHE"] = old
    script = tmp_path / "unguarded.py"
    script.write_text(
        "from scriptlab import zoo\n"
        "zoo.warm([('baseline', 'smoke', 0, {}), ('multitask', 'smoke', 0, {})],"
        " workers=2, progress=False)\n"
    )
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode != 0
    assert "__name__ == '__main__'" in run.stderr
    assert not list((tmp_path / "zoo").glob("*/checkpoint.json"))  # nothing was trained


def test_zoo_refuses_to_load_while_a_worker_imports_the_main_script(zoo_cache, monkeypatch):
    """What a spawned worker sees when an unguarded script calls zoo.load at import time:
    a clear error before any lock, restore or training."""
    import multiprocessing

    _, calls = zoo_cache
    monkeypatch.setattr(multiprocessing.current_process(), "_inheriting", True, raising=False)
    with pytest.raises(RuntimeError, match="__name__ == '__main__'"):
        zoo.load("baseline", "smoke", progress=False)
    with pytest.raises(RuntimeError, match="__name__ == '__main__'"):
        zoo.warm([("multitask", "smoke", 0, {})], workers=1, progress=False)
    assert calls == []


# --------------------------------------------------------------------------- influence results cache
@pytest.mark.parametrize("content", ["[1, 2]", '"text"', "{", ""])
def test_influence_cache_reader_recovers_from_a_wrong_file(tmp_path, monkeypatch, content):
    from scriptlab.interpret import influence as inf

    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    inf.save_result("loo", {"r": 0.5})
    assert inf.load_result("loo") == {"r": 0.5}
    inf.results_path("loo").write_text(content)
    assert inf.load_result("loo") is None  # the caller recomputes


def test_influence_cache_names_stay_inside_the_cache(tmp_path, monkeypatch):
    from scriptlab.interpret import influence as inf

    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path / "cache"))
    for name in ("../escape", "/abs", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="plain file name"):
            inf.save_result(name, {"r": 1})
    assert not (tmp_path / "escape.json").exists()


def test_two_concurrent_zoo_loads_train_once(tmp_path, monkeypatch, smoke):
    """Two threads ask for one missing model: the lock (one flock per open file, so it
    also separates threads) makes the second restore what the first trained."""
    import threading
    import time

    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    calls = []

    def slow_train(c, progress=True):
        calls.append(c)
        time.sleep(0.5)  # the other thread arrives while this one holds the lock
        return _result(smoke, c)

    monkeypatch.setattr(train, "train", slow_train)
    errors = []

    def load():
        try:
            zoo.load("baseline", "smoke", progress=False)
        except Exception as e:  # surfaced below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(calls) == 1


@pytest.mark.parametrize("damage", ["bit_flip", "truncate", "other_arrays", "other_config"])
def test_damaged_dataset_file_is_regenerated_identically(tmp_path, monkeypatch, damage):
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    kw = dict(progress=False, workers=1, **TINY)
    first = data.load("smoke", 3, **kw)
    path = data.dataset_path(first.config)
    if damage == "bit_flip":
        _flip_byte(path, offset=path.stat().st_size - 4096)
    elif damage == "truncate":
        path.write_bytes(path.read_bytes()[:1000])
    elif damage == "other_arrays":
        np.savez(path, digest=np.array(data._digest({"x": np.zeros(3)})), x=np.zeros(3))
    else:
        other = data.load("smoke", 4, **kw)
        os.replace(data.dataset_path(other.config), path)
    with pytest.warns(UserWarning, match="unreadable"):
        second = data.load("smoke", 3, **kw)
    for name in first.splits:
        for field in first.test._fields:
            a, b = getattr(first.split(name), field), getattr(second.split(name), field)
            assert np.array_equal(a, b), (name, field)


def test_zoo_adds_checksums_to_a_legacy_checkpoint_it_restores(zoo_cache):
    where, calls = zoo_cache
    meta = json.loads((where / "checkpoint.json").read_text())
    del meta["sha256"], meta["config_key"]
    (where / "checkpoint.json").write_text(json.dumps(meta))
    blob = (where / "checkpoint.msgpack").read_bytes()
    zoo.load("baseline", "smoke", progress=False)
    sealed = json.loads((where / "checkpoint.json").read_text())
    assert "sha256" in sealed and sealed["config_key"] == zoo.config("baseline", "smoke").key()
    assert (where / "checkpoint.msgpack").read_bytes() == blob  # parameters untouched
    _flip_byte(where / "checkpoint.msgpack")
    with pytest.raises(ValueError, match="checksum mismatch"):
        train.restore(where)
    assert calls == []


# --------------------------------------------------------------------------- experiment results cache
@pytest.mark.parametrize(
    "content",
    [
        "[]",
        '{"per_seed": {}}',
        '{"preset": "smoke", "seeds": 9, "per_seed": {}, "summary": {}}',
        "{",
    ],
)
def test_experiment_cache_reader_recomputes_over_a_wrong_file(
    tmp_path, monkeypatch, smoke, content
):
    from scriptlab import experiment

    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    computed = []
    monkeypatch.setattr(experiment, "dataset_for", lambda cfg, progress=True: smoke)
    monkeypatch.setattr(experiment.zoo, "warm", lambda *a, **k: [])
    monkeypatch.setattr(
        experiment, "_rows", lambda *a: computed.append(a) or [{"worst_group": 0.5}]
    )
    kw = dict(methods=("baseline",), references=(), lam_sweep=(), progress=False)
    first = json.loads(json.dumps(experiment.run("smoke", 1, **kw), default=str))  # as stored
    assert experiment.run("smoke", 1, **kw) == first and len(computed) == 1  # served from cache
    (where,) = (tmp_path / "experiments").glob("*.json")
    stale = where.with_name(f"{where.name}.{_dead_pid()}.tmp")
    stale.write_text("half")
    where.write_text(content)
    again = json.loads(json.dumps(experiment.run("smoke", 1, **kw), default=str))
    assert len(computed) == 2 and again == first and not stale.exists()
    assert experiment.run("smoke", 1, **kw) == first and len(computed) == 2  # repaired
