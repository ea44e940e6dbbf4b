"""The API reference lists every public module (docs/api/index.md is written by hand)."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_api_reference_lists_every_module():
    listed = set(
        re.findall(r"^\s+(scriptlab(?:\.\w+)*)\s*$", (ROOT / "docs/api/index.md").read_text(), re.M)
    )
    modules = {
        f"scriptlab.{p.stem}"
        for p in (ROOT / "scriptlab").glob("*.py")
        if not p.stem.startswith("_")
    }
    missing = sorted(modules - listed)
    assert not missing, f"docs/api/index.md does not list {missing}"
    unknown = sorted(
        m for m in listed if m.count(".") == 1 and m not in modules | {"scriptlab.interpret"}
    )
    assert not unknown, f"docs/api/index.md lists modules that do not exist: {unknown}"
