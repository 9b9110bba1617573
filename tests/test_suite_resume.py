"""A suite killed with SIGKILL mid-run finishes on rerun with the results of an uninterrupted run."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from bench.results import load_records
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
    return subprocess.Popen([sys.executable, "-m", "bench", "-v", "suite", str(path), "--workdir", str(workdir),
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
            torch.load(file, weights_only=False)
