"""Sphinx configuration of crlbench's documentation site.

Build with ``make docs`` (``sphinx-build -W --keep-going -b html docs docs/_build/html``): the narrative
pages are the Markdown files of this folder (MyST), the API reference is generated from the docstrings under
the ``crlbench.*`` names (autosummary + autodoc, stubs written to ``docs/api/``, not committed). The
docstrings are reStructuredText with Sphinx roles (``:class:``, ``:func:``, ``:mod:``, ``:meth:``,
``:data:``) and render as written. Warnings are errors, so a broken link between pages, a missing heading
anchor or a docstring that does not parse fails the build; links to the web are not followed (the build
needs no network).
"""

from __future__ import annotations

import os
import re

import crlbench

project = "crlbench"
author = "crlbench contributors"
copyright = "crlbench contributors, MIT license"
release = version = crlbench.__version__

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.napoleon",  # the few Google-style "Args:" / "Raises:" sections
    "sphinx.ext.viewcode",
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
root_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
templates_path = ["_templates"]

# MyST: Markdown links to other pages ([text](protocol.md)) and to their headings ([text](protocol.md#seeds))
# are cross-references, checked at build time; a missing page or anchor is a warning, so an error.
myst_heading_anchors = 4
myst_enable_extensions = ["colon_fence"]
suppress_warnings = []

# The API reference: one page per module, its members documented where they are defined, in source order; a
# module's ``__all__`` that re-exports names from the modules it was split into (kept so that plugins' imports
# stay stable) does not document them twice.
autosummary_generate = True
autosummary_imported_members = False
autosummary_ignore_module_all = True
autodoc_default_options = {"members": True, "show-inheritance": True, "ignore-module-all": True}
autodoc_member_order = "bysource"
autodoc_typehints = "signature"
autodoc_preserve_defaults = True
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# Importing crlbench's modules must neither write nor ask the network for anything.
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

html_theme = "alabaster"
html_title = f"crlbench {release}"
html_static_path: list[str] = []


# The docstrings write absolute values and norms in plain text (``|A_ij|``, ``|z_j - E z_j|``), which
# reStructuredText would read as substitution references. They are escaped before parsing, so they render as
# written; inline literals, interpreted text, literal blocks (after ``::``), doctests and grid tables keep
# their bars.
_LITERAL = re.compile(r"(``.+?``|`[^`]+`)")
_TABLE_LINE = re.compile(r"\s*(\+[-=+]+\+|\|.*\|)\s*$")  # a grid table's border or row


def _indent(line: str) -> int:
    return len(line) - len(line.lstrip())


def _escape_bars(line: str) -> str:
    if _TABLE_LINE.match(line) or line.lstrip().startswith(">>>"):
        return line
    parts = _LITERAL.split(line)
    return "".join(part if index % 2 else part.replace("|", r"\|") for index, part in enumerate(parts))


def _render_as_written(app, what, name, obj, options, lines: list[str]) -> None:
    block_indent = None  # the indentation of the line that opened the literal block we are in
    for index, line in enumerate(lines):
        if block_indent is not None and (not line.strip() or _indent(line) > block_indent):
            continue
        block_indent = None
        lines[index] = _escape_bars(line)
        if line.rstrip().endswith("::"):
            block_indent = _indent(line)


def setup(app):
    app.connect("autodoc-process-docstring", _render_as_written)
