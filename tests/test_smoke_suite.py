"""The CI suite end to end: configs/suites/smoke.yaml with two workers, MLflow on SQLite, the report."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from crlbench.suites.results import load_records
from crlbench.suites.suite_config import load_suite

ROOT = Path(__file__).parent.parent
SMOKE = ROOT / "configs" / "suites" / "smoke.yaml"


def crlbench(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    return subprocess.run([sys.executable, "-m", "crlbench", *args], env=env, capture_output=True, text=True,
                          timeout=900)


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("smoke")
    run = crlbench("suite", str(SMOKE), "--workdir", str(workdir), "--workers", "2")
    assert run.returncode == 0, run.stdout + run.stderr
    report = crlbench("report", str(SMOKE), "--workdir", str(workdir), "--out", str(workdir / "report"))
    assert report.returncode == 0, report.stdout + report.stderr
    return workdir


def test_every_cell_of_the_smoke_suite_finishes(smoke):
    records = load_records(smoke / "cells")
    assert len(records) == len(load_suite(SMOKE).cells()) == 66  # (7 models + 4 reference rows) x 3 datasets x 2 seeds
    assert all(r["status"] == "ok" for r in records), [r["error"] for r in records if r["status"] != "ok"]
    assert not [r["cell"]["label"] for r in records if r.get("partial")]
    assert {r["cell"]["model"] for r in records} == {"icm_vae", "causal_vae", "dear", "beta_vae", "scm_vae", "ivae", "ilcm",
                                                     "copy", "mean_image", "supervised", "untrained"}
    graph = {(r["cell"]["model"], "graph@card.shd" in r["scores"], "graph@card" in r.get("not_applicable", {}))
             for r in records}  # scored where a model learns a graph, not applicable elsewhere, never failed
    assert graph == {("causal_vae", True, False), ("dear", True, False), ("ilcm", True, False),
                     *((model, False, True) for model in ("icm_vae", "beta_vae", "scm_vae", "ivae", "copy", "mean_image",
                                                          "supervised", "untrained"))}


def test_mlflow_holds_a_parent_run_and_a_child_run_per_cell(smoke):
    import mlflow

    mlflow.set_tracking_uri(f"sqlite:///{smoke / 'mlflow.db'}")
    runs = mlflow.search_runs(experiment_names=["crlbench/smoke"])
    children = runs[runs["tags.mlflow.parentRunId"].notna()]
    parents = runs[runs["tags.mlflow.parentRunId"].isna()]
    assert len(parents) == 1 and len(children) == 66
    assert set(children["tags.mlflow.parentRunId"]) == set(parents["run_id"])
    assert children["status"].eq("FINISHED").all()
    assert children["tags.crlbench.cell_hash"].nunique() == 66
    latent = children[~children["params.model"].isin(["copy", "mean_image"])]  # those two stand for do() alone
    assert latent.filter(like="metrics.dci").notna().all().all()


def test_the_report_writes_every_file(smoke):
    report = smoke / "report"
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "index.html"):
        assert (report / name).stat().st_size > 0, name
    text = (report / "leaderboard.md").read_text()
    for label in ("icm_vae", "causal_vae", "dear", "beta_vae"):
        assert label in text
    assert list((report / "figures").glob("*.png"))


def test_rerunning_the_finished_suite_trains_nothing(smoke):
    run = crlbench("suite", str(SMOKE), "--workdir", str(smoke), "--no-tracking")
    assert run.returncode == 0
    assert "0 ran, 66 already done, 0 failed" in run.stdout


def test_an_unreachable_tracking_server_fails_before_any_work(tmp_path):
    run = crlbench("suite", str(SMOKE), "--workdir", str(tmp_path), "--tracking-uri", "http://127.0.0.1:9")
    assert run.returncode == 2
    assert "127.0.0.1:9" in run.stderr
    assert not (tmp_path / "cells").exists()
