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
    } | {f"scriptlab.{p.parent.name}" for p in (ROOT / "scriptlab").glob("*/__init__.py")}
    missing = sorted(modules - listed)
    assert not missing, f"docs/api/index.md does not list {missing}"
    unknown = sorted(
        m for m in listed if m.count(".") == 1 and m not in modules | {"scriptlab.interpret"}
    )
    assert not unknown, f"docs/api/index.md lists modules that do not exist: {unknown}"


def test_method_pages_take_signatures_from_the_code():
    """A method page shows its calls through autodoc, never a hand-copied signature that rots."""
    import importlib

    for page in sorted((ROOT / "docs/methods").glob("*.md")):
        text = page.read_text()
        assert "```python" not in text, f"{page.name}: hand-written code block; use autofunction"
        for target in re.findall(r"^\.\. autofunction:: ([\w.]+)$", text, re.M):
            module, name = target.rsplit(".", 1)
            assert callable(getattr(importlib.import_module(module), name)), (
                f"{page.name}: {target}"
            )
        if page.name != "index.md":
            assert ".. autofunction::" in text, f"{page.name} shows no call"
