"""A negative control in the report (crlbench.reports.controls): a dataset whose records declare factors its images
cannot carry gets a "Negative controls" section with the supervised row's per-factor R² ceiling beside each method's,
in markdown, HTML and LaTeX, and is left out of bold, paired tests and rank tests, while the other datasets' rankings
stay what they are without it."""

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest

from crlbench.reports import numbers, report
from crlbench.reports.controls import control_datasets
from crlbench.suites.results import load_records
from report_fixture import CEILING, CONTROL, FACTORS, UNIDENTIFIABLE, write_cells

HIGH, LOW = "dci@reg.disentanglement", "counterfactual@probe.counterfactual_mse"
METRICS = [HIGH, LOW]
METHODS = ("icm_vae", "causal_vae", "beta_vae")
SMALL = {"codes": 4, "samples": 2, "epochs": 3, "failed": None}
RANKED = ("pendulum", "flow")
RANKING_SECTIONS = ("Paired differences against icm_vae", "Average ranks across datasets",
                    "Average ranks within each dataset, across seeds", "Notes")
PDFLATEX = shutil.which("pdflatex")


def build(root, datasets, labels=METHODS + (CEILING,), edit=None):
    write_cells(root, datasets=datasets, labels=labels, **SMALL)
    records = load_records(root)
    if edit:
        records = edit(records)
    out = root / "report"
    report.write_report(records, out, title="Controls", metrics=METRICS)
    return records, out


@pytest.fixture(scope="module")
def with_control(tmp_path_factory):
    return build(tmp_path_factory.mktemp("with_control"), RANKED + (CONTROL,))


@pytest.fixture(scope="module")
def without_control(tmp_path_factory):
    return build(tmp_path_factory.mktemp("without_control"), RANKED)


def markdown(out) -> str:
    return (out / "leaderboard.md").read_text()


def section(text: str, title: str) -> str:
    """A ``## title`` section of the markdown, up to the next one (empty when absent)."""
    parts = text.split(f"\n## {title}\n", 1)
    return parts[1].split("\n## ", 1)[0] if len(parts) == 2 else ""


def subsection(text: str, title: str) -> str:
    return text.split(f"### {title}\n", 1)[1].split("\n### ", 1)[0]


def table(text: str) -> dict[str, list[str]]:
    """The first markdown table of ``text`` by its first cell (the header row under ``"header"``)."""
    rows = [line.strip("| ").split(" | ") for line in text.splitlines() if line.startswith("| ")]
    return {"header": rows[0][1:], **{row[0]: row[1:] for row in rows[2:]}}


def ceiling_means(records, label: str) -> list[str]:
    """The per-factor r2@linear means of ``label`` on the control, as the section prints them."""
    cells = [record for record in records if record["cell"]["dataset"] == CONTROL and record["cell"]["label"] == label]
    return [numbers.significant(float(np.mean([cell["scores"][f"r2@linear.r2_{k}"] for cell in cells])))
            for k in range(len(FACTORS[CONTROL]))]


def test_control_datasets_are_those_whose_records_declare_unidentifiable_factors(with_control):
    assert control_datasets(with_control[0]) == {CONTROL: UNIDENTIFIABLE[CONTROL]}
    assert control_datasets([{"cell": {"dataset": "pendulum"}, "unidentifiable": {}}]) == {}


def test_the_section_shows_the_supervised_ceiling_then_each_method_per_factor(with_control):
    records, out = with_control
    shown = table(subsection(section(markdown(out), "Negative controls"), CONTROL))
    assert shown["header"] == ["blue", "green", "pol_1 ✗", "red", "pol_2 ✗"]
    assert list(shown)[1:] == [f"{CEILING} (reference, ceiling)", *METHODS]
    assert shown[f"{CEILING} (reference, ceiling)"] == ceiling_means(records, CEILING)
    for label in METHODS:
        assert shown[label] == ceiling_means(records, label)
    ceiling = [float(value) for value in shown[f"{CEILING} (reference, ceiling)"]]
    assert max(ceiling[2], ceiling[4]) < 0.2 < 0.9 < min(ceiling[0], ceiling[1], ceiling[3])  # the fixture's design


def test_the_section_gives_each_unidentifiable_factors_reason(with_control):
    text = subsection(section(markdown(with_control[1]), "Negative controls"), CONTROL)
    for factor, reason in UNIDENTIFIABLE[CONTROL].items():
        assert f"- ✗ {factor}: {reason}" in text
    assert "- ✗ blue" not in text


def test_the_controls_leaderboard_is_shown_not_bold_or_marked_and_says_why(with_control):
    leaderboard = subsection(section(markdown(with_control[1]), "Leaderboard"), CONTROL)
    rows = table(leaderboard)
    assert set(METHODS) <= set(rows)
    assert not any("**" in cell or "†" in cell for cells in rows.values() for cell in cells)
    assert "Negative control, not ranked: its images cannot carry pol_1, pol_2" in leaderboard
    long_form = pd.read_csv(with_control[1] / "leaderboard.csv")
    control = long_form[long_form["dataset"] == CONTROL]
    assert len(control) and not control["best"].any() and not control["significant"].any()
    assert control["p_value"].isna().all()


def test_no_test_or_rank_mentions_the_control(with_control):
    text = markdown(with_control[1])
    for title in RANKING_SECTIONS:
        assert CONTROL not in section(text, title), title
    assert CONTROL not in set(pd.read_csv(with_control[1] / "effects.csv")["dataset"])
    assert "2 datasets" in section(text, "Average ranks across datasets")  # blocks: pendulum and flow only


def lines(text: str) -> list[str]:
    """The lines of ``text``, sorted: the order of labels and datasets follows the records' (their hashes)."""
    return sorted(text.splitlines())


def by_keys(frame: pd.DataFrame) -> pd.DataFrame:
    return frame.sort_values(["dataset", "label", "metric"]).reset_index(drop=True)


def test_the_other_datasets_rankings_are_unchanged_by_the_control(with_control, without_control):
    text, alone = markdown(with_control[1]), markdown(without_control[1])
    for title in RANKING_SECTIONS:
        assert lines(section(text, title)) == lines(section(alone, title)), title
    for dataset in RANKED:
        assert (lines(subsection(section(text, "Leaderboard"), dataset))
                == lines(subsection(section(alone, "Leaderboard"), dataset)))
    pd.testing.assert_frame_equal(by_keys(pd.read_csv(with_control[1] / "effects.csv")),
                                  by_keys(pd.read_csv(without_control[1] / "effects.csv")))
    long_form = pd.read_csv(with_control[1] / "leaderboard.csv")
    pd.testing.assert_frame_equal(by_keys(long_form[long_form["dataset"] != CONTROL]),
                                  by_keys(pd.read_csv(without_control[1] / "leaderboard.csv")))


def test_a_report_without_a_control_has_no_negative_controls_section(without_control):
    out = without_control[1]
    assert "Negative control" not in markdown(out)
    assert "Negative control" not in (out / "index.html").read_text()
    assert "negative control" not in (out / "leaderboard.tex").read_text()


def bold(html: str) -> int:
    """Bold entries of the HTML tables (figure captions start with a bold number too)."""
    return html.count("<b>") - html.count("<b>Figure")


def test_html_shows_the_section_with_marks_reasons_and_the_not_ranked_line(with_control, without_control):
    records, out = with_control
    html = (out / "index.html").read_text()
    controls = html.split('<h2 id="negative-controls">Negative controls</h2>', 1)[1].split("<h2", 1)[0]
    assert controls.count('<span class="flagged">✗</span>') == 2
    assert f'<td>{CEILING} <span class="reference">(reference, ceiling)</span></td>' in controls
    assert "".join(f"<td>{value}</td>" for value in ceiling_means(records, CEILING)) in controls
    assert "only through cos^2(pol_1 - pol_2)" in controls
    leaderboard = html.split(f'<h3 id="leaderboard-{CONTROL.replace("_", "-")}">{CONTROL}</h3>', 1)[1].split("<h3", 1)[0]
    assert "Negative control, not ranked" in leaderboard and "<b>" not in leaderboard
    assert bold(html) == bold((without_control[1] / "index.html").read_text())  # the other datasets' bold only


def test_latex_has_the_ceiling_table_and_no_bold_on_the_control(with_control):
    records, out = with_control
    tex = (out / "leaderboard.tex").read_text()
    tables = re.findall(r"\\begin\{table\*?\}.*?\\end\{table\*?\}", tex, flags=re.S)
    leaderboard = next(text for text in tables if r"\label{tab:controls-chamber-f3}" in text)
    assert r"\textbf" not in leaderboard and "A negative control: not ranked" in leaderboard
    notes = tex.split(r"\paragraph*{Notes to Tables", 1)[1]
    assert "chamber\\_f3 (Table~\\ref{tab:controls-chamber-f3}): given" in notes
    assert "Negative control, not ranked: its images cannot carry pol\\_1, pol\\_2" in notes
    assert "chamber\\_f3, a negative control (Table~\\ref{tab:controls-chamber-f3-control})" in notes
    ceiling = next(text for text in tables if r"\label{tab:controls-chamber-f3-control}" in text)
    assert r"model & blue & green & pol\_1$^\times$ & red & pol\_2$^\times$ \\" in ceiling
    assert f"{CEILING} (ceiling) & " + " & ".join(ceiling_means(records, CEILING)) + r" \\" in ceiling


@pytest.mark.skipif(PDFLATEX is None, reason="pdflatex is not installed")
def test_latex_with_a_control_compiles(with_control, tmp_path):
    (tmp_path / "tables.tex").write_text((with_control[1] / "leaderboard.tex").read_text())
    (tmp_path / "paper.tex").write_text("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n"
                                        "\\begin{document}\n\\input{tables.tex}\n\\end{document}\n")
    run = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, (tmp_path / "paper.log").read_text(errors="replace")[-3000:]


def test_without_a_supervised_row_the_section_says_so_and_still_shows_the_methods(tmp_path):
    _, out = build(tmp_path, (CONTROL,) + RANKED, labels=METHODS)
    text = section(markdown(out), "Negative controls")
    assert f"No {CEILING} reference row on {CONTROL}" in text
    assert list(table(subsection(text, CONTROL)))[1:] == list(METHODS)


def without_r2(records):
    for record in records:
        record["scores"] = {name: value for name, value in record["scores"].items() if not name.startswith("r2@")}
    return records


def test_without_r2_scores_the_section_says_so_instead_of_a_table(tmp_path):
    _, out = build(tmp_path, (CONTROL,), edit=without_r2)
    text = subsection(section(markdown(out), "Negative controls"), CONTROL)
    assert f"No r2@linear per-factor scores (r2@linear.r2_<k>) on {CONTROL}" in text and "| model |" not in text
    assert "- ✗ pol_1:" in text  # the marks and reasons stay
    assert f"% Negative control {CONTROL}: No r2@linear" in (out / "leaderboard.tex").read_text()
    assert "No r2@linear per-factor scores" in (out / "index.html").read_text()
