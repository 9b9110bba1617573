"""Rows outside a method's assumptions (the records' ``assumptions_broken``): the leaderboard marks the
(dataset, method) row with ¶ in markdown, HTML and LaTeX, a legend line names the assumptions broken, the CSV
lists their keys, and a row whose records carry none is unmarked. The fixture's contrastive_crl records on
pendulum (a nonlinear SCM) carry ``{"linear_scm": "a linear Gaussian latent SCM"}``; on flow they carry none."""

import re
import shutil
import subprocess

import pandas as pd
import pytest

from crlbench.reports import report
from crlbench.reports.tables import OUTSIDE as MARK
from crlbench.suites.results import load_records
from report_fixture import ASSUMPTIONS_BROKEN, OUTSIDE, write_cells

METRICS = ["dci@reg.disentanglement", "counterfactual@probe.counterfactual_mse"]
LABELS = ("icm_vae", OUTSIDE, "beta_vae")
PDFLATEX = shutil.which("pdflatex")
LEGEND = (f"{MARK} after a method's name: the dataset's data break an assumption the method makes, so its scores "
          "there are obtained outside the method's assumptions (the row is not left out of bold, tests or ranks). "
          f"Broken: {OUTSIDE} on pendulum: a linear Gaussian latent SCM (linear_scm).")


@pytest.fixture(scope="module")
def outside(tmp_path_factory):
    root = tmp_path_factory.mktemp("outside")
    write_cells(root, datasets=("pendulum", "flow"), labels=LABELS, failed=None, codes=4, samples=2, epochs=3)
    records = load_records(root)
    assert {(r["cell"]["dataset"], r["cell"]["label"]) for r in records if "assumptions_broken" in r} == set(
        ASSUMPTIONS_BROKEN)
    report.write_report(records, root / "report", title="Outside", metrics=METRICS)
    return root / "report"


def leaderboard(markdown: str, dataset: str) -> str:
    return markdown.split("## Leaderboard", 1)[1].split(f"### {dataset}\n", 1)[1].split("\n\n", 1)[0]


def test_markdown_marks_the_row_and_its_legend_names_the_broken_assumption(outside):
    markdown = (outside / "leaderboard.md").read_text()
    assert f"| {OUTSIDE} {MARK} | environments | 4 |" in leaderboard(markdown, "pendulum")
    assert f"| {OUTSIDE} | environments | 4 |" in leaderboard(markdown, "flow")
    assert markdown.count(MARK) == 2 and f"- {LEGEND}" in markdown


def test_html_marks_the_row_with_its_assumption_and_has_the_legend(outside):
    html = (outside / "index.html").read_text()
    pendulum = html.split('<h3 id="leaderboard-pendulum">', 1)[1].split("</table>", 1)[0]
    flow = html.split('<h3 id="leaderboard-flow">', 1)[1].split("</table>", 1)[0]
    assert (f'{OUTSIDE} <span class="outside" title="outside its assumptions: a linear Gaussian latent SCM '
            f'(linear_scm)">{MARK}</span></td>') in pendulum
    assert MARK not in flow and f"<li>{LEGEND}</li>".replace("'", "&#39;") in html


def test_latex_marks_the_column_head_and_the_notes_name_the_assumption(outside, tmp_path):
    tex = (outside / "leaderboard.tex").read_text()
    tables = {re.search(r"\\label\{tab:outside-(\w+)\}", table).group(1): table
              for table in re.findall(r"\\begin\{table\*?\}.*?\\end\{table\*?\}", tex, flags=re.S)}
    assert r"contrastive\_crl$^\P$" in tables["pendulum"] and r"$^\P$" not in tables["flow"]
    notes = tex.split(r"\paragraph*{", 1)[1]
    assert (r"$^\P$: the data break an assumption of the method (contrastive\_crl: a linear Gaussian latent SCM)."
            in notes.split("pendulum (Table", 1)[1].split("\n\n", 1)[0])
    if PDFLATEX:
        (tmp_path / "tables.tex").write_text(tex)
        (tmp_path / "paper.tex").write_text("\\documentclass[twocolumn]{article}\n\\usepackage{booktabs}\n"
                                            "\\begin{document}\n\\input{tables.tex}\n\\end{document}\n")
        run = subprocess.run([PDFLATEX, "-interaction=nonstopmode", "-halt-on-error", "paper.tex"], cwd=tmp_path,
                             capture_output=True, text=True, timeout=120)
        log = (tmp_path / "paper.log").read_text(errors="replace")
        assert run.returncode == 0 and "Overfull \\hbox" not in log, log[-3000:]


def test_the_csv_lists_the_broken_keys_and_nothing_for_the_other_rows(outside):
    frame = pd.read_csv(outside / "leaderboard.csv", keep_default_na=False)
    marked = frame[frame["assumptions_broken"] != ""]
    assert set(zip(marked["dataset"], marked["label"], marked["assumptions_broken"])) == {
        ("pendulum", OUTSIDE, "linear_scm")}
