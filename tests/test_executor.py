"""The local executor: a cell's numbers do not depend on the worker count, workers die with the suite's
process, and a dead worker fails only the cell it held."""

import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from crlbench.core.errors import ConfigError
from crlbench.suites import executor
from crlbench.suites.results import cell_dir, read_result
from crlbench.suites.suite import run_suite
from crlbench.suites.suite_config import load_suite
from suite_fixture import PLUGINS, write_suite

LINUX_PROC = Path("/proc/self/stat").exists()


def slow_suite(seeds: list[int], steps: int, step_seconds: float) -> dict:
    """Cells of the plugin's linear autoencoder that sleep in every step: long, but cheap on the CPU."""
    return {
        "plugins": ["crl_plugin_models"], "seeds": seeds, "budget": {"steps": steps, "batch_size": 16},
        "datasets": [{"name": "causal_circuit", "params": {"size": 32, "n_train": 64, "n_val": 16, "n_test": 48}}],
        "models": [{"name": "linear_ae", "hyperparameters": {"step_seconds": step_seconds}}],
        "metrics": ["mcc@pearson"], "evaluation": {"n_train": 40, "n_test": 40, "interventions": 2},
    }


# --- threads belong to the cell -------------------------------------------------------------------------


def test_threads_is_a_validated_suite_key_and_part_of_the_cell_hash(tmp_path):
    default, two = load_suite(write_suite(tmp_path)), load_suite(write_suite(tmp_path, "two.yaml", threads=2))
    assert default.threads == 1 and two.threads == 2
    for one_cell, two_cell in zip(default.cells(), two.cells()):
        assert one_cell.threads == 1 and two_cell.threads == 2
        assert one_cell.identity()["threads"] == 1 and one_cell.to_dict()["threads"] == 1
        assert one_cell.hash != two_cell.hash
    assert load_suite(write_suite(tmp_path, "same.yaml", threads=1)).cells()[0].hash == default.cells()[0].hash
    for bad in (0, -1, "two", True, 1.5):
        with pytest.raises(ConfigError, match=r"bad\.yaml: key 'threads' must be a positive integer"):
            load_suite(write_suite(tmp_path, "bad.yaml", threads=bad))


def test_cell_threads_sets_torch_blas_and_joblib_and_restores_them():
    from joblib.parallel import get_active_backend
    from threadpoolctl import threadpool_info

    before = torch.get_num_threads()
    with executor.cell_threads(1):
        assert torch.get_num_threads() == 1
        assert all(pool["num_threads"] == 1 for pool in threadpool_info())
        assert type(get_active_backend()[0]).__name__ == "ThreadingBackend"
    assert torch.get_num_threads() == before


def test_workers_never_oversubscribe_the_cores(tmp_path, monkeypatch, caplog):
    assert executor.scheduled_workers(4, 1, cores=2) == 2
    assert executor.scheduled_workers(2, 2, cores=2) == 1
    assert executor.scheduled_workers(2, 4, cores=2) == 1  # one worker at least, even on too few cores
    assert executor.scheduled_workers(3, 2, cores=16) == 3

    import crlbench.suites.runner

    config = load_suite(write_suite(tmp_path, threads=2))
    ran = []
    monkeypatch.setattr(executor, "available_cores", lambda: 2)
    monkeypatch.setattr(crlbench.suites.runner, "run_cell", lambda cell, workdir, **kwargs: ran.append(cell) or
                        {"hash": cell.hash, "status": "ok"})
    with caplog.at_level(logging.WARNING, logger="crlbench.suites.executor"):
        executor.run_cells(config.cells(), tmp_path / "work", workers=2, progress=False)
    assert ran == config.cells()  # in this process: 2 workers x 2 threads do not fit 2 cores
    assert "running 1 worker(s), not 2: each cell computes with 2 thread(s) and 2 core(s) are available" in caplog.text


def test_scores_are_identical_with_one_and_with_two_workers(tmp_path):
    """Before cells had their own thread count, one worker computed on torch's default threads (every core)
    and two workers on half the cores each: mcc@pearson moved in its 7th digit. Now both runs compute
    with the cell's ``threads: 1`` and write the same hashes with bit-identical scores."""
    config = load_suite(write_suite(tmp_path))
    scores = {}
    for workers in (1, 2):
        before = torch.get_num_threads()
        torch.set_num_threads(2)  # this process's default on a 2-core machine
        try:
            summary = run_suite(config, tmp_path / f"workers{workers}", workers=workers, progress=False)
        finally:
            torch.set_num_threads(before)
        assert (summary.ok, summary.failed) == (2, 0)
        scores[workers] = {cell.hash: read_result(cell_dir(tmp_path / f"workers{workers}", cell.hash))["scores"]
                           for cell in config.cells()}
    assert scores[1] == scores[2]  # exact float equality, per cell hash
    assert all(len(cell_scores) > 5 for cell_scores in scores[1].values())


# --- a dead worker fails its own cell only ----------------------------------------------------------------


class WorkerLog(logging.Handler):
    """The executor's ``cell ... runs in worker pid N`` lines, as (cell hash, pid)."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.started: list[tuple[str, int]] = []

    def emit(self, record):
        if hasattr(record, "worker_pid"):
            self.started.append((record.cell_hash, record.worker_pid))


def test_a_killed_worker_fails_only_its_own_cell_and_the_others_finish(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))  # spawned workers get this process's sys.path
    config = load_suite(write_suite(tmp_path, **slow_suite([0, 1, 2], steps=48, step_seconds=0.1)))
    handler, logger = WorkerLog(), logging.getLogger("crlbench.suites.executor")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    killed: list[tuple[str, int]] = []

    def kill_the_first_worker():
        deadline = time.monotonic() + 120
        while len(handler.started) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        if len(handler.started) < 2:
            return
        time.sleep(1.0)  # both cells are training
        killed.append(handler.started[0])
        os.kill(handler.started[0][1], signal.SIGKILL)

    killer = threading.Thread(target=kill_the_first_worker, daemon=True)
    killer.start()
    try:
        summary = run_suite(config, tmp_path / "work", workers=2, progress=False)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)
    killer.join()
    assert killed, f"two cells never started in workers: {handler.started}"
    dead_hash, dead_pid = killed[0]
    records = {cell.hash: read_result(cell_dir(tmp_path / "work", cell.hash)) for cell in config.cells()}
    assert (summary.ok, summary.failed) == (2, 1)
    dead = records[dead_hash]
    assert dead["status"] == "failed" and dead["error"]["type"] == "WorkerDied"
    assert f"pid {dead_pid}" in dead["error"]["message"] and "SIGKILL" in dead["error"]["message"]
    for cell_hash, record in records.items():
        if cell_hash != dead_hash:
            assert record["status"] == "ok", record.get("error")
    started = [cell_hash for cell_hash, _ in handler.started]
    assert sorted(started) == sorted(records), "every cell started exactly once: none was restarted or requeued"


# --- workers die with their parent ------------------------------------------------------------------------


def session_processes(session: int) -> list[str]:
    """Live (not zombie) processes of ``session``, as 'pid state command'."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()  # state, ppid, pgrp, session, ...
        if int(fields[3]) == session and fields[0] != "Z":
            found.append(f"{entry} {fields[0]} {command[:120]}")
    return found


def wait_until_gone(session: int, timeout: float) -> list[str]:
    deadline = time.monotonic() + timeout
    while (left := session_processes(session)) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


SUITE_SCRIPT = textwrap.dedent("""
    import logging, sys
    from crlbench.suites.suite import run_suite
    from crlbench.suites.suite_config import load_suite

    if __name__ == "__main__":
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        logging.getLogger("crlbench.suites.executor").setLevel(logging.DEBUG)
        run_suite(load_suite(sys.argv[1]), sys.argv[2], workers=2, progress=False)
""")


@pytest.mark.skipif(not LINUX_PROC, reason="reads the session's processes from /proc")
def test_killing_the_suites_process_leaves_no_worker_behind(tmp_path):
    path = write_suite(tmp_path, **slow_suite([0, 1], steps=400, step_seconds=0.1))
    script = tmp_path / "suite.py"
    script.write_text(SUITE_SCRIPT)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")])}
    process = subprocess.Popen([sys.executable, str(script), str(path), str(tmp_path / "work")], env=env,
                               start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        started = []
        deadline = time.monotonic() + 120
        while len(started) < 2 and time.monotonic() < deadline:
            line = process.stderr.readline()
            assert line, f"the suite ended before its cells started (status {process.wait()})"
            if "runs in worker pid" in line:
                started.append(int(line.rsplit(" ", 1)[1]))
        assert len(started) == 2, "two cells never started"
        time.sleep(1.0)  # training
        assert len(session_processes(process.pid)) >= 3  # the suite's process and its two workers
        process.kill()  # SIGKILL, the suite's process only
        process.wait()
        left = wait_until_gone(process.pid, timeout=10)
        assert not left, f"processes left behind by the killed suite: {left}"
        assert not any((cell / "result.json").exists() for cell in (tmp_path / "work" / "cells").iterdir())
    finally:
        with_leftovers = session_processes(process.pid)
        if with_leftovers:
            os.killpg(process.pid, signal.SIGKILL)
        process.stderr.close()


WATCHDOG_SCRIPT = textwrap.dedent("""
    import multiprocessing, os, sys, time
    from crlbench.suites import executor

    if __name__ == "__main__":
        child = multiprocessing.get_context("spawn").Process(target=executor._watch_parent, args=(os.getpid(),))
        child.start()
        print(child.pid, flush=True)
        time.sleep(600)
""")


@pytest.mark.skipif(not LINUX_PROC, reason="reads the session's processes from /proc")
def test_the_watchdog_alone_ends_a_worker_whose_parent_died(tmp_path):
    """Where the kernel's parent-death signal is missing (macOS, Windows), a worker's watchdog thread sees
    the pipe from its parent close and exits."""
    script = tmp_path / "watchdog.py"
    script.write_text(WATCHDOG_SCRIPT)
    process = subprocess.Popen([sys.executable, str(script)], start_new_session=True, stdout=subprocess.PIPE,
                               text=True)
    try:
        child = int(process.stdout.readline())
        time.sleep(0.5)
        assert any(line.split()[0] == str(child) for line in session_processes(process.pid))
        process.kill()
        process.wait()
        left = wait_until_gone(process.pid, timeout=10)
        assert not left, f"the watchdog did not end the orphan: {left}"
    finally:
        if session_processes(process.pid):
            os.killpg(process.pid, signal.SIGKILL)
        process.stdout.close()
