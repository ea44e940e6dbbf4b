"""Sphinx configuration: the notebooks as executed (myst-nb, never re-run), the API from
docstrings (autosummary + napoleon for Google style), and one page per method.

Build: ``pip install -e ".[docs]" && sphinx-build -W --keep-going -b html docs docs/_build/html``.
"""

import re

import scriptlab

project = "scriptlab"
author = "the scriptlab authors"
copyright = "the scriptlab authors, Apache-2.0"  # noqa: A001 (Sphinx's name)
release = version = scriptlab.__version__

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
]

# notebooks render from their stored outputs: CI checks them under nbval, the docs never run them
nb_execution_mode = "off"
nb_merge_streams = True
# interact widgets have no kernel in a static page; their stored state is rendered as is
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

autosummary_generate = True
autosummary_imported_members = False
# a package that re-exports (scriptlab.interpret) documents only what it defines itself
autodoc_default_options = {"members": True, "member-order": "bysource", "ignore-module-all": True}
autodoc_typehints = "description"
autodoc_member_order = "bysource"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_attr_annotations = True
# "Attributes:" sections as fields: NamedTuple fields are documented once, by autodoc
napoleon_use_ivar = True

# docs/notebooks links to ../notebooks: only its top-level NN_name.ipynb are pages (notebooks.md)
exclude_patterns = [
    "_build",
    "notebooks/*/**",
    "notebooks/*.md",
    "notebooks/*.rst",
    "**/.ipynb_checkpoints",
]
suppress_warnings = ["mystnb.unknown_mime_type"]

html_theme = "sphinx_book_theme"
html_title = f"scriptlab {version}"
html_theme_options = {"show_toc_level": 2}

# Plain-text layouts render verbatim: the tables under a "Heading:" line of module docstrings
# ("Modes ...:" in scriptlab.train) and Returns sections that spell out a structure ({...}).
_SECTIONS = {"Args:", "Arguments:", "Returns:", "Raises:", "Attributes:", "Example:", "Examples:",
             "Note:", "Notes:", "References:", "Yields:", "Warning:", "See Also:"}  # fmt: skip


def _opens_verbatim(what, line, nxt):
    indent = len(line) - len(line.lstrip())
    if not line.rstrip().endswith(":") or line.rstrip().endswith("::"):
        return False
    if len(nxt) - len(nxt.lstrip()) <= indent:
        return False
    if line.strip() in ("Returns:", "Yields:"):
        return nxt.lstrip()[:1] in ("{", "[", "(")
    return what == "module" and line.strip() not in _SECTIONS


def _verbatim_tables(app, what, name, obj, options, lines):
    out, block_indent = [], None
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if block_indent is not None and line.strip() and indent <= block_indent:
            out.append("")  # a literal block ends at a blank line
            block_indent = None
        nxt = next((x for x in lines[i + 1 :] if x.strip()), "")
        if block_indent is None and _opens_verbatim(what, line, nxt):
            out += [line.rstrip() + ":", ""]
            block_indent = indent
        else:
            out.append(line)
    lines[:] = out


# Docstrings are plain text with ``code`` spans: |x| is a norm, theta_ a name, not reST
# substitutions or link targets. Escape both outside code spans and verbatim blocks.
_CODE = re.compile(r"(``.*?``|`[^`]*`)")


def _escape(text: str) -> str:
    parts = _CODE.split(text)
    for i in range(0, len(parts), 2):
        part = parts[i].replace("|", r"\|")
        part = re.sub(r"(?<=\w)_(?=[^\w`]|$)", r"\_", part)
        parts[i] = _STARS.sub(lambda m: m.group(0) if m.group(1) else r"\*", part)
    # a code span followed by a letter (``lax.scan``s) needs an escaped space to end
    return re.sub(r"(``(?:(?!``).)+``)(?=\w)", r"\1\\ ", "".join(parts))


# *emphasis* and **strong** stay; any other star (**row, *lead, a*b) is a plain star
_STARS = re.compile(r"(?<![\w*])(\*\*?)(?=\S)[^*]*?(?<=\S)\1(?![\w*])|\*")


def _plain_text(app, what, name, obj, options, lines):
    verbatim_indent = None
    for i, line in enumerate(lines):
        indent = len(line) - len(line.lstrip())
        if verbatim_indent is not None and (not line.strip() or indent > verbatim_indent):
            continue
        verbatim_indent = indent if line.rstrip().endswith("::") else None
        lines[i] = _escape(line)


def setup(app):
    app.connect("autodoc-process-docstring", _verbatim_tables, priority=400)
    app.connect("autodoc-process-docstring", _plain_text, priority=450)
