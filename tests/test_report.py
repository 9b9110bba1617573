"""crlbench.reports.report and crlbench.reports.figures: leaderboards, the self-contained HTML, and inputs that are
too small."""

import re

import matplotlib.pyplot as plt
import pandas as pd
import pytest

from crlbench.reports import report
from crlbench.suites.results import load_records
from report_fixture import write_cells

HIGH, LOW = "dci@reg.disentanglement", "counterfactual@probe.counterfactual_mse"
METRICS = [HIGH, LOW]
LABELS = ("icm_vae", "causal_vae", "beta_vae")
SMALL = {"codes": 4, "samples": 2, "epochs": 3}  # few tick labels and tiles: figures draw faster


@pytest.fixture(scope="module")
def suite(tmp_path_factory):
    """Two datasets x three models x three seeds, causal_vae's seed 2 on pendulum failed."""
    root = tmp_path_factory.mktemp("suite")
    write_cells(root, datasets=("pendulum", "flow"), labels=LABELS, failed=("pendulum", "causal_vae", 2), **SMALL)
    records = load_records(root)
    out = root / "report"
    paths = report.write_report(records, out, title="Synthetic suite", metrics=METRICS,
                                provenance={"suite": "synthetic-suite-42"})
    return records, out, paths


def table_rows(markdown: str, dataset: str) -> dict[str, list[str]]:
    """The score cells of one dataset's leaderboard in the markdown (after model, given, latent), by model label."""
    section = markdown.split(f"### {dataset}\n", 1)[1].strip("\n").split("\n\n", 1)[0]
    rows = [line.strip("| ").split(" | ") for line in section.splitlines() if line.startswith("| ")]
    return {row[0]: row[3:] for row in rows[2:]}


def test_every_report_file_exists_and_is_not_empty(suite):
    _, out, paths = suite
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.tex", "index.html"):
        assert (out / name).stat().st_size > 0 and out / name in paths
    pngs = list((out / "figures").glob("*.png"))
    assert len(pngs) >= 8 and all(path.stat().st_size > 0 for path in pngs)
    assert {path.name for path in pngs} >= {"interventions_pendulum.png", "training_curves.png",
                                            "reconstruction_vs_disentanglement.png", "cd_dci-reg-disentanglement.png"}


@pytest.mark.parametrize("dataset", ["pendulum", "flow"])
def test_best_model_is_bold_for_higher_and_lower_is_better_columns(suite, dataset):
    rows = table_rows((suite[1] / "leaderboard.md").read_text(), dataset)
    assert all(cell.startswith("**") for cell in rows["icm_vae"])  # best disentanglement and lowest mse
    assert not any(cell.startswith("**") for label in ("causal_vae", "beta_vae") for cell in rows[label])


def test_bold_follows_the_model_in_tex_and_html(suite):
    tex = (suite[1] / "leaderboard.tex").read_text()
    assert all(line.count(r"\textbf") == 2 for line in tex.splitlines() if line.startswith(r"icm\_vae"))
    assert not any(r"\textbf" in line for line in tex.splitlines() if line.startswith(r"beta\_vae"))
    html = (suite[1] / "index.html").read_text()
    assert len(re.findall(r"<td data-sort=\"[^\"]*\"><b>", html)) == 2 * 2


def test_failed_seed_shows_ok_over_total_and_is_listed(suite):
    markdown = (suite[1] / "leaderboard.md").read_text()
    assert all(cell.endswith("(2/3)") for cell in table_rows(markdown, "pendulum")["causal_vae"])
    assert not any("(2/3)" in cell for cell in table_rows(markdown, "flow")["causal_vae"])
    failed = markdown.split("## Failed cells", 1)[1]
    assert "causal_vae" in failed and "loss became NaN at epoch 3" in failed
    assert "loss became NaN at epoch 3" in (suite[1] / "index.html").read_text()


def test_html_is_self_contained(suite):
    html = (suite[1] / "index.html").read_text()
    assert "data:image/png;base64," in html
    assert not re.search(r"(src|href)=\"(https?:)?//", html)
    assert "<link" not in html and "<script src" not in html
    assert 'class="sortable"' in html and "addEventListener" in html


def test_html_footer_shows_record_and_argument_provenance(suite):
    footer = (suite[1] / "index.html").read_text().split("<footer>", 1)[1]
    assert "0123abc" in footer and "fixture-host" in footer and "synthetic-suite-42" in footer


def test_tex_uses_booktabs_and_escapes_underscores(suite):
    tex = (suite[1] / "leaderboard.tex").read_text()
    for rule in (r"\toprule", r"\midrule", r"\bottomrule"):
        assert tex.count(rule) == 2
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


def test_default_metrics_are_those_present(suite):
    frame = report.records_frame(suite[0])
    assert report.select_metrics(frame, None) == report.DEFAULT_METRICS


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
    assert "± 0.000" in (tmp_path / "report" / "leaderboard.md").read_text()
    assert not (tmp_path / "report" / "figures" / "reconstruction_vs_disentanglement.png").exists()


def test_every_table_says_what_each_method_is_given_and_its_latent_size(suite):
    _, out, _ = suite
    markdown = (out / "leaderboard.md").read_text()
    assert "| model | given | latent |" in markdown
    assert "| beta_vae | nothing | 16 |" in markdown and "| icm_vae | labels, true graph | 16 |" in markdown
    assert r"causal\_vae & labels, initial graph & 16" in (out / "leaderboard.tex").read_text()
    html = (out / "index.html").read_text()
    assert "<th>given</th><th>latent</th>" in html and ">labels, true graph</td>" in html
    frame = pd.read_csv(out / "leaderboard.csv")
    assert set(frame.loc[frame["label"] == "beta_vae", "given"]) == {"nothing"}
    assert set(frame.loc[frame["label"] == "causal_vae", "given"]) == {"labels, initial graph"}
    assert set(frame.loc[frame["label"] == "icm_vae", "latent_size"]) == {16}


def test_the_training_table_states_the_fraction_of_the_reference_run_and_the_schedule(suite):
    _, out, _ = suite
    markdown = (out / "leaderboard.md").read_text()
    assert "## Training budgets and schedules" in markdown
    assert "| pendulum | icm_vae | 64 | 1,920 | 101 epochs | 0.38 % | budget, finished |" in markdown
    assert "| pendulum | beta_vae | 64 | 1,920 | 101 epochs | 0.38 % | none |" in markdown

