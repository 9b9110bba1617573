"""crlbench.reports.stats: bootstrap intervals, paired Wilcoxon tests with Holm, average ranks with Friedman."""

import math

import numpy as np
import pandas as pd
import pytest

from crlbench.reports import stats

HIGH, LOW = "dci@reg.disentanglement", "counterfactual@probe.counterfactual_mse"


def cell_frame(quality: dict[str, float], *, datasets=("pendulum", "flow", "causal_circuit"), seeds=range(3),
               spread: float = 0.02, seed: int = 0) -> pd.DataFrame:
    """One row per cell; HIGH grows and LOW shrinks with each label's quality."""
    rng = np.random.default_rng(seed)
    rows = [{"dataset": dataset, "label": label, "model": label, "seed": s, "status": "ok", "error": None,
             "hash": f"{dataset}-{label}-{s}", HIGH: q + spread * rng.standard_normal(),
             LOW: 1 - q + spread * rng.standard_normal()}
            for dataset in datasets for label, q in quality.items() for s in seeds]
    return pd.DataFrame(rows)


@pytest.mark.parametrize("name", ["counterfactual@probe.counterfactual_mse", "x.non_descendant_shift",
                                  "counterfactual@probe.target_error", "reconstruction.loss", "RECON.MSE"])
def test_direction_is_min_for_mse_error_shift_and_loss(name):
    assert stats.direction(name) == "min"


@pytest.mark.parametrize("name", ["dci@reg.disentanglement", "mic@aligned.tic", "mcc@pearson.mcc"])
def test_direction_is_max_for_other_scores(name):
    assert stats.direction(name) == "max"


def test_bootstrap_interval_contains_the_mean():
    values = np.random.default_rng(1).normal(0.5, 0.1, size=5)
    interval = stats.bootstrap_interval(values)
    assert interval.method == "BCa"
    assert interval.low <= interval.mean <= interval.high
    assert interval.mean == pytest.approx(values.mean())
    assert interval.high - interval.low > 0


def test_bootstrap_interval_is_seeded():
    values = [0.41, 0.47, 0.52, 0.44]
    first, again = stats.bootstrap_interval(values, seed=3), stats.bootstrap_interval(values, seed=3)
    assert (first.low, first.high) == (again.low, again.high)


def test_single_seed_gives_a_zero_width_interval():
    interval = stats.bootstrap_interval([0.7])
    assert (interval.low, interval.mean, interval.high, interval.method) == (0.7, 0.7, 0.7, "single")


def test_two_seeds_give_the_percentile_interval_spanning_both_values():
    interval = stats.bootstrap_interval([0.5, 0.6])
    assert interval.method == "percentile"
    assert interval.low == pytest.approx(0.5) and interval.high == pytest.approx(0.6)


def test_identical_seeds_give_a_constant_interval_and_nan_is_ignored():
    interval = stats.bootstrap_interval([0.3, 0.3, 0.3, math.nan])
    assert (interval.n, interval.halfwidth, interval.method) == (3, 0.0, "constant")
    assert stats.bootstrap_interval([]).method == "empty"


def test_summarise_counts_failed_cells_in_total_only():
    frame = cell_frame({"icm_vae": 0.9, "beta_vae": 0.3}, datasets=("pendulum",))
    frame.loc[(frame["label"] == "beta_vae") & (frame["seed"] == 2), ["status", HIGH, LOW]] = ["failed", np.nan, np.nan]
    summary = stats.summarise(frame, [HIGH]).set_index("label")
    assert summary.loc["beta_vae", ["n_ok", "n_total"]].tolist() == [2, 3]
    assert summary.loc["icm_vae", ["n_ok", "n_total"]].tolist() == [3, 3]


def test_holm_p_values_are_at_least_the_raw_ones():
    frame = cell_frame({"icm_vae": 0.8, "a": 0.78, "b": 0.7, "c": 0.81}, seeds=range(8), spread=0.05)
    table = stats.paired_tests(frame, [HIGH, LOW]).table
    assert len(table) == 3 * 3 * 2
    assert (table["p_holm"] >= table["p_value"] - 1e-12).all()
    assert (table["p_holm"] <= 1).all()


def test_holm_corrects_within_one_metric_of_one_dataset():
    frame = cell_frame({"icm_vae": 0.8, "a": 0.78, "b": 0.7, "c": 0.81}, seeds=range(8), spread=0.05)
    table = stats.paired_tests(frame, [HIGH, LOW]).table
    for (dataset, metric), family in table.groupby(["dataset", "metric"]):
        ordered = family.sort_values("p_value")
        assert ordered["p_holm"].iloc[0] == pytest.approx(min(1.0, len(family) * ordered["p_value"].iloc[0]))


def test_six_seeds_with_three_comparisons_cannot_survive_holm_and_a_note_says_so():
    frame = cell_frame({"icm_vae": 0.9, "a": 0.3, "b": 0.2, "c": 0.1}, datasets=("pendulum",), seeds=range(6))
    result = stats.paired_tests(frame, [HIGH])
    assert result.table["p_value"].min() == pytest.approx(2 / 2 ** 6)
    assert (result.table["p_holm"] >= 0.05).all()
    assert any("after correction" in note for note in result.notes)


def test_clear_difference_is_significant_with_eight_seeds():
    frame = cell_frame({"icm_vae": 0.9, "beta_vae": 0.3}, datasets=("pendulum",), seeds=range(8))
    table = stats.paired_tests(frame, [HIGH]).table
    assert table["n_pairs"].item() == 8
    assert table["p_holm"].item() < 0.05


def test_three_seeds_cannot_be_significant_and_a_note_says_so():
    frame = cell_frame({"icm_vae": 0.9, "beta_vae": 0.3}, datasets=("pendulum",))
    result = stats.paired_tests(frame, [HIGH])
    assert result.table["p_value"].item() == pytest.approx(0.25)
    assert any("smallest attainable" in note for note in result.notes)


def test_paired_tests_use_only_matched_seeds():
    frame = cell_frame({"icm_vae": 0.9, "beta_vae": 0.3}, datasets=("pendulum",), seeds=range(6))
    frame = frame[~((frame["label"] == "beta_vae") & (frame["seed"] == 0))]
    frame = frame[~((frame["label"] == "icm_vae") & (frame["seed"] == 5))]
    assert stats.paired_tests(frame, [HIGH]).table["n_pairs"].item() == 4


def test_missing_reference_label_gives_a_note_not_an_error():
    frame = cell_frame({"dear": 0.5, "beta_vae": 0.3})
    result = stats.paired_tests(frame, [HIGH], reference="icm_vae")
    assert result.table.empty
    assert any("reference label" in note for note in result.notes)


@pytest.mark.parametrize("metric", [HIGH, LOW])
def test_rank_one_is_the_best_label_for_either_direction(metric):
    frame = cell_frame({"icm_vae": 0.9, "causal_vae": 0.6, "dear": 0.5, "beta_vae": 0.3})
    result = stats.rank_test(frame, metric)
    assert result.average_ranks.to_dict() == {"icm_vae": 1.0, "causal_vae": 2.0, "dear": 3.0, "beta_vae": 4.0}
    assert result.friedman_p < 0.05
    assert result.nemenyi.shape == (4, 4)
    assert result.critical_difference > 0


def test_two_models_give_nan_friedman_with_a_note():
    result = stats.rank_test(cell_frame({"icm_vae": 0.9, "beta_vae": 0.3}), HIGH)
    assert math.isnan(result.friedman_p) and result.nemenyi is None
    assert any("at least 2 datasets and 3 models" in note for note in result.notes)


def test_one_dataset_gives_nan_friedman():
    frame = cell_frame({"icm_vae": 0.9, "dear": 0.5, "beta_vae": 0.3}, datasets=("flow",))
    result = stats.rank_test(frame, HIGH)
    assert math.isnan(result.friedman_p)
    assert result.average_ranks["icm_vae"] == 1.0


def test_all_ties_give_nan_friedman_without_raising():
    frame = cell_frame({"a": 0.5, "b": 0.5, "c": 0.5}, spread=0.0)
    assert math.isnan(stats.rank_test(frame, HIGH).friedman_p)
