"""What the report's tables hold, shared by the markdown, LaTeX and HTML renderers (crlbench.reports.markdown,
.latex, .html): leaderboard entries, per-method facts, the rank table and the legend.

A leaderboard entry reads ``mean ± half-width`` of the 95% bootstrap interval over seeds
(crlbench.reports.stats), printed by crlbench.reports.numbers, with ``(ok/total)`` when some seeds
failed or lack the score.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from crlbench.reports import numbers, stats
from crlbench.reports.columns import Column
from crlbench.reports.convergence import MARK as UNCONVERGED, Tally
from crlbench.reports.protocol import Protocol

MARKER = "†"  # Holm-corrected Wilcoxon p < alpha against the reference
NOT_APPLICABLE = "n/a"  # a score that does not apply to the method (graph recovery of a method without a graph)
ARROWS = {"max": "↑", "min": "↓"}


@dataclass
class Entry:
    """One leaderboard cell."""

    mean: float
    halfwidth: float
    n_ok: int
    n_total: int
    bold: bool = False
    significant: bool = False
    not_applicable: bool = False  # the score does not apply to this method (no seed could have it): "n/a"

    def shown(self) -> tuple[str, str]:
        """The printed mean and half-width (crlbench.reports.numbers)."""
        if self.not_applicable:
            return NOT_APPLICABLE, ""
        return numbers.mean_and_spread(self.mean, self.halfwidth)

    def counts(self) -> str:
        return f" ({self.n_ok}/{self.n_total})" if self.n_ok < self.n_total and not self.not_applicable else ""

    def text(self, plus_minus: str = "±") -> str:
        if self.not_applicable:
            return NOT_APPLICABLE
        return numbers.plus_minus(self.mean, self.halfwidth, plus_minus) + self.counts()


@dataclass
class MethodFacts:
    """What one method (a label) was given and trained on for one dataset, from its ok records."""

    given: str = "not declared"
    latent_size: str = "?"
    batch_size: str = "?"
    images: str = "?"
    reference: str = "not declared"
    fraction: str = "–"
    schedule: str = "none"
    representation: str = "?"
    convergence: Tally = field(default_factory=Tally)


@dataclass
class Table:
    """The leaderboard of one dataset: rows = labels, columns = metrics."""

    dataset: str
    labels: list[str]
    metrics: list[str]
    entries: dict[tuple[str, str], Entry]
    methods: dict[str, MethodFacts] = field(default_factory=dict)

    def facts(self, label: str) -> MethodFacts:
        return self.methods.get(label, MethodFacts())


@dataclass
class Drawn:
    """A figure file and the caption the report prints under it."""

    path: Path
    caption: str


@dataclass
class ReportData:
    """Everything the renderers show."""

    title: str
    reference: str
    metrics: list[str]
    columns: list[Column]
    tables: list[Table]
    ranks: list[stats.RankTest]
    failed: list[dict]
    notes: list[str]
    provenance: dict[str, str]
    protocol: Protocol
    convergence: dict[str, Tally] = field(default_factory=dict)  # per label, over datasets
    legend: list[str] = field(default_factory=list)
    figures: list[tuple[str, list[Drawn]]] = field(default_factory=list)

    def column(self, metric: str) -> Column:
        return next(column for column in self.columns if column.key == metric)

    @property
    def judged(self) -> bool:
        """Whether any finished cell carries a convergence verdict."""
        return any(tally.total > tally.not_judged for tally in self.convergence.values())


def legend_lines(reference: str, convergence_line: str | None = None) -> list[str]:
    lines = [
        "Cells: mean ± half-width of the 95% bootstrap interval over seeds (BCa from 3 seeds; with 2 seeds "
        "the percentile interval, i.e. their range; with 1 seed no interval, shown as ± 0). The half-width is "
        "rounded to 2 significant digits and the mean to the same decimal place; a mean without spread keeps "
        "3 significant digits.",
        "(ok/total): seeds with a score out of all seeds, shown when some failed.",
        f"{NOT_APPLICABLE}: the score does not apply to the method (graph recovery for a method that learns no "
        "graph; a method that trains on pairs, on a dataset without them).",
        "Bold: the best mean in the column and every mean that prints the same at the coarser of the two "
        "precisions (ties); ↑ higher is better, ↓ lower is better.",
        f"{MARKER}: Wilcoxon signed-rank p < {stats.ALPHA} against {reference} on matched seeds, "
        "Holm-corrected over the comparisons of one score on one dataset.",
        "given: what the method receives besides the images (labels: factor labels during training; true graph: "
        "the dataset's causal graph; initial graph: a starting graph it may change; pairs: before/after "
        "intervention pairs; nothing: unsupervised). latent: the number of latent dimensions it learns.",
    ]
    return lines + ([convergence_line] if convergence_line else [])


TRAINING_COLUMNS = ("dataset", "model", "batch", "training images", "reference run", "fraction of reference",
                    "schedule", "converged", "evaluated representation")


def training_rows(tables: list[Table]) -> list[list[str]]:
    """Per dataset and method: batch size, images seen, the reference run and the fraction, the schedule,
    how many seeds converged, the evaluated representation."""
    rows = []
    for table in tables:
        for label in table.labels:
            method = table.facts(label)
            converged = method.convergence.seeds_text()
            rows.append([table.dataset, label, method.batch_size, method.images, method.reference, method.fraction,
                         method.schedule, (f"{UNCONVERGED} " if method.convergence.marked else "") + converged,
                         method.representation])
    return rows


@dataclass
class RankRows:
    """The rank table: a row of average ranks per label (body), then Friedman p and the critical
    difference (foot, kept below the body whatever the sort order)."""

    metrics: list[str]
    body: list[tuple[str, list[tuple[str, float]]]]  # label, (shown, sort value) per metric
    foot: list[tuple[str, list[str]]]


def rank_rows(ranks: list[stats.RankTest]) -> RankRows:
    labels = list(dict.fromkeys(label for rank in ranks for label in rank.average_ranks.index))
    body = [(label, [_rank(rank.average_ranks.get(label, math.nan)) for rank in ranks]) for label in labels]
    foot = [("Friedman p", [numbers.significant(rank.friedman_p, 2) for rank in ranks]),
            ("critical difference", [numbers.significant(rank.critical_difference, 3) for rank in ranks])]
    return RankRows([rank.metric for rank in ranks], body, foot)


def _rank(value: float) -> tuple[str, float]:
    """An average rank with two decimals (ranks over N datasets are multiples of 1/N) and its sort value."""
    return ("–", math.nan) if value is None or not math.isfinite(value) else (f"{value:.2f}", float(value))
