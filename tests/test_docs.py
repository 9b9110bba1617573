"""Documentation cites only what a reader of the repository can open.

Comments, docstrings, configs and documents must not point to notes that live outside the
repository: a mention of one of the note files named in ``NOTE_FILES`` is allowed only as a path that
exists inside the repository (such as the documents under ``docs/``), and the folder of the
project's private reference notes is never cited. Cite the paper, the reference repository's file and
function, or a file under ``docs/`` instead.
"""

import os
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SUFFIXES = {".py", ".md", ".yaml", ".j2"}
SKIP_ANYWHERE = {".venv", ".git", "__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache", "node_modules"}
SKIP_AT_ROOT = {"runs", "reports"}  # generated output

# Built from parts so that this file does not cite them itself.
NOTE_FILES = ("models", "datasets", "metrics", "anchors", "DESIGN", "STYLE")
NOTE_MENTION = re.compile(r"[\w./~-]*?\b(?:" + "|".join(NOTE_FILES) + r")\.md\b", re.IGNORECASE)
NOTES_FOLDER = "shared" + "/reference"


def repository_files():
    for folder, subfolders, files in os.walk(ROOT):
        here = Path(folder)
        subfolders[:] = sorted(
            name for name in subfolders
            if name not in SKIP_ANYWHERE and not (here == ROOT and name in SKIP_AT_ROOT)
        )
        for name in sorted(files):
            if Path(name).suffix in SUFFIXES:
                yield here / name


def is_repository_path(mention: str, source: Path) -> bool:
    """Whether ``mention`` names an existing file inside the repository, from the root or from ``source``'s folder."""
    if mention.startswith(("/", "~")):
        return False
    for base in (ROOT, source.parent):
        candidate = (base / mention).resolve()
        if candidate.is_relative_to(ROOT) and candidate.is_file():
            return True
    return False


def outside_citations(line: str, source: Path) -> list[str]:
    """The mentions in ``line`` (of file ``source``) that point outside the repository."""
    bad = [m.group(0) for m in NOTE_MENTION.finditer(line) if not is_repository_path(m.group(0), source)]
    if NOTES_FOLDER in line:
        bad.append(NOTES_FOLDER)
    return bad


def test_the_scan_sees_the_repository():
    scanned = {path.relative_to(ROOT).as_posix() for path in repository_files()}
    assert {"README.md", "docs/models.md", "docs/protocol.md", "tests/test_docs.py"} <= scanned
    # the documentation site: the pages that hold the README's reference material, and its configuration
    assert {"docs/getting-started.md", "docs/suites.md", "docs/metrics.md", "docs/generated-datasets.md",
            "docs/conf.py"} <= scanned
    assert not any(name.startswith((".venv/", ".git/", "runs/", "reports/")) for name in scanned)


def test_repository_paths_pass_and_outside_notes_are_caught():
    readme, protocol = ROOT / "README.md", ROOT / "docs" / "protocol.md"
    models, design = NOTE_FILES[0] + ".md", NOTE_FILES[4] + ".md"
    assert outside_citations(f"see `docs/{models}`, section 2", readme) == []
    assert outside_citations(f"see [models]({models})", protocol) == []  # a relative link inside docs/
    assert outside_citations(f"the loss ({models} 2.7)", readme) == [models]
    assert outside_citations(f"({design}, 'Conventions')", readme) == [design]
    assert outside_citations(f"../notes/{design} and /srv/notes/{design}", readme) == [
        f"../notes/{design}", f"/srv/notes/{design}"]  # outside the repository, relative or absolute
    assert outside_citations(f"images in {NOTES_FOLDER}/samples", readme) == [NOTES_FOLDER]
    assert outside_citations("leaderboard.md and icm_models.md are other files", readme) == []


def test_no_file_cites_notes_outside_the_repository():
    found = []
    for path in repository_files():
        text = path.read_text(encoding="utf-8", errors="replace")
        for number, line in enumerate(text.splitlines(), start=1):
            bad = outside_citations(line, path)
            if bad:
                found.append(f"{path.relative_to(ROOT)}:{number}: {', '.join(bad)}: {line.strip()[:160]}")
    assert not found, (
        "citations of notes that are not in the repository (cite the paper, the reference repository's "
        "file and function, or a file under docs/):\n" + "\n".join(found)
    )
