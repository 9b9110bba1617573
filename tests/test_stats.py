"""crlbench.reports.stats: bootstrap intervals, paired Wilcoxon tests with Holm, average ranks with Friedman."""

import math

import numpy as np
import pandas as pd
import pytest

from crlbench.reports import stats, tables

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


# --- rank tests that say their population ---------------------------------------------------------


def test_friedman_over_two_datasets_gives_the_exact_permutation_p_not_the_chi_square_one():
    # 4 labels ranked the same on 2 datasets: chi-square says 0.11, the exact permutation p is 1/24
    frame = cell_frame({"icm_vae": 0.9, "causal_vae": 0.6, "dear": 0.5, "beta_vae": 0.3},
                       datasets=("pendulum", "flow"))
    result = stats.rank_test(frame, HIGH)
    assert result.friedman_p == pytest.approx(1 / 24)
    assert result.p_method.startswith("exact permutation") and "576" in result.p_method
    assert result.blocks == "datasets" and "datasets" in result.population


def test_the_exact_friedman_p_counts_every_arrangement_by_brute_force():
    rng = np.random.default_rng(4)
    ranks = np.array([rng.permutation(3) + 1 for _ in range(4)], dtype=float)
    ranks[1] = [1.5, 1.5, 3]  # a tie inside a block
    observed = np.sum(ranks.sum(axis=0) ** 2)
    import itertools
    orderings = [list(itertools.permutations(row)) for row in ranks]
    totals = [np.sum(np.sum(np.array(choice), axis=0) ** 2) for choice in itertools.product(*orderings)]
    expected = np.mean(np.array(totals) >= observed - 1e-9)
    p_value, method = stats.friedman_permutation_p(ranks)
    assert p_value == pytest.approx(expected) and method.startswith("exact")


def test_many_arrangements_give_a_seeded_monte_carlo_p_that_says_so():
    ranks = np.tile(np.arange(1.0, 5.0), (3, 1))
    p_value, method = stats.friedman_permutation_p(ranks, exact_limit=100, permutations=999, seed=2)
    again, _ = stats.friedman_permutation_p(ranks, exact_limit=100, permutations=999, seed=2)
    assert p_value == again and "Monte Carlo" in method and "999" in method
    exact, _ = stats.friedman_permutation_p(ranks)
    assert 1 / 1000 <= p_value and p_value == pytest.approx(exact, abs=0.01)


def test_ranks_within_a_dataset_use_matched_seeds_as_blocks():
    frame = cell_frame({"icm_vae": 0.9, "dear": 0.5, "beta_vae": 0.3}, datasets=("flow",), seeds=range(5))
    frame = frame[~((frame["label"] == "dear") & (frame["seed"] == 4))]  # seed 4 is not matched
    result = stats.seed_rank_test(frame, "flow", HIGH)
    assert result.blocks == "seeds" and result.dataset == "flow" and "not other datasets" in result.population
    assert list(result.per_dataset.index) == [0, 1, 2, 3]
    assert result.average_ranks.to_dict() == {"icm_vae": 1.0, "dear": 2.0, "beta_vae": 3.0}
    assert result.friedman_p == pytest.approx(1 / 6 ** 3)  # the same order in 4 seeds: 3! ** (4 - 1) arrangements
    assert any("1 seed(s)" in note for note in result.notes)


def test_a_critical_difference_beyond_k_minus_1_is_said_unreachable():
    frame = cell_frame({"icm_vae": 0.9, "causal_vae": 0.6, "dear": 0.5, "beta_vae": 0.3},
                       datasets=("pendulum", "flow"))
    result = stats.rank_test(frame, HIGH)
    assert result.critical_difference > 3 and not result.reachable
    (sentence,) = tables.unreachable_sentences([result])
    assert "no critical-difference diagram" in sentence and HIGH in sentence
    many = stats.rank_test(cell_frame({"a": 0.9, "b": 0.6, "c": 0.3}, datasets=[f"d{i}" for i in range(6)]), HIGH)
    assert many.reachable and tables.unreachable_sentences([many]) == []


# --- paired effect sizes and the Holm design ------------------------------------------------------


def test_paired_tests_carry_the_mean_paired_difference_with_its_interval():
    frame = cell_frame({"icm_vae": 0.9, "beta_vae": 0.3}, datasets=("pendulum",), seeds=range(8))
    row = stats.paired_tests(frame, [HIGH]).table.iloc[0]
    seeds = stats.seed_table(frame, HIGH)
    differences = seeds["beta_vae"] - seeds["icm_vae"]
    assert row["mean_difference"] == pytest.approx(differences.mean())
    assert row["difference_low"] <= row["mean_difference"] <= row["difference_high"] < 0
    assert row["difference_method"] == "BCa"
    again = stats.paired_tests(frame, [HIGH]).table.iloc[0]
    assert (again["difference_low"], again["difference_high"]) == (row["difference_low"], row["difference_high"])


def test_the_smallest_holm_p_of_a_design_is_m_times_two_over_two_to_the_n():
    assert stats.smallest_holm_p(8, 3) == pytest.approx(3 * 2 / 256)
    assert stats.smallest_holm_p(3, 3) == 0.75 and stats.smallest_holm_p(2, 3) == 1.0 and math.isnan(stats.smallest_holm_p(1, 3))
    frame = cell_frame({"icm_vae": 0.9, "a": 0.3, "b": 0.2, "c": 0.1}, datasets=("pendulum",), seeds=range(8))
    table = stats.paired_tests(frame, [HIGH]).table
    assert (table["family_size"] == 3).all() and np.allclose(table["smallest_p_holm"], 3 * 2 / 256)
    assert table["p_holm"].min() == pytest.approx(3 * 2 / 256)  # a clear difference reaches the floor
    (line,) = stats.design_text(table)
    assert "n = 8" in line and "m = 3" in line and "0.023" in line


def test_comparisons_without_two_matched_seeds_are_counted_on_one_line_whatever_their_family():
    """Untested comparisons of two designs (families of 4 and 5) were two identical-looking lines."""
    table = pd.DataFrame({"n_pairs": [3, 1, 0, 1], "family_size": [4, 4, 5, 5]})
    lines = stats.design_text(table)
    assert lines[0].startswith("n = 3 matched seeds, m = 4 comparisons (1 in all)")
    assert lines[1:] == ["3 comparison(s) with fewer than 2 matched seeds: untested."]
