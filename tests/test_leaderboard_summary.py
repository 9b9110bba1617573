"""benchmarks/leaderboard_summary.py, the leaderboard at a glance that docs/leaderboard.md quotes."""

import math

import pandas as pd
import pytest

from benchmark_fixture import load_benchmark


@pytest.fixture(scope="module")
def leaderboard_summary():
    return load_benchmark("leaderboard_summary")


def row(dataset, label, metric, mean, *, low=None, high=None, best=False, significant=False, flagged=0, n_ok=8,
        reference=False, given="labels", unconverged=0.0):
    return {"dataset": dataset, "label": label, "metric": metric, "mean": mean,
            "ci_low": mean - 0.01 if low is None else low, "ci_high": mean + 0.01 if high is None else high,
            "best": best, "significant": significant, "flagged": flagged, "n_ok": n_ok, "reference": reference,
            "given": given, "seeds_unconverged": unconverged}


DCI, MCC = "dci@reg.disentanglement", "mcc@pearson.mcc"


def test_each_cell_carries_the_reports_marks_and_precision(leaderboard_summary):
    frame = pd.DataFrame([
        row("pendulum", "a", DCI, 0.96812, best=True), row("pendulum", "a", MCC, 0.99, significant=True),
        row("pendulum", "b", DCI, 0.27, flagged=2, low=0.14, high=0.40, unconverged=6.0),
        row("pendulum", "b", MCC, 0.58, flagged=4, unconverged=6.0),
        row("flow", "a", DCI, 0.5, n_ok=4), row("flow", "a", MCC, 0.6, n_ok=4),
        row("flow", "c", DCI, 0.4), row("flow", "c", MCC, 0.7),
    ])
    lines = leaderboard_summary.summary(frame).splitlines()
    assert lines[0] == "| mean over seeds: DCI disentanglement / MCC | given | pendulum | flow |"
    assert lines[2] == "| a | labels | **0.968** / 0.990 † | 0.500 / 0.600 (4 seeds) |"  # flow has 8 seeds of c
    assert lines[3] == "| b | labels | 0.27 § 2/8 / 0.580 § 4/8 ‡ 6 | – |"  # b never ran on flow


def test_reference_rows_follow_in_italics_and_those_without_the_scores_are_left_out(leaderboard_summary):
    frame = pd.DataFrame([
        row("pendulum", "floor", DCI, 0.12, reference=True, given="nothing"),
        row("pendulum", "floor", MCC, 0.61, reference=True, given="nothing"),
        row("pendulum", "copy", DCI, math.nan, reference=True, given="nothing"),
        row("pendulum", "a", DCI, 0.9), row("pendulum", "a", MCC, 0.95),
    ])
    lines = leaderboard_summary.summary(frame).splitlines()
    assert [line.split(" | ")[0] for line in lines[2:]] == ["| a", "| *floor (reference)*"]
    assert lines[-1] == "| *floor (reference)* | *nothing* | *0.120 / 0.610* |"


def test_a_method_without_one_score_says_so(leaderboard_summary):
    frame = pd.DataFrame([row("pendulum", "a", DCI, 0.9)])
    assert "| a | labels | 0.900 / n/a |" in leaderboard_summary.summary(frame)


def test_a_method_given_different_things_per_dataset_names_each(leaderboard_summary):
    frame = pd.DataFrame([
        row("pendulum", "a", DCI, 0.9, given="labels, initial graph"),
        row("flow", "a", DCI, 0.9, given="labels, initial graph"),
        row("causal_circuit", "a", DCI, 0.9, given="labels"), row("causal_circuit", "b", DCI, 0.5),
    ])
    lines = leaderboard_summary.summary(frame).splitlines()
    assert lines[2].startswith("| a | labels, initial graph (pendulum, flow); labels (causal_circuit) | ")
    assert lines[3].startswith("| b | labels | – | – | ")
