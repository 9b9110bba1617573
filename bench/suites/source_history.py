"""Whether a model's source file changed only in its docstrings and comments since a record was computed.

A record keeps the sha256 of the file that defined its model and the git commit it ran at (``model_source``,
``provenance.git_commit``). When the file's bytes differ now, :func:`only_documentation_changed` reads the file
as it was at that commit from the git repository the installed file lives in, checks that those are the bytes
the record fingerprinted, and compares the two versions' code: the module's abstract syntax tree without
docstrings (comments never reach it). Equal code means the file defines the same model as before, so planning does
not warn about it. Without git, without the commit, or from an uncommitted tree (``+dirty``) the answer is no,
and planning warns as before.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import subprocess
from pathlib import Path

GIT_TIMEOUT_S = 10


def code_fingerprint(text: str) -> str | None:
    """The module's syntax tree with every docstring removed (None when it does not parse)."""
    try:
        tree = ast.parse(text)
    except SyntaxError:
        return None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) \
                    and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree)


@functools.lru_cache(maxsize=256)
def only_documentation_changed(file: str, current_sha256: str, stored_sha256: str, commit: str | None) -> bool:
    """Whether ``file`` (its bytes fingerprinted as ``current_sha256``) differs from the version fingerprinted
    as ``stored_sha256`` at ``commit`` in its docstrings and comments only."""
    if not commit or "dirty" in commit:
        return False
    path = Path(file).resolve()
    try:
        before = _git(path.parent, "show", f"{commit}:./{path.name}")  # ./: relative to the file's folder
        now = path.read_bytes()
    except (OSError, subprocess.SubprocessError):
        return False
    if hashlib.sha256(before).hexdigest() != stored_sha256 or hashlib.sha256(now).hexdigest() != current_sha256:
        return False  # the commit does not hold the bytes the record was computed from, or the file moved on
    fingerprint = code_fingerprint(before.decode("utf-8", errors="replace"))
    return fingerprint is not None and fingerprint == code_fingerprint(now.decode("utf-8", errors="replace"))


def _git(directory: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(directory), *args], check=True, capture_output=True,
                          timeout=GIT_TIMEOUT_S).stdout
