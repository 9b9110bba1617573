"""The executor interface without a cluster: flags and their errors, the missing-extra message, where a
cell ran, and the suite's handling of cluster tasks (a task that skips a leased cell, a detached
executor, a requeued task taking over its own lease). The engines themselves: test_slurm.py, test_ray.py."""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import threading

import pytest

from cluster_fixture import cluster_suite, wait_for
from crlbench.cli import main
from crlbench.core import registry
from crlbench.core.errors import ConfigError
from crlbench.suites.cell_task import is_skipped, run_leased_cell
from crlbench.suites.lease import Holder, Leases, cell_lease, lease_state
from crlbench.suites.results import cell_dir, read_result
from crlbench.suites.suite import run_suite
from crlbench.suites.suite_config import load_suite
from crlbench.tracking.mlflow_runs import MlflowTracking
from suite_fixture import PLUGINS, write_suite


@pytest.fixture
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))


# --- flags --------------------------------------------------------------------------------------


def test_slurm_time_limits_parse_as_slurm_writes_them_and_bad_ones_name_the_flag():
    from crlbench.suites.slurm import parse_time

    assert [parse_time(t) for t in ("90", "5:30", "1:30:00", "2-00", "1-12:00", "0-0:0:1")] == [90, 6, 90, 2880, 2160, 1]
    for bad in ("", "1h", "1:2:3:4", "-5", "0", "0:00:00"):
        with pytest.raises(ConfigError, match=r"--slurm-time: .* (is not a time limit|is no time at all); use MINUTES"):
            parse_time(bad)


def test_extra_sbatch_options_pass_through_and_bad_ones_name_the_flag():
    from crlbench.suites.slurm import SlurmOptions, parse_sbatch

    extra = parse_sbatch(["--account=lab", "qos=high", "exclusive", "mail-type=END"])
    assert extra == {"account": "lab", "qos": "high", "exclusive": True, "mail_type": "END"}
    parameters = SlurmOptions(partition="gpu", time_min=90, gpus_per_cell=1, cpus_per_cell=4, sbatch=extra).parameters("x")
    assert parameters == {"job_name": "x", "time": 90, "cpus_per_task": 4, "array_parallelism": 256,
                          "partition": "gpu", "gpus_per_node": 1, "additional_parameters": extra}
    with pytest.raises(ConfigError, match=r"--slurm-sbatch: '=x' is not an sbatch option; use KEY=VALUE"):
        parse_sbatch(["=x"])
    with pytest.raises(ConfigError, match=r"--slurm-cpus-per-cell must be an integer >= 1; got 0"):
        SlurmOptions(cpus_per_cell=0)


def test_ray_options_take_auto_or_host_port_and_fractions_of_a_gpu():
    from crlbench.suites.ray_cells import RayOptions

    assert RayOptions(address="10.0.0.5:6379", gpus_per_cell=0.25).gpus_per_cell == 0.25
    with pytest.raises(ConfigError, match=r"--ray-address: 'head' is not a Ray cluster address; use auto or HOST:PORT"):
        RayOptions(address="head")
    with pytest.raises(ConfigError, match=r"--ray-cpus-per-cell must be a number > 0"):
        RayOptions(cpus_per_cell=0)
    with pytest.raises(ConfigError, match=r"--ray-gpus-per-cell must be a number >= 0"):
        RayOptions(gpus_per_cell=-1)


@pytest.mark.parametrize("flags, message", [
    (["--slurm-partition", "gpu"], "--slurm-partition applies to --executor slurm, not --executor local"),
    (["--executor", "ray", "--slurm-time", "5"], "--slurm-time applies to --executor slurm, not --executor ray"),
    (["--ray-gpus-per-cell", "0.5"], "--ray-gpus-per-cell applies to --executor ray, not --executor local"),
    (["--detach"], "--detach applies to --executor slurm, not --executor local"),
    (["--executor", "slurm", "--workers", "2"], "--workers applies to --executor local"),
    (["--ingest", "--no-tracking"], "--ingest logs finished cells to MLflow: it cannot be used with --no-tracking"),
    (["--ingest", "--executor", "slurm", "--slurm-partition", "gpu"],
     "--ingest runs no cell, so it takes no option of how cells run; got --slurm-partition, --executor slurm"),
    (["--ingest", "--workers", "2"], "--ingest runs no cell, so it takes no option of how cells run; got --workers 2"),
])
def test_flags_of_another_executor_are_refused_before_any_work(tmp_path, flags, message, capsys, monkeypatch):
    monkeypatch.setattr("crlbench.suites.dispatch.require", lambda executor: None)
    monkeypatch.setattr("shutil.which", lambda name: f"/usr/bin/{name}")
    path = write_suite(tmp_path)
    assert main(["suite", str(path), "--workdir", str(tmp_path / "work"), *flags]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "work" / "cells").exists()


def test_an_unknown_executor_lists_the_known_ones(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["suite", str(write_suite(tmp_path)), "--executor", "kubernetes"])
    assert "invalid choice: 'kubernetes' (choose from 'local', 'slurm', 'ray')" in capsys.readouterr().err


@pytest.mark.parametrize("executor, package", [("slurm", "submitit"), ("ray", "ray")])
def test_a_missing_extra_fails_before_any_work_saying_what_to_install(tmp_path, capsys, monkeypatch, executor, package):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    path = write_suite(tmp_path)
    assert main(["suite", str(path), "--workdir", str(tmp_path / "work"), "--executor", executor]) == 2
    err = capsys.readouterr().err
    assert f"--executor {executor} needs the Python package '{package}'" in err
    assert f"pip install 'crlbench[{executor}]'" in err
    assert not (tmp_path / "work" / "cells").exists()


def test_slurm_without_sbatch_on_the_path_says_where_to_run(tmp_path, capsys, monkeypatch):
    pytest.importorskip("submitit")
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["suite", str(write_suite(tmp_path)), "--workdir", str(tmp_path / "work"), "--executor", "slurm"]) == 2
    assert "Slurm's sbatch and srun are not on PATH" in capsys.readouterr().err


# --- cluster tasks in the suite -----------------------------------------------------------------


class ThreadTasks:
    """A stand-in cluster executor: each cell is a task in a thread, under its own lease, as Slurm and
    Ray tasks run them (``detach``: submitted, never awaited)."""

    name, leases_in_tasks, one_at_a_time = "threads", True, False

    def __init__(self, detach: bool = False) -> None:
        self.detach = detach
        self.submitted: list[str] = []
        self.threads: list[threading.Thread] = []

    def run(self, cells, workdir, *, on_result, progress=True):
        import time

        since = time.time()
        results = {}

        def task(cell, index):
            results[cell.hash] = run_leased_cell(cell, workdir, invocation=f"threads-{index}", since=since,
                                                 ran_on={"executor": "threads", "host": "h", "task_id": str(index)})

        for cell in cells:
            self.submitted.append(cell.hash)
            self.threads.append(threading.Thread(target=task, args=(cell, len(self.submitted))))
            self.threads[-1].start()
        if self.detach:
            return
        for thread in self.threads:
            thread.join()
        for cell in cells:
            on_result(results[cell.hash])


def test_a_task_that_finds_a_live_lease_skips_and_the_suite_waits_for_the_holder(tmp_path, plugin_path):
    config, workdir = load_suite(write_suite(tmp_path, **cluster_suite([0, 1], steps=2))), tmp_path / "work"
    first, second = config.cells()
    other = Leases()  # another launcher runs the first cell
    other.acquire(cell_lease(workdir, first.hash))
    executor = ThreadTasks()

    def finish_elsewhere():  # once the suite has submitted the second cell and waits for the first
        wait_for(lambda: (cell_dir(workdir, second.hash) / "result.json").exists(), 120, "the second cell's record")
        from crlbench.suites.runner import run_cell

        run_cell(first, workdir)
        other.close()

    helper = threading.Thread(target=finish_elsewhere, daemon=True)  # a failing suite does not leave it running
    helper.start()
    summary = run_suite(config, workdir, progress=False, poll_s=0.05, executor=executor)
    helper.join()
    assert executor.submitted == [second.hash]  # the leased cell was not submitted
    assert (summary.ok, summary.elsewhere, summary.failed) == (1, 1, 0)
    assert read_result(cell_dir(workdir, second.hash))["ran_on"]["executor"] == "threads"
    assert read_result(cell_dir(workdir, first.hash))["ran_on"]["executor"] == "local"


def test_a_task_returns_a_record_another_launcher_finished_before_its_submission(tmp_path, plugin_path, monkeypatch):
    """The window between a launcher's check of a cell and the submission of its task: a record written there
    is older than the task's ``since``, and the task must not train the cell again."""
    from crlbench.suites import runner

    config, workdir = load_suite(write_suite(tmp_path, **cluster_suite([0], steps=2))), tmp_path / "work"
    cell = config.cells()[0]
    record = runner.run_cell(cell, workdir)  # another launcher finishes the cell...
    monkeypatch.setattr(runner, "run_cell", lambda *args, **kwargs: pytest.fail("the finished cell was trained again"))
    models = registry.registry("model")  # a task starts in a fresh process: its plugin is not imported yet
    monkeypatch.setattr(models, "_objects", {k: v for k, v in models._objects.items() if k != cell.model})
    monkeypatch.setattr(models, "_registered_by", {k: v for k, v in models._registered_by.items() if k != cell.model})
    monkeypatch.delitem(sys.modules, "crl_plugin_models")
    since = os.stat(cell_dir(workdir, cell.hash) / "result.json").st_mtime + 10  # ...before this task was submitted
    result = run_leased_cell(cell, workdir, invocation="slurm-8_0", since=since,
                             ran_on={"executor": "slurm", "host": "h", "task_id": "8_0"})
    assert result["hash"] == cell.hash and result["provenance"] == record["provenance"]


def test_a_task_skips_a_cell_whose_lease_is_live_and_writes_nothing(tmp_path, plugin_path):
    config, workdir = load_suite(write_suite(tmp_path, **cluster_suite([0], steps=2))), tmp_path / "work"
    cell = config.cells()[0]
    with Leases() as other:
        other.acquire(cell_lease(workdir, cell.hash))
        result = run_leased_cell(cell, workdir, invocation="slurm-7_0", since=0.0, supersedes=True,
                                 ran_on={"executor": "slurm", "host": "h", "task_id": "7_0"})
        assert is_skipped(result) and other.holder.invocation in result["holder"]
        assert read_result(cell_dir(workdir, cell.hash)) is None
        assert lease_state(cell_lease(workdir, cell.hash)).holder == other.holder


def test_a_requeued_task_takes_over_its_earlier_attempts_live_lease_and_only_that(tmp_path, caplog):
    path = cell_lease(tmp_path / "work", "0123456789abcdef")
    path.parent.mkdir(parents=True)
    me = Holder.current()
    earlier = Holder("slurm-7_0", me.host, os.getppid(), "-", me.boot_id, me.pid_namespace)  # another, live, process
    path.write_text(json.dumps(earlier.__dict__))  # its heartbeat is fresh
    assert lease_state(path).live
    with Leases(Holder.current("slurm-7_1")) as another:
        assert not another.acquire(path, supersedes="slurm-7_1")
    with Leases(Holder.current("slurm-7_0")) as again, caplog.at_level("WARNING", "crlbench.suites.lease"):
        assert again.acquire(path, "cell x", supersedes="slurm-7_0")
        assert lease_state(path).holder == again.holder
    assert "taking over the lease of invocation slurm-7_0" in caplog.text
    assert "an earlier attempt of this task" in caplog.text


def test_a_detached_executor_leaves_its_cells_in_flight_and_a_later_run_collects_them(tmp_path, plugin_path):
    config, workdir = load_suite(write_suite(tmp_path, **cluster_suite([0, 1], steps=2))), tmp_path / "work"
    detached = ThreadTasks(detach=True)
    summary = run_suite(config, workdir, progress=False, executor=detached)
    assert (summary.ok, summary.in_flight) == (0, 2)
    for thread in detached.threads:
        thread.join()
    later = ThreadTasks()
    summary = run_suite(config, workdir, progress=False, executor=later, tracking=MlflowTracking(f"sqlite:///{workdir}/m.db"))
    assert (summary.ok, summary.cached, summary.in_flight) == (0, 2, 0) and later.submitted == []
    assert summary.logged == 2  # finished while nobody watched: logged now, once
    assert run_suite(config, workdir, progress=False, executor=later, ingest=True,
                     tracking=MlflowTracking(f"sqlite:///{workdir}/m.db")).logged == 0
