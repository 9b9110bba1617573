"""Cross-seed statistics for the leaderboard: bootstrap intervals, paired tests and effect sizes, ranks.

All functions take a tidy frame with one row per cell (columns ``dataset``, ``label``, ``seed``,
``status`` and one column per score, as built by :func:`crlbench.reports.report.records_frame`). Only rows with
``status == "ok"`` and a finite score enter a statistic; failed cells are only counted. The report
passes the methods' rows only: reference rows are never tested or ranked.

- Means carry a 95% bootstrap interval over seeds (Efron & Tibshirani 1993, ch. 14: BCa;
  ``scipy.stats.bootstrap``). With one seed the interval is the single value (zero width, method
  ``"single"``); with two seeds the percentile bootstrap is used, whose interval is the range of the
  two values (method ``"percentile"``), a description of the spread rather than a real 95% interval;
  seeds with identical values give a zero-width interval (method ``"constant"``).
- Each label is compared with a comparison label on matched seeds by the Wilcoxon signed-rank test
  (Wilcoxon 1945; Demsar 2006, sec. 3.1.3), Holm-corrected (Holm 1979) across the comparisons of one
  metric on one dataset (each other label against the comparison label: the family a reader of one
  column draws conclusions from). With n pairs the exact two-sided p is at least 2 / 2**n, so fewer
  than 6 seeds can never reach p < 0.05, and with m comparisons the smallest Holm-adjusted p is
  min(1, m * 2 / 2**n) (:func:`smallest_holm_p`; 7 seeds for 3 comparisons). Each comparison carries
  its effect size: the mean paired difference (label minus comparison label) with the same bootstrap
  interval over the matched seeds.
- Rank tests say which population they speak for. Across datasets (:func:`rank_test`, blocks =
  datasets, each label's mean over seeds ranked within a dataset): a p-value speaks for datasets like
  these. Within a dataset across seeds (:func:`seed_rank_test`, blocks = matched seeds): it speaks for
  the training randomness of this setup on this dataset, not for other datasets. Both use the
  Friedman statistic with a permutation p (ranks permuted within each block; Friedman 1937): exact,
  over every arrangement, when there are at most :data:`EXACT_ARRANGEMENTS` of them ((k!)^N for k labels
  and N blocks), else Monte Carlo with :data:`PERMUTATIONS` seeded permutations, p = (1 + b) / (1 +
  PERMUTATIONS) with b the permuted statistics at least the observed (Phipson & Smyth 2010). The
  chi-square approximation is not used: it is poor for few blocks (2 datasets and 4 labels: chi-square
  p = 0.11 where the exact p is 1/24). Across datasets, the Nemenyi post-hoc (Demsar 2006, sec. 3.2.2)
  gives the critical difference CD = q_alpha * sqrt(k (k + 1) / (6 N)); a diagram is drawn only when CD
  is at most k - 1, the largest gap two average ranks can have.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.stats
import scikit_posthocs
from statsmodels.stats.multitest import multipletests

Direction = Literal["max", "min"]

ID_COLUMNS = ("dataset", "label", "model", "seed", "status", "error", "hash", "metric_errors", "not_applicable",
              "reference")
LOWER_IS_BETTER = ("mse", "error", "shift", "loss", "shd")  # shd: graph@card's structural Hamming distance
CONFIDENCE = 0.95
N_RESAMPLES = 9999
ALPHA = 0.05
EXACT_ARRANGEMENTS = 10 ** 6  # a Friedman p is exact when (k!)^N rank arrangements are at most this many
PERMUTATIONS = 9999  # else Monte Carlo with this many seeded permutations


def direction(column: str) -> Direction:
    """``"min"`` for scores whose name contains mse, error, shift, loss or shd, otherwise ``"max"``."""
    name = column.lower()
    return "min" if any(word in name for word in LOWER_IS_BETTER) else "max"


def score_columns(frame: pd.DataFrame) -> list[str]:
    """The score columns of a cell frame: every column that is not an identifier."""
    return [column for column in frame.columns if column not in ID_COLUMNS]


def ok_values(frame: pd.DataFrame, column: str) -> pd.Series:
    """The finite values of ``column`` in the rows whose status is ok."""
    values = pd.to_numeric(frame.loc[frame["status"] == "ok", column], errors="coerce")
    return values[np.isfinite(values)]


# --- means and intervals -------------------------------------------------------------------------


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and its bootstrap interval; ``method`` says how the interval was made."""

    mean: float
    low: float
    high: float
    n: int
    method: str  # "BCa", "percentile", "single", "constant" or "empty"

    @property
    def halfwidth(self) -> float:
        return (self.high - self.low) / 2


def bootstrap_interval(values, *, confidence: float = CONFIDENCE, seed: int = 0,
                       n_resamples: int = N_RESAMPLES) -> Interval:
    """The mean of ``values`` with its bootstrap confidence interval (BCa from 3 values on).

    The resampling is seeded with ``seed``, so the same values give the same interval. Fewer than
    three values or values without spread fall back as described in the module docstring; a BCa
    interval that comes out undefined falls back to the percentile interval.
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0:
        return Interval(math.nan, math.nan, math.nan, 0, "empty")
    mean = float(values.mean())
    if values.size == 1:
        return Interval(mean, mean, mean, 1, "single")
    if np.ptp(values) == 0:
        return Interval(mean, mean, mean, int(values.size), "constant")
    methods = ["BCa", "percentile"] if values.size >= 3 else ["percentile"]
    for method in methods:
        low, high = _bootstrap(values, method, confidence, seed, n_resamples)
        if np.isfinite(low) and np.isfinite(high):
            return Interval(mean, float(min(low, mean)), float(max(high, mean)), int(values.size), method)
    return Interval(mean, float(values.min()), float(values.max()), int(values.size), "range")


def _bootstrap(values: np.ndarray, method: str, confidence: float, seed: int,
               n_resamples: int) -> tuple[float, float]:
    result = scipy.stats.bootstrap((values,), np.mean, method=method, confidence_level=confidence,
                                   n_resamples=n_resamples, rng=np.random.default_rng(seed))
    return result.confidence_interval.low, result.confidence_interval.high


def summarise(frame: pd.DataFrame, metrics: list[str], *, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, label, metric): mean, ci_low, ci_high, ci_method, n_ok, n_total.

    ``n_total`` counts every cell of the group, failed ones included; ``n_ok`` the finite values.
    """
    rows = []
    for (dataset, label), group in frame.groupby(["dataset", "label"], sort=False):
        for metric in metrics:
            interval = bootstrap_interval(ok_values(group, metric), seed=seed)
            rows.append({"dataset": dataset, "label": label, "metric": metric, "direction": direction(metric),
                         "mean": interval.mean, "ci_low": interval.low, "ci_high": interval.high,
                         "ci_method": interval.method, "n_ok": interval.n, "n_total": len(group)})
    return pd.DataFrame(rows, columns=["dataset", "label", "metric", "direction", "mean", "ci_low", "ci_high",
                                       "ci_method", "n_ok", "n_total"])


# --- paired comparisons against a reference ------------------------------------------------------


@dataclass
class PairedTests:
    """Wilcoxon tests and paired differences of each label against the comparison label, one row per
    (dataset, label, metric)."""

    table: pd.DataFrame  # PAIRED_COLUMNS
    notes: list[str] = field(default_factory=list)
    comparison: str = "icm_vae"


PAIRED_COLUMNS = ["dataset", "label", "metric", "n_pairs", "statistic", "p_value", "mean_difference",
                  "difference_low", "difference_high", "difference_method", "family_size", "p_holm",
                  "smallest_p_holm"]


def seed_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Seeds x labels: the finite values of ``metric`` in ok rows (mean if a seed repeats)."""
    ok = frame[frame["status"] == "ok"]
    values = pd.to_numeric(ok[metric], errors="coerce").where(lambda column: np.isfinite(column))
    return values.groupby([ok["seed"], ok["label"]]).mean().unstack("label")


def matched_pairs(seeds: pd.DataFrame, label: str, reference: str) -> tuple[np.ndarray, np.ndarray]:
    """The values of ``label`` and ``reference`` (columns of a seed table) on seeds where both exist."""
    if label not in seeds or reference not in seeds:
        return np.empty(0), np.empty(0)
    both = seeds[[label, reference]].dropna()
    return both[label].to_numpy(), both[reference].to_numpy()


def wilcoxon_pair(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """Two-sided Wilcoxon signed-rank statistic and p on paired values; NaN with fewer than 2 pairs.

    When every difference is zero there is no evidence of a difference and p is 1.
    """
    if len(x) < 2:
        return math.nan, math.nan
    if np.all(x == y):
        return 0.0, 1.0
    result = scipy.stats.wilcoxon(x, y, alternative="two-sided")
    return float(result.statistic), float(result.pvalue)


def holm(p_values: pd.Series) -> pd.Series:
    """Holm-adjusted p-values; NaN entries stay NaN and do not count as comparisons."""
    adjusted = pd.Series(math.nan, index=p_values.index)
    finite = p_values.dropna()
    if len(finite):
        adjusted[finite.index] = multipletests(finite.to_numpy(), method="holm")[1]
    return adjusted


def smallest_holm_p(pairs: int, comparisons: int) -> float:
    """The smallest Holm-adjusted p a design can reach: m * 2 / 2**n (the exact two-sided Wilcoxon floor for
    n pairs, times the m comparisons of the family), at most 1; NaN below 2 pairs or without comparisons."""
    if pairs < 2 or comparisons < 1:
        return math.nan
    return min(1.0, comparisons * 2.0 / 2 ** pairs)


def paired_tests(frame: pd.DataFrame, metrics: list[str], *, reference: str = "icm_vae",
                 seed: int = 0) -> PairedTests:
    """Each label against ``reference`` (the comparison label) per dataset and metric, on matched seeds: the
    Wilcoxon test, Holm across the labels of one dataset and metric (the family), and the mean paired
    difference (label minus reference) with its bootstrap interval (seeded with ``seed``)."""
    notes: list[str] = []
    rows = []
    for dataset, group in frame.groupby("dataset", sort=False):
        if reference not in set(group["label"]):
            notes.append(f"{dataset}: reference label {reference!r} absent, no paired tests.")
            continue
        others = [name for name in group["label"].unique() if name != reference]
        for metric in metrics:
            seeds = seed_table(group, metric)
            for label in others:
                x, y = matched_pairs(seeds, label, reference)
                statistic, p_value = wilcoxon_pair(x, y)
                difference = bootstrap_interval(x - y, seed=seed)
                rows.append({"dataset": dataset, "label": label, "metric": metric, "n_pairs": len(x),
                             "statistic": statistic, "p_value": p_value, "mean_difference": difference.mean,
                             "difference_low": difference.low, "difference_high": difference.high,
                             "difference_method": difference.method})
    table = pd.DataFrame(rows, columns=PAIRED_COLUMNS[:10])
    table["family_size"] = pd.Series(dtype=int)
    table["p_holm"] = pd.Series(dtype=float)
    for _, index in table.groupby(["dataset", "metric"], sort=False).groups.items():
        table.loc[index, "p_holm"] = holm(table.loc[index, "p_value"])
        table.loc[index, "family_size"] = int(table.loc[index, "p_value"].notna().sum())
    table["family_size"] = table["family_size"].astype(int)
    table["smallest_p_holm"] = [smallest_holm_p(int(n), int(m)) for n, m in
                                zip(table["n_pairs"], table["family_size"].fillna(0))]
    notes.extend(_power_notes(table))
    return PairedTests(table[PAIRED_COLUMNS], notes, reference)


def design_text(table: pd.DataFrame) -> list[str]:
    """One sentence per design (matched seeds n, comparisons m) in the paired tests: its smallest Wilcoxon p
    and smallest Holm-adjusted p."""
    designs = table[table["family_size"] > 0].groupby(["n_pairs", "family_size"]).size()
    lines, untested = [], 0
    for (pairs, comparisons), count in sorted(designs.items(), key=lambda item: (-item[0][0], item[0][1])):
        pairs, comparisons = int(pairs), int(comparisons)
        if pairs < 2:
            untested += int(count)  # one line for all of them, whatever their family sizes
            continue
        floor = 2.0 / 2 ** pairs
        lines.append(f"n = {pairs} matched seeds, m = {comparisons} comparisons ({count} in all): smallest "
                     f"two-sided Wilcoxon p 2/2^{pairs} = {floor:.2g}, smallest Holm-adjusted p "
                     f"min(1, {comparisons} x {floor:.2g}) = {smallest_holm_p(pairs, comparisons):.2g}.")
    if untested:
        lines.append(f"{untested} comparison(s) with fewer than 2 matched seeds: untested.")
    return lines


def _power_notes(table: pd.DataFrame) -> list[str]:
    """Say when too few matched seeds make a significant Wilcoxon result impossible."""
    if table.empty:
        return []
    most_pairs = int(table["n_pairs"].max())
    if most_pairs < 2:
        return ["Fewer than 2 matched seeds: no paired tests were possible."]
    smallest_p = 2.0 / 2 ** most_pairs
    if smallest_p >= ALPHA:
        return [f"With at most {most_pairs} matched seeds the smallest attainable two-sided Wilcoxon p is "
                f"{smallest_p:.3g}, so no comparison can reach p < {ALPHA}."]
    family = int(table.groupby(["dataset", "metric"]).size().max())
    if family * smallest_p >= ALPHA:
        return [f"With at most {most_pairs} matched seeds the smallest attainable two-sided Wilcoxon p is "
                f"{smallest_p:.3g}; Holm over {family} comparisons raises it to {family * smallest_p:.3g}, so no "
                f"comparison can reach p < {ALPHA} after correction."]
    return []


# --- rank tests ----------------------------------------------------------------------------------


ACROSS_DATASETS = ("datasets", "the datasets of this suite as a sample of datasets like them: each label's "
                   "mean over seeds is ranked within each dataset")
WITHIN_DATASET = ("seeds", "the training randomness of this setup on this dataset (other seeds of the same "
                  "configuration), not other datasets: labels are ranked within each seed they all finished")


@dataclass
class RankTest:
    """Average ranks of labels over blocks (datasets, or the seeds of one dataset) for one metric, with the
    Friedman statistic, its permutation p and (across datasets) the Nemenyi critical difference."""

    metric: str
    per_dataset: pd.DataFrame  # blocks x labels, rank 1 = best (blocks: datasets, or seeds)
    average_ranks: pd.Series  # label -> average rank
    friedman_statistic: float = math.nan
    friedman_p: float = math.nan
    p_method: str = ""  # how friedman_p was computed: "exact permutation over ..." or "Monte Carlo, ..."
    nemenyi: pd.DataFrame | None = None  # labels x labels p-values
    critical_difference: float = math.nan
    notes: list[str] = field(default_factory=list)
    blocks: str = "datasets"  # what a block is: "datasets" or "seeds"
    population: str = ACROSS_DATASETS[1]  # which population the test speaks for
    dataset: str | None = None  # the dataset, for a test within one

    @property
    def reachable(self) -> bool:
        """Whether the critical difference can be reached: at most k - 1, the largest possible average-rank gap."""
        groups = self.per_dataset.shape[1]
        return math.isfinite(self.critical_difference) and self.critical_difference <= groups - 1


def mean_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Datasets x labels: the mean over ok seeds of ``metric``."""
    ok = frame[frame["status"] == "ok"].copy()
    ok[metric] = pd.to_numeric(ok[metric], errors="coerce")
    return ok.pivot_table(index="dataset", columns="label", values=metric, aggfunc="mean", sort=False)


def rank_test(frame: pd.DataFrame, metric: str, *, alpha: float = ALPHA, seed: int = 0) -> RankTest:
    """Rank labels within each dataset (1 = best for the metric's direction) and test the ranks (blocks =
    datasets).

    Datasets missing a label's mean are dropped. With fewer than 2 datasets or 3 labels the tests
    are not defined: p-values stay NaN and a note says why.
    """
    means = mean_table(frame, metric) if metric in frame else pd.DataFrame()
    complete, result = _ranked(means, metric)
    if len(complete) < len(means):
        dropped = sorted(set(means.index) - set(complete.index))
        result.notes.append(f"{metric}: datasets without a mean for every label left out of the ranks: {dropped}.")
    blocks, groups = result.per_dataset.shape
    if blocks < 2 or groups < 3:
        result.notes.append(f"{metric}: Friedman and Nemenyi need at least 2 datasets and 3 models "
                            f"(have {blocks} and {groups}); p-values are NaN.")
        return result
    _friedman(result, seed)
    _nemenyi(result, complete, alpha)
    return result


def seed_rank_test(frame: pd.DataFrame, dataset: str, metric: str, *, seed: int = 0) -> RankTest:
    """Rank labels within each seed of ``dataset`` that every label finished (blocks = matched seeds) and test
    the ranks with the Friedman permutation p. No Nemenyi: the diagram is drawn across datasets only."""
    group = frame[frame["dataset"] == dataset]
    seeds = seed_table(group, metric) if metric in group else pd.DataFrame()
    complete, result = _ranked(seeds, metric, blocks=WITHIN_DATASET[0], population=WITHIN_DATASET[1], dataset=dataset)
    if len(complete) < len(seeds):
        result.notes.append(f"{dataset}, {metric}: {len(seeds) - len(complete)} seed(s) without a score for every "
                            "label left out of the ranks across seeds.")
    blocks, groups = result.per_dataset.shape
    if blocks < 2 or groups < 2:
        result.notes.append(f"{dataset}, {metric}: the Friedman test across seeds needs at least 2 matched seeds "
                            f"and 2 labels (have {blocks} and {groups}); p is NaN.")
        return result
    _friedman(result, seed)
    return result


def _ranked(table: pd.DataFrame, metric: str, **where) -> tuple[pd.DataFrame, RankTest]:
    """The blocks (rows) of ``table`` where every label has a value, and the :class:`RankTest` of their ranks
    within each block (1 = best for the metric's direction, ties averaged); ``where`` sets its other fields."""
    complete = table.dropna(axis=0, how="any")
    ranks = complete.rank(axis=1, ascending=direction(metric) == "min", method="average")
    return complete, RankTest(metric, ranks, ranks.mean(axis=0).sort_values(), **where)


def _friedman(result: RankTest, seed: int) -> None:
    ranks = result.per_dataset.to_numpy(dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        result.friedman_statistic = friedman_statistic(ranks)
    result.friedman_p, result.p_method = friedman_permutation_p(ranks, seed=seed)
    if not np.isfinite(result.friedman_statistic):
        where = f"{result.dataset}, " if result.dataset else ""
        result.notes.append(f"{where}{result.metric}: all labels tie in every block; Friedman p is undefined.")
        result.friedman_p = math.nan


def friedman_statistic(ranks: np.ndarray) -> float:
    """The Friedman chi-square statistic of within-block ranks [blocks, labels], corrected for ties (as
    ``scipy.stats.friedmanchisquare``); NaN when every block ties throughout."""
    blocks, groups = ranks.shape
    sums = ranks.sum(axis=0)
    statistic = 12.0 / (blocks * groups * (groups + 1)) * np.sum(sums ** 2) - 3.0 * blocks * (groups + 1)
    ties = sum(int(count) ** 3 - int(count) for row in ranks for count in np.unique(row, return_counts=True)[1])
    correction = 1.0 - ties / (blocks * groups * (groups ** 2 - 1))
    return float(statistic / correction) if correction > 0 else math.nan


def friedman_permutation_p(ranks: np.ndarray, *, seed: int = 0, exact_limit: int = EXACT_ARRANGEMENTS,
                           permutations: int = PERMUTATIONS) -> tuple[float, str]:
    """The permutation p of the Friedman statistic of ``ranks`` [blocks, labels] and how it was computed.

    Under the null hypothesis the labels are exchangeable within each block, so each block's ranks are
    permuted independently; the statistic is an increasing function of the sum of squared rank sums, which
    is what is compared. Exact (every arrangement, block 1 held fixed: relabelling all blocks at once leaves
    the statistic unchanged) when (k!)^N <= ``exact_limit``, else Monte Carlo with ``permutations``
    permutations seeded with ``seed``: p = (1 + b) / (1 + permutations).
    """
    blocks, groups = ranks.shape
    observed = float(np.sum(ranks.sum(axis=0) ** 2))
    tolerance = 1e-9 * max(observed, 1.0)
    arrangements = math.factorial(groups) ** blocks
    if arrangements <= exact_limit:
        sums, counts = _rank_sum_distribution(ranks)
        at_least = counts[np.sum(sums ** 2, axis=1) >= observed - tolerance].sum()
        return float(at_least / counts.sum()), f"exact permutation over all (k!)^N = {arrangements:,} rank arrangements"
    rng = np.random.default_rng(seed)
    totals = np.zeros((permutations, groups))
    for row in ranks:
        totals += rng.permuted(np.tile(row, (permutations, 1)), axis=1)
    exceed = int(np.sum(np.sum(totals ** 2, axis=1) >= observed - tolerance))
    return ((1 + exceed) / (1 + permutations),
            f"Monte Carlo, {permutations:,} seeded permutations (seed {seed}) of (k!)^N = {arrangements:.3g} arrangements")


def _rank_sum_distribution(ranks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct vectors of rank sums over blocks, and how many arrangements give each, with block 1 fixed
    and each other block taking each of its distinct orderings (each as often as any other: equal weights)."""
    sums, counts = ranks[:1].copy(), np.ones(1, dtype=np.int64)
    for row in ranks[1:]:
        orderings = np.unique(np.array(list(itertools.permutations(row))), axis=0)
        combined = (sums[:, None, :] + orderings[None, :, :]).reshape(-1, ranks.shape[1])
        weights = np.repeat(counts, len(orderings))
        sums, inverse = np.unique(np.round(combined, 9), axis=0, return_inverse=True)
        counts = np.bincount(inverse.ravel(), weights=weights).astype(np.int64)
    return sums, counts


def _nemenyi(result: RankTest, means: pd.DataFrame, alpha: float) -> None:
    blocks, groups = result.per_dataset.shape
    # Nemenyi ranks the values itself; its p-values are symmetric, so direction does not matter.
    with np.errstate(divide="ignore", invalid="ignore"):
        nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(means.to_numpy())
    nemenyi.index = nemenyi.columns = means.columns
    result.nemenyi = nemenyi.fillna(1.0)
    q_alpha = scipy.stats.studentized_range.ppf(1 - alpha, groups, np.inf) / math.sqrt(2)
    result.critical_difference = float(q_alpha * math.sqrt(groups * (groups + 1) / (6 * blocks)))
