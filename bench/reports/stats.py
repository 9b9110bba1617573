"""Cross-seed statistics for the leaderboard: bootstrap intervals, paired tests and average ranks.

All functions take a tidy frame with one row per cell (columns ``dataset``, ``label``, ``seed``,
``status`` and one column per score, as built by :func:`crlbench.reports.report.records_frame`). Only rows with
``status == "ok"`` and a finite score enter a statistic; failed cells are only counted.

- Means carry a 95% bootstrap interval over seeds (Efron & Tibshirani 1993, ch. 14: BCa;
  ``scipy.stats.bootstrap``). With one seed the interval is the single value (zero width, method
  ``"single"``); with two seeds the percentile bootstrap is used, whose interval is the range of the
  two values (method ``"percentile"``), a description of the spread rather than a real 95% interval;
  seeds with identical values give a zero-width interval (method ``"constant"``).
- Each label is compared with a reference label on matched seeds by the Wilcoxon signed-rank test
  (Wilcoxon 1945; Demsar 2006, sec. 3.1.3), Holm-corrected (Holm 1979) across the comparisons of one
  metric on one dataset (each other label against the reference: the family a reader of one column
  draws conclusions from). With n pairs the exact two-sided p is at least 2 / 2**n, so fewer than
  6 seeds can never reach p < 0.05, and with m comparisons Holm needs 2 / 2**n < 0.05 / m (7 seeds
  for 3 comparisons).
- Labels are ranked within each dataset and the ranks averaged; the Friedman test and the Nemenyi
  post-hoc (Demsar 2006, sec. 3.2.2) say whether the average ranks differ, and the critical
  difference CD = q_alpha * sqrt(k (k + 1) / (6 N)) draws the diagram.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import pandas as pd
import scipy.stats
import scikit_posthocs
from statsmodels.stats.multitest import multipletests

Direction = Literal["max", "min"]

ID_COLUMNS = ("dataset", "label", "model", "seed", "status", "error", "hash", "metric_errors", "not_applicable")
LOWER_IS_BETTER = ("mse", "error", "shift", "loss", "shd")  # shd: graph@card's structural Hamming distance
CONFIDENCE = 0.95
N_RESAMPLES = 9999
ALPHA = 0.05


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
    """Wilcoxon tests of each label against the reference, one row per (dataset, label, metric)."""

    table: pd.DataFrame  # dataset, label, metric, n_pairs, statistic, p_value, p_holm
    notes: list[str] = field(default_factory=list)


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


def paired_tests(frame: pd.DataFrame, metrics: list[str], *, reference: str = "icm_vae") -> PairedTests:
    """Each label against ``reference`` per dataset and metric; Holm across the labels of one dataset and metric."""
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
                rows.append({"dataset": dataset, "label": label, "metric": metric, "n_pairs": len(x),
                             "statistic": statistic, "p_value": p_value})
    table = pd.DataFrame(rows, columns=["dataset", "label", "metric", "n_pairs", "statistic", "p_value"])
    table["p_holm"] = pd.Series(dtype=float)
    for _, index in table.groupby(["dataset", "metric"], sort=False).groups.items():
        table.loc[index, "p_holm"] = holm(table.loc[index, "p_value"])
    notes.extend(_power_notes(table))
    return PairedTests(table, notes)


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


# --- ranks across datasets -----------------------------------------------------------------------


@dataclass
class RankTest:
    """Average ranks of labels over datasets for one metric, with Friedman and Nemenyi tests."""

    metric: str
    per_dataset: pd.DataFrame  # datasets x labels, rank 1 = best
    average_ranks: pd.Series  # label -> average rank
    friedman_statistic: float = math.nan
    friedman_p: float = math.nan
    nemenyi: pd.DataFrame | None = None  # labels x labels p-values
    critical_difference: float = math.nan
    notes: list[str] = field(default_factory=list)


def mean_table(frame: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Datasets x labels: the mean over ok seeds of ``metric``."""
    ok = frame[frame["status"] == "ok"].copy()
    ok[metric] = pd.to_numeric(ok[metric], errors="coerce")
    return ok.pivot_table(index="dataset", columns="label", values=metric, aggfunc="mean", sort=False)


def rank_test(frame: pd.DataFrame, metric: str, *, alpha: float = ALPHA) -> RankTest:
    """Rank labels within each dataset (1 = best for the metric's direction) and test the ranks.

    Datasets missing a label's mean are dropped. With fewer than 2 datasets or 3 labels the tests
    are not defined: p-values stay NaN and a note says why.
    """
    means = mean_table(frame, metric) if metric in frame else pd.DataFrame()
    complete = means.dropna(axis=0, how="any")
    notes = []
    if len(complete) < len(means):
        dropped = sorted(set(means.index) - set(complete.index))
        notes.append(f"{metric}: datasets without a mean for every label left out of the ranks: {dropped}.")
    ranks = complete.rank(axis=1, ascending=direction(metric) == "min", method="average")
    result = RankTest(metric, ranks, ranks.mean(axis=0).sort_values(), notes=notes)
    blocks, groups = ranks.shape
    if blocks < 2 or groups < 3:
        result.notes.append(f"{metric}: Friedman and Nemenyi need at least 2 datasets and 3 models "
                            f"(have {blocks} and {groups}); p-values are NaN.")
        return result
    _friedman_nemenyi(result, complete, alpha)
    return result


def _friedman_nemenyi(result: RankTest, means: pd.DataFrame, alpha: float) -> None:
    blocks, groups = result.per_dataset.shape
    with np.errstate(divide="ignore", invalid="ignore"):
        friedman = scipy.stats.friedmanchisquare(*result.per_dataset.to_numpy().T)
    result.friedman_statistic, result.friedman_p = float(friedman.statistic), float(friedman.pvalue)
    if not np.isfinite(result.friedman_p):
        result.notes.append(f"{result.metric}: all labels tie in every dataset; Friedman p is undefined.")
    # Nemenyi ranks the values itself; its p-values are symmetric, so direction does not matter.
    with np.errstate(divide="ignore", invalid="ignore"):
        nemenyi = scikit_posthocs.posthoc_nemenyi_friedman(means.to_numpy())
    nemenyi.index = nemenyi.columns = means.columns
    result.nemenyi = nemenyi.fillna(1.0)
    q_alpha = scipy.stats.studentized_range.ppf(1 - alpha, groups, np.inf) / math.sqrt(2)
    result.critical_difference = float(q_alpha * math.sqrt(groups * (groups + 1) / (6 * blocks)))
