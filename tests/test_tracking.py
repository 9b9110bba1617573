"""MLflow tracking: a suite's parent run, its cells' child runs, the fail-fast URI check, the UI command.

One SQLite store per module: creating MLflow's tables takes seconds.
"""

from __future__ import annotations

import getpass
import json
import logging
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from crlbench.suites import results
from crlbench.tracking.mlflow_runs import (SuiteTracker, TrackingUnavailable, check_tracking, default_tracking_uri,
                                           metric_name, ui_command)

os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")

SUITE = "tracking-test"
EPOCHS = 4
PROVENANCE = {"versions": {"crlbench": "0.1.0", "python": "3.11.7", "torch": "2.5.0", "numpy": "2.1.0"},
              "git_commit": "abc123", "host": "testhost", "finished_at": "2026-01-02T03:04:05+00:00"}


def _reading(step: int) -> dict[str, float]:
    """The monitor's reading of the validation sample at ``step``; the trainer also copies an epoch-end
    reading into that epoch's loss terms."""
    return {"dci@reg.disentanglement": step / 100, "heldout_reconstruction_mse": 1.0 / step}


def _record(cell_hash: str, seed: int, status: str) -> dict:
    record = {
        "schema": 1, "hash": cell_hash, "status": status,
        "cell": {"hash": cell_hash, "suite": SUITE, "dataset": "pendulum", "dataset_params": {"n_train": 500},
                 "model": "beta_vae", "label": "beta_vae", "hyperparameters": {"beta": 4.0, "latent_dim": 4},
                 "seed": seed, "budget": {"epochs": EPOCHS, "steps": None, "batch_size": 64},
                 "metrics": [{"name": "dci@reg", "options": {}}], "evaluation": {"split": "test"},
                 "identity": {"model": {"name": "beta_vae", "hyperparameters": {"beta": 4.0, "latent_dim": 4, "lr": 0.001,
                                                                                 "betas": [0.9, 0.999]}},
                              "dataset": {"name": "pendulum", "params": {"n_train": 500, "size": 64}}}},
        "factors": ["pendulum_angle", "light_angle", "shadow_length", "shadow_position"],
        "error": None, "scores": {}, "metrics": {}, "history": {"epochs": [], "steps": 0},
        "timings": {"total_s": 2.5}, "provenance": PROVENANCE,
    }
    if status == "ok":
        record.update(
            scores={"dci@reg.disentanglement": 0.75, "dci@reg.completeness": 0.5, "reconstruction.mse": 0.01},
            history={"epochs": [{"loss": 10.0 - epoch, "kl": 1.0, **_reading(10 * (epoch + 1))} for epoch in range(EPOCHS)],
                     "steps": 40, "evaluations": [{"step": step, "epoch": step / 10, "scores": _reading(step)}
                                                  for step in (5, 10, 20, 30, 40)]},
            timings={"train_s": 1.5, "encode_s": 0.5, "metrics_s": {"dci@reg": 0.4}, "total_s": 2.5})
    else:
        record["error"] = {"type": "FloatingPointError", "message": "loss 'kl' is nan at step 7",
                           "traceback": "Traceback (most recent call last):\n  ...\nFloatingPointError: nan"}
    return record


def _cell_folder(workdir: Path, record: dict) -> Path:
    folder = results.cell_dir(workdir, record["hash"])
    results.write_json(folder / results.RESULT, record)
    if record["status"] == "ok":
        results.write_json(folder / "history.json", record["history"])
        results.write_json(folder / "metrics" / "dci@reg.json", {"scores": {"disentanglement": 0.75}})
        results.write_npz(folder / "metrics" / "dci@reg.npz", {"importance": np.eye(4)})
        (folder / "checkpoint").mkdir()
        (folder / "checkpoint" / "last.pt").write_bytes(b"weights")
        results.write_npz(folder / "interventions.npz", INTERVENTIONS)
    return folder


# One source image per column, per factor the true counterfactuals and the model's do() (3 factors, 2 samples).
_RNG = np.random.default_rng(0)
INTERVENTIONS = {"source": _RNG.integers(0, 255, (2, 8, 8, 3), dtype=np.uint8),
                 "truth": _RNG.integers(0, 255, (3, 2, 8, 8, 3), dtype=np.uint8),
                 "model": _RNG.integers(0, 255, (3, 2, 8, 8, 3), dtype=np.uint8),
                 "values": np.arange(6.0).reshape(3, 2), "factor_names": np.array(["angle", "light", "shadow"])}


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> dict:
    """A suite invocation with an ok cell and a failed cell, logged to a fresh SQLite store."""
    workdir = tmp_path_factory.mktemp("runs")
    uri = default_tracking_uri(workdir)
    config_path = workdir / "suite.yaml"
    config_path.write_text(f"name: {SUITE}\nseeds: [0, 1]\n")
    ok, failed = _record("aaaa000000000000", 0, "ok"), _record("bbbb000000000000", 1, "failed")
    with SuiteTracker(uri, SUITE, {"name": SUITE, "seeds": [0, 1]}, config_path, tags={"crlbench.git_commit": "abc123"}) as tracker:
        ok_id = tracker.log_cell(ok, _cell_folder(workdir, ok))
        failed_id = tracker.log_cell(failed, _cell_folder(workdir, failed))
        tracker.finish(ok=1, failed=1, cached=0)
    return {"workdir": workdir, "uri": uri, "parent": tracker.parent_run_id, "ok": ok_id, "failed": failed_id}


def _client(store):
    import mlflow

    return mlflow.MlflowClient(store["uri"])


def _search(store):
    import mlflow

    mlflow.set_tracking_uri(store["uri"])
    try:
        return mlflow.search_runs(experiment_names=[f"crlbench/{SUITE}"]).set_index("run_id")
    finally:
        mlflow.set_tracking_uri(None)


def test_default_tracking_uri_is_a_sqlite_file_in_the_workdir(tmp_path):
    uri = default_tracking_uri(tmp_path / "new")
    assert uri == f"sqlite:///{(tmp_path / 'new').resolve()}/mlflow.db"
    assert (tmp_path / "new").is_dir()


def test_a_suite_is_a_parent_run_with_one_child_per_cell(store):
    runs = _search(store)
    assert len(runs) == 3
    children = runs[runs["tags.mlflow.parentRunId"] == store["parent"]]
    assert set(children.index) == {store["ok"], store["failed"]}
    assert runs.loc[store["parent"], "tags.mlflow.runName"].startswith(f"{SUITE}-")
    assert children.loc[store["ok"], "tags.mlflow.runName"] == "pendulum/beta_vae/seed0"


def test_cell_params_cover_the_cell_its_budget_hyperparameters_and_dataset_params(store):
    params = _client(store).get_run(store["ok"]).data.params
    assert params["dataset"] == "pendulum" and params["model"] == "beta_vae" and params["seed"] == "0"
    assert params["budget.epochs"] == str(EPOCHS) and params["budget.batch_size"] == "64"
    assert params["hp.beta"] == "4.0" and params["hp.latent_dim"] == "4"
    assert params["data.n_train"] == "500"


def test_hp_params_hold_every_resolved_hyperparameter_not_only_the_overrides(store):
    run = _client(store).get_run(store["ok"])
    params = run.data.params
    assert params["hp.lr"] == "0.001" and params["hp.betas"] == "[0.9, 0.999]"  # defaults the suite did not set
    assert params["data.size"] == "64"
    assert json.loads(run.data.tags["crlbench.hp_overrides"]) == {"beta": 4.0, "latent_dim": 4}


def test_runs_carry_mlflows_standard_source_tags(store):
    client = _client(store)
    for run_id in (store["ok"], store["failed"], store["parent"]):
        tags = client.get_run(run_id).data.tags
        assert tags["mlflow.source.git.commit"] == "abc123"
        assert tags["mlflow.source.name"] == str(store["workdir"] / "suite.yaml")
        assert tags["mlflow.source.type"] == "LOCAL" and tags["mlflow.runName"] and tags["mlflow.user"]
    assert client.get_run(store["ok"]).info.user_id == getpass.getuser()  # the User column
    found = client.search_runs([client.get_run(store["ok"]).info.experiment_id],
                               "tags.`mlflow.source.git.commit` = 'abc123' and tags.`crlbench.status` = 'ok'")
    assert [run.info.run_id for run in found] == [store["ok"]]


def test_the_intervention_grid_is_an_image_mlflow_shows(store):
    client = _client(store)
    top = {item.path for item in client.list_artifacts(store["ok"])}
    assert {"interventions.npz", "interventions.png", "images"} <= top
    images = [item.path for item in client.list_artifacts(store["ok"], "images")]
    assert any(path.startswith("images/interventions+step+0+") and path.endswith(".png") for path in images), images
    assert client.get_run(store["ok"]).data.tags["mlflow.loggedImages"] == "True"
    from PIL import Image

    with Image.open(client.download_artifacts(store["ok"], "interventions.png")) as image:
        assert image.format == "PNG" and image.width > 100 and image.height > 100


def test_one_cells_intervention_grid_is_drawn_as_an_rgb_image(tmp_path):
    from crlbench.tracking.mlflow_runs import intervention_image

    results.write_npz(tmp_path / "interventions.npz", INTERVENTIONS)
    image = intervention_image(tmp_path / "interventions.npz", "pendulum/beta_vae/seed0", "beta_vae")
    assert image.mode == "RGB" and image.width > 100


def test_a_cell_whose_grid_cannot_be_drawn_is_logged_with_a_warning(store, tmp_path, caplog):
    record = _record("eeee000000000000", 4, "ok")
    folder = _cell_folder(tmp_path, record)
    results.write_npz(folder / "interventions.npz", {"source": INTERVENTIONS["source"]})  # no truth, no model
    (folder / "figure.png").write_bytes(b"not a png")
    with SuiteTracker(store["uri"], "tracking-images", {}) as tracker:
        with caplog.at_level(logging.WARNING, logger="crlbench.tracking.mlflow_runs"):
            run_id = tracker.log_cell(record, folder)
    assert run_id is not None and _client(store).get_run(run_id).info.status == "FINISHED"
    assert "could not draw the intervention grid" in caplog.text and "truth" in caplog.text
    top = {item.path for item in _client(store).list_artifacts(run_id)}
    assert "interventions.npz" in top and "figure.png" in top and "interventions.png" not in top


def test_loss_terms_are_logged_per_epoch(store):
    history = _client(store).get_metric_history(store["ok"], "train/loss")
    assert [m.step for m in sorted(history, key=lambda m: m.step)] == list(range(1, EPOCHS + 1))
    assert sorted(history, key=lambda m: m.step)[0].value == 10.0


def test_validation_readings_are_logged_under_val_by_step_not_as_training_terms(store):
    client = _client(store)
    dci = sorted(client.get_metric_history(store["ok"], "val/dci_reg.disentanglement"), key=lambda m: m.step)
    assert [(m.step, m.value) for m in dci] == [(5, 0.05), (10, 0.1), (20, 0.2), (30, 0.3), (40, 0.4)]
    assert len(client.get_metric_history(store["ok"], "val/heldout_reconstruction_mse")) == 5
    metrics = client.get_run(store["ok"]).data.metrics
    assert not [key for key in metrics if key.startswith("train/") and key not in ("train/loss", "train/kl")]


def test_final_scores_and_timings_are_metrics_with_mlflow_names(store):
    metrics = _client(store).get_run(store["ok"]).data.metrics
    assert metrics["dci_reg.disentanglement"] == 0.75
    assert metrics["reconstruction.mse"] == 0.01
    assert metrics["time/train_s"] == 1.5 and metrics["time/metrics_s/dci_reg"] == 0.4


def test_score_keys_map_to_valid_metric_names():
    assert metric_name("dci@reg.disentanglement") == "dci_reg.disentanglement"
    assert metric_name("counterfactual@probe.error") == "counterfactual_probe.error"
    assert metric_name("mig.score") == "mig.score"


def test_run_statuses_follow_the_cells_and_the_suite(store):
    client = _client(store)
    assert client.get_run(store["ok"]).info.status == "FINISHED"
    assert client.get_run(store["failed"]).info.status == "FAILED"
    assert client.get_run(store["parent"]).info.status == "FINISHED"


def test_a_failed_cell_carries_its_error_tag(store):
    tags = _client(store).get_run(store["failed"]).data.tags
    assert tags["crlbench.status"] == "failed"
    assert tags["crlbench.error"] == "FloatingPointError: loss 'kl' is nan at step 7"
    assert "Traceback" in tags["mlflow.note.content"]


def test_cell_tags_record_hash_commit_and_versions(store):
    tags = _client(store).get_run(store["ok"]).data.tags
    assert tags["crlbench.cell_hash"] == "aaaa000000000000"
    assert tags["crlbench.git_commit"] == "abc123" and tags["crlbench.lib.torch"] == "2.5.0"


def test_cell_artifacts_are_uploaded_without_the_checkpoint(store):
    client = _client(store)
    top = {item.path for item in client.list_artifacts(store["ok"])}
    assert {"result.json", "history.json", "metrics"} <= top and "checkpoint" not in top
    assert {item.path for item in client.list_artifacts(store["ok"], "metrics")} == {"metrics/dci@reg.json", "metrics/dci@reg.npz"}
    assert {item.path for item in client.list_artifacts(store["failed"])} == {"result.json"}


def test_artifacts_live_beside_the_sqlite_store(store):
    artifact_uri = _client(store).get_run(store["ok"]).info.artifact_uri
    assert artifact_uri.startswith((store["workdir"].resolve() / "mlartifacts").as_uri())


def test_the_parent_run_holds_the_config_and_cell_counts(store):
    client = _client(store)
    parent = client.get_run(store["parent"])
    assert parent.data.metrics == {"cells_ok": 1.0, "cells_failed": 1.0, "cells_cached": 0.0, "cells_elsewhere": 0.0,
                                   "cells_not_applicable": 0.0}
    assert parent.data.tags["crlbench.version"] and parent.data.tags["crlbench.git_commit"] == "abc123"
    paths = {item.path for item in client.list_artifacts(store["parent"])}
    assert "suite.json" in paths and "config" in paths


def test_an_escaping_exception_fails_the_parent_run(store):
    with pytest.raises(RuntimeError, match="boom"):
        with SuiteTracker(store["uri"], "tracking-crash", {}) as tracker:
            raise RuntimeError("boom")
    assert _client(store).get_run(tracker.parent_run_id).info.status == "FAILED"


def test_an_mlflow_error_while_logging_a_cell_is_a_warning(store, caplog, monkeypatch):
    from mlflow.exceptions import MlflowException

    record = _record("cccc000000000000", 2, "ok")
    with SuiteTracker(store["uri"], "tracking-broken", {}) as tracker:
        def broken(*args, **kwargs):
            raise MlflowException("database is locked")

        monkeypatch.setattr(tracker._client, "log_batch", broken)
        with caplog.at_level(logging.WARNING, logger="crlbench.tracking.mlflow_runs"):
            assert tracker.log_cell(record, store["workdir"] / "missing") is None
    assert "database is locked" in caplog.text and "pendulum/beta_vae/seed2" in caplog.text
    child = _client(store).search_runs([tracker.experiment_id], f"tags.mlflow.parentRunId = '{tracker.parent_run_id}'")
    assert [run.info.status for run in child] == ["FAILED"]


def test_check_tracking_accepts_a_working_sqlite_store(store):
    check_tracking(store["uri"])


def test_check_tracking_fails_fast_on_an_unreachable_server():
    start = time.perf_counter()
    with pytest.raises(TrackingUnavailable, match="http://127.0.0.1:9"):
        check_tracking("http://127.0.0.1:9")
    assert time.perf_counter() - start < 10


def test_check_tracking_gives_up_on_a_server_that_never_answers():
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        uri = f"http://127.0.0.1:{silent.getsockname()[1]}"
        start = time.perf_counter()
        with pytest.raises(TrackingUnavailable, match=uri):
            check_tracking(uri, timeout_s=1)
    assert time.perf_counter() - start < 5


def test_check_tracking_fails_fast_on_an_unreachable_database_and_hides_the_password():
    with pytest.raises(TrackingUnavailable) as caught:
        check_tracking("postgresql+psycopg2://crl:secret@127.0.0.1:9/crlbench", timeout_s=2)
    assert "127.0.0.1:9" in str(caught.value) and "secret" not in str(caught.value)


@pytest.mark.parametrize("uri", ["file:///tmp/mlruns", "./mlruns"])
def test_check_tracking_refuses_file_stores(uri):
    with pytest.raises(TrackingUnavailable, match="file stores"):
        check_tracking(uri)


def test_check_tracking_refuses_an_unwritable_sqlite_path(tmp_path):
    (tmp_path / "a_file").write_text("not a folder")
    uri = f"sqlite:///{tmp_path}/a_file/mlflow.db"
    with pytest.raises(TrackingUnavailable, match="cannot write the SQLite file") as caught:
        check_tracking(uri)
    assert uri in str(caught.value)


def test_check_tracking_names_a_read_only_database_in_one_line(tmp_path, monkeypatch):
    """Issue 24: a read-only mlflow.db (a non-root user) gave a 91-line SQLAlchemy traceback and an
    "autoflush" hint. Both ways it shows are refused before any work, naming the file: a file this user may
    not write (os.access), and one SQLite opens read-only (simulated as root, who may write any file)."""
    import sqlite3

    from crlbench.tracking import store  # where the check lives

    database = tmp_path / "mlflow.db"
    check_tracking(f"sqlite:///{database}")  # a working store, tables created
    real_access = os.access
    monkeypatch.setattr(store.os, "access", lambda path, mode: False if Path(path) == database
                        else real_access(path, mode))
    with pytest.raises(TrackingUnavailable) as caught:
        check_tracking(f"sqlite:///{database}")
    assert str(caught.value) == (f"the tracking database {database} is read-only for this user; make it (and its "
                                 f"folder) writable, or give another --tracking-uri")
    monkeypatch.setattr(store.os, "access", real_access)
    real_connect = sqlite3.connect
    monkeypatch.setattr(store.sqlite3, "connect", lambda path, **kwargs: real_connect(
        f"file:{path}?mode=ro", uri=True, **kwargs))
    with pytest.raises(TrackingUnavailable, match="read-only for this user") as caught:
        check_tracking(f"sqlite:///{database}")
    assert str(database) in str(caught.value) and "\n" not in str(caught.value)
    monkeypatch.setattr(store.sqlite3, "connect", real_connect)
    with real_connect(database) as connection:  # the probe left no table behind
        assert not connection.execute("SELECT name FROM sqlite_master WHERE name = ?",
                                      (store.WRITE_PROBE,)).fetchall()


def test_check_tracking_refuses_a_file_that_is_not_a_database(tmp_path):
    (tmp_path / "mlflow.db").write_text("x" * 200)
    with pytest.raises(TrackingUnavailable, match="not a database"):
        check_tracking(f"sqlite:///{tmp_path}/mlflow.db")


def test_ui_command_binds_localhost_to_the_workdir_store(tmp_path):
    argv = ui_command(tmp_path, port=5123)
    assert argv[argv.index("--host") + 1] == "127.0.0.1"
    assert argv[argv.index("--port") + 1] == "5123" and argv[argv.index("--workers") + 1] == "1"
    assert f"sqlite:///{tmp_path.resolve()}/mlflow.db" in argv


def test_importing_tracking_does_not_import_mlflow():
    code = "import sys, crlbench.tracking.mlflow_runs; assert 'mlflow' not in sys.modules, 'mlflow imported'"
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parent.parent)


# --- one store for many launchers, runs of dead invocations, each record logged once -------------

CHECK = "import sys; from crlbench.tracking.mlflow_runs import check_tracking; check_tracking(sys.argv[1])"


def test_launchers_started_together_create_a_fresh_store_once(tmp_path):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    checks = [subprocess.Popen([sys.executable, "-c", CHECK, uri], env=env, stderr=subprocess.PIPE, text=True)
              for _ in range(2)]
    errors = [process.communicate(timeout=300)[1] for process in checks]
    assert [process.returncode for process in checks] == [0, 0], errors


def test_runs_are_born_with_their_invocation(store):
    tags = _client(store).get_run(store["ok"]).data.tags
    assert tags["crlbench.invocation.pid"] == str(os.getpid()) and tags["crlbench.invocation.host"]
    parent = _client(store).get_run(store["parent"]).data.tags
    assert parent["crlbench.invocation"] == tags["crlbench.invocation"]


def test_a_rerun_closes_only_the_runs_whose_invocation_is_dead(store, tmp_path, caplog):
    from crlbench.suites.lease import Holder, Leases, invocation_lease
    from crlbench.tracking.mlflow_runs import close_dead_runs, invocation_tags

    client, workdir, experiment = _client(store), tmp_path.resolve(), "crlbench/tracking-dead"
    experiment_id = client.create_experiment(experiment)
    me = Holder.current()
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                              text=True).stdout.strip()
    gone = Holder("gone00000000", me.host, int(dead_pid), "-", me.boot_id, me.pid_namespace)
    remote = Holder("remote000000", "another-machine", int(dead_pid), "-")
    with Leases() as live_leases:  # another invocation of this work directory, alive
        live_leases.acquire(invocation_lease(workdir, live_leases.holder.invocation))
        runs = {
            "dead here": invocation_tags(gone, workdir),  # its invocation lease is gone
            "dead process": invocation_tags(gone, workdir / "elsewhere"),  # another workdir, its pid ended
            "before tags": {},  # started by a crlbench from before invocation tags
            "alive": invocation_tags(live_leases.holder, workdir),
            "another machine": invocation_tags(remote, Path("/far/away")),  # cannot be judged: left alone
        }
        ids = {name: client.create_run(experiment_id, run_name=name, tags=tags).info.run_id for name, tags in runs.items()}
        with caplog.at_level(logging.WARNING, logger="crlbench.tracking.mlflow_runs"):
            closed = close_dead_runs(store["uri"], experiment, me, workdir)
    assert set(closed) == {ids["dead here"], ids["dead process"], ids["before tags"]}
    statuses = {name: client.get_run(run_id).info.status for name, run_id in ids.items()}
    assert statuses == {"dead here": "KILLED", "dead process": "KILLED", "before tags": "KILLED",
                        "alive": "RUNNING", "another machine": "RUNNING"}
    assert "closed run dead here" in caplog.text and "its invocation gone00000000 has ended" in caplog.text
    assert f"its process {dead_pid} has ended" in client.get_run(ids["dead process"]).data.tags["crlbench.closed_by"]


def test_a_record_is_logged_once_and_a_half_logged_run_is_replaced(store, tmp_path):
    from crlbench.tracking.mlflow_runs import MARKER, logged_run

    client = _client(store)
    record = _record("dddd000000000000", 3, "ok")
    folder = _cell_folder(tmp_path, record)
    with SuiteTracker(store["uri"], "tracking-once", {}) as tracker:
        half = client.create_run(tracker.experiment_id, tags={"crlbench.cell_hash": record["hash"],
                                                              "crlbench.finished_at": PROVENANCE["finished_at"]})
        client.set_terminated(half.info.run_id, status="KILLED")  # as close_dead_runs leaves a half-logged run
        first = tracker.log_cell_once(record, folder)
        assert first not in (None, half.info.run_id)
        assert logged_run(folder, store["uri"], "crlbench/tracking-once", record) == first
        assert tracker.log_cell_once(record, folder) == first  # from mlflow.json
        (folder / MARKER).unlink()  # as when the launcher died after logging, before noting it
        assert tracker.log_cell_once(record, folder) == first  # found in MLflow, noted again
        assert (folder / MARKER).exists()
        newer = {**record, "provenance": {**PROVENANCE, "finished_at": "2026-02-03T04:05:06+00:00"}}
        second = tracker.log_cell_once(newer, folder)  # the cell evaluated again: a new record, a new run
        assert second != first
    finished = client.search_runs([tracker.experiment_id], "attributes.status = 'FINISHED'")
    assert sorted(run.info.run_id for run in finished) == sorted([first, second, tracker.parent_run_id])


def test_a_second_ingest_of_a_logged_record_does_not_count_it_again(store, tmp_path):
    """Two ``suite --ingest`` at once each count the runs they created, not the ones the other created
    (issue 24: "logged 6" and "logged 7" for 10 cells): the second finds the run and says it created none."""
    from crlbench.tracking.mlflow_runs import MARKER

    record = _record("eeee000000000000", 3, "ok")
    folder = _cell_folder(tmp_path, record)
    with SuiteTracker(store["uri"], "tracking-ingest", {}) as first_ingest:
        run_id, created = first_ingest.log_cell_if_new(record, folder)
        assert run_id is not None and created
    (folder / MARKER).unlink()  # the other invocation reads the experiment, not the note
    with SuiteTracker(store["uri"], "tracking-ingest", {}) as second_ingest:
        assert second_ingest.log_cell_if_new(record, folder) == (run_id, False)
        assert second_ingest.log_cell_if_new(record, folder) == (run_id, False)  # from mlflow.json now
