"""Degeneracy checks derived in the report (crlbench.reports.derived_checks): for records written before the checks,
reconstruction_vs_mean_image from the mean_image reference row and counterfactual_vs_copy from the copy reference
row on the same rows, with the rule of crlbench.core.degeneracy; for every method record, latent_vs_untrained from
the untrained reference row on the same seed and rows. A record's recorded checks are kept, and a missing or
mismatched reference row leaves the check unknown."""

import copy
import json

import pandas as pd
import pytest

from crlbench.core import degeneracy
from crlbench.core.records import flagged_checks
from crlbench.reports import report, stats
from crlbench.reports.derived_checks import with_derived_checks
from crlbench.scores import load_scores
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
    assert "reconstruction_vs_mean_image (3 cells with a flagged score in these tables, 3 of them derived from the reference rows" in legend
    assert "counterfactual_vs_copy (3 cells with a flagged score in these tables, 3 of them derived from the reference rows" in legend
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
    assert set(checks) == {"reconstruction_vs_mean_image", "counterfactual_vs_copy",  # the other three: unknown
                           "latent_vs_untrained"}
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
    derived = with_derived_checks([icm_vae])[0]  # a record with checks keeps them; only latent_vs_untrained is added
    recorded = {name: check for name, check in derived["checks"].items() if name != "latent_vs_untrained"}
    assert recorded == icm_vae["checks"] and "latent_vs_untrained" not in icm_vae["checks"]
    assert derived["checks"]["latent_vs_untrained"]["flagged"] is None  # no untrained row in this report


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


# --- latent_vs_untrained: latent scores against the untrained reference row, per seed ---------------------------

MCC, DCI_D, DCI_MSE = "mcc@pearson.mcc", "dci@reg.disentanglement", "dci@reg.mse_test"
UNTRAINED_MCC, UNTRAINED_DCI_D, UNTRAINED_DCI_MSE = 0.59, 0.2, 5.0


def with_untrained(records: list[dict]) -> list[dict]:
    """untrained becomes a latent-only reference row scoring MCC 0.59 (as measured on Pendulum), DCI-D and a DCI
    test MSE; ivae carries recorded checks
    (all passed) and scores MCC 0.39 on seed 1 (0.7 on the others), DCI-D above the floor everywhere and a DCI test
    MSE worse than the floor's (a diagnostic: not compared); beta_vae predates the checks and is above everywhere."""
    for record in records:
        cell, scores = record["cell"], record["scores"]
        if cell["model"] == "untrained":
            record["reference"] = {"for": ["latent"], "architecture": "the shared backbone at its initial weights"}
            record["scores"] = {MCC: UNTRAINED_MCC, DCI_D: UNTRAINED_DCI_D, DCI_MSE: UNTRAINED_DCI_MSE}
            record["checks"] = {name: degeneracy.check(None, [], "reference row: exempt from the checks")
                                for name in degeneracy.CHECK_NAMES}
        elif cell["model"] == "ivae":
            scores.update({MCC: 0.39 if cell["seed"] == 1 else 0.7, DCI_D: 0.5, DCI_MSE: 10.0})
            record["checks"] = {name: degeneracy.check(False, degeneracy.invalidated(name), "recorded by the runner")
                                for name in degeneracy.CHECK_NAMES}
        else:
            scores.update({MCC: 0.8, DCI_D: 0.6, DCI_MSE: 1.0})
    return records


def latent_records(root, labels=("ivae", "beta_vae", "untrained")) -> list[dict]:
    write_cells(root, datasets=("pendulum",), labels=labels, seeds=range(3), failed=None, **SMALL)
    return with_untrained(load_records(root))


def by_model_seed(records: list[dict]) -> dict[tuple[str, int], dict]:
    return {(record["cell"]["model"], record["cell"]["seed"]): record for record in records}


def test_the_untrained_rule_flags_exactly_the_scores_not_better_than_the_floor():
    method = {MCC: 0.59, DCI_D: 0.5, "r2@linear.r2": 0.1, "x@y.error": 0.3, DCI_MSE: 99.0, "only.method": 0.0}
    untrained = {MCC: 0.59, DCI_D: 0.2, "r2@linear.r2": 0.4, "x@y.error": 0.2, DCI_MSE: 5.0, "only.untrained": 1.0}
    result = degeneracy.latent_vs_untrained(method, untrained, stats.direction)
    assert result["flagged"] is True  # a tie is not better (no margin); lower-is-better error 0.3 >= 0.2 too
    assert result["invalidates"] == ["mcc@pearson.mcc", "r2@linear.r2", "x@y.error"]  # not DCI-D, not the diagnostic
    assert "mcc@pearson.mcc 0.59 is not above the untrained backbone's 0.59" in result["reason"]
    assert "x@y.error 0.3 is not below the untrained backbone's 0.2" in result["reason"]
    assert (result["value"], result["reference_value"], result["threshold"]) == (0.59, 0.59, 0.59)
    passed = degeneracy.latent_vs_untrained({MCC: 0.6, DCI_D: 0.3}, {MCC: 0.59, DCI_D: 0.2}, stats.direction)
    assert passed["flagged"] is False and passed["invalidates"] == [] and passed["value"] == 0.6
    assert degeneracy.latent_vs_untrained({RECON: 0.1}, {MCC: 0.5}, stats.direction)["flagged"] is None


def test_a_method_below_the_untrained_row_on_a_seed_is_flagged_on_that_score_only(tmp_path):
    records = latent_records(tmp_path)
    derived = by_model_seed(with_derived_checks(records))
    check = derived[("ivae", 1)]["checks"]["latent_vs_untrained"]
    untrained = by_model_seed(records)[("untrained", 1)]
    assert check["flagged"] is True and check["invalidates"] == [MCC] and check["derived"] is True
    assert check["reference_cell"] == untrained["hash"]
    assert "mcc@pearson.mcc 0.39 is not above the untrained backbone's 0.59 on the same rows" in check["reason"]
    assert set(flagged_checks(derived[("ivae", 1)])) == {MCC}  # not DCI-D (above), not the DCI MSE (a diagnostic)
    assert set(derived[("ivae", 1)]["checks"]) == set(degeneracy.CHECK_NAMES) | {"latent_vs_untrained"}
    assert all(derived[("ivae", seed)]["checks"]["latent_vs_untrained"]["flagged"] is False for seed in (0, 2))
    assert all(derived[("beta_vae", seed)]["checks"]["latent_vs_untrained"]["flagged"] is False for seed in range(3))
    assert "checks" not in derived[("untrained", 0)] or "latent_vs_untrained" not in derived[("untrained", 0)]["checks"]

    out = tmp_path / "report"
    report.write_report(records, out, title="Untrained", metrics=[MCC, DCI_D])
    markdown = (out / "leaderboard.md").read_text()
    ivae, beta_vae = table_row(markdown, "ivae"), table_row(markdown, "beta_vae")
    assert "§ 1/3" in ivae[0] and "§" not in ivae[1] and "§" not in " ".join(beta_vae)
    legend = markdown.split("## Paired differences", 1)[0]
    assert ("latent_vs_untrained (1 cell with a flagged score in these tables, 1 of them derived from the reference rows; invalidates mcc@pearson.mcc;"
            in legend)
    assert "against the untrained reference row's on the same seed and rows" in legend
    assert "Fired for 1 of 6 method cells" in legend
    scores = pd.read_csv(out / "scores.csv", keep_default_na=False)
    flags = {(row.method, row.seed, row.score): row.flags for row in scores.itertuples()}
    assert flags[("ivae", 1, MCC)] == "latent_vs_untrained" and flags[("ivae", 1, DCI_D)] == ""
    assert flags[("ivae", 0, MCC)] == "" and flags[("beta_vae", 1, MCC)] == ""
    assert all(value == "" for (method, _, _), value in flags.items() if method == "untrained")


def test_without_a_matching_untrained_row_the_check_is_unknown_and_reference_rows_never_get_it(tmp_path):
    records = latent_records(tmp_path)
    for record in records:  # the untrained row of seed 1 evaluated other rows
        if record["cell"]["model"] == "untrained" and record["cell"]["seed"] == 1:
            record["cell"] = {**record["cell"], "evaluation": {**record["cell"]["evaluation"], "n_test": 7}}
    derived = by_model_seed(with_derived_checks(records))
    check = derived[("ivae", 1)]["checks"]["latent_vs_untrained"]
    assert check["flagged"] is None and check["reference_cell"] is None
    assert "no untrained reference row on the same rows" in check["reason"] and not flagged_checks(derived[("ivae", 1)])
    alone = by_model_seed(with_derived_checks([record for record in records if record["cell"]["model"] != "untrained"]))
    assert alone[("ivae", 1)]["checks"]["latent_vs_untrained"]["flagged"] is None
    assert not flagged_checks(alone[("ivae", 1)])
    references = [record for record in records if record["cell"]["model"] == "untrained"]
    assert all(after is before for after, before in zip(with_derived_checks(references), references))
    out = tmp_path / "report"
    report.write_report([record for record in records if record["cell"]["model"] != "untrained"], out,
                        title="No untrained", metrics=[MCC, DCI_D])
    markdown = (out / "leaderboard.md").read_text()
    assert "latent_vs_untrained" not in markdown and "§" not in markdown


def test_selecting_labels_in_the_results_api_keeps_the_checks_derived_from_the_reference_rows(tmp_path):
    """load_scores (and so crlbench compare) derives the checks from every record before it keeps the asked labels:
    the untrained row that flags ivae's seed 1 is not among them."""
    for record in latent_records(tmp_path):
        (tmp_path / "cells" / record["hash"] / "result.json").write_text(json.dumps(record))
    scores = load_scores(tmp_path, labels=["ivae"])
    assert set(scores["method"]) == {"ivae"}
    flags = {(row.seed, row.score): row.flags for row in scores.itertuples()}
    assert flags[(1, MCC)] == "latent_vs_untrained" and flags[(0, MCC)] == ""
