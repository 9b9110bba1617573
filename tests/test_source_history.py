"""crlbench.suites.source_history: a model file changed in its docstrings and comments only, seen through git."""

import hashlib
import subprocess

from crlbench.suites.source_history import code_fingerprint, only_documentation_changed

CODE = '''"""A module."""


def f(x):
    """Twice x."""
    return 2 * x  # doubled
'''


def test_docstrings_and_comments_leave_the_fingerprint_and_code_changes_move_it():
    same = CODE.replace('"""A module."""', '"""A module, documented: ::\n\n    f(1) == 2\n"""').replace("# doubled", "")
    assert code_fingerprint(same) == code_fingerprint(CODE)
    assert code_fingerprint(CODE.replace("2 * x", "3 * x")) != code_fingerprint(CODE)
    assert code_fingerprint(CODE.replace("return 2 * x", 'return "Twice x."')) != code_fingerprint(CODE)
    only_docstring = 'def g():\n    """Only a docstring."""\n'
    assert code_fingerprint(only_docstring) == code_fingerprint("def g():\n    pass\n")
    assert code_fingerprint("def (") is None


def commit_file(tmp_path, text):
    path = tmp_path / "pkg" / "model.py"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    git = ["git", "-C", str(path.parent), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "model.py"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "model"], check=True)
    commit = subprocess.run([*git, "rev-parse", "HEAD"], check=True, capture_output=True, text=True).stdout.strip()
    return path, commit, hashlib.sha256(text.encode()).hexdigest()


def test_only_documentation_changed_reads_the_records_commit(tmp_path):
    path, commit, sha = commit_file(tmp_path, CODE)
    documented = CODE.replace('"""Twice x."""', '"""Twice x, as in the paper."""')
    path.write_text(documented)
    now = hashlib.sha256(documented.encode()).hexdigest()
    assert only_documentation_changed(str(path), now, sha, commit)
    assert not only_documentation_changed(str(path), now, sha, commit + "+dirty")  # uncommitted: unknown bytes
    assert not only_documentation_changed(str(path), now, sha, None)
    assert not only_documentation_changed(str(path), now, "0" * 64, commit)  # not the bytes the record hashed
    edited = CODE.replace("2 * x", "3 * x")
    path.write_text(edited)
    assert not only_documentation_changed(str(path), hashlib.sha256(edited.encode()).hexdigest(), sha, commit)


def test_without_the_file_in_git_the_answer_is_no(tmp_path):
    path = tmp_path / "loose.py"
    path.write_text(CODE)
    sha = hashlib.sha256(CODE.encode()).hexdigest()
    assert not only_documentation_changed(str(path), sha, sha, "0" * 40)
