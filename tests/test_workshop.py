"""scriptlab prepare and the cache archive (issue 16).

The notebooks' model list is checked against their sources (so it cannot drift), the
archive round-trips byte for byte and refuses every kind of bad file before writing
anything, and the commands check their arguments. Models are random-init except in
the one test that trains a smoke model.
"""

import ast
import gzip
import hashlib
import io
import json
import re
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
from flax import nnx

from scriptlab import __version__, archive, cli, data, train, workshop, zoo

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks" / "src"


# --------------------------------------------------------------------------- the notebooks' list
def _parents(tree):
    return {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}


def _constants(tree) -> dict:
    """Module-level NAME = literal assignments of a notebook source."""
    env = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
            if isinstance(target, ast.Name):
                try:
                    env[target.id] = ast.literal_eval(node.value)
                except ValueError:
                    pass
    return env


def _values(node, env, parents):
    """The values ``node`` can take, or None when it is not a literal, a constant or a
    comprehension variable over literals."""
    if isinstance(node, ast.Constant):
        return [node.value]
    if isinstance(node, ast.Tuple | ast.List):
        out = []
        for elt in node.elts:
            inner = _values(elt.value if isinstance(elt, ast.Starred) else elt, env, parents)
            if inner is None:
                return None
            out += inner
        return out
    if isinstance(node, ast.Name):
        up = parents.get(node)
        while up is not None:  # a comprehension variable: the values of what it iterates
            if isinstance(up, ast.DictComp | ast.ListComp | ast.SetComp | ast.GeneratorExp):
                for gen in up.generators:
                    if isinstance(gen.target, ast.Name) and gen.target.id == node.id:
                        return _values(gen.iter, env, parents)
            # a for-loop variable: the values of what the loop iterates
            if isinstance(up, ast.For) and isinstance(up.target, ast.Name):
                if up.target.id == node.id:
                    return _values(up.iter, env, parents)
            up = parents.get(up)
        if node.id in env:
            value = env[node.id]
            return list(value) if isinstance(value, tuple | list) else [value]
    return None


def _one(node, env, parents, default):
    """The single value of an argument (``default`` when it is not given)."""
    if node is None:
        return default
    values = _values(node, env, parents)
    assert values is not None and len(values) == 1, ast.unparse(node)
    return values[0]


def _arg(call, index, name):
    if len(call.args) > index:
        return call.args[index]
    return next((k.value for k in call.keywords if k.arg == name), None)


def _scan_notebooks():
    """(zoo loads, experiment.run calls, data.load calls, unresolved zoo calls) of every notebook;
    loads and runs by notebook number."""
    loads, runs, datasets, unresolved = {}, {}, set(), set()
    sources = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.py"))
    assert len(sources) >= 11, sources
    for src in sources:
        tree = ast.parse(src.read_text())
        env, parents = _constants(tree), _parents(tree)
        for call in ast.walk(tree):
            if not (isinstance(call, ast.Call) and isinstance(call.func, ast.Attribute)):
                continue
            owner = call.func.value
            what = (owner.id if isinstance(owner, ast.Name) else None, call.func.attr)
            extra = {k.arg for k in call.keywords} - {"preset", "seed", "progress"}
            if what in {("zoo", "load"), ("zoo", "load_epochs")}:
                assert not extra, f"{src.name}: {ast.unparse(call)} has overrides {extra}"
                names = _values(call.args[0], env, parents)
                preset = _one(_arg(call, 1, "preset"), env, parents, "workshop")
                seed = next((k.value for k in call.keywords if k.arg == "seed"), None)
                seeds = [0] if seed is None else _values(seed, env, parents)
                assert seeds is not None, f"{src.name}: unresolved seed in {ast.unparse(call)}"
                if names is None:
                    unresolved.add((src.stem, ast.unparse(call.args[0])))
                else:
                    loads.setdefault(src.stem[:2], set()).update(
                        (n, preset, s) for n in names for s in seeds
                    )
            elif what == ("zoo", "warm"):
                unresolved.add((src.stem, ast.unparse(call)))
            elif what == ("experiment", "run"):
                kw = {k.arg: _values(k.value, env, parents) for k in call.keywords}
                runs.setdefault(src.stem[:2], []).append(
                    dict(
                        preset=_one(call.args[0], env, parents, None),
                        seeds=_one(call.args[1], env, parents, None),
                        methods=tuple(kw["methods"]),
                        references=tuple(kw["references"]),
                        lam_sweep=tuple(kw["lam_sweep"]),
                    )
                )
            elif what == ("data", "load"):
                assert not extra, f"{src.name}: {ast.unparse(call)} has overrides {extra}"
                preset = _one(_arg(call, 0, "preset"), env, parents, "workshop")
                datasets.add((preset, _one(_arg(call, 1, "seed"), env, parents, 0)))
    return loads, runs, datasets, unresolved


# zoo calls whose model is not a literal, each with why it needs nothing beyond the list
ALLOWED_UNRESOLVED = {
    # the snapshots of a model the notebook has just loaded (baseline, high_lr)
    ("06_activation_maps", "m.name"),
}


def test_prepare_list_matches_the_notebooks():
    loads, runs, datasets, unresolved = _scan_notebooks()
    assert unresolved == ALLOWED_UNRESOLVED
    assert datasets == {("workshop", s) for s in workshop.DATASET_SEEDS}
    assert runs == {
        workshop.EXPERIMENT_NOTEBOOK: [
            dict(
                preset="workshop",
                seeds=workshop.EXPERIMENT_SEEDS,
                methods=workshop.EXPERIMENT_METHODS,
                references=workshop.EXPERIMENT_REFERENCES,
                lam_sweep=workshop.EXPERIMENT_LAM_SWEEP,
            ),
            dict(
                preset="workshop",
                seeds=workshop.DATA_SEEDS,
                methods=workshop.DATA_METHODS,
                references=workshop.DATA_REFERENCES,
                lam_sweep=(),
            ),
        ]
    }
    # each notebook's own loads, as prepare --notebooks reads them
    assert sorted(workshop.NOTEBOOKS) == [f"{i:02d}" for i in range(1, len(workshop.NOTEBOOKS) + 1)]
    assert {nb: set(v) for nb, v in loads.items()} == {
        nb: {(n, "workshop", s) for n in names for s in workshop.notebook_seeds(nb, n)}
        for nb, names in workshop.NOTEBOOKS.items()
        if names
    }
    assert {(n, p) for n, p, _ in set().union(*loads.values())} == {
        (n, "workshop") for n in workshop.MODELS
    }
    wanted = workshop.requests("workshop")
    from_runs = {
        (n, p, s)
        for r in runs[workshop.EXPERIMENT_NOTEBOOK]
        for n, p, s, _ in zoo_requests(r["preset"], r["seeds"], r["methods"], r["references"])
    }
    from_study = {(n, "workshop", s) for n, _, s, _ in workshop._needs("workshop", "12")}
    every_need = set().union(*loads.values()) | from_runs | from_study
    assert {(n, p, s) for n, p, s, _ in wanted} == every_need
    # notebook 12 computes its study through the one cached call prepare makes
    src = (NOTEBOOKS / "12_see_the_shortcut.py").read_text()
    assert "shortcut.zoo_study(PRESET, SEEDS" in src and "SEEDS = 3" in src
    assert workshop.STUDY_SEEDS == 3


def zoo_requests(preset, seeds, methods, references):
    from scriptlab import experiment

    return experiment.zoo_requests(preset, seeds, methods, references, ())


def test_requests_are_the_twenty_one_models_once_each():
    wanted = workshop.requests("workshop")
    assert len(wanted) == len({(n, s) for n, _, s, _ in wanted}) == 21
    assert {n for n, *_ in wanted} == {
        "baseline", "unlearn", "high_lr", "overfit", "shuffled", "cdann", "balanced_cdann",
        "oracle", "multitask", "diverse", "diverse_augment",
    }  # fmt: skip
    assert {s for n, _, s, _ in wanted if n == "oracle"} == {0, 1, 2}
    assert all(p == "workshop" and o == {} for _, p, _, o in wanted)
    assert workshop.requests("smoke") == [(n, "smoke", s, o) for n, _, s, o in wanted]
    with pytest.raises(ValueError, match="unknown preset 'big'; allowed: smoke, workshop, full"):
        workshop.requests("big")


def test_notebook_specs_and_the_requests_they_select():
    assert (
        workshop.parse_notebooks(None)
        == workshop.parse_notebooks("all")
        == tuple(workshop.NOTEBOOKS)
    )
    assert workshop.parse_notebooks("1-2,4-11") == tuple(
        nb for nb in workshop.NOTEBOOKS if nb not in ("03", "12")
    )
    assert workshop.parse_notebooks(" 09 , 3,3 ") == ("03", "09")
    for bad in ("0", "13", "1-", "a", "1-2-3", "", "11-4", "1,,2"):
        with pytest.raises(ValueError, match=f"ranges from 01-12 .* or 'all'; got {bad!r}"):
            workshop.parse_notebooks(bad)
    every = workshop.requests("workshop")
    # notebooks 01-02 and 04-11: the directly loaded models at seed 0 first, then the extra seeds
    # 06 and 10 load for a seed spread (baseline and unlearn at 1 and 2), none of the rest
    rest = workshop.requests("workshop", workshop.parse_notebooks("1-2,4-11"))
    direct = [(n, "workshop", 0, {}) for n in workshop.MODELS]  # 04-11 load the oracle too
    spread = [(n, "workshop", s, {}) for n in ("baseline", "unlearn") for s in (1, 2)]
    assert rest[: len(direct)] == direct == every[: len(direct)]
    assert sorted(rest[len(direct) :]) == spread
    assert workshop.requests("workshop", ("01",)) == []
    assert workshop.requests("workshop", ("09", "11")) == [
        ("baseline", "workshop", 0, {}),
        ("oracle", "workshop", 0, {}),
    ]
    only03 = workshop.requests("workshop", ("03",))
    key = lambda reqs: {(n, p, s) for n, p, s, _ in reqs}  # noqa: E731
    only12 = workshop.requests("workshop", ("12",))
    assert len(only03) == 17 and key(only03) | key(rest) | key(only12) == key(every)
    assert key(only12) <= key(only03)  # the study trains nothing the experiment does not
    with pytest.raises(ValueError, match="unknown notebook '3'"):
        workshop.requests("workshop", ("3",))


def test_prepare_reports_each_notebook_when_its_models_are_done(monkeypatch, capsys):
    """Readiness follows the order models finish; 03 waits for its experiment's evaluation."""
    finished = []
    monkeypatch.setattr(workshop, "is_cached", lambda r: r[0] == "overfit")
    monkeypatch.setattr(workshop.data, "load", lambda *a, **k: None)
    monkeypatch.setattr(workshop, "disk_usage", lambda: {})
    monkeypatch.setattr(workshop.experiment, "run", lambda *a, **k: finished.append("run"))

    def warm(missing, workers, progress, on_done):
        assert ("overfit", "smoke", 0, {}) not in missing
        for r in sorted(missing, key=lambda r: r[0] != "baseline"):  # baseline finishes first
            finished.append(r[0])
            on_done(r)

    monkeypatch.setattr(workshop.zoo, "warm", warm)
    done = workshop.prepare("smoke", notebooks="1-2,6-7,9", workers=2)
    # no experiment for these notebooks; 06 also loads the baseline at seeds 1 and 2
    assert finished == ["baseline", "baseline", "baseline", "high_lr", "oracle"]
    assert (done.trained, done.cached) == (5, 1)
    assert list(done.ready) == ["01", "02", "06", "07", "09"]
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if "ready" in line]
    # 01 needs no model, 02 only baseline (done first), 06, 07 and 09 the oracle (done last)
    assert [line.split()[2] for line in lines] == ["01", "02", "06", "07", "09"]
    assert done.ready["01"] <= done.ready["02"] <= done.ready["06"] <= done.ready["09"]
    finished.clear()
    done = workshop.prepare("smoke", notebooks="3", progress=False)
    # its 17 models, then the experiment and the data section's one-seed run
    assert finished[-2:] == ["run", "run"] and len(finished) == 19 and list(done.ready) == ["03"]
    assert capsys.readouterr().out == ""


def test_the_scanner_sees_a_new_load(tmp_path, monkeypatch):
    """The list test can fail: a notebook that loads another model breaks it."""
    original = NOTEBOOKS
    for src in NOTEBOOKS.glob("[0-9][0-9]_*.py"):
        shutil.copy(src, tmp_path / src.name)
    with open(tmp_path / "07_filters.py", "a") as fh:
        fh.write('\n# %%\nextra = zoo.load("groupdro", PRESET, seed=2)\n')
    monkeypatch.setitem(globals(), "NOTEBOOKS", tmp_path)
    loads, *_ = _scan_notebooks()
    assert ("groupdro", "workshop", 2) in loads["07"]
    with pytest.raises(AssertionError):
        test_prepare_list_matches_the_notebooks()
    # a load that moves to another notebook breaks the per-notebook list, not the whole list
    shutil.copy(original / "07_filters.py", tmp_path / "07_filters.py")
    with open(tmp_path / "09_occlusion.py", "a") as fh:
        fh.write('\n# %%\nextra = zoo.load("overfit", PRESET)\n')
    loads, *_ = _scan_notebooks()
    assert ("overfit", "workshop", 0) in loads["09"]
    with pytest.raises(AssertionError):
        test_prepare_list_matches_the_notebooks()


# --------------------------------------------------------------------------- a seeded cache
SMALL = ("baseline", "cdann", "oracle")  # snapshots, a conditional head, another rho


def _seed_model(name, seed, smoke):
    """A random-init checkpoint where the zoo keeps ``name`` (smoke preset)."""
    cfg = zoo.config(name, "smoke", seed)
    model = train.build_model(cfg, smoke)
    snaps = [(0, nnx.state(model, nnx.Param))] if cfg.snapshots else []
    key = archive._expected_data_key(cfg)
    train.save(train.Result(model, cfg, [{"epoch": 1}], key, snaps), zoo.path(cfg, name))
    return zoo.path(cfg, name)


@pytest.fixture
def cache(tmp_path, monkeypatch, smoke):
    """An empty cache with the smoke dataset in it (copied, not re-rendered)."""
    src = data.dataset_path(smoke.config)  # where the session's smoke fixture cached it
    root = tmp_path / "cache"
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(root))
    data.dataset_path(smoke.config).parent.mkdir(parents=True)
    shutil.copy(src, data.dataset_path(smoke.config))
    return root


@pytest.fixture
def seeded(cache, smoke):
    return [_seed_model(n, 0, smoke) for n in SMALL]


REQUESTS = [(n, "smoke", 0, {}) for n in SMALL]


def _tree(root):
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and not p.name.endswith(".lock")
    }


def test_export_import_roundtrip_is_exact_and_deterministic(seeded, cache, tmp_path, monkeypatch):
    first, second = tmp_path / "a.tar.gz", tmp_path / "b.tar.gz"
    entries = archive.export_models(first, REQUESTS)
    archive.export_models(second, REQUESTS)
    assert first.read_bytes() == second.read_bytes()
    assert [e.folder for e in entries] == [p.name for p in seeded]
    before = _tree(cache / "zoo")

    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path / "fresh"))
    done = archive.import_models(first)
    assert sorted(done.written) == sorted(p.name for p in seeded) and done.kept == []
    assert _tree(tmp_path / "fresh" / "zoo") == before
    m = zoo.load("cdann", "smoke", progress=False)  # restores, trains nothing
    assert m.config.mode == "cdann"
    assert len(zoo.load_epochs("baseline", "smoke", progress=False)) == 1

    again = archive.import_models(first)
    assert again.written == [] and sorted(again.kept) == sorted(done.written)
    assert archive.import_models(first, replace=True).kept == []


def _members(path):
    with tarfile.open(path) as tar:
        return {m.name: (m, tar.extractfile(m).read() if m.isreg() else None) for m in tar}


def _rewrite(path, out, change=None, add=(), drop=None):
    """Copy archive ``path`` to ``out``: ``change(name, blob) -> blob`` per file, without the
    members whose name ends with ``drop``, plus ``add``."""
    raw = io.BytesIO()
    with tarfile.open(fileobj=raw, mode="w") as tar:
        for name, (m, blob) in _members(path).items():
            if drop is not None and name.endswith(drop):
                continue
            if blob is not None and change is not None:
                blob = change(name, blob)
                m.size = len(blob)
            tar.addfile(m, io.BytesIO(blob) if blob is not None else None)
        for info, blob in add:
            tar.addfile(info, io.BytesIO(blob) if blob is not None else None)
    out.write_bytes(gzip.compress(raw.getvalue()))
    return out


def _manifest_edit(edit):
    def change(name, blob):
        if name.endswith("manifest.json"):
            manifest = json.loads(blob)
            edit(manifest)
            return json.dumps(manifest).encode()
        return blob

    return change


def _flip(name, blob):
    if name.endswith("checkpoint.msgpack") and "/baseline-" in name:
        return blob[:100] + bytes([blob[100] ^ 1]) + blob[101:]
    return blob


def _link(kind, name, target):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info, None


def _file(name, blob=b"x"):
    info = tarfile.TarInfo(name)
    info.size = len(blob)
    return info, blob


BAD = {
    "flipped byte": (dict(change=_flip), "does not match its sha256"),
    "other version": (
        dict(change=_manifest_edit(lambda m: m.update(scriptlab_version="0.0.1"))),
        f"made by scriptlab 0.0.1, this is scriptlab {__version__}",
    ),
    "other training code": (
        dict(change=_manifest_edit(lambda m: m.update(training_code_version=0))),
        "trained by training-code version 0, this scriptlab trains with version "
        f"{train.TRAINING_CODE_VERSION}: baseline (preset smoke, seed 0), "
        "cdann (preset smoke, seed 0), oracle (preset smoke, seed 0)",
    ),
    "training code unrecorded": (
        dict(change=_manifest_edit(lambda m: m.pop("training_code_version"))),
        "trained by training-code version unrecorded",
    ),
    "other config key": (
        dict(change=_manifest_edit(lambda m: m["entries"][0].update(config_key="0" * 12))),
        "has config key 000000000000, this installation's recipe has",
    ),
    "other data key": (
        dict(change=_manifest_edit(lambda m: m["entries"][0].update(data_key="f" * 16))),
        "was trained on dataset ffffffffffffffff",
    ),
    "unknown model": (
        dict(change=_manifest_edit(lambda m: m["entries"][0].update(name="mystery"))),
        "unknown zoo model 'mystery'",
    ),
    "path traversal": (dict(add=[_file("scriptlab-cache/../evil.txt")]), "lies outside"),
    "absolute path": (dict(add=[_file("/tmp/evil.txt")]), "lies outside"),
    "symlink": (
        dict(add=[_link(tarfile.SYMTYPE, "scriptlab-cache/zoo/x", "/etc/passwd")]),
        "not a plain file",
    ),
    "hard link": (
        dict(add=[_link(tarfile.LNKTYPE, "scriptlab-cache/zoo/y", "/etc/passwd")]),
        "not a plain file",
    ),
    "extra file": (dict(add=[_file("scriptlab-cache/zoo/extra.txt")]), "not in the manifest"),
    "missing manifest": (dict(drop="manifest.json"), "no scriptlab-cache/manifest.json"),
    "missing file": (dict(drop="epoch_000.msgpack"), "epoch_000.msgpack is listed but missing"),
}


@pytest.mark.parametrize("case", list(BAD))
def test_import_refuses_a_bad_archive_and_writes_nothing(seeded, tmp_path, monkeypatch, case):
    good = tmp_path / "good.tar.gz"
    archive.export_models(good, REQUESTS)
    kwargs, match = BAD[case]
    bad = _rewrite(good, tmp_path / "bad.tar.gz", **kwargs)
    fresh = tmp_path / "fresh"
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(fresh))
    with pytest.raises(archive.ArchiveError, match=re.escape(match)):
        archive.import_models(bad)
    assert not (fresh / "zoo").exists() or _tree(fresh / "zoo") == {}
    assert not (tmp_path / "evil.txt").exists()


@pytest.mark.parametrize("cut", [0, 10, 2000])
def test_import_refuses_truncated_and_foreign_files(seeded, tmp_path, monkeypatch, cut):
    good = tmp_path / "good.tar.gz"
    archive.export_models(good, REQUESTS)
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(good.read_bytes()[:cut] if cut else b"not an archive at all")
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path / "fresh"))
    with pytest.raises(archive.ArchiveError, match="not a readable tar|truncated or corrupt"):
        archive.import_models(bad)


def test_import_refuses_a_recipe_changed_since_export(seeded, tmp_path, monkeypatch):
    good = tmp_path / "good.tar.gz"
    archive.export_models(good, REQUESTS)
    monkeypatch.setitem(zoo.ZOO, "cdann", {**zoo.ZOO["cdann"], "lr": 1e-3})
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path / "fresh"))
    with pytest.raises(archive.ArchiveError, match="cdann .preset smoke, seed 0. has config key"):
        archive.import_models(good)


def test_import_refuses_models_of_an_older_training_code(seeded, tmp_path, monkeypatch):
    """The real case: the code was changed and TRAINING_CODE_VERSION bumped after the export."""
    good = tmp_path / "good.tar.gz"
    archive.export_models(good, REQUESTS)
    manifest = json.loads(_members(good)["scriptlab-cache/manifest.json"][1])
    assert manifest["training_code_version"] == train.TRAINING_CODE_VERSION
    now = train.TRAINING_CODE_VERSION + 1
    monkeypatch.setattr(train, "TRAINING_CODE_VERSION", now)
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path / "fresh"))
    with pytest.raises(archive.ArchiveError) as err:
        archive.import_models(good)
    message = str(err.value)
    assert f"version {now - 1}, this scriptlab trains with version {now}" in message
    for name in SMALL:
        assert f"{name} (preset smoke, seed 0)" in message
    assert not (tmp_path / "fresh" / "zoo").exists()


def test_export_names_a_model_that_is_not_cached(cache, tmp_path):
    with pytest.raises(archive.ArchiveError, match="zoo model unlearn .preset smoke, seed 1."):
        archive.export_models(tmp_path / "a.tar.gz", [("unlearn", "smoke", 1, {})])
    assert not (tmp_path / "a.tar.gz").exists()


def test_export_refuses_a_damaged_checkpoint(seeded, tmp_path):
    target = seeded[0] / "checkpoint.msgpack"
    target.write_bytes(target.read_bytes()[:-1] + b"\0")
    with pytest.raises(archive.ArchiveError, match="does not match its checksum"):
        archive.export_models(tmp_path / "a.tar.gz", REQUESTS)


def test_manifest_records_sizes_and_sha256(seeded, tmp_path):
    file = tmp_path / "a.tar.gz"
    archive.export_models(file, REQUESTS)
    members = _members(file)
    manifest = json.loads(members["scriptlab-cache/manifest.json"][1])
    assert manifest["scriptlab_version"] == __version__
    for entry in manifest["entries"]:
        for name, (size, digest) in entry["files"].items():
            blob = members[f"scriptlab-cache/zoo/{entry['folder']}/{name}"][1]
            assert (len(blob), hashlib.sha256(blob).hexdigest()) == (size, digest)
    assert all(m.mtime == 0 and m.uid == 0 for m, _ in members.values())


# --------------------------------------------------------------------------- the commands
def _cli(argv, capsys):
    try:
        code = cli.main(argv)
    except SystemExit as e:
        code = e.code
    out = capsys.readouterr()
    return code, out.out, [line for line in out.err.splitlines() if line]


@pytest.mark.parametrize(
    ("argv", "match"),
    [
        (["prepare", "--workers", "0"], "--workers: must be an integer >= 1, got 0"),
        (["prepare", "--workers", "two"], "--workers: must be an integer >= 1, got 'two'"),
        (["prepare", "--preset", "huge"], "--preset: invalid choice: 'huge'"),
        (["prepare", "--notebooks", "3-13"], "--notebooks: must be numbers or ranges from 01-12"),
        (["cache"], "required"),
        (["cache", "zip"], "invalid choice: 'zip'"),
        (["cache", "export"], "FILE"),
        (["cache", "export", "a.tgz", "--preset", "x"], "--preset: invalid choice: 'x'"),
    ],
)
def test_cli_rejects_bad_arguments_in_one_line(capsys, argv, match):
    code, _, err = _cli(argv, capsys)
    assert code == 2 and len(err) == 1 and match in err[0], err


def test_cli_checks_files_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(archive, "export_models", lambda *a: pytest.fail("work started"))
    monkeypatch.setattr(archive, "import_models", lambda *a, **k: pytest.fail("work started"))
    (tmp_path / "link").symlink_to(tmp_path / "target")
    for argv, message in [
        (["cache", "export", str(tmp_path)], f"FILE {tmp_path} is a folder"),
        (["cache", "export", str(tmp_path / "no" / "a.tgz")], "does not exist or is not writable"),
        (["cache", "export", str(tmp_path / "link")], "is a symbolic link"),
        (["cache", "import", str(tmp_path / "none.tgz")], "does not exist or is not a file"),
        (["cache", "import", str(tmp_path)], "does not exist or is not a file"),
    ]:
        code, _, err = _cli(argv, capsys)
        assert code == 2 and len(err) == 1 and message in err[0], err
        assert err[0].startswith("scriptlab cache: error: FILE ")


def _loads_only(monkeypatch, models):
    """Make notebook 02 the only one that loads models by name, and ``models`` what it loads
    (notebook 12's study, tested in test_shortcut.py, needs nothing here)."""
    monkeypatch.setattr(workshop, "MODELS", models)
    monkeypatch.setattr(workshop, "STUDY_NOTEBOOK", None)
    monkeypatch.setattr(
        workshop, "NOTEBOOKS", {nb: models if nb == "02" else () for nb in workshop.NOTEBOOKS}
    )


def test_cli_export_and_import(seeded, tmp_path, capsys, monkeypatch):
    _loads_only(monkeypatch, SMALL)
    monkeypatch.setattr(workshop, "EXPERIMENT_METHODS", ())
    monkeypatch.setattr(workshop, "EXPERIMENT_REFERENCES", ())
    monkeypatch.setattr(workshop, "DATA_METHODS", ())
    monkeypatch.setattr(workshop, "DATA_REFERENCES", ())
    file = tmp_path / "class.tar.gz"
    code, out, err = _cli(["cache", "export", str(file), "--preset", "smoke"], capsys)
    assert code == 0 and err == [] and f"3 zoo models (smoke preset) -> {file}" in out
    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path / "fresh"))
    code, out, err = _cli(["cache", "import", str(file)], capsys)
    assert code == 0 and "3 zoo models written; checksums, version" in out
    code, out, err = _cli(["cache", "import", str(file)], capsys)
    assert code == 0 and "0 zoo models written, 3 already cached kept" in out
    file.write_bytes(file.read_bytes()[:500])
    code, out, err = _cli(["cache", "import", str(file)], capsys)
    assert code == 2 and len(err) == 1 and "truncated or corrupt" in err[0], err
    code, out, err = _cli(["cache", "export", str(tmp_path / "b.tgz"), "--preset", "workshop"],
                          capsys)  # fmt: skip
    assert code == 2 and "run `scriptlab prepare --preset workshop` first" in err[0], err


@pytest.mark.slow
def test_cli_prepare_trains_what_is_missing_then_nothing(cache, smoke, capsys, monkeypatch):
    """One smoke model is seeded, one is trained; the second run trains nothing."""
    _seed_model("cdann", 0, smoke)
    _loads_only(monkeypatch, ("overfit",))
    monkeypatch.setattr(workshop, "EXPERIMENT_SEEDS", 1)
    monkeypatch.setattr(workshop, "EXPERIMENT_METHODS", ("cdann",))
    monkeypatch.setattr(workshop, "EXPERIMENT_REFERENCES", ())
    monkeypatch.setattr(workshop, "DATA_METHODS", ())
    monkeypatch.setattr(workshop, "DATA_REFERENCES", ())
    monkeypatch.setitem(zoo.ZOO, "overfit", {**zoo.ZOO["overfit"], "epochs": 1})
    code, out, err = _cli(["prepare", "--preset", "smoke", "--workers", "1"], capsys)
    assert code == 0, err
    assert "prepare: notebooks 01, 02, 03, 04, 05, 06, 07, 08, 09, 10, 11, 12: 2 zoo models" in out
    assert "1 models trained, 1 already cached" in out
    ready = [line.split()[2] for line in out.splitlines() if " ready (" in line]
    assert ready[0] == "01" and ready[-1] == "03" and sorted(ready) == sorted(workshop.NOTEBOOKS)
    assert (zoo.path(zoo.config("overfit", "smoke"), "overfit") / "checkpoint.json").exists()
    assert list((cache / "experiments").glob("smoke-1-*.json"))
    code, out, err = _cli(["prepare", "--preset", "smoke"], capsys)
    assert code == 0 and "0 models trained, 2 already cached" in out, (out, err)
    assert "data " in out and "zoo " in out and " MB" in out


def test_disk_usage_counts_files_by_folder(tmp_path):
    (tmp_path / "zoo" / "m").mkdir(parents=True)
    (tmp_path / "zoo" / "m" / "a").write_bytes(b"12345")
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "b").write_bytes(b"12")
    (tmp_path / "data" / "c").symlink_to(tmp_path / "zoo" / "m" / "a")
    assert workshop.disk_usage(tmp_path) == {"data": 2, "zoo": 5}
    assert workshop.disk_usage(tmp_path / "none") == {}


_COMPILE = """
import sys, jax, jax.numpy as jnp
from jax._src import monitoring
from scriptlab import zoo
hits = []
monitoring.register_event_listener(
    lambda name, **kw: hits.append(name) if name == "/jax/compilation_cache/cache_hits" else None
)
print(zoo.compile_cache())
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)  # keep even this small one
def f(x):
    for i in range(10):
        x = jnp.sin(x) * (i + 1) + jnp.roll(x, i % 7)
    return x
jax.block_until_ready(jax.jit(f)(jnp.ones(64)))
print(len(hits))
"""


def test_compile_cache_keeps_programs_across_processes_and_can_be_turned_off(tmp_path):
    import os
    import subprocess
    import sys

    def run(**env):
        env = {**os.environ, "SCRIPTLAB_CACHE": str(tmp_path), **env}
        env.pop("JAX_COMPILATION_CACHE_DIR", None)
        out = subprocess.run(
            [sys.executable, "-c", _COMPILE], env=env, capture_output=True, text=True, check=True
        )
        return out.stdout.split()

    assert run(SCRIPTLAB_COMPILE_CACHE="0") == ["None", "0"]
    assert not (tmp_path / "compiled").exists()
    folder, hits = run()
    assert folder == str(tmp_path / "compiled") and hits == "0"
    assert any((tmp_path / "compiled").iterdir())  # the program was written
    again, hits = run()
    assert again == folder and int(hits) >= 1  # and the next process loads them, not compiles


def test_telling_crops_are_misread_by_one_model_and_read_by_the_other(monkeypatch, smoke):
    split = smoke.conflict
    rng = np.random.default_rng(3)
    right = rng.random((2, len(split))) < 0.6  # which crops each fake model reads right
    n_scripts = len(smoke.scripts)

    def fake_predict(apply_fn, params, images):
        pred = np.where(right[params], split.script, (split.script + 1) % n_scripts)
        return np.eye(n_scripts)[pred], None, None

    monkeypatch.setattr(workshop, "predict", fake_predict)
    models = {"baseline": (None, 0), "oracle": (None, 1)}
    idx = workshop.telling_crops(models, split, n=5, seed=1)
    telling = [i for i in range(len(split)) if not right[0, i] and right[1, i]]  # plain loop
    assert len(idx) == 5 and set(idx) <= set(telling) and list(idx) == sorted(idx)
    assert list(idx) == list(workshop.telling_crops(models, split, n=5, seed=1))
    assert sorted(workshop.telling_crops(models, split, n=10_000)) == telling
    right[1] = False  # the reference reads nothing: no crop tells them apart
    with pytest.raises(ValueError, match="tells them apart"):
        workshop.telling_crops(models, split)
    with pytest.raises(ValueError, match="relying"):
        workshop.telling_crops(models, split, relying="rho99")
    with pytest.raises(ValueError, match="n must"):
        workshop.telling_crops(models, split, n=True)


def test_shortcut_trio_refuses_what_is_not_a_zoo_model(smoke):
    with pytest.raises(ValueError, match="zoo.ZooModel"):
        workshop.shortcut_trio((None, {}), (None, {}), smoke)
