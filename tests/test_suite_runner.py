"""The suite runner on a tiny suite: records, caching, resume, failures and methods from plugins."""

import json
import os
import platform
import sys

import numpy as np
import pytest

from crlbench.suites.results import cell_dir, load_records, read_result
from crlbench.suites.suite import plan, run_suite
from crlbench.suites.suite_config import load_suite
from suite_fixture import PLUGINS, write_suite


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """The tiny suite run once: (config, workdir, summary)."""
    directory = tmp_path_factory.mktemp("tiny")
    config = load_suite(write_suite(directory))
    summary = run_suite(config, directory / "work", progress=False)
    return config, directory / "work", summary


def test_every_cell_writes_an_ok_record_with_scores_and_provenance(finished):
    config, workdir, summary = finished
    assert (summary.ok, summary.failed, summary.cached) == (2, 0, 0)
    for cell in config.cells():
        record = read_result(cell_dir(workdir, cell.hash))
        assert record["status"] == "ok" and record["hash"] == cell.hash
        assert record["cell"]["label"] == cell.label and record["cell"]["seed"] == 0
        assert 0 <= record["scores"]["dci@reg.disentanglement"] <= 1
        assert 0 <= record["scores"]["mcc@pearson.mcc"] <= 1
        assert record["scores"]["reconstruction.mse"] > 0
        assert record["history"]["steps"] == 3 and record["history"]["epochs"][0]["loss"] > 0
        assert record["history"]["epochs"][0]["heldout_reconstruction_mse"] > 0  # the per-epoch monitor
        (reading,) = record["history"]["evaluations"]  # 3 steps: one reading, at the end of the budget
        assert reading["step"] == 3 and 0 <= reading["scores"]["dci@reg.disentanglement"] <= 1
        assert record["history"]["monitor"]["source"].startswith("generated")  # Pendulum on test: never test rows
        assert record["convergence"]["rule"] and "converged" in record["convergence"]
        if record["schedule"] is None:  # beta-VAE: one reading is too few to judge
            assert record["convergence"]["converged"] is None and "too short" in record["convergence"]["reason"]
        else:  # ICM-VAE's reference warm-up does not finish in 3 steps
            assert record["convergence"]["converged"] is False and "did not finish" in record["convergence"]["reason"]
        assert record["factors"] == ["pendulum_angle", "light_position", "shadow_length", "shadow_position"] or \
            len(record["factors"]) == 4
        provenance = record["provenance"]
        assert {"torch", "numpy", "scikit-learn"} <= set(provenance["versions"])
        assert "git_commit" in provenance and provenance["finished_at"]
        assert set(record["timings"]) >= {"train_s", "encode_s", "metrics_s", "total_s"}
        assert record["ran_on"] == {"executor": "local", "host": platform.node(), "task_id": str(os.getpid())}


def test_each_cell_stores_its_latents_metric_matrices_and_intervention_grid(finished):
    config, workdir, _ = finished
    directory = cell_dir(workdir, config.cells()[1].hash)  # icm_vae: 4 concepts x 4 dims
    with np.load(directory / "latents.npz") as latents:
        assert latents["z_train"].shape == (60, 16) and latents["z_test"].shape == (40, 16)
    with np.load(directory / "metrics" / "dci@reg.npz") as matrices:
        assert matrices["importance"].shape == (4, 4)  # one code per factor (the factor_codes representation)
    with np.load(directory / "interventions.npz") as grid:
        assert grid["source"].shape == (2, 32, 32, 3)
        assert grid["truth"].shape == grid["model"].shape == (4, 2, 32, 32, 3)
        assert grid["truth"].dtype == np.uint8


def test_every_model_is_scored_on_one_code_per_factor_and_the_record_says_how(finished):
    """An aligned model's 4-dim concept blocks are reduced to their means, an unaligned model's matched
    codes are taken: both give the latent metrics 4 codes, and the record and each metric name the rule."""
    config, workdir, _ = finished
    beta_vae, icm_vae = (read_result(cell_dir(workdir, cell.hash)) for cell in config.cells())
    assert beta_vae["representation"]["kind"] == icm_vae["representation"]["kind"] == "factor_codes"
    assert beta_vae["representation"]["codes"] == icm_vae["representation"]["codes"] == 4
    assert icm_vae["representation"]["rule"] == "concept block mean"
    assert beta_vae["representation"]["rule"].startswith("matched code")
    assert icm_vae["metrics"]["dci@reg"]["info"]["representation"]["kind"] == "factor_codes"
    with np.load(cell_dir(workdir, config.cells()[1].hash) / "latents.npz") as latents:
        block_means, factors = latents["z_test"].reshape(-1, 4, 4).mean(axis=2), latents["y_test"]
    from crlbench.metrics import compute

    expected = compute("mcc@pearson", block_means, factors).scores["mcc"]
    assert icm_vae["scores"]["mcc@pearson.mcc"] == pytest.approx(expected, abs=1e-12)


def test_the_raw_representation_is_a_named_option(finished, tmp_path):
    config, workdir, _ = finished
    raw = load_suite(write_suite(tmp_path, evaluation={**config.evaluation.__dict__, "representation": "raw"}))
    run_suite(raw, workdir, progress=False)
    record = read_result(cell_dir(workdir, raw.cells()[1].hash))
    assert record["representation"] == {"kind": "raw", "rule": "every code, aligned codes first", "codes": 16,
                                        "block_size": 4}
    with np.load(cell_dir(workdir, raw.cells()[1].hash) / "metrics" / "dci@reg.npz") as matrices:
        assert matrices["importance"].shape == (16, 4)
    run_suite(config, workdir, progress=False)  # back to the default for the tests after this one


def test_the_record_says_what_each_method_is_given_and_its_latent_size(finished):
    config, workdir, _ = finished
    beta_vae, icm_vae = (read_result(cell_dir(workdir, cell.hash)) for cell in config.cells())
    assert beta_vae["given"] == [] and icm_vae["given"] == ["labels", "true graph"]
    assert beta_vae["latent_size"] == 16 and icm_vae["latent_size"] == 16
    assert icm_vae["schedule"]["kind"] == "absolute" and icm_vae["schedule"]["finished"] is False
    assert beta_vae["schedule"] is None


def test_a_rerun_skips_finished_cells(finished):
    config, workdir, _ = finished
    assert [p.state for p in plan(config, workdir)] == ["done", "done"]
    before = {p.cell.hash: (cell_dir(workdir, p.cell.hash) / "result.json").read_text() for p in plan(config, workdir)}
    summary = run_suite(config, workdir, progress=False)
    assert (summary.ok, summary.cached) == (0, 2)
    assert before == {h: (cell_dir(workdir, h) / "result.json").read_text() for h in before}


def test_an_added_metric_is_computed_from_stored_latents_without_training(finished, tmp_path):
    config, workdir, _ = finished
    bigger = load_suite(write_suite(tmp_path, metrics=["dci@reg", "mcc@pearson", "r2@linear"]))
    checkpoints = {c.hash: (cell_dir(workdir, c.hash) / "checkpoint" / "last.pt").stat().st_mtime_ns
                   for c in bigger.cells()}
    assert [p.state for p in plan(bigger, workdir)] == ["stale", "stale"]
    old = {c.hash: read_result(cell_dir(workdir, c.hash)) for c in bigger.cells()}
    summary = run_suite(bigger, workdir, progress=False)
    assert summary.ok == 2
    for cell in bigger.cells():
        record = read_result(cell_dir(workdir, cell.hash))
        assert "r2@linear.r2" in record["scores"]
        assert record["scores"]["dci@reg.disentanglement"] == old[cell.hash]["scores"]["dci@reg.disentanglement"]
        assert record["history"] == old[cell.hash]["history"]
        assert (cell_dir(workdir, cell.hash) / "checkpoint" / "last.pt").stat().st_mtime_ns == checkpoints[cell.hash]


def test_same_seed_same_scores_in_a_fresh_workdir(finished, tmp_path):
    config, workdir, _ = finished
    cell = config.cells()[0]
    again = run_suite(load_suite(write_suite(tmp_path, models=[{"name": "beta_vae"}])), tmp_path / "work",
                      progress=False)
    assert again.records[0]["hash"] == cell.hash
    first = read_result(cell_dir(workdir, cell.hash))["scores"]
    assert again.records[0]["scores"] == {key: first[key] for key in again.records[0]["scores"]}


@pytest.fixture
def plugin_path(monkeypatch):
    monkeypatch.syspath_prepend(str(PLUGINS))
    yield
    sys.modules.pop("crl_plugin_models", None)


def test_a_failing_cell_is_recorded_and_the_others_finish(tmp_path, plugin_path):
    path = write_suite(tmp_path, plugins=["crl_plugin_models"], models=[
        {"name": "linear_ae", "label": "exploding", "hyperparameters": {"explode_at_step": 1}},
        {"name": "linear_ae"}])
    summary = run_suite(load_suite(path), tmp_path / "work", progress=False)
    assert (summary.ok, summary.failed) == (1, 1)
    failed = [r for r in summary.records if r["status"] == "failed"][0]
    assert failed["cell"]["label"] == "exploding"
    assert failed["error"]["type"] == "TrainingDiverged" and "step 1" in failed["error"]["message"]
    assert [p.state for p in plan(load_suite(path), tmp_path / "work")] == ["failed", "done"]
    again = run_suite(load_suite(path), tmp_path / "work", progress=False)
    assert (again.ok, again.failed, again.cached) == (0, 1, 1)


def test_a_method_from_plugins_runs_in_worker_processes(tmp_path, plugin_path):
    path = write_suite(tmp_path, plugins=["crl_plugin_models"], seeds=[0, 1], models=[{"name": "linear_ae"}])
    summary = run_suite(load_suite(path), tmp_path / "work", workers=2, progress=False)
    assert (summary.ok, summary.failed) == (2, 0), summary.failures
    records = load_records(tmp_path / "work" / "cells")
    assert {r["cell"]["label"] for r in records} == {"linear_ae"}
    assert all(r["provenance"]["torch_threads"] == 1 for r in records)
    json.dumps(records)  # plain JSON all the way down


def test_a_method_from_plugins_appears_in_the_leaderboard(tmp_path, plugin_path):
    from crlbench.reports.report import write_report

    path = write_suite(tmp_path, plugins=["crl_plugin_models"], models=[{"name": "linear_ae"}, {"name": "beta_vae"}])
    summary = run_suite(load_suite(path), tmp_path / "work", progress=False)
    assert summary.ok == 2
    write_report(load_records(tmp_path / "work"), tmp_path / "report", title="plugins")
    table = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "linear_ae" in table and "beta_vae" in table


def test_a_val_split_is_held_out_of_training_when_the_dataset_has_none(tmp_path):
    from crlbench.core import registry
    from crlbench.suites.runner import training_and_evaluation_splits

    dataset = registry.dataset("pendulum", cache_dir=tmp_path, size=32)
    train, val = training_and_evaluation_splits(dataset, "val")
    full = dataset.split("train")
    assert len(train) + len(val) == len(full) and len(val) == round(0.1 * len(full))
    rows = {tuple(f) for f in train.factors}
    assert not any(tuple(f) in rows for f in val.factors)
    again, _ = training_and_evaluation_splits(dataset, "val")
    assert np.array_equal(again.factors, train.factors)


def test_a_val_cell_hashes_apart_from_its_test_twin(tmp_path):
    test_cell = load_suite(write_suite(tmp_path, name="t.yaml")).cells()[0]
    val_cell = load_suite(write_suite(tmp_path, name="v.yaml", evaluation={"split": "val", "n_train": 60,
                                                                          "n_test": 40})).cells()[0]
    assert val_cell.hash != test_cell.hash and val_cell.identity()["validation_holdout"] == 0.1


class Stop(Exception):
    pass


def test_epoch_hooks_see_the_model_and_propagated_errors_escape(tmp_path):
    from crlbench.suites.runner import run_cell

    cell = load_suite(write_suite(tmp_path, budget={"epochs": 2, "steps": 2, "batch_size": 16},
                                  models=[{"name": "icm_vae"}])).cells()[0]
    seen = []
    record = run_cell(cell, tmp_path / "work", epoch_hooks=[lambda model, epoch, losses: seen.append(
        (type(model).__name__, epoch, "loss" in losses))])
    assert record["status"] == "ok" and seen == [("ICMVAE", 1, True)]

    def stop(model, epoch, losses):
        raise Stop

    other = load_suite(write_suite(tmp_path, name="o.yaml", seeds=[5], models=[{"name": "icm_vae"}])).cells()[0]
    with pytest.raises(Stop):
        run_cell(other, tmp_path / "work", epoch_hooks=[stop], propagate=(Stop,))
    assert not (cell_dir(tmp_path / "work", other.hash) / "result.json").exists()


def test_a_refused_do_fails_the_interventional_parts_alone(tmp_path, monkeypatch):
    """CausalVAE refuses do() on a learned graph with a cycle: its representation scores stay, the
    interventional metric and the intervention grid are recorded as failed (a partial record)."""
    from crlbench.baselines.causalvae import CausalVAE
    from crlbench.suites.runner import run_cell

    monkeypatch.setattr(CausalVAE, "thresholded_graph", lambda self: 1 - np.eye(self.concepts, dtype=int))
    config = load_suite(write_suite(tmp_path, models=[{"name": "causal_vae"}],
                                    metrics=["dci@reg", {"name": "counterfactual@probe",
                                                         "options": {"n_samples": 8, "probe_samples": 40}}]))
    (cell,) = config.cells()
    record = run_cell(cell, tmp_path / "work")
    assert record["status"] == "ok" and record["partial"] is True
    assert set(record["metric_errors"]) == {"counterfactual@probe", "intervention_grid"}
    assert "cycle" in record["metric_errors"]["intervention_grid"]["message"]
    assert 0 <= record["scores"]["dci@reg.disentanglement"] <= 1
    assert [planned.state for planned in plan(config, tmp_path / "work")] == ["partial"]  # --retry-failed tries again
