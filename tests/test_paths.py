"""Paths built from what a user types: names that would leave the work directory are refused, and a
work directory or report folder that cannot be written is one message naming it (exit 2), not a
traceback, whether found before any work or in the middle of it.

Read-only folders, three ways, because the tests may run as root, which ignores permission bits:

* ``read-only mount``: the folder is bind-mounted read-only in a private user and mount namespace
  (``unshare``) around the crlbench process: EROFS for any user, root included, and nothing changes
  outside that process. Skipped where unprivileged namespaces are not allowed.
* ``permission bits``: the folder is ``chmod 0o555``; as root the command runs without the
  capabilities that bypass permission bits (``setpriv --bounding-set=-dac_override,...``): EACCES.
* ``a file in the way``: the path is a regular file, which no user can make files in: ENOTDIR.
"""

from __future__ import annotations

import errno
import functools
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from crlbench.cli import EXIT_INPUT, main, unwritable
from crlbench.core.errors import ConfigError
from report_fixture import write_cells
from suite_fixture import PLUGINS, TINY

TINY_TUNE = {
    "name": "paths-tune", "plugins": ["crl_plugin_models"], "model": {"name": "linear_ae"},
    "dataset": {"name": "pendulum", "params": {"size": 32}},
    "search_space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}},
    "objective": {"metric": "mcc@pearson.mcc", "direction": "maximize"}, "seeds": [0],
    "budget": {"steps": 2, "batch_size": 16}, "trials": {"n_trials": 1}, "sampler": {"type": "random", "seed": 0},
    "evaluation": {"n_train": 32, "n_test": 32, "interventions": 1},
}
READ_ONLY_MOUNT = 'mount --bind "$1" "$1" && mount -o remount,bind,ro "$1" && shift && exec "$@"'
NO_DAC = ["setpriv", "--bounding-set=-dac_override,-dac_read_search,-fowner", "--"]
STRATEGIES = ("read-only mount", "permission bits", "a file in the way")


@pytest.fixture(autouse=True)
def plugins(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    yield
    sys.modules.pop("crl_plugin_models", None)


def write_yaml(path: Path, data: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


@functools.lru_cache(maxsize=None)
def works(*command: str) -> bool:
    try:
        return subprocess.run(list(command), capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


def read_only(strategy: str, folder: Path) -> list[str]:
    """Make ``folder`` unwritable by ``strategy``; the prefix of the command that sees it so."""
    if strategy == "a file in the way":
        folder.parent.mkdir(parents=True, exist_ok=True)
        folder.write_text("not a folder\n")
        return []
    folder.mkdir(parents=True, exist_ok=True)
    if strategy == "read-only mount":
        prefix = ["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", READ_ONLY_MOUNT, "sh", str(folder)]
        if not works(*prefix, "true"):
            pytest.skip("unprivileged user and mount namespaces are not available here")
        return prefix
    folder.chmod(0o555)
    if os.geteuid() != 0:
        return []
    if not works(*NO_DAC, "true"):
        pytest.skip("running as root, and setpriv cannot drop the capabilities that bypass permission bits")
    return NO_DAC


def crlbench(prefix: list[str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true",
           "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([*prefix, sys.executable, "-m", "crlbench", *args], capture_output=True, text=True, env=env,
                          timeout=300)


def assert_one_message_naming(result: subprocess.CompletedProcess, *parts: str) -> None:
    assert result.returncode == EXIT_INPUT, result.stderr
    assert "Traceback" not in result.stderr and "sqlalchemy" not in result.stderr.lower(), result.stderr
    (line,) = [line for line in result.stderr.splitlines() if line.startswith("crlbench: error:")]
    for part in parts:
        assert part in line, line


@pytest.fixture
def restore_permissions(tmp_path):
    yield
    for path in [tmp_path, *tmp_path.rglob("*")]:  # so that pytest can remove what a test made read-only
        if path.is_dir() and not path.is_symlink():
            path.chmod(0o755)


# --- names ------------------------------------------------------------------------------------------

ESCAPING = ["../../x", "", "/tmp/crlbench-absolute", "a/b", "..", "."]


@pytest.mark.parametrize("name", ESCAPING, ids=repr)
def test_a_study_name_that_would_leave_the_work_directory_is_refused_before_anything_is_written(tmp_path, name):
    from crlbench.tuning.tune import load_tune, tune

    config = load_tune(write_yaml(tmp_path / "tune.yaml", TINY_TUNE))
    workdir = tmp_path / "a" / "b" / "work"
    with pytest.raises(ConfigError) as error:
        tune(config, study_name=name, workdir=workdir)
    message = str(error.value)
    assert "'study_name' must be a name of" in message and "letters, digits, '-', '_' and '.'" in message
    assert f"got {name!r}" in message
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["tune.yaml"]  # not even the work directory
    assert not Path("/tmp/crlbench-absolute").exists()


@pytest.mark.parametrize("name", ESCAPING, ids=repr)
def test_the_tune_command_refuses_such_a_study_name_naming_the_flag(tmp_path, name, capsys):
    path = write_yaml(tmp_path / "tune.yaml", TINY_TUNE)
    arguments = ["tune", str(path), "--study-name", name, "--workdir", str(tmp_path / "work"), "--no-tracking"]
    assert main(arguments) == EXIT_INPUT
    assert "crlbench: error: --study-name must be a name of" in capsys.readouterr().err
    assert not (tmp_path / "work").exists()


@pytest.mark.parametrize("name", ESCAPING, ids=repr)
def test_a_tune_file_whose_name_would_leave_the_work_directory_is_refused_at_load(tmp_path, name):
    from crlbench.tuning.tune import load_tune

    path = write_yaml(tmp_path / "tune.yaml", {**TINY_TUNE, "name": name})
    with pytest.raises(ConfigError, match=rf"{path}: key 'name' must be a name of .*got {name!r}"):
        load_tune(path)


def test_a_study_keeps_its_cells_and_report_in_its_own_folder_of_the_work_directory(tmp_path):
    from crlbench.tuning.tune import study_folder

    assert study_folder(tmp_path, "icm_vae-pendulum.v2") == tmp_path / "tune" / "icm_vae-pendulum.v2"
    with pytest.raises(ConfigError, match="study name must be a name of"):
        study_folder(tmp_path, "../x")


def test_a_suite_whose_name_would_leave_a_folder_is_refused_by_the_suite_command(tmp_path):
    path = write_yaml(tmp_path / "suite.yaml", {**TINY, "name": "../../x"})
    result = crlbench([], "suite", str(path), "--workdir", str(tmp_path / "work"), "--no-tracking")
    assert_one_message_naming(result, str(path), "key 'name' must be a name of", "'../../x'")
    assert not (tmp_path / "work").exists()


# --- unwritable folders -----------------------------------------------------------------------------

@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_read_only_work_directory_is_one_message_naming_it_before_any_work(tmp_path, strategy, restore_permissions):
    suite = write_yaml(tmp_path / "suite.yaml", TINY)
    workdir = tmp_path / "work"
    prefix = read_only(strategy, workdir)
    # the default tracking store (a SQLite file in the work directory) used to fail with SQLAlchemy's words
    result = crlbench(prefix, "suite", str(suite), "--workdir", str(workdir))
    assert_one_message_naming(result, "cannot write to the work directory (--workdir)", str(workdir))
    result = crlbench(prefix, "suite", str(suite), "--workdir", str(workdir), "--no-tracking")
    assert_one_message_naming(result, "cannot write to the work directory (--workdir)", str(workdir))
    # a folder to be made inside it
    result = crlbench(prefix, "suite", str(suite), "--workdir", str(workdir / "sub"), "--no-tracking")
    assert_one_message_naming(result, "cannot write to the work directory (--workdir)", str(workdir / "sub"))
    # tuning
    tune_file = write_yaml(tmp_path / "tune.yaml", TINY_TUNE)
    result = crlbench(prefix, "tune", str(tune_file), "--workdir", str(workdir))
    assert_one_message_naming(result, "cannot write to the work directory (--workdir)", str(workdir))


def test_the_work_directory_from_the_environment_is_named_as_such(tmp_path, monkeypatch, capsys):
    suite = write_yaml(tmp_path / "suite.yaml", TINY)
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("CRLBENCH_WORKDIR", str(tmp_path / "file"))
    assert main(["suite", str(suite), "--no-tracking"]) == EXIT_INPUT
    assert f"cannot write to the work directory ($CRLBENCH_WORKDIR) {tmp_path / 'file'}" in capsys.readouterr().err


def test_a_dry_run_reads_a_read_only_work_directory(tmp_path, restore_permissions):
    suite = write_yaml(tmp_path / "suite.yaml", TINY)
    workdir = tmp_path / "work"
    result = crlbench(read_only("permission bits", workdir), "suite", str(suite), "--workdir", str(workdir), "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "2 pending" in result.stdout


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_a_read_only_report_folder_is_one_message_naming_it(tmp_path, strategy, restore_permissions):
    write_cells(tmp_path / "results", datasets=("pendulum",), labels=("icm_vae", "beta_vae"), seeds=(0, 1), failed=None)
    out = tmp_path / "reports"
    prefix = read_only(strategy, out)
    result = crlbench(prefix, "report", str(tmp_path / "results" / "cells"), "--out", str(out / "quick"))
    assert_one_message_naming(result, "cannot write to the report folder (--out)", str(out / "quick"))


def test_a_folder_that_turns_read_only_during_the_run_stops_it_with_one_message(tmp_path, restore_permissions):
    # The work directory passes the check, but its cells folder cannot be written: found in the middle of
    # the run, where OSError used to end it with a traceback.
    suite = write_yaml(tmp_path / "suite.yaml", TINY)
    workdir = tmp_path / "work"
    prefix = read_only("read-only mount" if works("unshare", "--user", "--map-root-user", "--mount", "true")
                       else "permission bits", workdir / "cells")
    result = crlbench(prefix, "suite", str(suite), "--workdir", str(workdir), "--no-tracking")
    assert_one_message_naming(result, "cannot write", str(workdir / "cells"), "must be writable")


def test_errors_that_say_a_path_cannot_be_written_are_recognised_through_their_causes():
    denied = PermissionError(errno.EACCES, "Permission denied", "/work/cells/abc/result.json")
    assert unwritable(denied).startswith("cannot write /work/cells/abc/result.json: Permission denied")
    wrapped = RuntimeError("while saving")
    wrapped.__cause__ = OSError(errno.EROFS, "Read-only file system", "/work/mlflow.db")
    assert "/work/mlflow.db: Read-only file system" in unwritable(wrapped)
    database = RuntimeError("(sqlite3.OperationalError) attempt to write a readonly database")
    database.__cause__ = sqlite3.OperationalError("attempt to write a readonly database")
    assert "cannot write a SQLite database" in unwritable(database)
    assert unwritable(PermissionError(errno.EPERM, "Operation not permitted")) is None  # os.kill: not a path
    assert unwritable(ValueError("a bug")) is None


def test_an_unwritable_path_raised_by_any_command_exits_2_and_a_bug_still_shows_its_traceback(tmp_path, monkeypatch,
                                                                                              capsys):
    import crlbench.suites.suite

    suite = write_yaml(tmp_path / "suite.yaml", TINY)

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "work" / "cells" / "x"))

    monkeypatch.setattr(crlbench.suites.suite, "run_suite", denied)
    assert main(["suite", str(suite), "--workdir", str(tmp_path / "work"), "--no-tracking"]) == EXIT_INPUT
    assert f"cannot write {tmp_path / 'work' / 'cells' / 'x'}: Permission denied" in capsys.readouterr().err

    def bug(*args, **kwargs):
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(crlbench.suites.suite, "run_suite", bug)
    with pytest.raises(ZeroDivisionError):  # Python prints it and exits 1
        main(["suite", str(suite), "--workdir", str(tmp_path / "work"), "--no-tracking"])


def test_an_interrupted_command_exits_130_with_a_hint_to_resume(tmp_path, monkeypatch, capsys):
    import crlbench.suites.suite

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(crlbench.suites.suite, "run_suite", interrupted)
    assert main(["suite", str(write_yaml(tmp_path / "suite.yaml", TINY)), "--workdir", str(tmp_path / "w"),
                 "--no-tracking"]) == 130
    assert "interrupted; run the same command again to resume" in capsys.readouterr().err


def test_the_export_folder_is_checked_before_any_trial(tmp_path, restore_permissions):
    configs = tmp_path / "configs"
    path = write_yaml(configs / "tune" / "tune.yaml", TINY_TUNE)
    prefix = read_only("a file in the way", configs / "tuned")
    result = crlbench(prefix, "tune", str(path), "--workdir", str(tmp_path / "work"), "--no-tracking", "--export")
    assert_one_message_naming(result, "cannot write to the export folder", str(configs / "tuned"))
    assert not (tmp_path / "work" / "optuna.db").exists()
