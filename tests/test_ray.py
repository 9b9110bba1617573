"""The Ray executor against a real local Ray cluster (a head and a second node on 127.0.0.1): a suite's
scores equal a local run's, with and without a shared work directory, a suite survives the loss of a
node mid-training without any cell trained by two processes at once, and two launchers started at once
train every cell once.

The cluster is started here with ``ray start`` (needs ``pip install 'crlbench[ray]'``; skipped without
it) and stopped by the pids of its processes (never ``ray stop``, which stops every Ray on the machine).
"""

from __future__ import annotations

import importlib.util
import json
import os
import re
import signal
import socket
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
from suite_fixture import PLUGINS, write_suite

pytestmark = [pytest.mark.slow, pytest.mark.skipif(importlib.util.find_spec("ray") is None,
                                                    reason="the Ray executor needs ray: pip install 'crlbench[ray]'")]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes() -> dict[int, tuple[int, str]]:
    """pid -> (parent pid, command line) of every live process."""
    found = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
                command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except OSError:
                continue
            if stat[0] != "Z":
                found[int(entry)] = (int(stat[1]), command)
    return found


def with_descendants(roots: set[int]) -> set[int]:
    table, found = processes(), set(roots)
    while True:
        more = {pid for pid, (parent, _) in table.items() if parent in found} - found
        if not more:
            return found
        found |= more


class LocalRay:
    """A head and a second node, each with one CPU, under ``folder``; killed by pid."""

    def __init__(self, folder: Path, env: dict[str, str]) -> None:
        self.folder, self.env = folder, env
        self.port, self.worker_port = free_port(), free_port()
        self.address = f"127.0.0.1:{self.port}"
        ray = str(Path(sys.executable).parent / "ray")
        subprocess.run([ray, "start", "--head", f"--port={self.port}", "--num-cpus=1", "--include-dashboard=false",
                        f"--temp-dir={folder}", "--disable-usage-stats", "--node-ip-address=127.0.0.1"],
                       check=True, env=env, capture_output=True)
        subprocess.run([ray, "start", f"--address={self.address}", "--num-cpus=1", "--disable-usage-stats",
                        f"--dashboard-agent-listen-port={free_port()}", f"--node-manager-port={self.worker_port}",
                        "--node-ip-address=127.0.0.1"], check=True, env=env, capture_output=True)

    def worker_raylet(self) -> int | None:
        return next((pid for pid, (_, command) in processes().items()
                     if "raylet" in command and f"--node_manager_port={self.worker_port}" in command), None)

    def kill_worker_node(self) -> set[int]:
        """SIGKILL the second node's raylet and every process under it (its workers, its agents)."""
        pids = with_descendants({self.worker_raylet()})
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        return pids

    def stop(self) -> None:
        ours = {pid for pid, (_, command) in processes().items()  # its session folder, or its GCS port
                if str(self.folder) in command or ("ray" in command and re.search(rf":{self.port}\b", command))}
        raylet = self.worker_raylet()
        for pid in with_descendants(ours | ({raylet} if raylet else set())):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    plugins = tmp_path_factory.mktemp("plugins")
    (plugins / "counting_plugin.py").write_text(COUNTING_PLUGIN)
    trainings_file = plugins / "trainings.txt"
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "CRLBENCH_TEST_TRAININGS": str(trainings_file),
           "PYTHONPATH": os.pathsep.join([str(PLUGINS), str(plugins), os.environ.get("PYTHONPATH", "")])}
    ray = LocalRay(tmp_path_factory.mktemp("ray"), env)
    ray.plugins, ray.trainings = plugins, trainings_file
    try:
        yield ray
    finally:
        import ray as ray_module

        ray_module.shutdown()
        ray.stop()


@pytest.fixture
def on_cluster(cluster, monkeypatch):
    plugin_env(monkeypatch, cluster.plugins)
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    return cluster


def test_the_smoke_suite_on_ray_has_the_scores_of_a_local_run(tmp_path, on_cluster, capsys):
    config, workdir = load_suite(SMOKE), tmp_path / "work"
    cells = len(config.cells())
    local = run_suite(config, tmp_path / "local", workers=2, progress=False)
    assert (local.ok, local.failed) == (cells, 0)
    assert main(["suite", str(SMOKE), "--workdir", str(workdir), "--executor", "ray", "--ray-address", on_cluster.address]) == 0
    assert f"{cells} ran, 0 already done" in capsys.readouterr().out
    assert scores(config, workdir) == scores(config, tmp_path / "local")  # exact, per cell hash
    records = [read_result(cell_dir(workdir, cell.hash)) for cell in config.cells()]
    assert all(r["ran_on"]["executor"] == "ray" and r["ran_on"]["task_id"] and r["ran_on"]["node_id"] for r in records)
    assert len({r["ran_on"]["task_id"] for r in records}) == cells
    assert not list(workdir.rglob("lease.json"))
    children = mlflow_children(workdir, config.name)
    assert sorted(run.data.tags["crlbench.cell_hash"] for run in children) == sorted(c.hash for c in config.cells())


def test_without_a_shared_filesystem_the_launcher_writes_what_tasks_return(tmp_path, on_cluster, capsys):
    path = write_suite(tmp_path, **cluster_suite([0, 1, 2]))
    config, workdir = load_suite(path), tmp_path / "work"
    local = run_suite(config, tmp_path / "local", progress=False)
    assert (local.ok, local.failed) == (3, 0)
    flags = ["--executor", "ray", "--ray-address", on_cluster.address, "--ray-no-shared-workdir"]
    assert main(["suite", str(path), "--workdir", str(workdir), *flags]) == 0
    assert "3 ran, 0 already done" in capsys.readouterr().out
    assert scores(config, workdir) == scores(config, tmp_path / "local")  # exact, per cell hash
    records = [read_result(cell_dir(workdir, cell.hash)) for cell in config.cells()]
    assert all(r["ran_on"]["executor"] == "ray" for r in records) and not list(workdir.rglob("lease.json"))


def test_a_lost_node_s_cell_is_retried_and_no_cell_is_trained_twice_at_once(tmp_path, on_cluster):
    path = write_suite(tmp_path, **cluster_suite([0, 1], steps=40, step_seconds=0.25, model="counted_ae"))
    config, workdir = load_suite(path), tmp_path / "work"
    on_cluster.trainings.write_text("")
    killed = []

    def worker_node_cell():
        """The cell the second node trains, once it has a checkpoint."""
        raylet = on_cluster.worker_raylet()
        node = with_descendants({raylet}) if raylet else set()
        for cell in config.cells():
            lease, folder = cell_dir(workdir, cell.hash) / "lease.json", cell_dir(workdir, cell.hash)
            try:
                holder = json.loads(lease.read_text())["pid"]
            except (OSError, ValueError, KeyError):
                continue
            if holder in node and (folder / "checkpoint" / "last.pt").exists():
                return cell
        return None

    def kill_the_worker_node():
        cell = wait_for(worker_node_cell, 240, "a cell training on the second node")
        killed.append((cell, on_cluster.kill_worker_node()))

    thread = threading.Thread(target=kill_the_worker_node, daemon=True)
    thread.start()
    summary = run_suite(config, workdir, progress=False,
                        executor=_ray_executor(on_cluster.address))
    thread.join()
    assert killed, "no cell trained on the second node"
    assert (summary.ok, summary.failed) == (2, 0)
    found = trainings(on_cluster.trainings)
    assert not overlapping(found), found
    lost = read_result(cell_dir(workdir, killed[0][0].hash))
    assert lost["status"] == "ok" and max(len(p) for p in found.values()) == 2  # the lost cell ran again, elsewhere


def _ray_executor(address: str):
    from crlbench.suites.dispatch import executor_named
    from crlbench.suites.ray_cells import RayOptions

    return executor_named("ray", ray=RayOptions(address=address))


def test_two_launchers_at_once_train_every_cell_exactly_once(tmp_path, on_cluster):
    path = write_suite(tmp_path, **cluster_suite([0, 1, 2, 3], steps=8, step_seconds=0.05, model="counted_ae"))
    config, workdir = load_suite(path), tmp_path / "work"
    on_cluster.trainings.write_text("")
    command = [sys.executable, "-m", "crlbench", "suite", str(path), "--workdir", str(workdir), "--executor", "ray",
               "--ray-address", on_cluster.address]
    launchers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=600) for process in launchers]
    for process, (out, err) in zip(launchers, outputs):
        assert process.returncode == 0, out + err
    found = trainings(on_cluster.trainings)
    assert len(found) == 4 and all(len(processes) == 1 for processes in found.values()), found  # once each
    assert not overlapping(found)
    children = mlflow_children(workdir, config.name)
    assert sorted(run.data.tags["crlbench.cell_hash"] for run in children) == sorted(c.hash for c in config.cells())


def test_keep_checkpoints_reaches_the_ray_tasks(tmp_path, on_cluster):
    """--keep-checkpoints is the launcher's environment; Ray tasks get it through their runtime environment."""
    path = write_suite(tmp_path, **cluster_suite([0]))  # 2 epochs: a checkpoint and the one before it
    (cell,) = load_suite(path).cells()
    flags = ["--executor", "ray", "--ray-address", on_cluster.address, "--no-tracking", "--keep-checkpoints"]
    assert main(["suite", str(path), "--workdir", str(tmp_path / "work"), *flags]) == 0
    assert (cell_dir(tmp_path / "work", cell.hash) / "checkpoint" / "last.pt.prev").exists()  # not compacted
