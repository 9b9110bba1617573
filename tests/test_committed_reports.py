"""The committed leaderboards are rebuilt from their committed records, and those records are a work
directory in which a later run resumes only the cells still missing.

``reports/standard_v1/`` is the first leaderboard (4 methods x 2 datasets), complete. ``reports/standard/``
is the full one (configs/suites/standard.yaml: 7 methods and 4 reference rows x 3 datasets x 8 seeds), run
over several sessions from one clean commit, each committing the cells finished so far; so are the other suites'
reports (``reports/environments/``, configs/suites/environments.yaml), checked once their first records land.
Those in COMPLETE must hold every cell of their suite: ``reports/standard/``, ``reports/tuned/`` (each method
with its reference and its tuned settings, Pendulum, 8 seeds) and its paired comparison, and the sensitivity
conditions."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from benchmark_fixture import load_benchmark
from crlbench.suites.results import load_records
from crlbench.suites.suite import plan
from crlbench.suites.suite_config import load_suite
from crlbench.tuning.tune import load_tune

ROOT = Path(__file__).resolve().parents[1]
SUITES = ROOT / "configs" / "suites"
REPORTS = ROOT / "reports"
FULL_CELLS = 264  # (7 methods + 4 reference rows) x 3 datasets x 8 seeds


def rebuilt_matches_committed(suite: Path, workdir: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-m", "crlbench", "report", str(suite), "--workdir", str(workdir),
                    "--out", str(out), "--no-figures"], check=True, capture_output=True)  # the numbers only
    assert not (out / "figures").exists()
    committed = pd.read_csv(workdir / "leaderboard.csv")
    rebuilt = pd.read_csv(out / "leaderboard.csv")
    keys = ["dataset", "label", "metric"]
    merged = committed.merge(rebuilt, on=keys, suffixes=("_committed", "_rebuilt"), validate="one_to_one")
    assert len(merged) == len(committed) == len(rebuilt)
    np.testing.assert_allclose(merged["mean_rebuilt"], merged["mean_committed"], rtol=1e-9, atol=1e-12)
    assert (merged["n_ok_rebuilt"] == merged["n_ok_committed"]).all()


def test_every_cell_of_the_first_standard_suite_has_a_committed_record():
    config = load_suite(SUITES / "standard_v1.yaml")
    planned = plan(config, REPORTS / "standard_v1")
    assert len(planned) == len(config.cells()) == 128  # 4 methods and 4 reference rows x 2 datasets x 8 seeds
    assert [p.cell.title for p in planned if p.state in ("pending", "stale")] == []  # nothing to rerun
    records = load_records(REPORTS / "standard_v1" / "cells")
    assert len(records) == 128 and all(record["status"] == "ok" for record in records)
    assert not list((REPORTS / "standard_v1").glob("cells/*/checkpoint"))  # records and metric files only


def test_the_first_standard_leaderboard_is_rebuilt_from_its_records(tmp_path):
    rebuilt_matches_committed(SUITES / "standard_v1.yaml", REPORTS / "standard_v1", tmp_path)


# Reports run over several sessions, each committing the cells finished so far: (suite file, report folder).
# A companion joins when its first records are committed.
IN_PROGRESS = {"standard": ("standard.yaml", "standard"), "environments": ("environments.yaml", "environments"),
               "environments_long": ("environments_long.yaml", "environments_long"),
               "tuned": ("tuned.yaml", "tuned"),  # its reference rows are the standard run's Pendulum cells
               **{f"sensitivity-{name}": (f"sensitivity/{name}.yaml", f"sensitivity/{name}")
                  for name in ("32px-short", "64px-short", "64px-long")}}  # 32px-long's cells are the standard's
# Reports that must hold every cell of their suite
COMPLETE = {"standard", "tuned", "sensitivity-32px-short", "sensitivity-64px-short", "sensitivity-64px-long"}


def in_progress(name: str) -> tuple[Path, Path]:
    suite, folder = IN_PROGRESS[name]
    if name != "standard" and not (REPORTS / folder / "cells").exists():
        pytest.skip(f"reports/{folder} has no committed records yet")
    return SUITES / suite, REPORTS / folder


@pytest.mark.parametrize("name", sorted(IN_PROGRESS))
def test_committed_records_are_the_suites_cells_from_one_clean_commit(name):
    suite, folder = in_progress(name)
    config = load_suite(suite)
    if name == "standard":
        assert len(config.cells()) == FULL_CELLS
    planned = {p.cell.hash: p.state for p in plan(config, folder)}
    records = load_records(folder / "cells")
    assert records, f"no committed record of the suite {suite.name}"
    assert {record["hash"] for record in records} <= set(planned)  # nothing from another suite or setting
    assert all(planned[record["hash"]] in ("done", "partial") for record in records)
    commits = {record["provenance"]["git_commit"] for record in records}
    assert len(commits) == 1 and not any(commit is None or "dirty" in commit for commit in commits), commits
    assert not list(folder.glob("cells/*/checkpoint"))
    if name in COMPLETE:
        assert [hash for hash, state in planned.items() if state not in ("done", "partial")] == []


@pytest.mark.parametrize("name", sorted(IN_PROGRESS))
def test_committed_reports_are_rebuilt_from_their_records(name, tmp_path):
    suite, folder = in_progress(name)
    if not (folder / "leaderboard.csv").exists():
        pytest.fail(f"reports/{folder.name} has records but no report: run crlbench report on them")
    rebuilt_matches_committed(suite, folder, tmp_path)


@pytest.mark.parametrize("page", ["docs/leaderboard.md", "README.md"])
def test_the_leaderboard_page_quotes_the_committed_report(page):
    """The leaderboard table in docs/leaderboard.md and in the README is benchmarks/leaderboard_summary.py's output
    for reports/standard."""
    summary = load_benchmark("leaderboard_summary")
    page = (ROOT / page).read_text()
    quoted = page.split("<!-- leaderboard-summary: start -->\n", 1)[1].split("<!-- leaderboard-summary: end -->", 1)[0]
    assert quoted == summary.summary(summary.load_leaderboard(REPORTS / "standard"))


TUNED_PAIRS = ("icm_vae", "causal_vae", "scm_vae", "dear", "beta_vae", "ivae", "ilcm")


def test_the_tuned_comparison_is_rebuilt_from_its_records(tmp_path):
    """reports/tuned/compare/: every method's reference settings against its tuned ones, paired over seeds."""
    labels = [argument for method in TUNED_PAIRS for argument in ("--labels", method, f"{method} (tuned)")]
    subprocess.run([sys.executable, "-m", "crlbench", "compare", str(SUITES / "tuned.yaml"), "--workdir",
                    str(REPORTS / "tuned"), *labels, "--out", str(tmp_path)], check=True, capture_output=True)
    committed = pd.read_csv(REPORTS / "tuned" / "compare" / "compare.csv")
    rebuilt = pd.read_csv(tmp_path / "compare.csv")
    assert set(committed["method"]) == {f"{method} vs {method} (tuned)" for method in TUNED_PAIRS}
    assert list(rebuilt[["dataset", "method", "score"]].itertuples(index=False)) == \
        list(committed[["dataset", "method", "score"]].itertuples(index=False))
    for column in ("mean_a", "mean_b", "difference", "p_value"):
        np.testing.assert_allclose(rebuilt[column], committed[column], rtol=1e-9, atol=1e-12)
    assert (rebuilt["n_pairs"] == committed["n_pairs"]).all()
    report = pd.read_csv(REPORTS / "tuned" / "leaderboard.csv").set_index(["dataset", "label", "metric"])["flagged"]
    for row in committed.itertuples():  # its flags are the report's, those derived from the reference rows included
        a, b = row.method.split(" vs ")
        assert (row.flagged_a, row.flagged_b) == (report[row.dataset, a, row.score], report[row.dataset, b, row.score])


# The tuned column's studies (configs/tune/<model>-pendulum.yaml), each committed as reports/tuning/<study>/: the
# study report (summary.json, trials.csv, figures) and its trials' records; configs/tuned/<study>.yaml its export.
TUNING = REPORTS / "tuning"
STUDIES = sorted(path.name for path in TUNING.iterdir() if path.is_dir()) if TUNING.exists() else []


@pytest.mark.parametrize("study", STUDIES)
def test_a_committed_study_recomputes_from_its_records_and_exports_its_best_trial(study):
    folder = TUNING / study
    config = load_tune(ROOT / "configs" / "tune" / f"{study}.yaml")
    trials = pd.read_csv(folder / "trials.csv")
    assert len(trials) == config.trials.n_trials and set(trials["state"]) == {"COMPLETE"}  # the shared budget, whole
    records = {record["hash"]: record for record in load_records(folder / "cells")}
    commits = {record["provenance"]["git_commit"] for record in records.values()}
    assert len(commits) == 1 and not any(commit is None or "dirty" in commit for commit in commits), commits
    for trial in trials.itertuples():  # a trial's value is the mean objective of its cells, one per tuning seed
        cells = trial.cells.split()
        assert sorted(records[cell]["cell"]["seed"] for cell in cells) == sorted(config.seeds)
        values = [config.objective.value(records[cell]["scores"], study) for cell in cells]
        assert np.mean(values) == pytest.approx(trial.value, rel=1e-12, abs=1e-12)
    best = trials.loc[trials["value"].idxmax() if config.objective.direction == "maximize" else trials["value"].idxmin()]
    assert json.loads((folder / "summary.json").read_text())["best"]["trial"] == best["number"]
    exported = yaml.safe_load((ROOT / "configs" / "tuned" / f"{study}.yaml").read_text())["hyperparameters"]
    for param in config.search_space:
        assert exported[param.name] == pytest.approx(best[f"param_{param.name}"], rel=1e-12)
