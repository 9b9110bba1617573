"""Recovery: a suite killed with SIGKILL mid-run finishes on rerun with the results of an uninterrupted
run; a rerun closes the MLflow runs a killed invocation left open and logs every cell once; a failed
cell runs again with --retry-failed once its cause is gone."""

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from crlbench.suites.results import load_records
from crlbench.suites.suite import plan, run_suite
from crlbench.suites.suite_config import load_suite
from suite_fixture import PLUGINS, write_suite


SLOW_SUITE = {
    "plugins": ["crl_plugin_models"],
    "seeds": [0, 1, 2],
    "budget": {"steps": 24, "batch_size": 16},
    "datasets": [{"name": "causal_circuit", "params": {"size": 32, "n_train": 64, "n_val": 16, "n_test": 48}}],
    "models": [{"name": "linear_ae", "hyperparameters": {"step_seconds": 0.08}}],
    "evaluation": {"n_train": 40, "n_test": 40, "interventions": 2},
}


def suite_process(path: Path, workdir: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(PLUGINS), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "crlbench", "-v", "suite", str(path), "--workdir", str(workdir),
                             "--no-tracking"], env=env, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_for_mid_training(workdir: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    """Until one cell has finished and another has a checkpoint but no result."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        cells = list((workdir / "cells").glob("*")) if (workdir / "cells").exists() else []
        finished = [c for c in cells if (c / "result.json").exists()]
        training = [c for c in cells if (c / "checkpoint" / "last.pt").exists() and not (c / "result.json").exists()]
        if finished and training:
            return
        assert process.poll() is None, f"the suite ended before it could be killed: {process.stderr.read().decode()}"
        time.sleep(0.02)
    raise AssertionError("the suite never reached the middle of a cell")


def test_a_suite_killed_mid_cell_resumes_to_identical_results(tmp_path):
    path = write_suite(tmp_path, **SLOW_SUITE)
    killed_dir, clean_dir = tmp_path / "killed", tmp_path / "clean"
    process = suite_process(path, killed_dir)
    wait_for_mid_training(killed_dir, process)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished_before = {r["hash"]: r for r in load_records(killed_dir / "cells")}
    assert 1 <= len(finished_before) < 3

    logs = {}
    for workdir in (killed_dir, clean_dir):
        rerun = suite_process(path, workdir)
        _, logs[workdir] = rerun.communicate(timeout=300)
        assert rerun.returncode == 0, logs[workdir].decode()
    assert b"resumed from" in logs[killed_dir] and b"resumed from" not in logs[clean_dir]

    resumed = {r["hash"]: r for r in load_records(killed_dir / "cells")}
    clean = {r["hash"]: r for r in load_records(clean_dir / "cells")}
    assert resumed.keys() == clean.keys() and len(clean) == 3
    for key, record in clean.items():
        assert resumed[key]["status"] == record["status"] == "ok"
        assert resumed[key]["scores"] == record["scores"]
        assert resumed[key]["history"] == record["history"]
    for key, record in finished_before.items():  # finished cells were not touched by the rerun
        assert resumed[key]["provenance"]["finished_at"] == record["provenance"]["finished_at"]
    for file in (killed_dir / "cells").rglob("*"):
        assert not file.name.endswith(".tmp"), f"temporary file left behind: {file}"
        if file.suffix == ".npz":
            with np.load(file) as arrays:
                list(arrays.values())
        elif file.suffix == ".pt":
            torch.load(file, weights_only=True)


# --- MLflow after a killed invocation, --retry-failed ---------------------------------------------

QUICK_SUITE = {**SLOW_SUITE, "budget": {"steps": 4, "batch_size": 16}, "models": [{"name": "linear_ae"}],
               "metrics": ["mcc@pearson"]}
KILLED_WHILE_LOGGING = """
import os, signal, sys
import crlbench.tracking.mlflow_runs as tracking
from crlbench.suites.suite import run_suite
from crlbench.suites.suite_config import load_suite

def killed(*args, **kwargs):  # the process dies while the first cell's child run is open
    os.kill(os.getpid(), signal.SIGKILL)

tracking.log_cell_files = killed
workdir = sys.argv[2]
run_suite(load_suite(sys.argv[1]), workdir, tracking=tracking.MlflowTracking(tracking.default_tracking_uri(workdir)),
          progress=False)
"""


@pytest.fixture
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    yield
    sys.modules.pop("crl_plugin_models", None)


def _runs(workdir: Path, suite: str = "tiny") -> list:
    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    return client.search_runs([client.get_experiment_by_name(f"crlbench/{suite}").experiment_id])


def test_a_rerun_closes_the_runs_of_a_killed_invocation_and_logs_every_cell_once(tmp_path, plugin_path, caplog):
    from crlbench.tracking.mlflow_runs import MlflowTracking, default_tracking_uri

    path = write_suite(tmp_path, **QUICK_SUITE)
    workdir = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": str(PLUGINS), "OMP_NUM_THREADS": "1",
           "MLFLOW_DISABLE_TELEMETRY": "true"}
    killed = subprocess.run([sys.executable, "-c", KILLED_WHILE_LOGGING, str(path), str(workdir)], env=env,
                            capture_output=True, text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    finished = load_records(workdir / "cells")
    assert len(finished) == 1  # trained and recorded, but never logged
    left_open = {run.info.run_id: run for run in _runs(workdir)}
    assert {run.info.status for run in left_open.values()} == {"RUNNING"} and len(left_open) == 2  # parent, child

    with caplog.at_level(logging.WARNING):
        summary = run_suite(load_suite(path), workdir, tracking=MlflowTracking(default_tracking_uri(workdir)),
                            progress=False)
    assert (summary.ok, summary.cached, summary.failed) == (2, 1, 0)
    assert caplog.text.count("as KILLED: its process") == 2
    runs = _runs(workdir)
    for run in runs:
        if run.info.run_id in left_open:
            assert run.info.status == "KILLED" and "crlbench.closed_by" in run.data.tags
        else:
            assert run.info.status == "FINISHED"
    children = [run for run in runs if "mlflow.parentRunId" in run.data.tags and run.info.status == "FINISHED"]
    assert sorted(run.data.tags["crlbench.cell_hash"] for run in children) == \
        sorted(cell.hash for cell in load_suite(path).cells())  # each cell once, the killed one included
    again = load_records(workdir / "cells")
    assert [r["provenance"]["finished_at"] for r in again if r["hash"] == finished[0]["hash"]] == \
        [finished[0]["provenance"]["finished_at"]]  # logged, not trained again

    rerun = run_suite(load_suite(path), workdir, tracking=MlflowTracking(default_tracking_uri(workdir)),
                      progress=False)
    assert (rerun.ok, rerun.cached) == (0, 3)
    assert len(_runs(workdir)) == len(runs)  # nothing left to do: no run opened, nothing logged twice


def _failing_suite(tmp_path: Path, **changes) -> Path:
    return write_suite(tmp_path, **{**QUICK_SUITE, "seeds": [0], **changes})


def _broken(self, batch, step):
    raise RuntimeError("the shared file system went away")


def test_retry_failed_runs_a_failed_cell_again_once_its_cause_is_gone(tmp_path, plugin_path, monkeypatch, capsys):
    from crlbench.cli import main

    import crl_plugin_models

    path = _failing_suite(tmp_path)
    workdir = tmp_path / "work"
    command = ["suite", str(path), "--workdir", str(workdir), "--no-tracking"]
    working = crl_plugin_models.LinearAutoencoder.training_step
    monkeypatch.setattr(crl_plugin_models.LinearAutoencoder, "training_step", _broken)
    assert main(command) != 0
    failed = load_records(workdir / "cells")
    assert [r["status"] for r in failed] == ["failed"] and "went away" in failed[0]["error"]["message"]

    monkeypatch.setattr(crl_plugin_models.LinearAutoencoder, "training_step", working)  # the cause is gone
    assert main(command) != 0  # without the flag the cell stays failed, and is not run
    assert load_records(workdir / "cells") == failed
    assert "0 ran, 0 already done, 1 failed" in capsys.readouterr().out

    assert main([*command, "--retry-failed"]) == 0
    assert "1 ran, 0 already done, 0 failed" in capsys.readouterr().out
    assert [r["status"] for r in load_records(workdir / "cells")] == ["ok"]


def test_a_cell_that_failed_under_other_settings_is_run_again_under_the_new_ones(tmp_path, plugin_path, monkeypatch):
    import crl_plugin_models

    workdir = tmp_path / "work"
    working = crl_plugin_models.LinearAutoencoder.training_step
    monkeypatch.setattr(crl_plugin_models.LinearAutoencoder, "training_step", _broken)
    assert run_suite(load_suite(_failing_suite(tmp_path)), workdir, progress=False).failed == 1
    monkeypatch.setattr(crl_plugin_models.LinearAutoencoder, "training_step", working)
    fixed = load_suite(_failing_suite(tmp_path, metrics=["mcc@pearson", "dci@reg"]))  # the suite file was edited
    assert [p.state for p in plan(fixed, workdir)] == ["stale"]
    summary = run_suite(fixed, workdir, progress=False)
    assert (summary.ok, summary.failed) == (1, 0)
