"""The committed standard leaderboard is rebuilt from its committed records, and those records are a
work directory in which a later run resumes only the cells still missing."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd

from crlbench.suites.results import load_records
from crlbench.suites.suite import plan
from crlbench.suites.suite_config import load_suite

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "configs" / "suites" / "standard.yaml"
STANDARD = ROOT / "reports" / "standard"


def test_every_cell_of_the_standard_suite_has_a_committed_record():
    config = load_suite(SUITE)
    planned = plan(config, STANDARD)
    assert len(planned) == len(config.cells()) == 128  # 4 methods and 4 reference rows x 2 datasets x 8 seeds
    assert [p.cell.title for p in planned if p.state in ("pending", "stale")] == []  # nothing to rerun
    records = load_records(STANDARD / "cells")
    assert len(records) == 128 and all(record["status"] == "ok" for record in records)
    assert not list(STANDARD.glob("cells/*/checkpoint"))  # records and metric files, not checkpoints


def test_the_committed_leaderboard_is_rebuilt_from_the_committed_records(tmp_path):
    subprocess.run([sys.executable, "-m", "crlbench", "report", str(SUITE), "--workdir", str(STANDARD),
                    "--out", str(tmp_path)], check=True, capture_output=True)
    committed = pd.read_csv(STANDARD / "leaderboard.csv")
    rebuilt = pd.read_csv(tmp_path / "leaderboard.csv")
    keys = ["dataset", "label", "metric"]
    merged = committed.merge(rebuilt, on=keys, suffixes=("_committed", "_rebuilt"), validate="one_to_one")
    assert len(merged) == len(committed) == len(rebuilt)
    np.testing.assert_allclose(merged["mean_rebuilt"], merged["mean_committed"], rtol=1e-9, atol=1e-12)
    assert (merged["n_ok_rebuilt"] == merged["n_ok_committed"]).all()
