"""Fencing tokens (crlbench.core.fencing): a holder whose lease was taken over writes nothing that lands.

Issue 24: launcher A paused with SIGSTOP mid-cell, B took the stale lease over after the stale time, then A
resumed: it kept training, its record replaced B's and MLflow held two runs for the cell."""

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from crlbench.core.errors import FencedOut
from crlbench.core.fencing import FENCE, Fence, fenced, issue_token, newest_token
from crlbench.core.files import file_lock
from crlbench.suites.results import write_json
from crlbench.suites.lease import Holder, Leases, cell_lease
from suite_fixture import PLUGINS, write_suite
from test_executor import LINUX_PROC, slow_suite


def test_each_lease_of_a_cell_gets_a_larger_token_that_outlives_the_lease(tmp_path):
    path = cell_lease(tmp_path, "a" * 16)
    with Leases(Holder.current()) as first:
        assert first.acquire(path)
        assert first.fence(path).token == 1 and newest_token(path.parent) == 1
    assert not path.exists() and (path.parent / FENCE).exists()  # released: the fence stays
    with Leases(Holder.current()) as second:
        assert second.acquire(path)
        assert second.fence(path).token == 2
        assert second.acquire(path) and second.fence(path).token == 2  # ours already: the same token
    invocation = Path(tmp_path) / "invocations" / "x.json"
    with Leases(Holder.current()) as other:
        assert other.acquire(invocation) and other.fence(invocation) is None  # only cells are fenced


def test_a_superseded_token_writes_nothing_in_the_cell_and_leaves_other_folders_alone(tmp_path):
    folder = tmp_path / "cells" / ("b" * 16)
    folder.mkdir(parents=True)
    old = Fence(folder, issue_token(folder), tmp_path / "leases.lock")
    write_json(folder / "result.json", {"by": "old"})
    with fenced(old):
        write_json(folder / "result.json", {"by": "old, still the newest"})
        issue_token(folder)  # another launcher takes the lease over
        with pytest.raises(FencedOut, match="superseded by token 2"):
            write_json(folder / "result.json", {"by": "old, superseded"})
        write_json(tmp_path / "elsewhere.json", {"ok": True})  # not the cell's: not fenced
    assert (folder / "result.json").read_text().count("still the newest") == 1
    assert not list(folder.glob(".*.tmp"))  # the refused write's temporary is gone
    with pytest.raises(FencedOut):
        old.check()


LAUNCHER = textwrap.dedent("""
    import logging, sys
    from crlbench.suites.suite import run_suite
    from crlbench.suites.suite_config import load_suite
    from crlbench.tracking.mlflow_runs import MlflowTracking

    if __name__ == "__main__":
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        logging.getLogger("crlbench.suites.executor").setLevel(logging.DEBUG)
        heartbeat, stale = float(sys.argv[3]), float(sys.argv[4])
        summary = run_suite(load_suite(sys.argv[1]), sys.argv[2], workers=2, progress=False,
                            tracking=MlflowTracking("sqlite:///" + sys.argv[2] + "/mlflow.db"), heartbeat_s=heartbeat,
                            stale_after_s=stale)
        print("summary", summary.ok, summary.failed, summary.elsewhere, flush=True)
""")


@pytest.mark.skipif(not LINUX_PROC, reason="pauses a launcher with SIGSTOP and reads /proc")
@pytest.mark.parametrize("heartbeat, stale, steps, step_seconds", [
    (0.5, 3.0, 96, 0.25),  # 24 epochs of 1 s each
    pytest.param(10.0, 60.0, 96, 1.5, marks=pytest.mark.slow, id="the real 60 s"),  # 24 epochs of 6 s each
])
def test_a_paused_launcher_resumed_after_a_take_over_writes_nothing_and_mlflow_holds_one_run(
        tmp_path, heartbeat, stale, steps, step_seconds):
    path = write_suite(tmp_path, **slow_suite([0, 1], steps=steps, step_seconds=step_seconds))
    script = tmp_path / "launcher.py"
    script.write_text(LAUNCHER)
    workdir = tmp_path / "work"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
           "OMP_NUM_THREADS": "1", "MLFLOW_DISABLE_TELEMETRY": "true"}

    def launch() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, str(script), str(path), str(workdir), str(heartbeat), str(stale)],
                                env=env, text=True,
                                start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)

    first = launch()
    second = None
    try:
        started = 0
        deadline = time.monotonic() + 120
        while started < 2 and time.monotonic() < deadline:
            line = first.stderr.readline()
            assert line, f"A ended before its cells started (status {first.wait()})"
            started += "runs in worker pid" in line
        time.sleep(2.0)  # A's workers train and checkpoint
        with file_lock(workdir / "leases.lock"):  # A is not inside the lock when it stops (B would wait forever)
            os.kill(first.pid, signal.SIGSTOP)  # A's heartbeats stop; its workers go on training
        time.sleep(stale + 1.0)  # past the stale time
        second = launch()
        out_b, err_b = second.communicate(timeout=300)
        assert second.returncode == 0, err_b
        assert "taking over the lease" in err_b
        os.kill(first.pid, signal.SIGCONT)
        out_a, err_a = first.communicate(timeout=120)
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGKILL)
    assert "took its lease over while it ran" in err_a  # both of A's cells were stopped by their tokens
    assert "summary 0 0 2" in out_a  # A ran none to the end, failed none, and waited for B's 2 cells
    records = sorted((workdir / "cells").glob("*/result.json"))
    assert len(records) == 2
    import json

    from mlflow import MlflowClient

    for record_path in records:
        record = json.loads(record_path.read_text())
        assert record["status"] == "ok" and record["lease_token"] == 2  # B's, and nothing of A's replaced it
        assert newest_token(record_path.parent) >= 2  # A, resumed, may take the lease again to collect the cell
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()],
                              "tags.`crlbench.cell_hash` != ''")
    by_cell = {}
    for run in runs:
        by_cell.setdefault(run.data.tags["crlbench.cell_hash"], []).append(run.info.status)
    assert sorted(map(len, by_cell.values())) == [1, 1] and all(status == ["FINISHED"] for status in by_cell.values())
