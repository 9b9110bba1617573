"""What the report says about each row (crlbench.reports.report): reference rows in their own group, flagged
scores marked and never bold, bold decided on matched seeds, intervals that a ± would misstate, paired
differences against the comparison method with the Holm family and its floor, rank tests that name their
population, no critical-difference diagram that cannot separate, scores.csv, and partial cells."""

import math
import re
import sys

import pandas as pd
import pytest

from crlbench.reports import report
from crlbench.suites.results import load_records
from report_fixture import write_cells

HIGH, LOW = "dci@reg.disentanglement", "counterfactual@probe.counterfactual_mse"
METRICS = [HIGH, LOW]
SMALL = {"codes": 4, "samples": 2, "epochs": 3}
COPY = "copy"
ARCHITECTURE = "no network: the counterfactual is the source image"


def section(markdown: str, title: str) -> str:
    return markdown.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def rows_of(markdown: str, dataset: str) -> dict[str, list[str]]:
    """The score cells of one dataset's leaderboard by row name (reference rows keep their tag)."""
    text = markdown.split("## Leaderboard", 1)[1].split(f"### {dataset}\n", 1)[1].strip("\n").split("\n\n", 1)[0]
    rows = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return {row[0].split(" ‡")[0]: row[3:] for row in rows[2:]}


def mutate(records: list[dict]) -> list[dict]:
    """copy becomes a reference row with the best CF MSE; causal_vae keeps the best CF MSE on pendulum from one
    seed of four; beta_vae's best-looking DCI-D on flow is flagged in two seeds by posterior_collapse; one
    icm_vae cell on flow is partial. The methods' records carry checks (as the runner writes them today), so
    none is derived from the copy row (crlbench.reports.derived_checks; tests/test_derived_checks.py)."""
    for record in records:
        cell = record["cell"]
        key = (cell["dataset"], cell["label"], cell["seed"])
        if cell["label"] != COPY:
            record["checks"] = {"counterfactual_vs_copy": {"flagged": False, "invalidates": ["counterfactual@probe.*"],
                                                           "reason": "recorded by the runner"}}
        if cell["label"] == COPY:
            record["reference"] = {"for": ["counterfactual@probe"], "architecture": ARCHITECTURE}
            record["not_applicable"] = {"dci@reg": "copy stands for counterfactual@probe only"}
            record["scores"] = {name: value for name, value in record["scores"].items() if not name.startswith("dci@")}
            record["scores"][LOW] = 1e-6 * (1 + cell["seed"])
            record["checks"] = {"posterior_collapse": {"flagged": None, "invalidates": ["dci@reg.*"], "reason": "n/a"}}
        elif key[:2] == ("pendulum", "causal_vae"):
            if cell["seed"] == 0:
                record["scores"][LOW] = 1e-5
            else:
                del record["scores"][LOW]
        elif key[:2] == ("flow", "beta_vae"):
            record["scores"][HIGH] = 0.99 + 0.001 * cell["seed"]
            record["checks"] = {"posterior_collapse": {
                "flagged": cell["seed"] < 2, "value": 0.001, "threshold": 0.01, "reference_value": None,
                "invalidates": ["dci@reg.*", "mcc@*"], "reason": "KL per code 0.001 nats below 0.01"}}
        elif key == ("flow", "icm_vae", 3):
            record["partial"] = True
            record["metric_errors"] = {"irs@dlib": {"type": "ValueError", "message": "broken"}}
    return records


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    root = tmp_path_factory.mktemp("rows")
    write_cells(root, datasets=("pendulum", "flow"), labels=("icm_vae", "causal_vae", "beta_vae", COPY),
                seeds=range(4), failed=None, **SMALL)
    records = mutate(load_records(root))
    out = root / "report"
    report.write_report(records, out, title="Rows", metrics=METRICS)
    return records, out, (out / "leaderboard.md").read_text()


def test_reference_rows_are_a_group_under_the_methods_marked_and_never_bold(rows):
    markdown = rows[2]
    table = rows_of(markdown, "pendulum")
    names = list(table)
    assert names[0] == "icm_vae" and set(names[1:3]) == {"causal_vae", "beta_vae"}  # the methods first
    assert names[3].startswith("*reference rows*") and names[4] == f"{COPY} (reference)"
    copy_cells = table[f"{COPY} (reference)"]
    assert copy_cells[0] == "n/a" and not copy_cells[1].startswith("**")  # the lowest CF MSE, not bold
    assert ARCHITECTURE in markdown.split("## Paired differences", 1)[0]  # the legend says what it runs


def test_reference_rows_are_never_tested_or_ranked(rows):
    markdown = rows[2]
    for title in ("Paired differences against icm_vae", "Average ranks across datasets",
                  "Average ranks within each dataset, across seeds"):
        assert COPY not in section(markdown, title), title
    effects = pd.read_csv(rows[1] / "effects.csv")
    assert COPY not in set(effects["label"])
    html = rows[1].joinpath("index.html").read_text()
    assert '<tbody class="references">' in html and "reference rows" in html


def test_a_mean_over_fewer_seeds_is_not_bold_over_one_over_more(rows):
    table = rows_of(rows[2], "pendulum")
    assert table["causal_vae"][1].endswith("(1/4)") and not table["causal_vae"][1].startswith("**")
    assert table["icm_vae"][1].startswith("**")  # best among the methods with all 4 seeds
    assert "fewer seeds than the most in its column is never bold" in rows[2]


def test_a_flagged_score_is_marked_k_of_n_and_never_bold_and_the_legend_names_the_check(rows):
    table = rows_of(rows[2], "flow")
    dci = table["beta_vae"][0]
    assert "§ 2/4" in dci and not dci.startswith("**")
    assert table["icm_vae"][0].startswith("**")
    assert "§" not in table["beta_vae"][1]  # posterior_collapse does not invalidate the CF MSE
    legend = rows[2].split("## Paired differences", 1)[0]
    assert "Checks that fired: posterior_collapse (2 cells" in legend and "KL per code" in legend
    assert "§ 2/4" in rows[1].joinpath("index.html").read_text()
    assert r"\S{} 2/4" in rows[1].joinpath("leaderboard.tex").read_text()


def test_the_degenerate_runs_table_names_each_flagged_method_its_check_seeds_and_reason(rows):
    """Only beta_vae on flow is flagged (posterior_collapse, seeds 0 and 1 of 4); copy is a reference row and
    never listed; unflagged checks are not listed."""
    text = section(rows[2], "Degenerate runs")
    lines = [line for line in text.splitlines() if line.startswith("| ") and "---" not in line]
    assert lines[0].startswith("| dataset | model | check | seeds |")
    assert lines[1:] == ["| flow | beta_vae | posterior_collapse | 2/4 | dci@reg.*, mcc@* | KL per code 0.001 nats "
                         "below 0.01 |"]
    html = rows[1].joinpath("index.html").read_text()
    assert '<table class="sortable degenerate">' in html and "<td>posterior_collapse</td>" in html


def rank_row(text: str, label: str) -> list[str]:
    """The cells of ``label``'s row in the first table of ``text``."""
    line = next(line for line in text.splitlines() if line.startswith(f"| {label}"))
    return line.strip("| ").split(" | ")[1:]


def test_ranks_and_paired_differences_of_a_flagged_score_say_so(rows):
    """beta_vae's DCI-D on flow is flagged in 2 of its 4 seeds: its rank across datasets reads § 2/8 (over both
    datasets' seeds), its rank across flow's seeds and its difference on flow § 2/4, each with a legend line;
    nothing is marked on pendulum, nor the unflagged CF MSE."""
    across = section(rows[2], "Average ranks across datasets")
    assert rank_row(across, "beta_vae")[0].endswith("§ 2/8") and "§" not in rank_row(across, "beta_vae")[1]
    assert "§" not in rank_row(across, "icm_vae")[0] and "§ k/n after a rank" in across
    within = section(rows[2], "Average ranks within each dataset, across seeds")
    pendulum, flow = within.split("### flow", 1)
    assert rank_row(flow, "beta_vae")[0].endswith("§ 2/4") and "§" not in pendulum
    effects = section(rows[2], "Paired differences against icm_vae")
    pendulum, flow = effects.split("### flow", 1)
    assert rank_row(flow, "beta_vae")[0].endswith("§ 2/4") and "§" not in pendulum
    assert "the difference involves a flagged score" in flow
    html = rows[1].joinpath("index.html").read_text()
    assert "§ 2/8" in html and "§ k/n after a rank" in html


def test_a_flagged_comparison_is_named_under_its_paired_differences(rows):
    from crlbench.reports import stats, tables

    frame = report.records_frame(rows[0])
    paired = stats.paired_tests(frame[~frame["reference"].astype(bool)], METRICS, reference="icm_vae")
    flags = {("flow", "icm_vae", HIGH): (1, 4)}
    flow = next(table for table in tables.effect_tables(paired, METRICS, flags) if table.dataset == "flow")
    assert any("icm_vae's own scores are flagged (dci@reg.disentanglement § 1/4)" in line for line in flow.legend)
    assert not any("§" in text for text in flow.cells.values())


def test_scores_csv_has_one_row_per_cell_and_score_with_flags_and_references(rows):
    records = rows[0]
    scores = pd.read_csv(rows[1] / "scores.csv", keep_default_na=False)
    assert list(scores.columns) == report.SCORES_COLUMNS
    assert len(scores) == sum(len(record["scores"]) for record in records)
    flagged = scores[(scores["method"] == "beta_vae") & (scores["dataset"] == "flow") & (scores["score"] == HIGH)]
    assert flagged.set_index("seed")["flags"].to_dict() == {0: "posterior_collapse", 1: "posterior_collapse",
                                                            2: "", 3: ""}
    assert set(scores.loc[scores["method"] == COPY, "reference"]) == {True}
    assert set(scores.loc[scores["method"] != COPY, "reference"]) == {False}
    assert set(scores["budget"]) == {"3 epochs of 64"} and set(scores["suite"]) == {"synthetic"}
    partial = scores[(scores["method"] == "icm_vae") & (scores["dataset"] == "flow") & (scores["seed"] == 3)]
    assert set(partial["status"]) == {"partial"}
    assert set(scores["converged"]) == {True}


def test_the_paired_differences_state_the_holm_family_and_the_smallest_adjusted_p(rows):
    text = section(rows[2], "Paired differences against icm_vae")
    assert "Holm family: each score on each dataset: the m comparisons of the other methods against icm_vae" in text
    assert "n = 4 matched seeds, m = 2 comparisons" in text and "min(1, 2 x 0.12) = 0.25" in text
    assert re.search(r"\| beta_vae \| -0\.\d+", text)  # beta_vae is worse than icm_vae on DCI-D in pendulum
    effects = pd.read_csv(rows[1] / "effects.csv")
    assert set(effects["comparison"]) == {"icm_vae"}
    assert {"mean_difference", "difference_low", "difference_high", "family_size", "smallest_p_holm"} <= set(effects)


def test_rank_tests_name_their_population_and_how_p_was_computed(rows):
    across = section(rows[2], "Average ranks across datasets")
    assert "blocks = datasets" in across and "exact permutation over all (k!)^N = 36 rank arrangements" in across
    within = section(rows[2], "Average ranks within each dataset, across seeds")
    assert "blocks = seeds" in within and "not other datasets" in within and "| matched seeds |" in within


def test_no_critical_difference_diagram_when_it_cannot_be_reached(rows):
    # 3 labels over 2 datasets: CD = 2.34 > k - 1 = 2
    across = section(rows[2], "Average ranks across datasets")
    assert "the critical difference 2.34 exceeds 2" in across and "no critical-difference diagram is drawn" in across
    assert not list((rows[1] / "figures").glob("cd_*.png"))


def test_a_reachable_critical_difference_is_drawn(tmp_path):
    # 3 labels over 3 datasets: CD = 1.91 <= 2
    write_cells(tmp_path, labels=("icm_vae", "causal_vae", "beta_vae"), seeds=range(2), failed=None, **SMALL)
    report.write_report(load_records(tmp_path), tmp_path / "report", title="cd", metrics=[HIGH])
    assert (tmp_path / "report" / "figures" / "cd_dci-reg-disentanglement.png").is_file()
    assert "no critical-difference diagram" not in (tmp_path / "report" / "leaderboard.md").read_text()


def test_a_partial_cell_reads_partial_in_the_protocol_box_and_its_list(rows):
    markdown = rows[2]
    assert "(31 finished, 1 partial (some metrics failed, the other scores stand), 0 failed)" in markdown
    assert "broken" in section(markdown, "Partial cells") and "None." in section(markdown, "Failed cells")


def test_an_asymmetric_interval_prints_as_an_interval_in_the_tables(tmp_path):
    write_cells(tmp_path, datasets=("flow",), labels=("icm_vae", "beta_vae"), seeds=range(8), failed=None, **SMALL)
    records = load_records(tmp_path)
    for record in records:  # the shape: most seeds near zero, one far out
        if record["cell"]["label"] == "beta_vae":
            record["scores"][LOW] = [0.00001, 0.00002, 0.00001, 0.00003, 0.0009, 0.00002, 0.00001, 0.00002][
                record["cell"]["seed"]]
    report.write_report(records, tmp_path / "report", title="asym", metrics=[LOW])
    cell = rows_of((tmp_path / "report" / "leaderboard.md").read_text(), "flow")["beta_vae"][0]
    mean, low, high = map(float, re.match(r"\**(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", cell).groups())
    assert low > 0 and low < mean < high and "±" not in cell


def test_records_without_checks_or_reference_report_as_before(tmp_path):
    write_cells(tmp_path, datasets=("flow",), labels=("icm_vae", "beta_vae"), seeds=range(3), failed=None, **SMALL)
    report.write_report(load_records(tmp_path), tmp_path / "report", title="plain", metrics=[HIGH])
    markdown = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "§" not in markdown.split("## Paired", 1)[0] and "reference rows" not in markdown.split("## Paired", 1)[0]
    scores = pd.read_csv(tmp_path / "report" / "scores.csv", keep_default_na=False)
    assert set(scores["flags"]) == {""} and not scores["reference"].any()


def test_the_suite_command_says_partial_in_its_dry_run_and_exits_3(tmp_path, data_dir, capsys, monkeypatch):
    import yaml

    from crlbench.cli import EXIT_PARTIAL, failed_status, main
    from crlbench.core import registry
    from suite_fixture import PLUGINS, TINY

    monkeypatch.syspath_prepend(str(PLUGINS))
    metrics = registry.registry("metric")  # a fresh import of the plugin registers a new broken@test: start without it
    monkeypatch.setattr(metrics, "_objects", {name: obj for name, obj in metrics._objects.items() if name != "broken@test"})
    sys.modules.pop("crl_plugin_metrics", None)
    import crl_plugin_metrics

    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data").symlink_to(data_dir, target_is_directory=True)
    suite = tmp_path / "partial.yaml"
    suite.write_text(yaml.safe_dump({**TINY, "plugins": ["crl_plugin_models", "crl_plugin_metrics"],
                                     "metrics": ["mcc@pearson", "broken@test"], "models": [{"name": "linear_ae"}]}))
    arguments = ["suite", str(suite), "--workdir", str(workdir), "--no-tracking"]
    crl_plugin_metrics.FAIL = True
    try:
        assert main(arguments) == EXIT_PARTIAL == 3
        assert "1 partial (a metric failed), 0 failed" in capsys.readouterr().out
        assert main(arguments + ["--dry-run"]) == 0
        plan = capsys.readouterr().out
        assert re.search(r"[0-9a-f]{16}  partial ", plan) and "1 partial, 0 failed" in plan
        assert main(arguments) == EXIT_PARTIAL  # a rerun counts it again, still not as failed
    finally:
        crl_plugin_metrics.FAIL = False
        for name in ("crl_plugin_models", "crl_plugin_metrics"):
            sys.modules.pop(name, None)
    assert [failed_status(0, 0), failed_status(0, 2), failed_status(1, 2)] == [0, EXIT_PARTIAL, 11]
