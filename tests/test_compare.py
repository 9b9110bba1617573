"""crlbench compare and crlbench.reports.compare: two sets of scores side by side, paired on matched seeds."""

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.stats

from crlbench.cli import EXIT_INPUT, main
from crlbench.reports.compare import COMPARE_COLUMNS, compare_scores, render_markdown
from crlbench.reports.scores_frame import SCORES_COLUMNS
from crlbench.reports.stats import bootstrap_interval
from report_fixture import write_cells

MCC, CF = "mcc@pearson.mcc", "counterfactual@probe.counterfactual_mse"
SMALL = {"codes": 4, "samples": 2, "epochs": 3}


def frame(values: dict[tuple[str, int], float], *, score: str = MCC, dataset: str = "pendulum",
          flags: dict[tuple[str, int], str] | None = None, status: str = "ok") -> pd.DataFrame:
    """A scores frame: one row per (method, seed) -> value."""
    flags = flags or {}
    rows = [{"suite": "s", "budget": "3 epochs of 64", "seed": seed, "method": method, "model": method,
             "dataset": dataset, "score": score, "value": value, "status": status,
             "flags": flags.get((method, seed), ""),
             "reference": False, "converged": True, "hash": f"{method}{seed}", "epochs": 3, "steps": None,
             "batch_size": 64, "image_size": 32} for (method, seed), value in values.items()]
    return pd.DataFrame(rows, columns=SCORES_COLUMNS)


def test_the_difference_and_p_are_taken_on_the_seeds_both_sides_have():
    a = frame({("icm_vae", seed): 0.5 + 0.01 * seed for seed in range(8)})
    b = frame({("icm_vae", seed): 0.6 + 0.02 * seed for seed in range(1, 9)})  # seed 8 only in b, 0 only in a
    (row,) = compare_scores(a, b).to_dict("records")
    matched = np.arange(1, 8)
    differences = (0.6 + 0.02 * matched) - (0.5 + 0.01 * matched)
    assert (row["n_a"], row["n_b"], row["n_pairs"]) == (8, 8, 7)
    assert row["mean_a"] == pytest.approx(0.5 + 0.01 * 3.5) and row["mean_b"] == pytest.approx(0.6 + 0.02 * 4.5)
    assert row["difference"] == pytest.approx(differences.mean())
    interval = bootstrap_interval(differences)
    assert (row["difference_low"], row["difference_high"]) == pytest.approx((interval.low, interval.high))
    exact = scipy.stats.wilcoxon(0.6 + 0.02 * matched, 0.5 + 0.01 * matched, method="exact").pvalue
    assert row["p_value"] == pytest.approx(exact) == pytest.approx(2 / 2 ** 7)  # all 7 differences positive


def test_two_labels_of_one_frame_compare_as_one_row():
    both = pd.concat([frame({("icm_vae", seed): 0.5 for seed in range(3)}),
                      frame({("icm_vae (tuned)", seed): 0.7 for seed in range(3)})])
    table = compare_scores(both, both, labels=("icm_vae", "icm_vae (tuned)"))
    assert table[["method", "n_pairs", "difference", "p_value"]].values.tolist() == [
        ["icm_vae vs icm_vae (tuned)", 3, pytest.approx(0.2), 1 / 4]]


def test_a_row_on_one_side_only_is_kept_with_no_pairs():
    a = frame({("icm_vae", 0): 0.5, ("beta_vae", 0): 0.2})
    b = frame({("icm_vae", 0): 0.6})
    table = compare_scores(a, b).set_index("method")
    assert table.loc["beta_vae", "n_b"] == 0 and table.loc["beta_vae", "n_pairs"] == 0
    assert math.isnan(table.loc["beta_vae", "mean_b"]) and math.isnan(table.loc["beta_vae", "p_value"])


def test_failed_cells_are_left_out_and_flagged_ones_counted():
    a = pd.concat([frame({("icm_vae", 0): 0.5, ("icm_vae", 1): 0.4}, flags={("icm_vae", 1): "posterior_collapse"}),
                   frame({("icm_vae", 2): math.nan}, status="failed")])
    (row,) = compare_scores(a, a).to_dict("records")
    assert (row["n_a"], row["flagged_a"], row["n_pairs"]) == (2, 1, 2)


def test_unknown_scores_and_labels_are_named():
    a = frame({("icm_vae", 0): 0.5})
    with pytest.raises(ValueError, match="unknown scores \\['dci@reg.x'\\]"):
        compare_scores(a, a, scores=["dci@reg.x"])
    with pytest.raises(ValueError, match="no method 'dear'; the labels there are \\['icm_vae'\\]"):
        compare_scores(a, a, labels=("icm_vae", "dear"))


def test_the_markdown_has_a_table_per_dataset_with_signed_differences_and_directions():
    a = pd.concat([frame({("icm_vae", s): 0.01 * (s + 1) for s in range(3)}, score=CF),
                   frame({("icm_vae", s): 0.5 for s in range(3)}, dataset="flow")])
    b = pd.concat([frame({("icm_vae", s): 0.02 * (s + 1) for s in range(3)}, score=CF),
                   frame({("icm_vae", s): 0.4 for s in range(3)}, dataset="flow")])
    text = render_markdown(compare_scores(a, b), names=("main (6 cells)", "branch (6 cells)"))
    assert "- **a**: main (6 cells)" in text and "## pendulum" in text and "## flow" in text
    assert "| icm_vae | CF MSE ↓ | 0.0200 (3) | 0.0400 (3) | +0.02" in text
    assert "| icm_vae | MCC ↑ | 0.500 (3) | 0.400 (3) | -0.1" in text
    assert "CF MSE = `counterfactual@probe.counterfactual_mse` (lower is better)" in text


# --- the command line ----------------------------------------------------------------------------


def recorded(root: Path, *, suite: str = "synthetic", noise: float = 0.02, epochs: int = 3) -> Path:
    write_cells(root, datasets=("pendulum",), labels=("icm_vae", "beta_vae"), seeds=range(3), failed=None,
                noise=noise, **{**SMALL, "epochs": epochs})
    for path in root.rglob("result.json"):
        record = json.loads(path.read_text())
        record["cell"]["suite"] = suite
        path.write_text(json.dumps(record))
    return root


def test_two_work_directories_print_markdown(tmp_path, capsys):
    recorded(tmp_path / "main"), recorded(tmp_path / "branch", noise=0.05)
    assert main(["compare", str(tmp_path / "main"), str(tmp_path / "branch"), "--metric", MCC]) == 0
    text = capsys.readouterr().out
    assert f"- **a**: {tmp_path / 'main'} (6 cells)" in text
    assert text.count("| MCC ↑ |") == 2 and "| 3 |" in text


def test_the_out_folder_gets_markdown_and_csv(tmp_path, capsys):
    recorded(tmp_path / "main"), recorded(tmp_path / "branch", noise=0.05)
    assert main(["compare", str(tmp_path / "main"), str(tmp_path / "branch"), "--out", str(tmp_path / "cmp")]) == 0
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert list(table.columns) == COMPARE_COLUMNS and set(table["n_pairs"]) == {3}
    assert "## pendulum" in (tmp_path / "cmp" / "compare.md").read_text()


def test_two_suites_of_one_work_directory_and_a_mixed_side(tmp_path, capsys):
    recorded(tmp_path / "runs" / "short", suite="short")
    recorded(tmp_path / "runs" / "long", suite="long", epochs=30)
    runs = str(tmp_path / "runs")
    assert main(["compare", runs, "--suites", "short", "long", "--metric", MCC]) == 0
    assert "- **b**: " + runs + " suite long (6 cells)" in capsys.readouterr().out
    assert main(["compare", runs, runs, "--metric", MCC]) == EXIT_INPUT  # each side pools 3 and 30 epochs
    assert "budget.epochs: 3 (seeds 0-2; suite short); 30 (seeds 0-2; suite long)" in capsys.readouterr().err
    assert main(["compare", runs, runs, "--metric", MCC, "--pool"]) == 0


def test_one_source_needs_a_split(tmp_path, capsys):
    recorded(tmp_path / "runs")
    assert main(["compare", str(tmp_path / "runs")]) == EXIT_INPUT
    assert "give a second source, or split one with --suites A B or --labels A B" in capsys.readouterr().err
    assert main(["compare", str(tmp_path / "runs"), "--labels", "beta_vae", "icm_vae", "--metric", MCC]) == 0
    assert "| beta_vae vs icm_vae | MCC ↑ |" in capsys.readouterr().out


def test_repeated_label_pairs_make_one_table(tmp_path, capsys):
    write_cells(tmp_path / "runs", datasets=("pendulum",), labels=("icm_vae", "icm_vae (tuned)", "beta_vae",
                                                                 "beta_vae (tuned)"), seeds=range(3), failed=None,
                **SMALL)
    assert main(["compare", str(tmp_path / "runs"), "--labels", "icm_vae", "icm_vae (tuned)", "--labels", "beta_vae",
                 "beta_vae (tuned)", "--metric", MCC, "--out", str(tmp_path / "cmp")]) == 0
    table = pd.read_csv(tmp_path / "cmp" / "compare.csv")
    assert list(table["method"]) == ["icm_vae vs icm_vae (tuned)", "beta_vae vs beta_vae (tuned)"]
    assert set(table["n_pairs"]) == {3}
    text = (tmp_path / "cmp" / "compare.md").read_text()
    assert "label icm_vae (6 cells)" not in text and "label icm_vae (3 cells); " in text
    assert main(["compare", str(tmp_path / "runs"), "--labels", "icm_vae", "dear"]) == EXIT_INPUT
    assert "no cell of label dear" in capsys.readouterr().err
