"""Leases: a cell is run (and logged) by one launcher, however many share the work directory.

The lease itself (atomic creation, heartbeat, takeover of a stale one, exactly one winner), a suite
that waits for a cell running elsewhere, the state ``--dry-run`` shows, and two ``crlbench suite``
launches started at once on a fresh work directory with MLflow tracking.
"""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from crlbench.suites.lease import Holder, Leases, cell_lease, lease_state, pid_alive
from crlbench.suites.results import cell_dir, load_records
from crlbench.suites.suite import plan, run_suite
from crlbench.suites.suite_config import load_suite
from suite_fixture import PLUGINS, write_suite



def _lease(tmp_path: Path, name: str = "0123456789abcdef") -> Path:
    return cell_lease(tmp_path / "work", name)


def _age(path: Path, seconds: float) -> None:
    """Make the lease's heartbeat ``seconds`` old."""
    then = time.time() - seconds
    os.utime(path, (then, then))


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_a_lease_is_created_once_and_names_its_holder(tmp_path):
    path = _lease(tmp_path)
    with Leases() as first, Leases() as second:
        assert first.acquire(path, "cell x")
        holder = json.loads(path.read_text())
        assert holder["host"] and holder["pid"] == os.getpid() and holder["started_at"]
        assert holder["invocation"] == first.holder.invocation
        assert not second.acquire(path, "cell x")  # live: another invocation's
        assert lease_state(path).live and lease_state(path).holder == first.holder
        first.release(path)
        assert not path.exists()
        assert second.acquire(path, "cell x")
    assert not path.exists()  # released when the invocation ends


def test_the_holder_keeps_its_lease_alive_with_a_heartbeat(tmp_path):
    path = _lease(tmp_path)
    with Leases(heartbeat_s=0.05) as holder:
        holder.acquire(path)
        _age(path, 100)
        deadline = time.monotonic() + 10
        while time.time() - path.stat().st_mtime > 5 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert time.time() - path.stat().st_mtime < 5, "the heartbeat did not refresh the lease"
        with Leases(stale_after_s=60) as other:
            assert not other.acquire(path)


def test_a_lease_whose_heartbeat_stopped_is_taken_over_and_the_takeover_logged(tmp_path, caplog):
    path = _lease(tmp_path)
    with Leases(heartbeat_s=3600) as old, Leases(stale_after_s=60) as new:
        old.acquire(path, "cell x")
        _age(path, 120)  # as if its holder hung, or its machine went away
        with caplog.at_level(logging.WARNING, logger="crlbench.suites.lease"):
            assert new.acquire(path, "cell x")
        assert f"taking over the lease of invocation {old.holder.invocation}" in caplog.text
        assert "heartbeat is 120 s old" in caplog.text
        assert lease_state(path).holder == new.holder
        with caplog.at_level(logging.WARNING, logger="crlbench.suites.lease"):
            old.beat()  # the old holder finds out instead of overwriting the new lease
        assert f"lost its lease to invocation {new.holder.invocation}" in caplog.text
        old.release(path)
        assert lease_state(path).holder == new.holder  # not deleted by the old holder


def test_the_lease_of_a_dead_process_is_taken_over_at_once(tmp_path, caplog):
    path = _lease(tmp_path)
    path.parent.mkdir(parents=True)
    dead = Holder("deadbeef0000", Holder.current().host, _dead_pid(), "2026-01-01T00:00:00+00:00",
                  Holder.current().boot_id, Holder.current().pid_namespace)
    path.write_text(json.dumps(dead.__dict__))  # fresh heartbeat, but its process has ended
    assert not pid_alive(dead.pid)
    assert lease_state(path).stale == f"its process {dead.pid} has ended"
    with Leases() as new, caplog.at_level(logging.WARNING, logger="crlbench.suites.lease"):
        assert new.acquire(path, "cell x")
    assert f"pid {dead.pid}" in caplog.text and "deadbeef0000" in caplog.text


def test_a_lease_from_another_machine_is_judged_by_its_heartbeat_only(tmp_path):
    path = _lease(tmp_path)
    path.parent.mkdir(parents=True)
    remote = Holder("remote000000", "some-other-host", _dead_pid(), "2026-01-01T00:00:00+00:00")
    path.write_text(json.dumps(remote.__dict__))
    assert lease_state(path).live  # its pid means nothing here
    _age(path, 61)
    assert "heartbeat is 61 s old" in lease_state(path).stale


CONTENDER = """
import sys, time
from pathlib import Path
from crlbench.suites.lease import Leases
path, go, done = (Path(arg) for arg in sys.argv[1:])
leases = Leases()
while not go.exists():
    time.sleep(0.005)
print(leases.acquire(path), flush=True)
while not done.exists():  # stay alive: a won lease must not look dead to the others
    time.sleep(0.01)
"""


def test_one_of_many_launchers_takes_a_stale_lease(tmp_path):
    path = _lease(tmp_path)
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(Holder("deadbeef0000", Holder.current().host, _dead_pid(), "-").__dict__))
    go, done = tmp_path / "go", tmp_path / "done"
    env = dict(os.environ)  # crlbench is installed: the repository root is no import path
    contenders = [subprocess.Popen([sys.executable, "-c", CONTENDER, str(path), str(go), str(done)], env=env,
                                   stdout=subprocess.PIPE, text=True) for _ in range(6)]
    time.sleep(1.0)  # all started and waiting
    go.touch()
    try:
        answers = [process.stdout.readline().strip() for process in contenders]
    finally:
        done.touch()
        for process in contenders:
            process.wait(timeout=30)
    assert sorted(answers) == ["False"] * 5 + ["True"]


# --- suites -------------------------------------------------------------------------------------

TINY = {"plugins": ["crl_plugin_models"], "seeds": [0, 1], "budget": {"steps": 4, "batch_size": 16},
        "datasets": [{"name": "causal_circuit", "params": {"size": 32, "n_train": 64, "n_val": 16, "n_test": 48}}],
        "models": [{"name": "linear_ae"}], "metrics": ["mcc@pearson"],
        "evaluation": {"n_train": 40, "n_test": 40, "interventions": 2}}


@pytest.fixture
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    yield
    sys.modules.pop("crl_plugin_models", None)


def test_dry_run_shows_a_cell_running_elsewhere_and_its_holder(tmp_path, plugin_path, capsys):
    from crlbench.cli import main

    path = write_suite(tmp_path, **TINY)
    config, workdir = load_suite(path), tmp_path / "work"
    first = config.cells()[0]
    with Leases() as elsewhere:
        elsewhere.acquire(cell_lease(workdir, first.hash))
        assert [p.state for p in plan(config, workdir)] == ["running", "pending"]
        assert main(["suite", str(path), "--workdir", str(workdir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    assert re.search(rf"{first.hash}  running .*\(elsewhere: invocation {elsewhere.holder.invocation} \(host ", out)
    assert "1 pending, 1 running" in out
    assert [p.state for p in plan(config, workdir)] == ["pending", "pending"]  # released


def test_a_suite_waits_for_a_cell_running_elsewhere_and_collects_it(tmp_path, plugin_path, caplog):
    """Another launcher holds the first cell: this one runs the second, waits, and counts the first
    as run elsewhere, without training it."""
    from crlbench.suites.runner import run_cell

    config, workdir = load_suite(write_suite(tmp_path, **TINY)), tmp_path / "work"
    first, second = config.cells()
    elsewhere = Leases()
    elsewhere.acquire(cell_lease(workdir, first.hash), "cell 0")

    def other_launcher():  # runs its cell once this launcher has nothing left but to wait for it
        deadline = time.monotonic() + 300
        while not (cell_dir(workdir, second.hash) / "result.json").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        time.sleep(0.5)
        run_cell(first, workdir)
        elsewhere.close()

    thread = threading.Thread(target=other_launcher)
    thread.start()
    with caplog.at_level(logging.WARNING, logger="crlbench.suites.suite"):
        summary = run_suite(config, workdir, progress=False, poll_s=0.1)
    thread.join()
    assert (summary.ok, summary.elsewhere, summary.cached, summary.failed) == (1, 1, 0, 0)
    assert {r["hash"] for r in summary.records} == {first.hash, second.hash}
    assert "1 cell(s) running elsewhere" in caplog.text and elsewhere.holder.invocation in caplog.text
    assert not list(workdir.rglob("lease.json"))


def test_a_suite_takes_over_a_cell_whose_launcher_died(tmp_path, plugin_path, caplog):
    config, workdir = load_suite(write_suite(tmp_path, **TINY)), tmp_path / "work"
    first = config.cells()[0]
    path = cell_lease(workdir, first.hash)
    path.parent.mkdir(parents=True)
    me = Holder.current()
    path.write_text(json.dumps(Holder("deadbeef0000", me.host, _dead_pid(), "-", me.boot_id, me.pid_namespace).__dict__))
    with caplog.at_level(logging.WARNING, logger="crlbench.suites.lease"):
        summary = run_suite(config, workdir, progress=False)
    assert (summary.ok, summary.elsewhere) == (2, 0)
    assert "taking over the lease of invocation deadbeef0000" in caplog.text


# --- two launchers at once ----------------------------------------------------------------------

COUNTING_PLUGIN = '''
"""linear_ae that notes every training it starts from scratch in $CRLBENCH_TEST_TRAININGS."""
import os

from crlbench.core.registry import register_model
from crl_plugin_models import LinearAutoencoder


@register_model("counted_ae")
class CountedAutoencoder(LinearAutoencoder):
    name = "counted_ae"

    def training_step(self, batch, step):
        if step == 0:
            with open(os.environ["CRLBENCH_TEST_TRAININGS"], "a") as trainings:
                trainings.write(f"{os.getpid()} {float(self.encoder.weight.detach().sum()):.6f}\\n")
        return super().training_step(batch, step)
'''


def test_two_launchers_at_once_share_a_fresh_work_directory(tmp_path):
    """Both exit 0, every cell is trained once, and MLflow (created by both at once) holds one child
    run per cell, under the parent run of the launcher that ran it."""
    (tmp_path / "counting_plugin.py").write_text(COUNTING_PLUGIN)
    seeds = [0, 1, 2, 3]
    path = write_suite(tmp_path, **{**TINY, "plugins": ["counting_plugin"], "seeds": seeds,
                                    "budget": {"steps": 8, "batch_size": 16},
                                    "models": [{"name": "counted_ae", "hyperparameters": {"step_seconds": 0.05}}]})
    workdir, trainings = tmp_path / "work", tmp_path / "trainings.txt"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(tmp_path)]),
           "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true", "CRLBENCH_TEST_TRAININGS": str(trainings)}
    command = [sys.executable, "-m", "crlbench", "suite", str(path), "--workdir", str(workdir)]
    launchers = [subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in launchers]
    for process, (out, err) in zip(launchers, outputs):
        assert process.returncode == 0, out + err

    lines = trainings.read_text().splitlines()
    assert len(lines) == len(seeds) and len({line.split()[1] for line in lines}) == len(seeds), lines
    records = load_records(workdir / "cells")
    assert len(records) == len(seeds) and all(r["status"] == "ok" for r in records)
    ran = [int(re.search(r"(\d+) ran, 0 already done", out).group(1)) for out, _ in outputs]
    assert sum(ran) == len(seeds), outputs
    assert not list(workdir.rglob("lease.json")) and not list((workdir / "invocations").glob("*.json"))

    import mlflow

    client = mlflow.MlflowClient(f"sqlite:///{workdir / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("crlbench/tiny")
    runs = client.search_runs([experiment.experiment_id])
    parents = [r for r in runs if "mlflow.parentRunId" not in r.data.tags]
    children = [r for r in runs if "mlflow.parentRunId" in r.data.tags]
    assert len(parents) == 2 and {r.info.status for r in runs} == {"FINISHED"}
    assert sorted(r.data.tags["crlbench.cell_hash"] for r in children) == sorted(r["hash"] for r in records)
    for parent in parents:  # each launcher logged the cells it ran, and counted the others
        mine = [r for r in children if r.data.tags["mlflow.parentRunId"] == parent.info.run_id]
        assert parent.data.metrics["cells_ok"] == len(mine)
        assert parent.data.metrics["cells_ok"] + parent.data.metrics["cells_elsewhere"] == len(seeds)
