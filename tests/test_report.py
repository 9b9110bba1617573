"""crlbench.reports.report and crlbench.reports.figures: leaderboards, the protocol box, convergence marks, the
LaTeX tables (compiled when pdflatex is installed), figure captions and colours, and inputs that are too small."""

import re
import shutil
import subprocess

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
from PIL import Image

from crlbench.reports import figures, palette, report
from crlbench.suites.results import load_records
from report_fixture import write_cells

HIGH, LOW = "dci@reg.disentanglement", "counterfactual@probe.counterfactual_mse"
METRICS = [HIGH, LOW]
LABELS = ("icm_vae", "causal_vae", "beta_vae")
SMALL = {"codes": 4, "samples": 2, "epochs": 3}  # few tick labels and tiles: figures draw faster
UNCONVERGED = (("flow", "beta_vae", 0),)
PDFLATEX = shutil.which("pdflatex")


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Two datasets x three models x three seeds, causal_vae's seed 2 on pendulum failed, beta_vae's seed 0 on
    flow unconverged."""
    root = tmp_path_factory.mktemp("suite")
    write_cells(root, datasets=("pendulum", "flow"), labels=LABELS, failed=("pendulum", "causal_vae", 2),
                unconverged=UNCONVERGED, **SMALL)
    records = load_records(root)
    out = root / "report"
    paths = report.write_report(records, out, title="Synthetic suite", metrics=METRICS,
                                provenance={"suite": "synthetic-suite-42"})
    return records, out, paths


def table_rows(markdown: str, dataset: str) -> dict[str, list[str]]:
    """The score cells of one dataset's leaderboard in the markdown (after model, given, latent), by model label
    (without its convergence mark)."""
    section = markdown.split(f"### {dataset}\n", 1)[1].strip("\n").split("\n\n", 1)[0]
    rows = [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {row[0].split(" ‡")[0]: row[3:] for row in rows[2:]}


def tex_tables(tex: str) -> dict[str, str]:
    """Each LaTeX table by its dataset (from the label tab:<title>-<dataset>)."""
    tables = re.findall(r"\\begin\{table\*?\}.*?\\end\{table\*?\}", tex, flags=re.S)
    return {re.search(r"\\label\{tab:[^}]*?-(pendulum|flow|causal-circuit)\}", table).group(1): table
            for table in tables}


def tex_notes(tex: str) -> list[str]:
    """The paragraphs of the notes after the LaTeX tables."""
    return [part.strip() for part in tex.split("\\paragraph*{", 1)[1].split("\\endgroup", 1)[0].split("\n\n")]


def tex_means(table: str) -> dict[str, list[str]]:
    """Per score row (its short name), the mean cells of a transposed LaTeX table, in method order."""
    rows = [line.removesuffix(" \\\\").split(" & ") for line in table.splitlines() if " & " in line]
    return {row[0]: row[1:] for row in rows[2:] if not row[0].startswith("$")}


def tex_methods(table: str) -> list[str]:
    header = next(line for line in table.splitlines() if line.startswith(" & "))
    return header.removesuffix(" \\\\").split(" & ")[1:]


def compile_tex(folder, tex: str) -> str:
    """Compile ``tex`` inside a two-column article with booktabs; returns the log."""
    (folder / "tables.tex").write_text(tex)
    (folder / "paper.tex").write_text("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n"
                                      "\\begin{document}\n\\input{tables.tex}\n\\end{document}\n")
    run = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=folder,
                         capture_output=True, text=True, timeout=120)
    log = (folder / "paper.log").read_text(errors="replace")
    assert run.returncode == 0, log[-3000:]
    return log


def test_every_report_file_exists_and_is_not_empty(suite):
    _, out, paths = suite
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "index.html"):
        assert (out / name).stat().st_size > 0 and out / name in paths
    pngs = list((out / "figures").glob("*.png"))
    assert len(pngs) >= 8 and all(path.stat().st_size > 0 for path in pngs)
    assert {path.name for path in pngs} >= {"interventions_pendulum.png", "training_curves.png",
                                            "reconstruction_vs_disentanglement.png"}
    for name in ("effects.csv", "scores.csv"):
        assert (out / name).stat().st_size > 0 and out / name in paths


@pytest.mark.parametrize("dataset", ["pendulum", "flow"])
def test_best_model_is_bold_for_higher_and_lower_is_better_columns(suite, dataset):
    rows = table_rows((suite[1] / "leaderboard.md").read_text(), dataset)
    assert all(cell.startswith("**") for cell in rows["icm_vae"])  # best disentanglement and lowest mse
    assert not any(cell.startswith("**") for label in ("causal_vae", "beta_vae") for cell in rows[label])


def test_bold_follows_the_model_in_tex_and_html(suite):
    for dataset, table in tex_tables((suite[1] / "leaderboard.tex").read_text()).items():
        methods = [name.split("$")[0] for name in tex_methods(table)]
        for means in tex_means(table).values():
            bold = [methods[index] for index, cell in enumerate(means) if cell.startswith(r"\textbf")]
            assert bold == [r"icm\_vae"], (dataset, means)
    html = (suite[1] / "index.html").read_text()
    assert len(re.findall(r"<td data-sort=\"[^\"]*\"><b>", html)) == 2 * 2


def test_failed_seed_shows_ok_over_total_and_is_listed(suite):
    markdown = (suite[1] / "leaderboard.md").read_text()
    assert all(cell.endswith("(2/3)") for cell in table_rows(markdown, "pendulum")["causal_vae"])
    assert not any("(2/3)" in cell for cell in table_rows(markdown, "flow")["causal_vae"])
    failed = markdown.split("## Failed cells", 1)[1]
    assert "causal_vae" in failed and "loss became NaN at epoch 3" in failed
    assert "loss became NaN at epoch 3" in (suite[1] / "index.html").read_text()


def test_a_partial_cell_is_listed_with_the_parts_that_failed(suite, tmp_path):
    records = [dict(record) for record in suite[0]]
    partial = next(record for record in records if record["status"] == "ok" and record["cell"]["dataset"] == "flow")
    partial["partial"] = True
    partial["metric_errors"] = {"intervention_grid": {"type": "ConfigError", "message": "the learned graph has a cycle"}}
    report.write_report(records, tmp_path, title="partial", metrics=METRICS)
    markdown = (tmp_path / "leaderboard.md").read_text()
    failed = markdown.split("## Failed cells", 1)[1].split("##", 1)[0]
    listed = markdown.split("## Partial cells", 1)[1].split("##", 1)[0]
    assert "partial (its other scores stand): intervention_grid: ConfigError: the learned graph has a cycle" in listed
    assert partial["hash"] in listed and partial["hash"] not in failed  # partial, not failed
    assert "loss became NaN at epoch 3" in failed  # the failed cell stays listed
    box = markdown.split("## Leaderboard", 1)[0]
    assert "1 partial" in box and "1 failed" in box
    assert "Partial cells" in (tmp_path / "index.html").read_text()


def test_html_is_self_contained(suite):
    html = (suite[1] / "index.html").read_text()
    assert "data:image/png;base64," in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<link" not in html and "<script src" not in html
    assert 'class="sortable' in html and "addEventListener" in html


def test_html_footer_shows_record_and_argument_provenance(suite):
    footer = (suite[1] / "index.html").read_text().split("<footer>", 1)[1]
    assert "0123abc" in footer and "fixture-host" in footer and "synthetic-suite-42" in footer


def test_tex_uses_booktabs_and_escapes_underscores(suite):
    tex = (suite[1] / "leaderboard.tex").read_text()
    for rule, per_table in ((r"\toprule", 1), (r"\midrule", 2), (r"\bottomrule", 1)):  # midrule: header, latent
        assert tex.count(rule) == 2 * per_table
    body = [line for line in tex.splitlines() if not line.startswith("%")]
    assert not any(re.search(r"(?<!\\)_", line) for line in body)
    assert r"counterfactual\_mse" in tex


def test_csv_is_long_with_interval_counts_and_holm(suite):
    csv = pd.read_csv(suite[1] / "leaderboard.csv")
    assert {"dataset", "label", "metric", "mean", "ci_low", "ci_high", "n_ok", "n_total", "p_holm"} <= set(csv)
    assert len(csv) == 2 * 3 * 2
    assert ((csv["ci_low"] <= csv["mean"]) & (csv["mean"] <= csv["ci_high"])).all()
    assert csv["p_holm"].isna().sum() == 2 * 2  # the reference label is not tested against itself


def test_no_pyplot_figure_is_left_open(suite):
    assert plt.get_fignums() == []


def test_records_frame_has_one_row_per_record_and_every_score(suite):
    records = suite[0]
    frame = report.records_frame(records)
    assert len(frame) == len(records) == 18
    assert list(frame.columns[:7]) == ["dataset", "label", "model", "seed", "status", "error", "hash"]
    assert set(METRICS) <= set(frame.columns)
    assert frame.loc[frame["status"] == "failed", "error"].str.contains("FloatingPointError").all()


# The default columns these records have: every default but graph recovery (their models learn no graph).
PRESENT_DEFAULTS = [metric for metric in report.DEFAULT_METRICS if not metric.startswith("graph@")]


def test_default_metrics_are_those_present(suite):
    frame = report.records_frame(suite[0])
    assert "graph@card.shd" in report.DEFAULT_METRICS
    assert report.select_metrics(frame, None) == PRESENT_DEFAULTS


def test_unknown_metric_is_rejected_by_name(suite, tmp_path):
    with pytest.raises(ValueError, match="no.such"):
        report.write_report(suite[0], tmp_path, title="x", metrics=["no.such"])


def test_two_models_with_seven_seeds_mark_the_significant_difference(tmp_path):
    write_cells(tmp_path, datasets=("flow",), labels=("icm_vae", "beta_vae"), seeds=range(7), failed=None, **SMALL)
    report.write_report(load_records(tmp_path), tmp_path / "report", title="two", metrics=[HIGH])
    markdown = (tmp_path / "report" / "leaderboard.md").read_text()
    assert table_rows(markdown, "flow")["beta_vae"][0].endswith(report.MARKER)
    assert "at least 2 datasets and 3 models" in markdown
    assert not list((tmp_path / "report" / "figures").glob("cd_*.png"))


def test_single_seed_without_reconstruction_does_not_crash(tmp_path):
    write_cells(tmp_path, datasets=("pendulum",), labels=LABELS, seeds=(0,), failed=None, reconstruction=False,
                **SMALL)
    paths = report.write_report(load_records(tmp_path), tmp_path / "report", title="one seed", metrics=[LOW])
    assert all(path.exists() for path in paths)
    cells = table_rows((tmp_path / "report" / "leaderboard.md").read_text(), "pendulum")
    # one seed: no interval, printed "± 0", the mean with 3 significant digits (was "± 0.000" before)
    assert all(re.fullmatch(r"(\*\*)?0\.0*[1-9]\d\d ± 0(\*\*)?", cell[0]) for cell in cells.values()), cells
    assert not (tmp_path / "report" / "figures" / "reconstruction_vs_disentanglement.png").exists()


def test_every_table_says_what_each_method_is_given_and_its_latent_size(suite):
    _, out, _ = suite
    markdown = (out / "leaderboard.md").read_text()
    assert "| model | given | latent |" in markdown
    assert "| beta_vae | nothing | 16 |" in markdown and "| icm_vae | labels, true graph | 16 |" in markdown
    tex = (out / "leaderboard.tex").read_text()
    for dataset, table in tex_tables(tex).items():  # latent as a row, given in the notes after the tables
        assert "\nlatent & 16 & 16 & 16 \\\\" in table
        note = next(line for line in tex_notes(tex) if line.startswith(f"{dataset} (Table"))
        assert r"causal\_vae: labels, initial graph" in note
    html = (out / "index.html").read_text()
    assert re.search(r">given<span[^>]*></span></button></th>", html) and ">labels, true graph</td>" in html
    frame = pd.read_csv(out / "leaderboard.csv")
    assert set(frame.loc[frame["label"] == "beta_vae", "given"]) == {"nothing"}
    assert set(frame.loc[frame["label"] == "causal_vae", "given"]) == {"labels, initial graph"}
    assert set(frame.loc[frame["label"] == "icm_vae", "latent_size"]) == {16}


def test_the_training_table_states_the_fraction_of_the_reference_run_the_cpu_and_the_schedule(suite):
    _, out, _ = suite
    markdown = (out / "leaderboard.md").read_text()
    assert "## Training budgets and schedules" in markdown
    # CPU seconds per cell: the median and range over seeds 0, 1, 2 (100, 110, 120 s); causal_vae failed on seed 2
    assert "| pendulum | icm_vae | 64 | 1,920 | 101 epochs | 0.38 % | 110 (100–120) | budget, finished |" in markdown
    assert "| pendulum | beta_vae | 64 | 1,920 | 101 epochs | 0.38 % | 110 (100–120) | none |" in markdown
    assert "| pendulum | causal_vae | 64 | 1,920 | 101 epochs | 0.38 % | 105 (100–110) |" in markdown
    assert list(pd.read_csv(out / "leaderboard.csv").query("label == 'icm_vae'")["cpu_s_per_cell"].unique()) == [
        "110 (100–120)"]



# --- the protocol box ------------------------------------------------------------------------------


def test_the_protocol_box_comes_first_and_states_the_setup_from_the_records(suite):
    _, out, _ = suite
    markdown = (out / "leaderboard.md").read_text()
    assert markdown.index("## Protocol") < markdown.index("## Leaderboard")
    box = markdown.split("## Protocol", 1)[1].split("## Leaderboard", 1)[0]
    html = (out / "index.html").read_text()
    html_box = html.split('<section class="protocol"', 1)[1].split("</section>", 1)[0]
    assert html.index('<section class="protocol"') < html.index('<h2 id="leaderboard">Leaderboard</h2>')
    for text in ("synthetic", "3 epochs of 64", "8×8 px", "0, 1, 2 (3 seeds", "test split",
                 "200 training images", "100 test images", "factor_codes", "0.1.0", "0123abc",
                 "18 (17 finished, 1 failed)", 'concept_dim=4, beta=1.2, schedule="budget"', "alpha=0.3",
                 "labels, initial graph"):
        assert text in box, text
        assert text.replace('"', "&#34;") in html_box, text
    assert re.search(r"\| icm_vae \| icm_vae \| (pendulum, flow|flow, pendulum) \| labels, true graph \| 16 \| "
                     r"3 epochs of 64 \|", box)


def test_the_protocol_names_budgets_that_differ_and_the_suite_config(tmp_path):
    write_cells(tmp_path, datasets=("pendulum", "flow"), labels=("icm_vae", "dear", "beta_vae"), seeds=(0,),
                failed=None, **SMALL)
    records = load_records(tmp_path)
    for record in records:
        if record["cell"]["label"] == "dear":
            record["cell"]["budget"] = {"epochs": None, "steps": 100, "batch_size": 128}
    suite = {"name": "declared", "description": "a test suite", "budget": {"steps": 200, "batch_size": 64},
             "cells": 9}
    report.write_report(records, tmp_path / "report", title="t", metrics=[HIGH], suite=suite)
    box = (tmp_path / "report" / "leaderboard.md").read_text().split("## Leaderboard")[0]
    assert "- **suite**: declared" in box and "- **description**: a test suite" in box
    assert "- **cells**: 6 of 9 planned (6 finished, 0 failed)" in box
    assert "200 steps of 64 (12,800 images); trained: 3 epochs of 64, except 100 steps of 128 for dear" in box


# --- convergence ---------------------------------------------------------------------------------


def test_unconverged_seeds_are_marked_in_every_table_and_counted(suite):
    _, out, _ = suite
    markdown = (out / "leaderboard.md").read_text()
    assert ("- **convergence**: 1 of 17 cells did not converge by the rule: converged: the best held-out "
            "reconstruction error") in markdown
    leaderboards = markdown.split("## Leaderboard", 1)[1].split("Columns:", 1)[0]
    sections = dict(section.split("\n", 1) for section in leaderboards.split("### ")[1:])
    assert "| beta_vae ‡ 1/3 | nothing |" in sections["flow"] and "‡" not in sections["pendulum"]
    assert "- ‡ k/n: k of the method's n finished seeds did not converge. The rule (converged:" in markdown
    assert "| flow | beta_vae | 64 | 1,920 | 101 epochs | 0.38 % | 110 (100–120) | none | ‡ 1/3 seeds unconverged |" in markdown
    assert "| pendulum | beta_vae | 64 | 1,920 | 101 epochs | 0.38 % | 110 (100–120) | none | 3/3 converged |" in markdown
    assert "| beta_vae ‡ 1/6 |" in markdown.split("## Average ranks", 1)[1]
    tex = (out / "leaderboard.tex").read_text()
    tables = tex_tables(tex)
    assert r"beta\_vae$^\ddagger$" in tex_methods(tables["flow"]) and "ddagger" not in tables["pendulum"]
    assert r"seeds that did not converge (beta\_vae 1/3)" in next(note for note in tex_notes(tex)
                                                                  if note.startswith("flow (Table"))
    html = (out / "index.html").read_text()
    assert html.count('<span class="unconverged" title="1/3 seeds unconverged">‡ 1/3</span>') == 1
    csv = pd.read_csv(out / "leaderboard.csv")
    assert set(csv.loc[csv["label"] == "beta_vae", "seeds_unconverged"]) == {0, 1}
    assert csv.loc[csv["seeds_unconverged"] == 1, "dataset"].unique().tolist() == ["flow"]


def test_records_without_a_convergence_verdict_render_as_not_judged(tmp_path):
    write_cells(tmp_path, datasets=("pendulum",), labels=LABELS, failed=None, monitored=False, **SMALL)
    report.write_report(load_records(tmp_path), tmp_path / "report", title="old", metrics=[HIGH])
    markdown = (tmp_path / "report" / "leaderboard.md").read_text()
    assert "- **convergence**: not judged: none of the 9 finished cells records a convergence verdict" in markdown
    assert "‡" not in markdown and "| not judged: 3 predating the rule |" in markdown
    assert "training loss per epoch scaled to each model's own range" in markdown


def test_training_curves_plot_the_held_out_error_on_a_log_axis_when_recorded(suite):
    markdown = (suite[1] / "leaderboard.md").read_text()
    caption = next(line for line in markdown.splitlines() if line.startswith("*Figure") and "Training curves" in line)
    assert "held-out reconstruction MSE per epoch, log axis" in caption and "Dashed, ‡ k/n" in caption
    assert figures.curve_term([r for r in suite[0] if r["status"] == "ok"]) == figures.MONITOR


# --- numbers and bold ----------------------------------------------------------------------------


def test_cells_print_the_half_width_to_two_significant_digits_and_the_mean_to_match(suite):
    cells = [cell for dataset in ("pendulum", "flow") for row in table_rows(
        (suite[1] / "leaderboard.md").read_text(), dataset).values() for cell in row]
    for cell in cells:
        interval = re.match(r"\**(-?[\d.]+) \[(-?[\d.]+), (-?[\d.]+)\]", cell)
        if interval:  # too asymmetric for a ±: each bound keeps two significant digits, and the mean's decimals
            mean, *bounds = interval.groups()
            assert all(len(bound.lstrip("-0.")) >= 2 for bound in bounds), cell
            assert all(len(bound.partition(".")[2]) >= len(mean.partition(".")[2]) for bound in bounds), cell
            continue
        mean, spread = re.match(r"\**(-?[\d.]+) ± ([\d.]+)", cell).groups()
        digits = spread.lstrip("0.")
        assert len(digits) == 2 or spread == "0", cell  # two significant digits
        assert len(mean.partition(".")[2]) == len(spread.partition(".")[2]), cell  # same decimal place


def test_equal_printed_means_are_all_bold(tmp_path):
    write_cells(tmp_path, datasets=("flow",), labels=("icm_vae", "beta_vae"), seeds=range(3), failed=None, **SMALL)
    records = load_records(tmp_path)
    for record in records:  # the same score for both models: a tie
        record["scores"][HIGH] = 0.5 + 0.01 * record["cell"]["seed"]
    report.write_report(records, tmp_path / "report", title="tie", metrics=[HIGH, LOW])
    rows = table_rows((tmp_path / "report" / "leaderboard.md").read_text(), "flow")
    assert rows["icm_vae"][0].startswith("**") and rows["beta_vae"][0].startswith("**")
    assert rows["icm_vae"][1].startswith("**") and not rows["beta_vae"][1].startswith("**")


def test_the_csv_keeps_full_precision(suite):
    csv = pd.read_csv(suite[1] / "leaderboard.csv")
    record = next(r for r in suite[0] if r["status"] == "ok" and r["cell"]["dataset"] == "flow"
                  and r["cell"]["label"] == "icm_vae")
    seeds = [r["scores"][HIGH] for r in suite[0] if r["status"] == "ok" and r["cell"]["dataset"] == "flow"
             and r["cell"]["label"] == "icm_vae"]
    row = csv[(csv["dataset"] == "flow") & (csv["label"] == "icm_vae") & (csv["metric"] == HIGH)]
    assert row["mean"].item() == pytest.approx(np.mean(seeds), rel=1e-15) and record
    assert row["short_name"].item() == "DCI-D"


# --- tables in the HTML --------------------------------------------------------------------------


def test_html_tables_scroll_in_their_own_box_and_the_rank_summary_is_a_tfoot(suite):
    html = (suite[1] / "index.html").read_text()
    assert ".table-scroll { overflow-x: auto" in html
    for table in re.findall(r"<table class=\"sortable[^\"]*\".*?</table>", html, flags=re.S):
        assert html[:html.index(table)].rstrip().endswith('<div class="table-scroll">')
    ranks = re.search(r"<table class=\"sortable ranks\">.*?</table>", html, flags=re.S).group(0)
    body, foot = ranks.split("<tbody>")[1].split("</tbody>")[0], ranks.split("<tfoot>")[1].split("</tfoot>")[0]
    assert "Friedman p" in foot and "critical difference" in foot
    assert "Friedman p" not in body and "icm_vae" in body


def test_metric_headers_are_short_and_a_legend_names_the_score_and_its_direction(suite):
    html = (suite[1] / "index.html").read_text()
    assert '<button type="button">DCI-D ↑<span' in html and '<button type="button">CF MSE ↓<span' in html
    assert "<td>DCI-D ↑</td><td><code>dci@reg.disentanglement</code></td><td>higher is better</td>" in html
    markdown = (suite[1] / "leaderboard.md").read_text()
    assert "| model | given | latent | DCI-D ↑ | CF MSE ↓ |" in markdown
    assert "- CF MSE: `counterfactual@probe.counterfactual_mse`, lower is better" in markdown


def test_the_contents_link_every_section_and_per_dataset_table_in_markdown_and_html(suite):
    markdown = (suite[1] / "leaderboard.md").read_text()
    contents = markdown.split("## Contents\n", 1)[1].strip("\n").split("\n\n", 1)[0]
    links = re.findall(r"\]\(#([a-z0-9-]+)\)", contents)
    assert len(links) == len(set(links)) and contents.startswith("- [Protocol](#protocol)")
    assert "- [Leaderboard](#leaderboard): [flow](#leaderboard-flow), [pendulum](#leaderboard-pendulum)" in contents
    anchors = re.findall(r'^<a id="([a-z0-9-]+)"></a>\n\n#{2,3} ', markdown, flags=re.M)
    assert sorted(anchors) == sorted(links)  # every link has its heading, every anchored heading is linked
    headings = re.findall(r"^## (.+)$", markdown, flags=re.M)
    assert len(headings) - 1 == sum(line.startswith("- [") for line in contents.splitlines())  # all but Contents
    html = (suite[1] / "index.html").read_text()
    nav = html.split('<nav class="contents"', 1)[1].split("</nav>", 1)[0]
    assert html.index("<nav") < html.index('<section class="protocol"')
    assert re.findall(r'href="#([a-z0-9-]+)"', nav) == links
    assert all(f'id="{link}"' in html for link in links)


# --- LaTeX ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def full_tables(tmp_path_factory):
    """The default scores of the four built-in models on one dataset, one seed unconverged."""
    root = tmp_path_factory.mktemp("full")
    write_cells(root, datasets=("pendulum",), unconverged=(("pendulum", "dear", 0),), failed=None, **SMALL)
    records = load_records(root)
    report.write_report(records, root / "report", title="Four models", provenance={"suite": "full"})
    return records, root / "report"


def test_tex_captions_are_two_short_sentences_and_the_notes_carry_the_protocol(full_tables):
    tex = (full_tables[1] / "leaderboard.tex").read_text()
    table = tex_tables(tex)["pendulum"]
    caption = table.split(r"\caption{", 1)[1].split("}\n", 1)[0]
    assert len(caption.split()) <= 40 and caption.count(". ") + caption.endswith(".") <= 2, caption
    assert caption.startswith("Four models: pendulum, the mean of each score over seeds") and "Holm" in caption
    notes = " ".join(tex_notes(tex))
    assert tex.index(r"\paragraph*{Notes to Table~\ref{tab:four-models-pendulum}.}") > tex.rindex(r"\end{table")
    for text in ("suite synthetic", "seeds 0, 1, 2", "budget 3 epochs of 64", r"images 8$\times$8 px",
                 "evaluation: test split", "200 training images", "100 test images", r"DCI-D = dci@reg.disentanglement",
                 r"beta\_vae: nothing", r"$^\ddagger$: seeds that did not converge (dear 1/3)",
                 r"$^\ddagger$: the convergence rule: converged: the best held-out"):
        assert text in notes, text
    assert list(tex_means(table)) == [column.short for column in report.score_columns(PRESENT_DEFAULTS)]


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed (Debian: texlive-latex-base "
                                              "texlive-latex-recommended; .ci/apt.sh installs them)")
def test_tex_compiles_and_four_models_fit_one_column_of_a_two_column_paper(full_tables, tmp_path):
    tex = (full_tables[1] / "leaderboard.tex").read_text()
    assert r"\begin{table}[t]" in tex and "table*" not in tex
    log = compile_tex(tmp_path, tex)
    assert "Overfull \\hbox" not in log and "Output written on paper.pdf" in log


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed (Debian: texlive-latex-base "
                                              "texlive-latex-recommended; .ci/apt.sh installs them)")
def test_a_table_too_wide_for_a_column_spans_both_and_still_compiles_without_overfull_boxes(tmp_path):
    labels = tuple(f"plugin_model_{k}" for k in range(8))
    write_cells(tmp_path, datasets=("flow",), labels=labels, seeds=(0, 1), failed=None, **SMALL)
    report.write_report(load_records(tmp_path), tmp_path / "report", title="wide", metrics=METRICS,
                        reference_label=labels[0])
    tex = (tmp_path / "report" / "leaderboard.tex").read_text()
    assert r"\begin{table*}[t]" in tex and tex.count(r"\begin{tabular}") == 2  # too wide for a page: split
    assert "Overfull \\hbox" not in compile_tex(tmp_path, tex)


# --- figures -------------------------------------------------------------------------------------


def test_every_figure_has_a_caption_not_a_file_name(suite):
    html = (suite[1] / "index.html").read_text()
    figures_html = re.findall(r"<figure id=\"figure-\d+\">.*?</figure>", html, flags=re.S)
    captions = [re.search(r"<figcaption><b>Figure \d+\.</b> (.*?)</figcaption>", item, flags=re.S).group(1)
                for item in figures_html]
    assert len(captions) == len(suite[2]) - 6 and all(len(caption) > 40 for caption in captions)
    assert not any(".png" in caption or re.search(r"\b(point|cd|matrix)_", caption) for caption in captions)
    markdown = (suite[1] / "leaderboard.md").read_text()
    images = re.findall(r"!\[Figure (\d+)\]\((figures/[^)]+\.png)\)\n\n\*Figure (\d+)\.\* (.+)", markdown)
    assert len(images) == len(captions) and all(first == second for first, _, second, _ in images)
    assert [caption for *_, caption in images] == [caption.replace("&#39;", "'") for caption in captions]
    assert all((suite[1] / path).exists() for _, path, _, _ in images)


def text_boxes(figure) -> list[tuple[str, object]]:
    """Every visible text of a drawn figure with its box in pixels: titles, tick labels and texts."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    renderer = FigureCanvasAgg(figure).get_renderer()
    figure.draw(renderer)
    texts = [text for ax in figure.axes for text in [ax.title, *ax.get_xticklabels(), *ax.texts]]
    return [(text.get_text(), text.get_window_extent(renderer)) for text in texts
            if text.get_visible() and text.get_text()]


@pytest.mark.parametrize("average", [
    {"causal_vae": 2.0, "dear": 2.0, "ilcm": 2.0},  # every rank tied: the SHD diagram
    {"icm_vae": 1.5, "causal_vae": 1.5, "dear": 3.0, "beta_vae": 4.25, "ilcm": 4.25, "scm_vae": 6.0, "ivae": 6.02},
], ids=["all tied", "ties and near ties"])
def test_critical_difference_labels_and_ticks_do_not_overlap_on_ties(average):
    from matplotlib.transforms import Bbox

    from crlbench.reports.stats import RankTest

    ranks = pd.Series(average)
    p_values = pd.DataFrame(1.0, index=ranks.index, columns=ranks.index)
    p_values.loc[ranks.index[0], ranks.index[-1]] = p_values.loc[ranks.index[-1], ranks.index[0]] = 0.01
    test = RankTest("graph@card.shd", pd.DataFrame([ranks.to_numpy()] * 8, columns=ranks.index), ranks,
                    friedman_p=0.01, nemenyi=p_values, critical_difference=1.9)
    boxes = text_boxes(figures.critical_difference_figure(test))
    labels = [text for text, _ in boxes if "(" in text and ")" in text and ":" not in text]
    assert len(labels) == len(average)  # every label drawn, once
    ticks = [text for text, _ in boxes if text.isdigit()]
    assert ticks == [str(rank) for rank in range(1, len(average) + 1)]  # whole ranks, 1 to k
    gap = 2  # px: boxes that merely touch read as one run of text
    padded = [(text, Bbox.from_extents(box.x0 - gap / 2, box.y0 - gap / 2, box.x1 + gap / 2, box.y1 + gap / 2))
              for text, box in boxes]
    overlapping = [(first, second) for index, (first, box) in enumerate(padded) for second, other in padded[index + 1:]
                   if box.overlaps(other)]
    assert overlapping == []


def colours_in(path) -> set[tuple[int, int, int]]:
    with Image.open(path) as image:
        return set(map(tuple, np.asarray(image.convert("RGB")).reshape(-1, 3)))


def rgb(hex_colour: str) -> tuple[int, int, int]:
    return tuple(int(hex_colour[i:i + 2], 16) for i in (1, 3, 5))


def test_a_model_keeps_its_colour_in_two_reports_with_other_models(tmp_path):
    orders = {"first": ("icm_vae", "beta_vae"), "second": ("beta_vae", "dear", "my_plugin", "icm_vae")}
    for name, labels in orders.items():
        write_cells(tmp_path / name, datasets=("flow",), labels=labels, seeds=(0, 1), failed=None, **SMALL)
        report.write_report(load_records(tmp_path / name), tmp_path / name / "report", title=name,
                            metrics=[HIGH], reference_label="icm_vae")
    for name, labels in orders.items():
        scatter = colours_in(tmp_path / name / "report" / "figures" / "reconstruction_vs_disentanglement.png")
        assert {rgb(palette.model_colour(label)) for label in labels} <= scatter, name
        assert rgb("#1f77b4") not in scatter  # matplotlib's first cycle colour: models are not coloured by position
    assert palette.model_colour("icm_vae") == palette.BUILT_IN["icm_vae"]
