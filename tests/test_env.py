"""environment.yml and pyproject.toml must name the same dependencies."""

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _name(req: str) -> str:
    return re.split(r"[<>=!~\[; ]", req.strip().strip('"'), maxsplit=1)[0].lower().replace("_", "-")


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + project["optional-dependencies"]["notebooks"] \
        + project["optional-dependencies"]["test"]
    pip_lines = [
        m.group(1) for m in re.finditer(r'^\s+- "([^"]+)"\s*$', (ROOT / "environment.yml").read_text(), re.M)
    ]
    pinned = {_name(r): r for r in pip_lines if not r.startswith("--")}
    assert pinned == {_name(r): r for r in wanted}
    assert "--editable=." in pip_lines


def test_ci_runs_the_readme_test_command():
    readme = (ROOT / "README.md").read_text()
    ci = [ln for ln in (ROOT / ".ci/run").read_text().splitlines() if ln.startswith("python3 -m venv")]
    assert len(ci) == 1 and ci[0] in readme
