"""A report pools the cells of a (dataset, label) row only when they differ in their seed and nothing else
(crlbench.reports.pooling): it refuses cells at other budgets, image sizes or evaluation settings unless asked,
and pools cells that differ in their suite's name alone."""

import copy
import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from crlbench.cli import EXIT_INPUT, main
from crlbench.reports.pooling import MixedSettingsError, check_pooling, mixed_rows, pooled_notes
from crlbench.reports.report import write_report
from crlbench.suites.results import load_records
from report_fixture import write_cells

MCC = "mcc@pearson.mcc"
SMALL = {"codes": 4, "samples": 2}


def cells(root: Path, *, suite: str, seeds=(0, 1), epochs: int = 3, labels=("icm_vae", "beta_vae")) -> list[dict]:
    """Records of Pendulum cells of ``labels`` recorded by ``suite``, at ``epochs``."""
    write_cells(root, datasets=("pendulum",), labels=labels, seeds=seeds, failed=None, epochs=epochs, **SMALL)
    for path in Path(root).rglob("result.json"):
        record = json.loads(path.read_text())
        record["cell"]["suite"] = suite
        path.write_text(json.dumps(record))
    return load_records(root)


def one_folder(tmp_path: Path, *roots: Path) -> Path:
    """The cell folders of ``roots`` copied into one work directory (as several suites leave it)."""
    for index, root in enumerate(roots):
        for folder in (root / "cells").iterdir():
            shutil.copytree(folder, tmp_path / "runs" / "cells" / f"{folder.name}{index}")
    return tmp_path / "runs"


def test_cells_at_two_budgets_in_one_row_are_refused_naming_the_row_setting_values_seeds_and_suites(tmp_path):
    records = cells(tmp_path / "smoke", suite="smoke", epochs=6) + cells(tmp_path / "quick", suite="quick",
                                                                          seeds=(0, 1, 2), epochs=300)
    with pytest.raises(MixedSettingsError) as raised:
        write_report(records, tmp_path / "report", title="mixed", metrics=[MCC])
    message = str(raised.value)
    assert "pendulum / icm_vae:" in message and "pendulum / beta_vae:" in message
    assert "budget.epochs: 6 (seeds 0, 1; suite smoke); 300 (seeds 0-2; suite quick)" in message
    assert "--suite NAME" in message and "here: quick, smoke" in message and "--pool" in message
    assert "pool=True" in message
    assert not (tmp_path / "report").exists()


def test_suites_that_differ_in_their_name_alone_pool_into_one_row(tmp_path):
    records = cells(tmp_path / "a", suite="first", seeds=(0, 1)) + cells(tmp_path / "b", suite="second", seeds=(2, 3))
    assert mixed_rows(records) == []
    write_report(records, tmp_path / "report", title="shared", metrics=[MCC])
    leaderboard = pd.read_csv(tmp_path / "report" / "leaderboard.csv")
    assert set(leaderboard["n_ok"]) == {4}  # one row per label, its seeds from both suites


def test_pooling_on_request_reports_and_notes_what_it_pooled(tmp_path):
    records = cells(tmp_path / "a", suite="smoke", epochs=6, labels=("icm_vae",)) + \
        cells(tmp_path / "b", suite="quick", seeds=(2,), epochs=300, labels=("icm_vae",))
    write_report(records, tmp_path / "report", title="pooled", metrics=[MCC], pool=True)
    assert "pendulum / icm_vae pools cells whose settings differ (pooled on request): budget.epochs 6, 300." \
        in (tmp_path / "report" / "leaderboard.md").read_text()


def test_image_size_and_evaluation_differences_are_named(tmp_path):
    records = cells(tmp_path / "a", suite="one", labels=("icm_vae",))
    other = copy.deepcopy(records[0])
    other["cell"]["seed"] = 5
    other["cell"]["identity"]["dataset"]["params"]["size"] = 64
    other["cell"]["evaluation"]["n_test"] = 5000
    (row,) = mixed_rows(records + [other])
    assert list(row.settings) == ["dataset.params.size", "evaluation.n_test"]
    assert [value.text for value in row.settings["dataset.params.size"]] == ["8", "64"]
    assert row.settings["evaluation.n_test"][1].seeds == (5,)


def test_a_metric_one_suite_adds_is_no_difference_but_its_options_are(tmp_path):
    records = cells(tmp_path / "a", suite="one", labels=("icm_vae",))
    added = copy.deepcopy(records[0])
    added["cell"]["seed"] = 7
    added["cell"]["metrics"].append({"name": "graph@card", "options": {}})
    assert mixed_rows(records + [added]) == []
    added["cell"]["metrics"][0]["options"] = {"n_estimators": 5}
    (row,) = mixed_rows(records + [added])
    assert list(row.settings) == ["metrics.dci@reg"]


def test_records_without_an_identity_compare_their_cells_fields(tmp_path):
    records = cells(tmp_path / "a", suite="one", labels=("icm_vae",))
    for record in records:
        del record["cell"]["identity"]
    records[1]["cell"]["budget"] = {**records[1]["cell"]["budget"], "batch_size": 128}
    (row,) = check_pooling(records, pool=True)
    assert list(row.settings) == ["budget.batch_size"]
    assert pooled_notes([row]) == ["pendulum / icm_vae pools cells whose settings differ (pooled on request): "
                                   "budget.batch_size 64, 128."]


# --- the command line ----------------------------------------------------------------------------


@pytest.fixture()
def mixed_workdir(tmp_path):
    cells(tmp_path / "smoke", suite="smoke", epochs=6, labels=("icm_vae",))
    cells(tmp_path / "quick", suite="quick", seeds=(0, 1, 2), epochs=300, labels=("icm_vae",))
    return one_folder(tmp_path, tmp_path / "smoke", tmp_path / "quick")


def test_the_report_command_refuses_to_pool_and_makes_no_folder(mixed_workdir, tmp_path, capsys):
    assert main(["report", str(mixed_workdir), "--out", str(tmp_path / "report")]) == EXIT_INPUT
    error = capsys.readouterr().err
    assert error.startswith("crlbench: error: 1 row would pool cells whose settings differ")
    assert "budget.epochs: 6 (seeds 0, 1; suite smoke); 300 (seeds 0-2; suite quick)" in error
    assert not (tmp_path / "report").exists()


def test_the_report_command_reports_one_suite_or_pools_on_request(mixed_workdir, tmp_path, capsys):
    assert main(["report", str(mixed_workdir), "--suite", "quick", "--out", str(tmp_path / "quick")]) == 0
    assert "(3 cells)" in capsys.readouterr().out
    assert main(["report", str(mixed_workdir), "--pool", "--out", str(tmp_path / "pooled")]) == 0
    assert "(5 cells)" in capsys.readouterr().out
    assert "pooled on request" in (tmp_path / "pooled" / "leaderboard.md").read_text()


def test_the_report_command_names_the_suites_there_are_when_one_is_absent(mixed_workdir, tmp_path, capsys):
    assert main(["report", str(mixed_workdir), "--suite", "paper", "--out", str(tmp_path / "r")]) == EXIT_INPUT
    assert "no cell of suite paper; the suites recorded there: quick, smoke" in capsys.readouterr().err
