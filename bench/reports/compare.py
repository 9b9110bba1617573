"""Two sets of scores side by side, paired on seeds: two work directories (two commits), two suites of one work
directory, or two settings of a method (``icm_vae`` against ``icm_vae (tuned)``).

:func:`compare_scores` takes two frames of per-cell scores (the columns of :mod:`crlbench.reports.scores_frame`,
as :func:`crlbench.scores.load_scores` returns them), side ``a`` and side ``b``, and gives one row per
(dataset, method, score) either side has:

- each side's mean over its finished cells (status ok or partial) with a finite value, their count and how
  many of them a degeneracy check flags for that score;
- on the matched seeds (the seeds both sides have: a seed draws the same data split, initial weights and
  evaluation sample on both sides where their settings allow), the mean paired difference ``b - a`` with its
  95 % bootstrap interval (:func:`crlbench.reports.stats.bootstrap_interval`: BCa from 3 pairs, the range of
  2) and the two-sided Wilcoxon signed-rank p (:func:`crlbench.reports.stats.wilcoxon_pair`: SciPy's exact
  null distribution up to 50 pairs, zero differences dropped; 1 when every difference is zero). The p is not
  corrected for the number of rows; with n pairs it is at least 2 / 2**n, so 5 pairs cannot reach 0.05.

Comparing two labels (``labels=(A, B)``) keeps method ``A`` of side a and ``B`` of side b and names the row
``A vs B``; the two sides may be one frame. A seed that repeats within a side (cells pooled from several
suites) enters as the mean of its cells. :func:`render_markdown` prints the table per dataset.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from crlbench.reports import numbers
from crlbench.reports.columns import DIRECTION_TEXT, columns
from crlbench.reports.stats import bootstrap_interval, direction, wilcoxon_pair

COMPARE_COLUMNS = ["dataset", "method", "score", "direction", "n_a", "mean_a", "flagged_a", "n_b", "mean_b",
                   "flagged_b", "n_pairs", "difference", "difference_low", "difference_high", "difference_method",
                   "p_value"]
FINISHED = ("ok", "partial")
ARROW = {"max": "↑", "min": "↓"}


def compare_scores(a: pd.DataFrame, b: pd.DataFrame, *, scores: list[str] | None = None,
                   labels: tuple[str, str] | None = None, seed: int = 0) -> pd.DataFrame:
    """One row per (dataset, method, score) of ``a`` or ``b``, columns :data:`COMPARE_COLUMNS` (module docstring).

    ``scores`` are score keys (default: those of crlbench.reports.report.DEFAULT_METRICS either side has,
    else every score both sides have); ``labels`` compares method ``labels[0]`` of ``a`` with ``labels[1]`` of
    ``b``; ``seed`` seeds the bootstrap. ValueError when a requested score or label is on neither side."""
    if labels is not None:
        a, b = _relabelled(a, labels[0], labels), _relabelled(b, labels[1], labels)
    a, b = _finished(a), _finished(b)
    scores = chosen_scores(a, b, scores)
    a, b = a[a["score"].isin(scores)], b[b["score"].isin(scores)]
    keys = list(dict.fromkeys(list(zip(a["dataset"], a["method"])) + list(zip(b["dataset"], b["method"]))))
    order = {score: index for index, score in enumerate(scores)}
    groups_a, groups_b = _by_row(a), _by_row(b)
    rows = []
    for dataset, method in keys:
        for score in sorted(set(_scores(groups_a, dataset, method)) | set(_scores(groups_b, dataset, method)),
                            key=order.__getitem__):
            rows.append(_row(dataset, method, score, groups_a.get((dataset, method, score)),
                             groups_b.get((dataset, method, score)), seed))
    return pd.DataFrame(rows, columns=COMPARE_COLUMNS)


def chosen_scores(a: pd.DataFrame, b: pd.DataFrame, scores: list[str] | None) -> list[str]:
    """The requested ``scores`` (checked), else the report's default scores on either side, else those on both."""
    present_a, present_b = set(a["score"]) - {""}, set(b["score"]) - {""}
    if scores is not None:
        unknown = [score for score in scores if score not in present_a | present_b]
        if unknown:
            raise ValueError(f"compare: unknown scores {unknown}; the cells have {sorted(present_a | present_b)}")
        return list(scores)
    from crlbench.reports.report import DEFAULT_METRICS  # the report's own choice (and its heavy imports) only here

    defaults = [score for score in DEFAULT_METRICS if score in present_a | present_b]
    return defaults or sorted(present_a & present_b)


def _relabelled(frame: pd.DataFrame, label: str, labels: tuple[str, str]) -> pd.DataFrame:
    if label not in set(frame["method"]):
        raise ValueError(f"compare: no method {label!r}; the labels there are {sorted(set(frame['method']))}")
    return frame[frame["method"] == label].assign(method=labels[0] if labels[0] == labels[1]
                                                  else f"{labels[0]} vs {labels[1]}")


def _finished(frame: pd.DataFrame) -> pd.DataFrame:
    frame = frame.reset_index(drop=True)
    values = pd.to_numeric(frame["value"], errors="coerce").astype(float)
    return frame[frame["status"].isin(FINISHED) & np.isfinite(values)].assign(value=values)


def _by_row(frame: pd.DataFrame) -> dict[tuple[str, str, str], pd.DataFrame]:
    return {key: group for key, group in frame.groupby(["dataset", "method", "score"], sort=False)}


def _scores(groups: dict, dataset: str, method: str) -> list[str]:
    return [score for (d, m, score) in groups if (d, m) == (dataset, method)]


def _row(dataset: str, method: str, score: str, a: pd.DataFrame | None, b: pd.DataFrame | None,
         seed: int) -> dict:
    per_seed_a, per_seed_b = _per_seed(a), _per_seed(b)
    matched = per_seed_a.index.intersection(per_seed_b.index)
    x, y = per_seed_b[matched].to_numpy(), per_seed_a[matched].to_numpy()
    difference = bootstrap_interval(x - y, seed=seed)
    _, p_value = wilcoxon_pair(x, y)
    return {"dataset": dataset, "method": method, "score": score, "direction": direction(score),
            "n_a": _count(a), "mean_a": _mean(a), "flagged_a": _flagged(a),
            "n_b": _count(b), "mean_b": _mean(b), "flagged_b": _flagged(b),
            "n_pairs": len(matched), "difference": difference.mean, "difference_low": difference.low,
            "difference_high": difference.high, "difference_method": difference.method, "p_value": p_value}


def _per_seed(group: pd.DataFrame | None) -> pd.Series:
    if group is None:
        return pd.Series(dtype=float)
    return group.groupby("seed")["value"].mean()


def _count(group: pd.DataFrame | None) -> int:
    return 0 if group is None else len(group)


def _mean(group: pd.DataFrame | None) -> float:
    return math.nan if group is None else float(group["value"].mean())


def _flagged(group: pd.DataFrame | None) -> int:
    return 0 if group is None else int((group["flags"].fillna("").astype(str) != "").sum())


# --- markdown ------------------------------------------------------------------------------------


def render_markdown(table: pd.DataFrame, *, names: tuple[str, str] = ("a", "b"), title: str = "Comparison") -> str:
    """The comparison as markdown: what each side is (``names``), how to read it, and a table per dataset."""
    legend = columns(list(dict.fromkeys(table["score"])))
    short = {column.key: f"{column.short} {ARROW[column.direction]}" for column in legend}
    lines = [f"# {title}", "", f"- **a**: {names[0]}", f"- **b**: {names[1]}", "",
             "Each side: the mean over its finished cells (their count in parentheses; `§ k`: k of them flagged by "
             "a degeneracy check that invalidates the score). Δ = b − a on the matched seeds (the seeds both sides "
             "have), with its 95 % bootstrap interval, and p the two-sided Wilcoxon signed-rank test over those "
             "pairs (exact; not corrected for the rows shown; with n pairs p ≥ 2/2ⁿ, so fewer than 6 pairs cannot "
             "reach 0.05). ↑ higher is better, ↓ lower is better."]
    if table.empty:
        return "\n".join(lines + ["", "No score is on either side."]) + "\n"
    for dataset, rows in table.groupby("dataset", sort=False):
        lines += ["", f"## {dataset}", "", "| method | score | a | b | Δ (b − a) | pairs | p |",
                  "|---|---|--:|--:|--:|--:|--:|"]
        for row in rows.itertuples():
            lines.append(f"| {row.method} | {short[row.score]} | {_side(row.mean_a, row.n_a, row.flagged_a)} | "
                         f"{_side(row.mean_b, row.n_b, row.flagged_b)} | {_difference(row)} | {row.n_pairs} | "
                         f"{_p(row.p_value)} |")
    lines += ["", "Scores: " + "; ".join(f"{column.short} = `{column.key}` ({DIRECTION_TEXT[column.direction]})"
                                          for column in legend) + "."]
    return "\n".join(lines) + "\n"


def _side(mean: float, count: int, flagged: int) -> str:
    if not count:
        return "–"
    return f"{numbers.significant(mean)} ({count})" + (f" § {flagged}" if flagged else "")


def _difference(row) -> str:
    if not row.n_pairs:
        return "–"
    text = numbers.interval_text(row.difference, row.difference_low, row.difference_high)
    return text if text.startswith("-") else f"+{text}"


def _p(value: float) -> str:
    return "–" if value is None or not math.isfinite(value) else numbers.significant(value, 2)
