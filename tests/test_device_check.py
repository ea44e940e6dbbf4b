"""benchmarks/device_check.py: the one-run GPU check, run here at tiny size on the CPU."""

import importlib.metadata
import json
import math
import subprocess
import sys
import zipfile
from pathlib import Path

import jax
import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "benchmarks"))

import device_check as dc  # noqa: E402

from scriptlab.interpret.saliency import METHODS  # noqa: E402


def test_versions_compare_as_pep440_releases():
    assert dc._same_version("2.1", "2.001")
    assert dc._same_version("2.0", "2.000")
    assert dc._same_version("3.15", "3.15.0")
    assert not dc._same_version("2.1", "2.10")
    assert not dc._same_version("1.0", "1.0rc1")


def test_carried_requirements_are_the_fonts_tqdm_and_pytest():
    carried = {dc._split_requirement(r)[0] for r in dc.carried_requirements()}
    fonts = {n for n in carried if n.startswith(("fontpkg-", "justmytype-"))}
    assert len(fonts) == 32
    assert {"tqdm", "pytest", "pluggy", "iniconfig"} <= carried
    assert not carried & {"jax", "jaxlib", "flax", "optax", "numpy", "pillow", "ipywidgets"}


def _wheel(folder: Path, dist: str, version: str) -> Path:
    """A minimal pure-Python wheel that installs module ``dist`` (underscored)."""
    mod = dist.replace("-", "_")
    info = f"{mod}-{version}.dist-info"
    path = folder / f"{mod}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr(f"{mod}/__init__.py", "ANSWER = 42\n")
        z.writestr(f"{info}/METADATA", f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n")
        z.writestr(
            f"{info}/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
        )
        z.writestr(f"{info}/RECORD", "")
    return path


def test_install_missing_installs_carried_wheels_and_refuses_naming_the_absent(
    tmp_path, monkeypatch
):
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.setenv("PYTHONPATH", "")
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheel(wheels, "dc-probe-pkg", "1.0")
    monkeypatch.setattr(dc, "carried_requirements", lambda: ["dc-probe-pkg==1.0", "pytest"])
    assert dc.install_missing(wheels, tmp_path / "site") == ["dc-probe-pkg==1.0"]
    assert importlib.metadata.version("dc-probe-pkg") == "1.0"
    assert __import__("dc_probe_pkg").ANSWER == 42
    reqs = ["dc-probe-pkg==1.0", "dc-absent-one==2.0", "dc-absent-two", "pytest"]
    monkeypatch.setattr(dc, "carried_requirements", lambda: reqs)
    with pytest.raises(SystemExit, match=r"2 package\(s\).*dc-absent-one==2.0, dc-absent-two\. "):
        dc.install_missing(wheels, tmp_path / "site2")
    with pytest.raises(SystemExit, match="no --wheels folder given"):
        dc.install_missing(None, tmp_path / "site3")


def _fake(sizes, seconds, fail_at=None, error="RESOURCE_EXHAUSTED: out of memory"):
    """A self-timed bench that reports ``seconds(n)`` and raises at size ``fail_at``."""

    def setup(device, n):
        if n == fail_at:
            raise RuntimeError(error)
        return lambda: seconds(n)

    return dc.Bench("fake", sizes, setup, self_timed=True)


def test_run_side_measures_extrapolates_and_stops_at_oom():
    plan, cpu = dc.PLANS["tiny"], jax.devices("cpu")[0]
    clock = dc.Clock(1000.0)
    side = dc.run_side(_fake((1, 5, 20), lambda n: 0.1 * n), cpu, "cpu", plan, clock, {})[0]
    assert [side[n].status for n in (1, 5)] == ["ok", "ok"]
    assert side[20].status == "extrapolated"  # 0.5 s x (20 / 5) = 2 s > the 1.5 s CPU cap
    assert side[20].seconds == pytest.approx(2.0)
    side = dc.run_side(_fake((1, 5, 20), lambda n: 0.1, fail_at=5), cpu, "cpu", plan, clock, {})[0]
    assert [side[n].status for n in (1, 5, 20)] == ["ok", "oom", "skipped"]
    assert side[20].note == "out of memory at 5"
    side = dc.run_side(_fake((1,), lambda n: 0.1, 1, "bad shape"), cpu, "cpu", plan, clock, {})[0]
    assert side[1].status == "error" and "bad shape" in side[1].note
    spent = dc.Clock(0.0)
    assert dc.run_side(_fake((1,), lambda n: 0.1), cpu, "cpu", plan, spent, {})[0][1].status == (
        "skipped"
    )


def test_agreement_checks_pass_on_equal_numbers_and_fail_on_different_ones():
    rng = np.random.default_rng(0)
    maps = rng.normal(size=(4, 8, 16))
    assert all(c.passed for c in dc.maps_agree(maps, maps.copy()))
    assert not dc.maps_agree(maps * 1.1, maps)[0].passed  # rel. L2 0.1 > 1e-2
    assert dc.maps_agree(maps * 1.1, maps)[0].value == pytest.approx(0.1)
    assert dc.maps_agree(maps + 1e-6, maps, key="maps_rel_l2_highest")[0].passed
    scores = rng.normal(size=(3, 50))
    assert all(c.passed for c in dc.rankings_agree(scores, scores + 1e-9))
    spearman, top10, _ = dc.rankings_agree(-scores, scores)
    assert spearman.value == pytest.approx(-1.0) and not spearman.passed
    assert top10.value == 0.0 and not top10.passed
    a = np.array([[5, 4, 3, 2, 1, 0]])
    assert dc.top_k_overlap(a, np.array([[5, 4, 0, 1, 2, 3]]), 3) == pytest.approx(2 / 3)
    assert dc.set_overlap(np.array([[1, 2, 3, 4]]), np.array([[4, 3, 9, 8]])) == 0.5


def _expected_names(plan):
    names = [f"train step, baseline recipe, {b // m} x {m} rows" for m, b in plan.step_configs]
    names += [f"saliency {m}" for m in METHODS] + ["saliency gradient, matmul precision highest"]
    names += ["occlusion 8x8, stride 2", "TracIn, last snapshot", "EK-FAC fit + scores"]
    names += [f"exact t-SNE, {plan.tsne_iter} iterations"]
    names += [
        "notebook 04: class_model, every script class",
        "notebook 08: top_activating conv3, k = 9",
        "notebook 06: sparsity_curve, 2 snapshots, every layer",
    ]
    return names


@pytest.mark.slow
def test_tiny_run_writes_the_table_and_json_and_every_check_passes(tmp_path):
    cmd = [sys.executable, str(ROOT / "benchmarks/device_check.py"), "--size", "tiny"]
    subprocess.run([*cmd, "--out", str(tmp_path)], cwd=ROOT, check=True, timeout=1800)
    report = json.loads((tmp_path / "device_check.json").read_text())
    plan = dc.PLANS["tiny"]
    assert report["schema"] == 1 and report["size"] == "tiny"
    assert report["device"]["accelerator_is_cpu"] == (jax.devices()[0].platform == "cpu")
    assert report["device"]["jax"] == jax.__version__
    assert report["dataset"]["crops"] == 192
    assert report["training"]["images_per_s"] > 0
    tests = report["tests"]
    assert (tests["passed"], tests["failed"], tests["errors"]) == (len(dc.TINY_TESTS), 0, 0)

    rows = report["rows"]
    expected = _expected_names(plan)
    assert list(dict.fromkeys(r["name"] for r in rows)) == expected
    tsne = [r for r in rows if r["name"].startswith("exact t-SNE")]
    assert [r["size"] for r in tsne] == list(plan.tsne_n)
    for row in rows:
        for side in ("accelerator", "cpu"):
            assert row[side]["status"] in ("ok", "extrapolated"), (row["name"], row[side])
        assert math.isfinite(row["cpu_over_accelerator"]) and row["cpu_over_accelerator"] > 0
        assert all(c["passed"] for c in row["checks"]), (row["name"], row["checks"])
    compared = {r["name"] for r in rows if r["checks"]}
    assert compared == {n for n in expected if n.startswith(("saliency", "occlusion", "TracIn", "EK-FAC", "exact t-SNE"))}  # fmt: skip

    md = (tmp_path / "device_check.md").read_text().splitlines()
    table = [line for line in md if line.startswith("|")]
    assert table[0].startswith("| benchmark | size | accelerator | CPU | CPU / accelerator |")
    assert table[1] == "|---|---|---|---|---|---|---|"
    assert len(table) == 2 + len(rows)  # one table, one line per row
    for line, row in zip(table[2:], rows, strict=True):
        assert line.startswith(f"| {row['name']} | {row['size_label']} |")
        assert line.count("|") == 8
    if report["device"]["accelerator_is_cpu"]:
        assert any("both columns ran on the CPU" in line for line in md)
