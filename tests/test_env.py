"""environment.yml defers to pyproject.toml; CI runs what the README says."""

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_package_and_lists_nothing_else():
    yaml = pytest.importorskip("yaml")
    deps = yaml.safe_load((ROOT / "environment.yml").read_text())["dependencies"]
    pip = [d["pip"] for d in deps if isinstance(d, dict)]
    assert pip == [["--editable=.[notebooks,test]"]], (
        f"expected only the package with its extras (pyproject.toml is the one list), got {pip}"
    )


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = [
        ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.startswith("python3 -m venv")
    ]
    assert len(ci) == 1 and ci[0] in readme
