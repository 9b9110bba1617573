"""The results API: crlbench.scores.load_scores reads a work directory, a suite's cells or a report folder into one
DataFrame, one row per cell and score."""

import doctest
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

import crlbench.scores
from crlbench.core.errors import ConfigError
from crlbench.reports.pooling import MixedSettingsError
from crlbench.reports.report import write_report
from crlbench.scores import SCORES_COLUMNS, load_scores
from crlbench.suites.results import load_records
from report_fixture import write_cells

ROOT = Path(__file__).resolve().parents[1]
MCC = "mcc@pearson.mcc"
SMALL = {"codes": 4, "samples": 2, "epochs": 3}


def retag(root: Path, **cell) -> None:
    """Set ``cell`` keys (suite, label...) in every record under ``root``."""
    for path in Path(root).rglob("result.json"):
        record = json.loads(path.read_text())
        record["cell"].update(cell)
        path.write_text(json.dumps(record))


@pytest.fixture()
def workdir(tmp_path):
    write_cells(tmp_path / "runs", datasets=("pendulum",), labels=("icm_vae", "beta_vae"), seeds=(0, 1),
                failed=("pendulum", "beta_vae", 1), **SMALL)
    return tmp_path / "runs"


def test_a_work_directory_loads_one_row_per_cell_and_score(workdir):
    records = load_records(workdir)
    scores = load_scores(workdir)
    assert list(scores.columns) == SCORES_COLUMNS
    finished = [record for record in records if record["status"] == "ok"]
    assert len(scores) == sum(len(record["scores"]) for record in finished) + 1  # the failed cell: one empty row
    failed = scores[scores["status"] == "failed"]
    assert failed[["method", "seed", "score"]].values.tolist() == [["beta_vae", 1, ""]]
    assert failed["value"].isna().all()
    row = scores[(scores["method"] == "icm_vae") & (scores["seed"] == 1) & (scores["score"] == MCC)].iloc[0]
    record = next(r for r in records if r["cell"]["label"] == "icm_vae" and r["cell"]["seed"] == 1)
    assert row["value"] == record["scores"][MCC] and row["hash"] == record["hash"]
    assert (row["suite"], row["model"], row["dataset"], row["status"]) == ("synthetic", "icm_vae", "pendulum", "ok")
    assert (row["epochs"], row["batch_size"], row["image_size"]) == (3, 64, 8) and pd.isna(row["steps"])
    assert row["budget"] == "3 epochs of 64" and bool(row["converged"]) and not row["reference"]


def test_the_columns_have_fixed_dtypes(workdir):
    dtypes = load_scores(workdir).dtypes.astype(str).to_dict()
    assert dtypes["seed"] == "int64" and dtypes["value"] == "float64" and dtypes["reference"] == "bool"
    assert dtypes["converged"] == "boolean"
    assert {dtypes[column] for column in ("epochs", "steps", "batch_size", "image_size")} == {"Int64"}


def test_a_flagged_score_carries_the_names_of_its_checks(workdir):
    path = next(path for path in workdir.rglob("result.json") if json.loads(path.read_text())["status"] == "ok")
    record = json.loads(path.read_text())
    record["checks"] = {"posterior_collapse": {"flagged": True, "invalidates": ["mcc@*"], "reason": "kl ~ 0"},
                        "constant_codes": {"flagged": False, "invalidates": ["*"]}}
    path.write_text(json.dumps(record))
    scores = load_scores(workdir)
    mine = scores[scores["hash"] == record["hash"]].set_index("score")["flags"]
    assert mine[MCC] == "posterior_collapse" and mine["dci@reg.disentanglement"] == ""


def test_a_work_directory_and_the_report_written_from_it_load_the_same_frame(workdir, tmp_path):
    write_report(load_records(workdir), tmp_path / "report", title="same", metrics=[MCC])
    from_report = load_scores(tmp_path / "report")
    pd.testing.assert_frame_equal(from_report, load_scores(workdir))
    pd.testing.assert_frame_equal(load_scores(tmp_path / "report" / "scores.csv"), from_report)


def test_a_scores_csv_from_before_the_budget_columns_parses_the_budget_text(workdir, tmp_path):
    old = load_scores(workdir).drop(columns=["epochs", "steps", "batch_size", "image_size"])
    old["budget"] = "10 epochs or 2,000 steps of 128"
    old.to_csv(tmp_path / "scores.csv", index=False)
    scores = load_scores(tmp_path / "scores.csv")
    assert list(scores.columns) == SCORES_COLUMNS
    assert scores[["epochs", "steps", "batch_size"]].drop_duplicates().values.tolist() == [[10, 2000, 128]]
    assert scores["image_size"].isna().all()


def test_suites_and_labels_select_cells(workdir, tmp_path):
    write_cells(tmp_path / "other", datasets=("pendulum",), labels=("icm_vae",), seeds=(2,), failed=None, **SMALL)
    retag(tmp_path / "other", suite="long")
    shutil.copytree(next((tmp_path / "other" / "cells").iterdir()), workdir / "cells" / "from_long")
    assert set(load_scores(workdir)["suite"]) == {"synthetic", "long"}
    assert set(load_scores(workdir, suites=["long"])["seed"]) == {2}
    assert set(load_scores(workdir, labels=["beta_vae"])["method"]) == {"beta_vae"}
    with pytest.raises(ConfigError, match="no cell of suite quick; the suites recorded there: long, synthetic"):
        load_scores(workdir, suites=["quick"])


def test_check_settings_refuses_a_method_whose_cells_differ_in_more_than_their_seed(workdir, tmp_path):
    write_cells(tmp_path / "other", datasets=("pendulum",), labels=("icm_vae",), seeds=(2,), failed=None,
                **{**SMALL, "epochs": 30})
    shutil.copytree(next((tmp_path / "other" / "cells").iterdir()), workdir / "cells" / "long")
    assert len(load_scores(workdir))  # without the check: one row per cell, whatever its settings
    with pytest.raises(MixedSettingsError, match="budget.epochs: 3 .*; 30 "):
        load_scores(workdir, check_settings=True)


def test_a_folder_without_records_or_scores_is_named(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path}: no result records and no scores.csv"):
        load_scores(tmp_path)


def test_the_module_docstring_example_runs_on_the_committed_report(monkeypatch):
    monkeypatch.chdir(ROOT)
    result = doctest.testmod(crlbench.scores)
    assert result.attempted >= 4 and result.failed == 0
