"""The package's layers run one way: a module imports only from its own layer or the layers below.

Every ``import`` and ``from ... import`` in every module is read with ``ast``, at any depth
(a function-level import counts as much as a top-level one: it only hides the edge from a
reader, not the dependency). The map below is the one place the layers are written down.
"""

import ast
import sys
from pathlib import Path

import scriptlab

PACKAGE = Path(scriptlab.__file__).parent

# Bottom up. Each layer lists its modules (a package name covers its submodules) and the
# layers it may import besides itself.
LAYERS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # validation, cache I/O and protocols; the root package only holds __version__ and a
    # lazy __getattr__
    "foundation": (
        ("scriptlab", "validation", "cache", "protocols", "distributed", "metrics"),
        (),
    ),
    "model": (("model", "wrap"), ("foundation",)),
    "data": (("words", "fonts", "data", "twins", "augment"), ("foundation",)),
    # the methods ask for a protocol, never for ScriptNet or the dataset
    "methods": (("interpret", "probe", "erasure"), ("foundation",)),
    "training": (
        ("train", "zoo", "experiment", "archive", "viz", "reliance", "shortcut"),
        ("foundation", "model", "data", "methods"),
    ),
    "apps": (
        ("workshop", "cli", "__main__"),
        ("foundation", "model", "data", "methods", "training"),
    ),
}

# Upward imports in modules another change owns, each with the fix that removes it. The list
# may only shrink: an entry that no longer occurs fails the test too.
PENDING: set[tuple[str, str]] = set()


def module_name(path: Path) -> str:
    """The dotted name below ``scriptlab`` ("" for the package itself)."""
    parts = list(path.relative_to(PACKAGE).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def layer_of(module: str) -> str:
    """The layer of a module below ``scriptlab`` ("" is the package itself)."""
    top = module.split(".")[0] if module else "scriptlab"
    for layer, (modules, _) in LAYERS.items():
        if top in modules:
            return layer
    raise AssertionError(f"scriptlab.{module} is in no layer: add it to LAYERS in {__file__}")


def imports(path: Path) -> set[str]:
    """The scriptlab modules ``path`` imports anywhere in its body (names below ``scriptlab``)."""
    here = module_name(path)
    package = here if path.name == "__init__.py" else here.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                base = ["scriptlab", *package.split(".")] if package else ["scriptlab"]
                base = base[: len(base) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            # ``from scriptlab import data``: the names may be modules themselves
            names = [module] + [
                f"{module}.{a.name}" for a in node.names if _is_module(module, a.name)
            ]
        else:
            continue
        found |= {
            n.removeprefix("scriptlab").lstrip(".") for n in names if n.split(".")[0] == "scriptlab"
        }
    return found


def _is_module(package: str, name: str) -> bool:
    folder = PACKAGE.joinpath(*package.split(".")[1:])
    return (folder / f"{name}.py").exists() or (folder / name / "__init__.py").exists()


def upward_imports() -> set[tuple[str, str]]:
    """(importer, imported) pairs that break the layer map."""
    bad = set()
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        layer = layer_of(here)
        allowed = {layer, *LAYERS[layer][1]}
        for target in imports(path):
            if layer_of(target) not in allowed:
                bad.add((here, target))
    return bad


def test_no_module_imports_a_higher_layer():
    bad = upward_imports()
    new = sorted(bad - PENDING)
    assert not new, "upward imports (importer, imported): " + ", ".join(map(str, new))
    fixed = sorted(PENDING - bad)
    assert not fixed, f"these PENDING entries no longer occur; remove them: {fixed}"


def test_every_module_has_a_layer():
    for path in PACKAGE.rglob("*.py"):
        layer_of(module_name(path))


def test_the_check_sees_function_level_and_relative_imports(tmp_path, monkeypatch):
    """The reader catches each way of spelling an upward import, at any depth."""
    fake = tmp_path / "scriptlab"
    (fake / "interpret").mkdir(parents=True)
    for name in ("__init__.py", "train.py", "model.py", "validation.py", "interpret/__init__.py"):
        (fake / name).write_text("")
    source = (
        "import scriptlab.validation\n"
        "def f():\n"
        "    from scriptlab import train\n"
        "class C:\n"
        "    def g(self):\n"
        "        from ..model import build\n"
    )
    (fake / "interpret" / "saliency.py").write_text(source)
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", fake)
    assert imports(fake / "interpret" / "saliency.py") == {"", "validation", "train", "model"}
    assert upward_imports() == {("interpret.saliency", "train"), ("interpret.saliency", "model")}


def test_the_data_layer_does_not_load_jax():
    """Dataset worker processes import ``data`` (and the bottom layer) without loading JAX."""
    import subprocess

    code = (
        "import sys, scriptlab.data, scriptlab.cache, scriptlab.validation; "
        "assert 'jax' not in sys.modules, sorted(m for m in sys.modules if m.startswith('jax'))"
    )
    env_path = str(PACKAGE.parent)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=env_path)
