"""The shortcut metrics against hand-made predictions, and the results' JSON and tables."""

import json

import numpy as np
import pytest

from scriptlab import experiment
from scriptlab.experiment import Predictions


def _preds(ds, wrong=None):
    """One-hot script logits of the true labels; ``wrong(split, s)`` marks rows to misread."""
    out = {}
    rng = np.random.default_rng(0)
    for split in experiment.EVAL_SPLITS:
        s = ds.split(split)
        y = s.script.copy()
        if wrong is not None:
            bad = wrong(split, s)
            y[bad] = (y[bad] + 1) % len(ds.scripts)
        emb = rng.normal(size=(len(s), 8)).astype(np.float32)
        out[split] = Predictions(np.eye(len(ds.scripts))[y], np.eye(len(ds.styles))[s.style], emb)
    return out


def test_perfect_predictions_score_one_everywhere(smoke):
    row = experiment.score(_preds(smoke), smoke, min_cell=1)
    for k in experiment.ACCURACY:
        assert row[k] == 1.0, k
    assert row["font_head"] == 1.0
    conf = np.array(row["tables"]["heldout_lcg_confusion"])
    assert conf[:, 3].sum() == 0 and np.all(conf[:, :3] == np.diag(np.diag(conf)))


def test_one_misread_cell_is_the_worst_group(smoke):
    lat, serif = smoke.scripts.index("latin"), smoke.styles.index("serif")
    row = experiment.score(
        _preds(smoke, lambda split, s: (s.script == lat) & (s.style == serif)), smoke, min_cell=1
    )
    assert row["conflict_worst"] == 0.0 and row["conflict_worst_cell"] == "latin/serif"
    assert row["tables"]["conflict_cells"][lat][serif] == 0.0
    c = smoke.conflict
    expected = 1 - np.mean((c.script == lat) & (c.style == serif))
    assert abs(row["conflict"] - expected) < 1e-12
    # held-out: Latin crops in serif families are misread as the next script (Cyrillic)
    h = smoke.heldout
    sel = np.isin(h.script, [smoke.scripts.index(x) for x in ("latin", "cyrillic", "greek")])
    bad = (h.script == lat) & (h.style == serif)
    assert abs(row["heldout_lcg"] - (1 - bad.sum() / sel.sum())) < 1e-12
    assert row["tables"]["heldout_lcg_confusion"][0][1] == bad.sum()


def test_macro_average_weighs_scripts_equally(smoke):
    lat = smoke.scripts.index("latin")
    row = experiment.score(_preds(smoke, lambda split, s: s.script == lat), smoke, min_cell=1)
    n_scripts = len(np.unique(smoke.heldout.script))
    assert abs(row["heldout_macro"] - (n_scripts - 1) / n_scripts) < 1e-12
    assert row["tables"]["caveat_by_script"]["latin"][0] == 0.0


def test_worst_group_skips_small_cells(smoke):
    row = experiment.score(_preds(smoke), smoke, min_cell=10_000)
    assert row["conflict_worst"] is None and row["heldout_worst"] is None


def test_goal_reports_the_closed_share_and_separation():
    def stats(vals):
        return {
            k: {"mean": float(np.mean(vals)), "min": min(vals), "max": max(vals)}
            for k in experiment.GOAL
        }

    summary = {"baseline": stats([0.1, 0.2]), "oracle": stats([0.9, 0.9]), "m": stats([0.5, 0.6])}
    g = experiment.goal(summary)
    for k in experiment.GOAL:
        assert abs(g["m"][k]["closed"] - (0.55 - 0.15) / 0.75) < 1e-12
        assert g["m"][k]["separated"]


def test_results_are_strict_json_and_tables_fit(smoke, tmp_path):
    rows = [experiment.score(_preds(smoke), smoke) for _ in range(2)]
    results = {"summary": {"baseline": experiment._aggregate(rows)}, "goal": {}}
    text = experiment.table(results)
    assert max(len(line) for line in text.splitlines()) < 100
    groups = (experiment.ACCURACY[:6], experiment.ACCURACY[6:], experiment.STYLE)
    for block, keys in zip(text.split("\n\n"), groups, strict=True):
        head, _, row = block.splitlines()  # every column name stands apart, over its own cells
        assert head.split() == ["method", *(experiment._short(k) for k in keys)]
        assert len(head) == len(row)
    experiment._write_json(tmp_path / "r.json", {"rows": rows, **results})
    json.loads((tmp_path / "r.json").read_text(), parse_constant=lambda c: 1 / 0)


def test_misread_selects_exactly_the_wrong_crops_of_a_cell(smoke):
    lat = smoke.scripts.index("latin")
    preds = _preds(smoke, lambda split, s: s.script == lat)
    idx = experiment.misread(smoke, preds, "conflict", script="latin")
    assert np.array_equal(idx, np.flatnonzero(smoke.conflict.script == lat))
    assert len(experiment.misread(smoke, preds, "conflict", script="greek")) == 0


def _trunk(ds):
    """An untrained ScriptNet for ``ds``, wrapped as a zoo model (post-hoc heads need a trunk)."""
    from scriptlab import train, zoo
    from scriptlab.model import functional

    cfg = train.make_train_config(mode="baseline", preset="smoke")
    model = train.build_model(cfg, ds)
    params, apply_fn = functional(model)
    return zoo.ZooModel("trunk", model, params, apply_fn, cfg, [], ds.key)


def _balanced_head(emb, script, style, ds, l2):
    from scriptlab.probe import fit_probe
    from scriptlab.train import balanced_probabilities, group_ids

    w = balanced_probabilities(group_ids(script, style, len(ds.styles)))
    return fit_probe(emb, script, len(ds.scripts), l2=l2, weights=w)


def test_heldout_dfr_is_the_balanced_refit_on_val_and_val_conflict_only(smoke):
    import dataclasses

    from scriptlab.train import predict

    m = _trunk(smoke)
    fitted = experiment.fit_posthoc(m, smoke, "dfr_val", l2=1e-2)
    parts = (smoke.val, smoke.val_conflict)
    emb = np.concatenate([np.asarray(predict(m.apply_fn, m.params, p.images)[2]) for p in parts])
    script = np.concatenate([p.script for p in parts])
    style = np.concatenate([p.style for p in parts])
    expected = _balanced_head(emb, script, style, smoke, 1e-2)
    np.testing.assert_allclose(fitted.head.weights, expected.weights, rtol=1e-5, atol=1e-6)
    # the training crops are never read: other training crops give the same head ...
    other = dataclasses.replace(smoke, splits={**smoke.splits, "train": smoke.test})
    again = experiment.fit_posthoc(m, other, "dfr_val", l2=1e-2)
    np.testing.assert_array_equal(again.head.weights, fitted.head.weights)
    # ... while the training-set refit does read them
    a = experiment.fit_posthoc(m, smoke, "dfr", l2=1e-2).head.weights
    b = experiment.fit_posthoc(m, other, "dfr", l2=1e-2).head.weights
    assert not np.allclose(a, b)


def test_heldout_dfr_chooses_l2_on_the_half_it_did_not_fit(smoke, monkeypatch):
    from scriptlab.train import predict

    monkeypatch.setattr(experiment, "MIN_CELL", 1)  # smoke's cells are tiny
    m = _trunk(smoke)
    fitted = experiment.fit_posthoc(m, smoke, "dfr_val")
    assert set(fitted.selection) == set(experiment.L2_GRID)
    assert fitted.selection[fitted.l2] == max(fitted.selection.values())
    vc, v = smoke.val_conflict, smoke.val
    fit_half, select_half = experiment._halves(len(vc))
    emb_v, emb_vc = (np.asarray(predict(m.apply_fn, m.params, p.images)[2]) for p in (v, vc))
    l2 = experiment.L2_GRID[1]
    head = _balanced_head(
        np.concatenate([emb_v, emb_vc[fit_half]]),
        np.concatenate([v.script, vc.script[fit_half]]),
        np.concatenate([v.style, vc.style[fit_half]]),
        smoke,
        l2,
    )
    held = vc.take(select_half)
    hit = head.predict(emb_vc[select_half]) == held.script
    cells = {}
    for s, f, h in zip(held.script, held.style, hit, strict=True):
        cells.setdefault((s, f), []).append(h)
    assert fitted.selection[l2] == min(np.mean(c) for c in cells.values())


def test_heldout_rows_do_not_report_the_split_they_were_fitted_on(smoke):
    row = experiment._posthoc_row(_trunk(smoke), smoke, "dfr_val")
    assert row["val_conflict"] is None and row["val_conflict_worst"] is None
    assert row["l2"] in experiment.L2_GRID and row["conflict"] is not None
    assert experiment._posthoc_row(_trunk(smoke), smoke, "dfr")["val_conflict"] is not None


def test_family_table_averages_seeds_per_heldout_cell(smoke):
    lat = smoke.scripts.index("latin")
    right = experiment.score(_preds(smoke), smoke, min_cell=1)
    wrong = experiment.score(_preds(smoke, lambda split, s: s.script == lat), smoke, min_cell=1)
    results = {
        "summary": {"a": {}, "b": {}},
        "per_seed": {"a": [right, right], "b": [right, wrong]},
    }
    lines = experiment.family_table(results).splitlines()
    assert lines[0].split()[-2:] == ["a", "b"]
    rows = {cell: rest for cell, *rest in (line.rsplit(None, 3) for line in lines[2:])}
    assert set(rows) == set(right["tables"]["heldout_cells"])
    for cell, (crops, a, b) in rows.items():
        assert int(crops) == right["tables"]["heldout_cells"][cell][1]
        assert float(a) == 1.0 and float(b) == (0.5 if cell.startswith("latin/") else 1.0)
    only = experiment.family_table(results, ("b",), scripts=("latin",)).splitlines()[2:]
    assert only and all(line.startswith("latin/") for line in only)


def test_minority_accuracy_reads_only_the_minority_style_crops(smoke):
    lat = smoke.scripts.index("latin")
    assigned = np.array([smoke.bias_style(n) for n in smoke.scripts])
    t = smoke.train
    off = t.style != assigned[t.script]
    y = t.script.copy()
    y[(t.script == lat) & off] = (lat + 1) % len(smoke.scripts)  # misread minority Latin only
    y[~off] = (y[~off] + 1) % len(smoke.scripts)  # and every assigned-style crop
    mean, worst, cell = experiment.minority_accuracy(
        smoke, np.eye(len(smoke.scripts))[y], "train", min_cell=1
    )
    assert mean == np.mean(t.script[off] != lat)  # assigned-style misreads do not count
    assert worst == 0.0 and cell.startswith("latin/")


def test_write_leaves_whole_files_and_no_temporaries(smoke, tmp_path):
    rows = [experiment.score(_preds(smoke), smoke) for _ in range(2)]
    results = {
        "summary": {"baseline": experiment._aggregate(rows)},
        "per_seed": {"baseline": rows},
        "goal": {},
    }
    out = experiment.write(results, tmp_path / "out")
    assert json.loads((out / "results.json").read_text())["per_seed"]["baseline"][0]["test"] == 1.0
    assert "Held-out font families" in (out / "results.txt").read_text()
    assert (out / "results.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in out.iterdir()) == ["results.json", "results.png", "results.txt"]


def test_a_memo_shares_each_split_forward_pass_and_changes_no_number(smoke, monkeypatch):
    """The post-hoc methods of one trunk read its predictions from one memo: each split is run
    through the trunk once, and every head and row equals the one computed without the memo."""
    m = _trunk(smoke)
    methods = ("dfr", "dfr_val", "leace", "leace_dfr")
    alone = {k: experiment._posthoc_row(m, smoke, k) for k in methods}
    alone["own"] = experiment.measure(m, smoke)
    runs = []
    real = experiment.predict
    monkeypatch.setattr(experiment, "predict", lambda f, p, x: runs.append(len(x)) or real(f, p, x))
    memo: dict = {}
    shared = {k: experiment._posthoc_row(m, smoke, k, memo) for k in methods}
    shared["own"] = experiment.measure(m, smoke, memo=memo)
    needed = tuple(dict.fromkeys(("train", "val", "val_conflict", *experiment.EVAL_SPLITS)))
    assert sorted(runs) == sorted(len(smoke.split(s)) for s in needed)  # once per split
    assert set(memo) == set(needed)
    assert json.dumps(shared, sort_keys=True) == json.dumps(alone, sort_keys=True)
    a = experiment.posthoc_predictions(m, smoke, "dfr", memo=memo)
    assert len(runs) == len(needed)  # the memo answered again
    b = experiment.posthoc_predictions(m, smoke, "dfr")
    for split in experiment.EVAL_SPLITS:
        np.testing.assert_array_equal(a[split].script, b[split].script)


def test_predicted_gives_back_each_rows_argmax_and_misread_reads_it(smoke):
    lat = smoke.scripts.index("latin")
    wrong = _preds(smoke, lambda split, s: (s.script == lat) & (np.arange(len(s)) % 3 == 0))
    rows = [experiment.score(_preds(smoke), smoke), experiment.score(wrong, smoke)]
    results = json.loads(json.dumps({"per_seed": {"a": rows}}))  # as run stores them
    for seed, preds in enumerate((_preds(smoke), wrong)):
        kept = experiment.predicted(results, "a", seed)
        assert set(kept) == set(experiment.PREDICTED_SPLITS)
        for split, labels in kept.items():
            np.testing.assert_array_equal(labels, np.argmax(preds[split].script, -1))
            for script in (None, "latin", "greek"):
                np.testing.assert_array_equal(
                    experiment.misread(smoke, kept, split, script=script),
                    experiment.misread(smoke, preds, split, script=script),
                )
    assert len(experiment.misread(smoke, experiment.predicted(results, "a", 1), "conflict")) > 0


def test_predicted_of_a_posthoc_row_is_its_heads_argmax(smoke):
    m = _trunk(smoke)
    row = json.loads(json.dumps(experiment._posthoc_row(m, smoke, "dfr")))
    heads = experiment.posthoc_predictions(m, smoke, "dfr")
    kept = experiment.predicted({"per_seed": {"dfr": [row]}}, "dfr")
    for split in experiment.PREDICTED_SPLITS:
        np.testing.assert_array_equal(kept[split], np.argmax(heads[split].script, -1))


def test_predicted_names_what_is_missing(smoke):
    row = experiment.score(_preds(smoke), smoke)
    results = {
        "per_seed": {"a": [row], "old": [{k: v for k, v in row.items() if k != "predicted"}]}
    }
    with pytest.raises(ValueError, match=r"name must be a model of these results \(a, old\)"):
        experiment.predicted(results, "b")
    with pytest.raises(ValueError, match=r"seed must be an integer in \[0, 1\), got 1"):
        experiment.predicted(results, "a", 1)
    with pytest.raises(ValueError, match="older scriptlab"):
        experiment.predicted(results, "old")
    with pytest.raises(ValueError, match="labels must lie in"):
        experiment._encode_labels(np.array([0, 256]))


def test_results_record_the_eval_code_and_follow_the_training_code(smoke, tmp_path, monkeypatch):
    """The results file names EVAL_CODE_VERSION, and new training code is a new results key.

    Training and scoring are replaced by a counter: only the cache's bookkeeping runs.
    """
    from scriptlab import train

    monkeypatch.setenv("SCRIPTLAB_CACHE", str(tmp_path))
    monkeypatch.setattr(experiment.zoo, "warm", lambda *a, **k: None)
    monkeypatch.setattr(experiment, "dataset_for", lambda *a, **k: smoke)
    rows = experiment.score(_preds(smoke), smoke)
    computed = []
    monkeypatch.setattr(experiment, "_rows", lambda name, *a: computed.append(name) or [rows])
    args = dict(preset="smoke", seeds=1, methods=("baseline",), references=(), lam_sweep=())

    first = experiment.run(**args, progress=False)
    (path,) = (tmp_path / "experiments").glob("*.json")
    assert json.loads(path.read_text())["eval_code_version"] == experiment.EVAL_CODE_VERSION
    assert first["eval_code_version"] == experiment.EVAL_CODE_VERSION
    experiment.run(**args, progress=False)
    assert computed == ["baseline"]  # the second run read the file

    monkeypatch.setattr(train, "TRAINING_CODE_VERSION", train.TRAINING_CODE_VERSION + 1)
    experiment.run(**args, progress=False)
    assert computed == ["baseline", "baseline"]
    assert len(list((tmp_path / "experiments").glob("*.json"))) == 2

    stale = json.loads(path.read_text()) | {"eval_code_version": experiment.EVAL_CODE_VERSION - 1}
    path.write_text(json.dumps(stale))
    monkeypatch.setattr(train, "TRAINING_CODE_VERSION", train.TRAINING_CODE_VERSION - 1)
    experiment.run(**args, progress=False)  # a file of other eval code is recomputed
    assert computed == ["baseline"] * 3


def test_the_widened_heldout_split_is_scored_per_script_and_family(smoke):
    lat = smoke.scripts.index("latin")
    preds = _preds(smoke, lambda split, s: (s.script == lat) & (np.arange(len(s)) % 2 == 0))
    preds[experiment.WIDE] = preds["heldout"]  # the smoke held-out split stands in for the wide one
    row = experiment.score(preds, smoke, min_cell=1, wide=smoke)
    h = smoke.heldout
    hit = np.argmax(preds["heldout"].script, -1) == h.script
    assert row["wide"] == row["heldout"] and row["wide_lcg"] == row["heldout_lcg"]
    assert row["wide_macro"] == pytest.approx(row["heldout_macro"], abs=1e-12)
    cells = {}  # plain loop over crops: (script, family) -> hits
    for i in range(len(h)):
        cells.setdefault((h.script[i], h.family[i]), []).append(hit[i])
    means = [np.mean(v) for v in cells.values()]
    assert row["wide_family"] == pytest.approx(np.mean(means), abs=1e-12)
    assert row["heldout_family"] == row["wide_family"]
    assert row["wide_worst"] == pytest.approx(min(means), abs=1e-12)
    assert row["wide_worst_cell"].startswith("latin/")
    by_script = row["tables"]["wide_by_script"]
    assert by_script["latin"][0] == pytest.approx(hit[h.script == lat].mean(), abs=1e-4)
    assert all(v[0] == 1.0 for k, v in by_script.items() if k != "latin")
    without = experiment.score({k: v for k, v in preds.items() if k != experiment.WIDE}, smoke)
    assert without["wide"] is None and without["wide_family"] is None
    assert "wide_cells" not in without["tables"]


def test_family_accuracy_weighs_a_familys_cells_by_crops_per_seed():
    def row(a, b):
        return {"tables": {"wide_cells": {"latin/Arimo": [a, 30], "greek/Arimo": [b, 10],
                                          "thai/Kanit": [0.5, 20]}}}  # fmt: skip

    results = {"per_seed": {"m": [row(1.0, 0.0), row(0.5, 1.0)]}, "summary": {"m": {}}}
    acc = experiment.family_accuracy(results, "m")
    assert list(acc) == ["Arimo", "Kanit"]
    np.testing.assert_allclose(acc["Arimo"][0], [30 / 40, (15 + 10) / 40])
    assert acc["Arimo"][1] == 40 and acc["Kanit"][1] == 20
    text = experiment.family_table(results, key="wide_cells")
    assert "latin/Arimo" in text and "0.750" in text  # mean over seeds of 1.0 and 0.5
    with pytest.raises(ValueError, match="heldout_cells"):
        experiment.family_table(results)  # these rows hold no default held-out cells
    with pytest.raises(ValueError, match="key must be"):
        experiment.family_accuracy(results, "m", key="cells")
    with pytest.raises(ValueError, match="unknown model"):
        experiment.family_accuracy(results, "oracle")
