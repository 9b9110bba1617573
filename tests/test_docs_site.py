"""The documentation site (``docs/``, Sphinx with MyST; ``make docs``): every page is in its table of contents,
a broken link between pages or to a heading fails the build, docstrings' plain-text bars render as written, and
the whole site builds with warnings as errors (slow)."""

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parent.parent / "docs"
TOCTREE = re.compile(r"^```\{toctree\}\n(.*?)^```", re.MULTILINE | re.DOTALL)


def sphinx_build(source: Path, out: Path) -> subprocess.CompletedProcess:
    pytest.importorskip("sphinx")
    pytest.importorskip("myst_parser")
    return subprocess.run([sys.executable, "-m", "sphinx", "-W", "--keep-going", "-q", "-b", "html",
                           str(source), str(out)], capture_output=True, text=True)


def load_conf():
    spec = importlib.util.spec_from_file_location("docs_conf", DOCS / "conf.py")
    conf = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conf)
    return conf


def test_every_page_is_in_the_table_of_contents():
    listed = {line.strip() for block in TOCTREE.findall((DOCS / "index.md").read_text())
              for line in block.splitlines() if line.strip() and not line.startswith(":")}
    pages = {path.stem for path in [*DOCS.glob("*.md"), *DOCS.glob("*.rst")]} - {"index"}
    assert pages - listed == set(), "pages missing from docs/index.md's toctrees"
    assert listed - pages == set(), "toctree entries without a page"


def test_a_broken_link_or_anchor_between_pages_fails_the_build(tmp_path):
    source = tmp_path / "docs"
    source.mkdir()
    shutil.copy(DOCS / "conf.py", source / "conf.py")
    (source / "page.md").write_text("# Page\n\n## A heading\n\ntext\n")
    links = "[page](page.md), [heading](page.md#a-heading), [here](#site)"
    (source / "index.md").write_text(f"# Site\n\n```{{toctree}}\npage\n```\n\n{links}\n")
    built = sphinx_build(source, tmp_path / "ok")
    assert built.returncode == 0, built.stderr

    for broken in ["[gone](missing.md)", "[gone](page.md#no-such-heading)", "[gone](#no-such-heading)",
                   "[gone](../configs/missing.yaml)"]:
        (source / "index.md").write_text(f"# Site\n\n```{{toctree}}\npage\n```\n\n{links}, {broken}\n")
        built = sphinx_build(source, tmp_path / "broken")
        assert built.returncode != 0 and "myst.xref_missing" in built.stderr, (broken, built.stderr)


def test_plain_text_bars_in_docstrings_render_as_written():
    conf = load_conf()
    lines = [
        "Scores |z_j - E z_j|, the literal ``a | b`` and `x|y` untouched::",
        "",
        "    loss + eta sum_ij |A_ij|",
        "",
        "then |A| again.",
        "+-----+-----+",
        "| a   | b   |",
        ">>> abs(-1) | 0",
    ]
    conf._render_as_written(None, "module", "m", None, {}, lines)
    assert lines == [
        r"Scores \|z_j - E z_j\|, the literal ``a | b`` and `x|y` untouched::",
        "",
        "    loss + eta sum_ij |A_ij|",
        "",
        r"then \|A\| again.",
        "+-----+-----+",
        "| a   | b   |",
        ">>> abs(-1) | 0",
    ]


@pytest.mark.slow
def test_the_site_builds_with_warnings_as_errors(tmp_path):
    # about a minute on 2 shared cores: every module is imported for the API reference
    built = sphinx_build(DOCS, tmp_path / "html")
    assert built.returncode == 0, built.stderr[-4000:]
    assert (tmp_path / "html" / "api" / "crlbench.scores.html").is_file()
