"""Degeneracy checks derived in the report for records written before the checks (crlbench.reports.derived_checks):
reconstruction_vs_mean_image from the mean_image reference row and counterfactual_vs_copy from the copy reference
row on the same rows, with the rule of crlbench.core.degeneracy; a record with checks is left as it is, and a
missing or mismatched reference row leaves the check unknown."""

import copy

import pandas as pd
import pytest

from crlbench.core import degeneracy
from crlbench.core.records import flagged_checks
from crlbench.reports import report
from crlbench.reports.derived_checks import with_derived_checks
from crlbench.suites.results import load_records
from report_fixture import write_cells

RECON, CF, SHIFT = ("reconstruction.mse", "counterfactual@probe.counterfactual_mse",
                    "counterfactual@probe.non_descendant_shift")
MEAN_IMAGE_MSE, COPY_MSE = 0.016, 0.0096
SMALL = {"codes": 4, "samples": 2, "epochs": 3}


def references_and_methods(records: list[dict]) -> list[dict]:
    """mean_image and copy become reference rows (the issue's Pendulum numbers); dear is an old-style record (no
    checks) that reconstructs worse than the mean image and moves the non-descendants least; icm_vae carries
    checks (all passed) although its reconstruction is also worse than the mean image."""
    for record in records:
        cell = record["cell"]
        if cell["model"] == "mean_image":
            record["reference"] = {"for": ["reconstruction", "counterfactual@probe"], "architecture": "the mean image"}
            record["scores"][RECON] = MEAN_IMAGE_MSE
            record["checks"] = {name: degeneracy.check(None, [], "reference row: exempt from the checks")
                                for name in degeneracy.CHECK_NAMES}
        elif cell["model"] == "copy":
            record["reference"] = {"for": ["counterfactual@probe"], "architecture": "the source image"}
            record["scores"] = {CF: COPY_MSE, "counterfactual@probe.copy_mse": COPY_MSE}
        elif cell["model"] == "dear":
            record["scores"].update({RECON: 0.026, CF: 0.025, SHIFT: 1e-5 * (1 + cell["seed"])})
        else:
            record["scores"].update({RECON: 0.03, CF: 0.005, SHIFT: 0.01})
            record["checks"] = {name: degeneracy.check(False, degeneracy.invalidated(name), "recorded by the runner")
                                for name in degeneracy.CHECK_NAMES}
    return records


def synthetic(root, labels=("icm_vae", "dear", "mean_image", "copy")) -> list[dict]:
    write_cells(root, datasets=("pendulum",), labels=labels, seeds=range(3), failed=None, **SMALL)
    return references_and_methods(load_records(root))


def table_row(markdown: str, label: str) -> list[str]:
    line = next(line for line in markdown.split("## Leaderboard", 1)[1].splitlines() if line.startswith(f"| {label}"))
    return line.strip("| ").split(" | ")[3:]


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("derived")
    records = synthetic(root)
    out = root / "report"
    report.write_report(records, out, title="Derived", metrics=[RECON, CF, SHIFT])
    return records, out, (out / "leaderboard.md").read_text()


def test_an_old_record_worse_than_the_mean_image_is_flagged_and_its_shift_not_bold(built):
    records, out, markdown = built
    dear, icm_vae = table_row(markdown, "dear"), table_row(markdown, "icm_vae")
    for entry in dear:  # reconstruction.mse and every counterfactual score: flagged in all 3 seeds
        assert "§ 3/3" in entry and not entry.startswith("**"), entry
    assert icm_vae[2].startswith("**") and "§" not in " ".join(icm_vae)  # its own checks passed: not re-derived
    legend = markdown.split("## Paired differences", 1)[0]
    assert "reconstruction_vs_mean_image (3 cells, 3 of them derived from the reference rows" in legend
    assert "counterfactual_vs_copy (3 cells, 3 of them derived from the reference rows" in legend
    assert "posterior_collapse, constant_codes and inert_do are unknown for them" in legend
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    dear_flags = scores[(scores["method"] == "dear") & (scores["score"] == CF)]["flags"]
    assert set(dear_flags) == {"reconstruction_vs_mean_image;counterfactual_vs_copy"}
    assert set(scores.loc[scores["method"] == "icm_vae", "flags"]) == {""}
    assert all("checks" not in record for record in records if record["cell"]["model"] == "dear")  # input untouched


def test_the_derived_checks_follow_the_rule_of_the_runner_and_say_where_they_come_from(tmp_path):
    records = with_derived_checks(synthetic(tmp_path))
    dear = next(record for record in records if record["cell"]["model"] == "dear" and record["cell"]["seed"] == 1)
    mean_image = next(record for record in records
                      if record["cell"]["model"] == "mean_image" and record["cell"]["seed"] == 1)
    checks = dear["checks"]
    assert set(checks) == {"reconstruction_vs_mean_image", "counterfactual_vs_copy"}  # the other three: unknown
    reconstruction = checks["reconstruction_vs_mean_image"]
    rule = degeneracy.reconstruction_vs_mean_image(0.026, MEAN_IMAGE_MSE)
    assert {key: reconstruction[key] for key in rule if key != "reason"} == {
        key: value for key, value in rule.items() if key != "reason"}
    assert reconstruction["flagged"] is True and reconstruction["derived"] is True
    assert reconstruction["reference_cell"] == mean_image["hash"]
    assert f"reference row mean_image (cell {mean_image['hash']})" in reconstruction["reason"]
    assert "predates the checks" in reconstruction["reason"] and rule["reason"] in reconstruction["reason"]
    assert checks["counterfactual_vs_copy"]["flagged"] is True
    assert checks["counterfactual_vs_copy"]["reference_value"] == COPY_MSE
    assert set(flagged_checks(dear)[SHIFT]) == {"reconstruction_vs_mean_image", "counterfactual_vs_copy"}
    icm_vae = next(record for record in synthetic(tmp_path) if record["cell"]["model"] == "icm_vae")
    assert with_derived_checks([icm_vae])[0] is icm_vae  # a record with checks is returned as it is


def test_a_missing_or_mismatched_reference_row_leaves_the_check_unknown(tmp_path):
    records = synthetic(tmp_path)
    records = [record for record in records  # no mean_image row for seed 2
               if not (record["cell"]["model"] == "mean_image" and record["cell"]["seed"] == 2)]
    for record in records:  # the copy row of seed 1 ran counterfactual@probe on other samples
        if record["cell"]["model"] == "copy" and record["cell"]["seed"] == 1:
            record["cell"] = copy.deepcopy(record["cell"])
            next(spec for spec in record["cell"]["metrics"] if spec["name"] == "counterfactual@probe")["options"] = {
                "n_samples": 64}
    derived = {record["cell"]["seed"]: record["checks"] for record in with_derived_checks(records)
               if record["cell"]["model"] == "dear"}
    assert derived[2]["reconstruction_vs_mean_image"]["flagged"] is None
    assert "no mean_image reference row" in derived[2]["reconstruction_vs_mean_image"]["reason"]
    assert derived[2]["counterfactual_vs_copy"]["flagged"] is True
    assert derived[1]["counterfactual_vs_copy"]["flagged"] is None
    assert derived[1]["reconstruction_vs_mean_image"]["flagged"] is True
    assert all(check["derived"] for checks in derived.values() for check in checks.values())
