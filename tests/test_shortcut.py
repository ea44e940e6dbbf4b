"""The shortcut study on fake models whose reliance on style is known by construction."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from scriptlab import data, experiment, model, shortcut
from scriptlab.probe import Probe

TINY = shortcut.StudyConfig(
    n_crops=1000,  # every conflict and test crop of the smoke preset (150 each)
    n_map_crops=8,
    n_faith_crops=3,
    faith_steps=3,
    road_iterations=2,
    n_train=60,
    k=4,
    influence_train=40,
    influence_queries=4,
    tcav_crops=6,
    concept_size=3,
    n_random=3,
    class_steps=2,
    smoothgrad_samples=2,
    ig_steps=2,
    n_boot=20,
)


@dataclasses.dataclass(frozen=True)
class LookupModel:
    """A fake ApplyFn that recognises each image it was shown and answers from its label alone.

    ``params["keys"]`` are fingerprints (a fixed random projection) of known images and
    ``params["labels"]`` their style (``reads="style"``: the script logit is one-hot of the
    style id, so the model reads style only) or script (``reads="script"``: style plays no
    role). A small linear term on a pooled activation gives the maps something to show.
    """

    reads: str

    def __call__(self, params, images, *, relu=jax.nn.relu, perturb=None, lam=None):
        n = images.shape[0]
        x = images.astype(jnp.float32)
        fp = jnp.einsum("nhwc,hwc->n", x, params["probe"])
        label = params["labels"][jnp.argmin(jnp.abs(fp[:, None] - params["keys"][None]), 1)]
        act = relu(x.reshape(n, 8, 4, 16, 4, 3).mean((2, 4)) - 0.3)
        if perturb:
            act = act + perturb["pool"]
        small = 1e-3 * act.reshape(n, -1) @ params["w"]
        script = 5.0 * jax.nn.one_hot(label, 10) + small
        emb = jnp.concatenate([jax.nn.one_hot(label, 10), act.mean((1, 2))], 1)
        return model.Outputs(script, jax.nn.one_hot(label % 5, 5), emb, {"pool": act})


def _fingerprints(probe, images):
    return np.asarray(jnp.einsum("nhwc,hwc->n", data.as_float(jnp.asarray(images)), probe))


@pytest.fixture(scope="module")
def lookup(smoke, tmp_path_factory):
    """The style-only and the script-only model, knowing every crop and twin the study sees."""
    mp = pytest.MonkeyPatch()
    mp.setenv("SCRIPTLAB_CACHE", str(tmp_path_factory.mktemp("cache")))
    probe = jax.random.normal(jax.random.key(0), (32, 64, 3))
    keys, style, script = [], [], []
    for split in shortcut.SPLITS:
        s = smoke.split(split)
        tw = data.style_twins(smoke, split, np.arange(len(s)), seed=TINY.seed)
        keys += [_fingerprints(probe, s.images), _fingerprints(probe, tw.images[tw.valid])]
        style += [s.style, tw.style[tw.valid]]
        script += [s.script, np.repeat(tw.script[:, None], tw.valid.shape[1], 1)[tw.valid]]
    w = jax.random.normal(jax.random.key(1), (8 * 16 * 3, 10))
    common = {"probe": probe, "keys": jnp.asarray(np.concatenate(keys)), "w": w}
    models = {
        "style_only": (
            LookupModel("style"),
            common | {"labels": jnp.asarray(np.concatenate(style))},
        ),
        "script_only": (
            LookupModel("script"),
            common | {"labels": jnp.asarray(np.concatenate(script))},
        ),
    }
    yield models
    mp.undo()


@pytest.fixture(scope="module")
def results(smoke, lookup):
    return shortcut.study(lookup, smoke, relying="style_only", reference="script_only", config=TINY)


@pytest.mark.slow
def test_style_only_model_relies_fully_and_script_only_not_at_all(results):
    for split in shortcut.SPLITS:
        assert results["reliance"]["style_only"][split]["pooled"]["any"]["share"] == 1.0
        assert results["reliance"]["script_only"][split]["pooled"]["any"]["share"] == 0.0
        assert results["reliance"]["style_only"][split]["pooled"]["any"]["n"] > 100
    # every map crop flips for the style-only model, none for the script-only one
    assert results["maps"]["style_only"]["relies"]["value"] == 1.0
    assert results["maps"]["script_only"]["relies"]["value"] == 0.0


@pytest.mark.slow
def test_study_shapes(results, smoke):
    assert set(results["detection"]) == set(shortcut.METHODS)
    assert [r["method"] for r in results["summary"]] == list(shortcut.METHODS)
    for row in results["faithfulness"]["style_only"]:
        assert 0.0 <= row["deletion"] <= 1.0 and 0.0 <= row["insertion"] <= 1.0
    assert [r["method"] for r in results["faithfulness"]["style_only"]][-2:] == ["random", "ink"]
    t = results["tcav"]
    assert t["concepts"] == [*smoke.styles, "random crops"]
    seed0 = t["models"]["style_only"]["per_seed"][0]
    assert np.shape(seed0["p_adjusted"]) == (1, len(t["concepts"]))
    cm = results["class_models"]["models"]["style_only"]["probability"]
    assert np.shape(cm) == (len(smoke.scripts), len(smoke.styles))
    np.testing.assert_allclose(np.sum(cm, 1), 1.0, atol=1e-5)
    ex = results["explorer"]
    assert len(ex["crops"]) == len(ex["neighbours"]["style_only"]) == TINY.n_map_crops
    assert np.shape(ex["influential"]["script_only"]) == (TINY.n_map_crops, TINY.k)
    # every ranker on the relying and the reference model; the lookup models have no NNX
    # layers, so TracIn runs by vmap and EK-FAC says why it cannot run
    assert list(results["ranking"]) == list(shortcut.RANKERS)
    for name in ("style_only", "script_only"):
        for est in ("convex_head", "tracin_last"):
            r = results["ranking"][est][name]
            assert 0.0 <= r["joint"]["value"] <= 1.0 and 0.0 <= r["base_rate"] <= 1.0
        assert results["ranking"]["tracin_last"][name]["train"] == TINY.influence_train
        assert all(
            s["n"] <= TINY.influence_queries
            for s in results["ranking"]["tracin_last"][name]["per_seed"]
        )
        assert "joint" not in results["ranking"]["ekfac"][name]
        assert "layer-wise" in results["ranking"]["ekfac"][name]["note"]
    assert results["tcav"]["test"] == "exchangeable"
    # the per-crop AUC is undefined where every crop flips: None, not a number
    assert results["detection"]["gradient"]["auc"] is None
    for name, text in shortcut.tables(results).items():
        assert text.count("\n") >= 2, name


@pytest.mark.slow
def test_study_json_round_trip_and_determinism(results, smoke, lookup):
    assert json.loads(json.dumps(results, allow_nan=False)) == results
    again = shortcut.study(
        lookup, smoke, relying="style_only", reference="script_only", config=TINY
    )
    assert again == results


def test_study_rejects_bad_arguments(smoke):
    m = (LookupModel("style"), {})
    with pytest.raises(ValueError, match="relying='baseline'"):
        shortcut.study({"a": m, "oracle": m}, smoke)
    with pytest.raises(ValueError, match="unknown method 'lime'"):
        shortcut.study({"baseline": m, "oracle": m}, smoke, methods=("lime",))
    with pytest.raises(ValueError, match="seeds must be"):
        shortcut.study({"baseline": m, "oracle": m}, smoke, seeds=0)
    with pytest.raises(ValueError, match="each model must be"):
        shortcut.study({"baseline": m, "oracle": "oracle"}, smoke)
    bad = dataclasses.replace(TINY, tcav_test="welch")
    with pytest.raises(ValueError, match="config.tcav_test must be one of"):
        shortcut.study({"baseline": m, "oracle": m}, smoke, config=bad)


def test_youden_threshold_matches_a_plain_search():
    rng = np.random.default_rng(0)
    scores = rng.random(40)
    labels = scores + 0.3 * rng.standard_normal(40) > 0.5
    t = shortcut._youden(scores, labels)
    best = max(
        np.unique(scores),
        key=lambda c: np.mean(scores[labels] >= c) - np.mean(scores[~labels] >= c),
    )
    assert t == best
    assert shortcut._youden(scores, np.ones(40, bool)) is None


def test_cached_study_computes_once(tmp_path):
    calls = []

    def compute():
        calls.append(1)
        return {"version": shortcut.STUDY_CODE_VERSION, "x": np.float32(0.5), "y": float("nan")}

    a = shortcut.cached_study("k", compute, folder=tmp_path)
    b = shortcut.cached_study("k", compute, folder=tmp_path)
    assert a == b == {"version": shortcut.STUDY_CODE_VERSION, "x": 0.5, "y": None}
    assert len(calls) == 1
    key = shortcut.study_key({"m": ["abc"]}, "d", {"n": 1})
    assert key != shortcut.study_key({"m": ["abd"]}, "d", {"n": 1})


@pytest.mark.slow  # 78 s on the shared 2-core machine (compiling ScriptNet's forward)
def test_posthoc_model_is_the_head_on_the_trunk(smoke):
    net = model.ScriptNet(10, 5, channels=(4, 4, 4), hidden=8, rngs=nnx.Rngs(0))
    params, apply_fn = model.functional(net)
    rng = np.random.default_rng(0)
    head = Probe(*(jnp.asarray(rng.standard_normal(s), jnp.float32) for s in ((8, 10), 10, 8)),
                 jnp.asarray(rng.random(8) + 0.5, jnp.float32))  # fmt: skip
    fitted = experiment.PosthocHead(head, None, 1e-3, {})
    zoo_model = type("M", (), {"apply_fn": apply_fn, "params": params})()
    fn, p = experiment.posthoc_model(zoo_model, fitted)
    images = data.as_float(smoke.test.images[:4])
    out = fn(p, images)
    expected = head.logits(apply_fn(params, images).embedding)
    np.testing.assert_allclose(out.script, expected, rtol=1e-5, atol=1e-5)
    fn2, _ = experiment.posthoc_model(zoo_model, fitted)
    assert fn == fn2 and hash(fn) == hash(fn2)  # hashes by value: one jitted program


def test_cli_detect_rejects_bad_arguments_before_any_work(tmp_path, capsys, monkeypatch):
    from scriptlab import cli

    monkeypatch.setattr(shortcut, "zoo_study", lambda *a, **k: pytest.fail("work started"))
    with pytest.raises(SystemExit) as e:
        cli.main(["detect", "--seeds", "0"])
    assert (
        e.value.code == 2 and "--seeds: must be an integer >= 1, got 0" in capsys.readouterr().err
    )
    (tmp_path / "detection.md").symlink_to(tmp_path / "elsewhere.md")
    assert cli.main(["detect", "--out", str(tmp_path)]) == 2
    assert "detection.md is a symbolic link" in capsys.readouterr().err


@pytest.mark.slow
def test_cli_detect_writes_the_tables(results, tmp_path, capsys, monkeypatch):
    from scriptlab import cli

    calls = []
    monkeypatch.setattr(shortcut, "zoo_study", lambda *a: calls.append(a) or results)
    assert cli.main(["detect", "--preset", "smoke", "--seeds", "2", "--out", str(tmp_path)]) == 0
    assert calls == [("smoke", 2)]
    assert json.loads((tmp_path / "detection.json").read_text()) == results
    md = (tmp_path / "detection.md").read_text()
    assert all(f"## {name}" in md for name in shortcut.tables(results))
    assert "| occlusion |" in capsys.readouterr().out
