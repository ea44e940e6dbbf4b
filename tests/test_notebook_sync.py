"""Each notebook and its jupytext source (notebooks/jupytext.toml) hold the same cells."""

import tomllib
from pathlib import Path

import pytest

jupytext = pytest.importorskip("jupytext")
nbformat = pytest.importorskip("nbformat")
from jupytext.paired_paths import paired_paths  # noqa: E402

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
FORMATS = tomllib.loads((NOTEBOOKS / "jupytext.toml").read_text())["formats"]
IPYNBS = sorted(NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
# Notebook 03 is being rewritten; until its source is a percent-format script it is skipped.
PENDING: set[str] = set()


def _source(ipynb: Path) -> Path:
    paths = {fmt["extension"]: path for path, fmt in paired_paths(str(ipynb), "ipynb", FORMATS)}
    return Path(paths[".py"])


def _cells(nb) -> list[tuple[str, str]]:
    return [(cell.cell_type, cell.source) for cell in nb.cells]


def test_pairing_is_percent_scripts_in_src():
    assert FORMATS == "ipynb,src//py:percent", f"expected 'ipynb,src//py:percent', got {FORMATS!r}"
    assert IPYNBS, f"no notebooks found in {NOTEBOOKS}"


def test_every_source_has_a_notebook():
    sources = {p.stem for p in (NOTEBOOKS / "src").glob("*.py")}
    assert sources == {p.stem for p in IPYNBS}


@pytest.mark.parametrize("ipynb", IPYNBS, ids=lambda p: p.stem)
def test_notebook_matches_its_source(ipynb):
    source = _source(ipynb)
    text = source.read_text()
    if ipynb.stem in PENDING and "# %%" not in text:
        pytest.skip(f"{source.name} is not a jupytext percent script yet")
    assert text.lstrip().startswith("# %%"), (
        f"{source.name}: expected a percent script without header"
    )
    stored = _cells(nbformat.read(ipynb, as_version=4))
    paired = _cells(jupytext.reads(text, fmt="py:percent"))
    assert len(paired) == len(stored), (
        f"{source.name}: {len(paired)} cells, {ipynb.name}: {len(stored)}"
    )
    for i, (a, b) in enumerate(zip(paired, stored, strict=True)):
        assert a == b, (
            f"cell {i} differs: run `jupytext --sync {source.relative_to(NOTEBOOKS.parent)}`"
        )
