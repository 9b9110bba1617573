"""The Slurm executor against a real Slurm cluster: a suite as a job array with a local run's scores, a
requeued task that resumes, a cancelled task reported failed then retried, --detach then --ingest, and
two launchers at once.

Needs the one-node cluster of ``.ci/slurm.sh start`` (munge, slurmdbd, slurmctld and slurmd on 127.0.0.1):
``make test-cluster`` starts it and sets ``CRLBENCH_TEST_SLURM_CONF``; without it these tests are skipped.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from cluster_fixture import (COUNTING_PLUGIN, SMOKE, cluster_suite, mlflow_children, overlapping, plugin_env, scores,
                             trainings, wait_for)
from crlbench.cli import main
from crlbench.suites.results import cell_dir, read_result
from crlbench.suites.suite import run_suite
from crlbench.suites.suite_config import load_suite
from suite_fixture import write_suite

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not os.environ.get("CRLBENCH_TEST_SLURM_CONF"),
                                 reason="no Slurm cluster: run `make test-cluster` (.ci/slurm.sh)"),
              pytest.mark.skipif(importlib.util.find_spec("submitit") is None,
                                 reason="the Slurm executor needs submitit: pip install 'crlbench[slurm]'")]
SLURM = ["--executor", "slurm", "--slurm-time", "15"]


@pytest.fixture
def slurm(monkeypatch, tmp_path):
    monkeypatch.setenv("SLURM_CONF", os.environ["CRLBENCH_TEST_SLURM_CONF"])
    plugin_env(monkeypatch, tmp_path)
    (tmp_path / "counting_plugin.py").write_text(COUNTING_PLUGIN)
    monkeypatch.setenv("CRLBENCH_TEST_TRAININGS", str(tmp_path / "trainings.txt"))


def squeue(*fields: str) -> list[list[str]]:
    out = subprocess.run(["squeue", "-h", "-r", "-o", " ".join(fields)], capture_output=True, text=True, check=True)
    return [line.split() for line in out.stdout.splitlines() if line.strip()]


def running_task_of(workdir: Path, cell) -> str | None:
    """The Slurm task id (``<job>_<index>``) running ``cell``, once it has written a checkpoint."""
    if not (cell_dir(workdir, cell.hash) / "checkpoint" / "last.pt").exists():
        return None
    pointer = cell_dir(workdir, cell.hash) / "slurm.json"
    if not pointer.exists():
        return None
    import json

    job = json.loads(pointer.read_text())["job_id"]
    return job if [job, "RUNNING"] in squeue("%i", "%T") else None


def test_the_smoke_suite_runs_as_a_job_array_with_the_scores_of_a_local_run(tmp_path, slurm, capsys):
    config = load_suite(SMOKE)
    cells = len(config.cells())
    local = run_suite(config, tmp_path / "local", workers=2, progress=False)
    assert (local.ok, local.failed) == (cells, 0)

    workdir = tmp_path / "work"
    assert main(["suite", str(SMOKE), "--workdir", str(workdir), *SLURM]) == 0
    assert f"{cells} ran, 0 already done" in capsys.readouterr().out
    assert scores(config, workdir) == scores(config, tmp_path / "local")  # exact, per cell hash
    records = [read_result(cell_dir(workdir, cell.hash)) for cell in config.cells()]
    tasks = [record["ran_on"]["task_id"] for record in records]
    assert all(record["ran_on"]["executor"] == "slurm" and record["ran_on"]["host"] for record in records)
    assert all(re.fullmatch(r"\d+_\d+", task) for task in tasks) and len({t.split("_")[0] for t in tasks}) == 1, tasks
    assert len(set(tasks)) == cells  # one array task per cell
    assert not list(workdir.rglob("lease.json")) and not list(workdir.rglob("slurm.json"))
    children = mlflow_children(workdir, config.name)  # the launcher logged each cell, once
    assert sorted(run.data.tags["crlbench.cell_hash"] for run in children) == sorted(c.hash for c in config.cells())
    assert {run.data.tags["crlbench.ran_on.executor"] for run in children} == {"slurm"}

    assert main(["suite", str(SMOKE), "--workdir", str(workdir), *SLURM]) == 0  # nothing left: nothing submitted
    assert f"0 ran, {cells} already done" in capsys.readouterr().out
    assert len(mlflow_children(workdir, config.name)) == cells


def test_detach_returns_once_submitted_and_ingest_logs_what_finished_once(tmp_path, slurm, capsys):
    path = write_suite(tmp_path, **cluster_suite([0, 1]))
    config, workdir = load_suite(path), tmp_path / "work"
    assert main(["suite", str(path), "--workdir", str(workdir), *SLURM, "--detach"]) == 0
    out = capsys.readouterr().out
    assert "0 ran, 0 already done, 2 in flight" in out and "run the same command again" in out
    assert len(list(workdir.rglob("slurm.json"))) == 2
    # the same command, at once: it watches the submitted tasks (or waits for the cells they run), submits nothing
    assert main(["suite", str(path), "--workdir", str(workdir), *SLURM, "--no-tracking"]) == 0
    counts = re.search(r"(\d+) ran, 0 already done, (?:(\d+) ran elsewhere, )?0 failed", capsys.readouterr().out)
    assert counts and sum(int(n or 0) for n in counts.groups()) == 2
    assert len(list((workdir / "slurm").iterdir())) == 1, "the cells were submitted again"
    assert all(read_result(cell_dir(workdir, c.hash))["status"] == "ok" for c in config.cells())
    assert mlflow_children(workdir, config.name) == []  # no launcher logged them: the tasks log nothing

    assert main(["suite", str(path), "--workdir", str(workdir), "--ingest"]) == 0
    assert "logged 2 finished cell(s) to MLflow" in capsys.readouterr().out
    assert len(mlflow_children(workdir, config.name)) == 2
    assert main(["suite", str(path), "--workdir", str(workdir), "--ingest"]) == 0
    assert "logged 0 finished cell(s)" in capsys.readouterr().out
    assert main(["suite", str(path), "--workdir", str(workdir), *SLURM]) == 0  # the same command collects them
    assert "0 ran, 2 already done" in capsys.readouterr().out
    assert len(mlflow_children(workdir, config.name)) == 2  # nothing logged twice


def test_a_requeued_task_resumes_from_its_checkpoint_with_the_scores_of_a_local_run(tmp_path, slurm):
    path = write_suite(tmp_path, **cluster_suite([0, 1], steps=40, step_seconds=0.25))
    config, workdir = load_suite(path), tmp_path / "work"
    requeued = []

    def requeue_the_first_cell():
        task = wait_for(lambda: running_task_of(workdir, config.cells()[0]), 240, "the first cell's task to train")
        subprocess.run(["scontrol", "requeue", task], check=True)
        requeued.append(task)

    thread = threading.Thread(target=requeue_the_first_cell, daemon=True)
    thread.start()
    assert main(["suite", str(path), "--workdir", str(workdir), *SLURM, "--no-tracking"]) == 0
    thread.join()
    assert requeued
    first = read_result(cell_dir(workdir, config.cells()[0].hash))
    assert first["ran_on"]["task_id"] == requeued[0] and first["ran_on"]["restarts"] >= 1
    assert read_result(cell_dir(workdir, config.cells()[1].hash))["ran_on"]["restarts"] == 0
    local = run_suite(config, tmp_path / "local", progress=False)
    assert local.ok == 2
    assert scores(config, workdir) == scores(config, tmp_path / "local")


def test_a_cancelled_task_fails_its_cell_and_retry_failed_finishes_it(tmp_path, slurm, capsys):
    path = write_suite(tmp_path, **cluster_suite([0, 1], steps=40, step_seconds=0.25))
    config, workdir = load_suite(path), tmp_path / "work"
    cancelled = []

    def cancel_the_first_cell():
        task = wait_for(lambda: running_task_of(workdir, config.cells()[0]), 240, "the first cell's task to train")
        subprocess.run(["scancel", task], check=True)
        cancelled.append(task)

    thread = threading.Thread(target=cancel_the_first_cell, daemon=True)
    thread.start()
    assert main(["suite", str(path), "--workdir", str(workdir), *SLURM, "--no-tracking"]) == 11  # one failed cell
    thread.join()
    out = capsys.readouterr().out
    assert "1 ran, 0 already done, 1 failed" in out and "SlurmTaskFailed" in out
    failed = read_result(cell_dir(workdir, config.cells()[0].hash))
    assert failed["status"] == "failed" and failed["error"]["type"] == "SlurmTaskFailed"
    assert cancelled[0] in failed["error"]["message"] and "CANCELLED" in failed["error"]["message"]
    assert failed["ran_on"] == {**failed["ran_on"], "executor": "slurm", "task_id": cancelled[0]}

    assert main(["suite", str(path), "--workdir", str(workdir), *SLURM, "--no-tracking"]) == 11  # not retried
    assert main(["suite", str(path), "--workdir", str(workdir), *SLURM, "--no-tracking", "--retry-failed"]) == 0
    assert "1 ran, 1 already done, 0 failed" in capsys.readouterr().out
    assert read_result(cell_dir(workdir, config.cells()[0].hash))["status"] == "ok"


def test_two_launchers_at_once_train_every_cell_exactly_once(tmp_path, slurm):
    path = write_suite(tmp_path, **cluster_suite([0, 1, 2, 3], steps=8, step_seconds=0.05, model="counted_ae"))
    config, workdir = load_suite(path), tmp_path / "work"
    command = [sys.executable, "-m", "crlbench", "suite", str(path), "--workdir", str(workdir), *SLURM]
    launchers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in launchers]
    for process, (out, err) in zip(launchers, outputs):
        assert process.returncode == 0, out + err
    found = trainings(tmp_path / "trainings.txt")
    assert len(found) == 4 and all(len(processes) == 1 for processes in found.values()), found  # once each
    assert not overlapping(found)
    for out, _ in outputs:  # each launcher accounts for every cell: run by its tasks, done before or elsewhere
        counts = re.search(r"(\d+) ran, (\d+) already done, (?:(\d+) ran elsewhere, )?0 failed", out)
        assert counts and sum(int(n or 0) for n in counts.groups()) == 4, out
    children = mlflow_children(workdir, config.name)
    assert sorted(run.data.tags["crlbench.cell_hash"] for run in children) == sorted(c.hash for c in config.cells())
