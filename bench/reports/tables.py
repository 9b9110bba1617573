"""What the report's tables hold, shared by the markdown, LaTeX and HTML renderers (crlbench.reports.markdown,
.latex, .html): leaderboard entries, per-method facts, the rank table and the legend.

A leaderboard entry reads ``mean ± half-width`` of the 95% bootstrap interval over seeds
(crlbench.reports.stats), or ``mean [low, high]`` when the interval is too asymmetric for a ``±``
(crlbench.reports.numbers), with ``(ok/total)`` when some seeds failed or lack the score and ``§ k/n``
when k of its n seeds are flagged by a degeneracy check that invalidates the score (the record's
``checks``). Reference rows (the record's ``reference``) form their own group under the methods. A negative
control's leaderboard (crlbench.reports.controls) carries a line saying why it is not ranked. A method's name
reads ``¶`` when the dataset's data break one of its assumptions (the records' ``assumptions_broken``), and a
legend line names them (:func:`assumption_legend`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from crlbench.reports import numbers, stats
from crlbench.reports.columns import Column
from crlbench.reports.controls import ControlTable
from crlbench.reports.convergence import MARK as UNCONVERGED, Tally
from crlbench.reports.protocol import Protocol

MARKER = "†"  # Holm-corrected Wilcoxon p < alpha against the reference
FLAG = "§"  # some seeds of the entry are flagged by a degeneracy check that invalidates the score
OUTSIDE = "¶"  # after a method's name: the dataset's data break an assumption the method makes
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
    low: float | None = None  # the interval's bounds (None: mean ± halfwidth)
    high: float | None = None
    flagged: int = 0  # seeds flagged by a check that invalidates this score

    def bounds(self) -> tuple[float, float]:
        if self.low is None or self.high is None:
            return self.mean - self.halfwidth, self.mean + self.halfwidth
        return self.low, self.high

    def shown(self) -> tuple[str, str]:
        """The printed mean and what follows it: ``± half-width`` or ``[low, high]`` (crlbench.reports.numbers)."""
        if self.not_applicable:
            return NOT_APPLICABLE, ""
        return numbers.interval_parts(self.mean, *self.bounds())

    @property
    def places(self) -> int:
        """The decimal places its mean prints with."""
        return numbers.interval_places(self.mean, *self.bounds())

    def counts(self) -> str:
        return f" ({self.n_ok}/{self.n_total})" if self.n_ok < self.n_total and not self.not_applicable else ""

    def flag(self) -> str:
        """``§ k/n`` when k of its n seeds are flagged, else empty."""
        return f"{FLAG} {self.flagged}/{self.n_ok}" if self.flagged and not self.not_applicable else ""

    def text(self, plus_minus: str = "±") -> str:
        if self.not_applicable:
            return NOT_APPLICABLE
        return numbers.interval_text(self.mean, *self.bounds(), plus_minus) + self.counts()


@dataclass
class MethodFacts:
    """What one method (a label) was given and trained on for one dataset, from its ok records."""

    given: str = "not declared"
    latent_size: str = "?"
    batch_size: str = "?"
    images: str = "?"
    reference: str = "not declared"
    fraction: str = "–"
    cpu: str = "–"  # process CPU seconds per cell: median (min-max) over the seeds that recorded it
    schedule: str = "none"
    representation: str = "?"
    convergence: Tally = field(default_factory=Tally)
    broken: dict[str, str] = field(default_factory=dict)  # the method's assumptions these data break: key -> what

    def outside(self) -> str:
        """:data:`OUTSIDE` when the data break an assumption of the method, else empty."""
        return OUTSIDE if self.broken else ""


@dataclass
class Table:
    """The leaderboard of one dataset: rows = labels (methods, then reference rows), columns = metrics."""

    dataset: str
    labels: list[str]  # the methods
    metrics: list[str]
    entries: dict[tuple[str, str], Entry]
    methods: dict[str, MethodFacts] = field(default_factory=dict)
    references: list[str] = field(default_factory=list)  # reference rows: shown under the methods, never ranked
    control: str = ""  # a negative control's line: why it is not ranked (crlbench.reports.controls); else empty

    def facts(self, label: str) -> MethodFacts:
        return self.methods.get(label, MethodFacts())

    @property
    def rows(self) -> list[str]:
        """Every row label: the methods, then the reference rows."""
        return self.labels + self.references


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
    paired: stats.PairedTests | None = None  # tests and paired differences against the comparison label
    seed_ranks: dict[str, list[stats.RankTest]] = field(default_factory=dict)  # per dataset, ranks across seeds
    partial: list[dict] = field(default_factory=list)  # finished cells some of whose metrics failed
    references: dict[str, str] = field(default_factory=dict)  # reference row label -> what it runs
    flags: dict[tuple[str, str, str], tuple[int, int]] = field(default_factory=dict)  # (dataset, label, metric) ->
    # (flagged seeds, seeds with the score): what the leaderboard marks ``§ k/n``, for the rank and effect tables
    degenerate: list[dict] = field(default_factory=list)  # per (dataset, method, check) that fired: seeds, reason
    controls: list[ControlTable] = field(default_factory=list)  # per negative control, its per-factor ceilings

    def column(self, metric: str) -> Column:
        return next(column for column in self.columns if column.key == metric)

    @property
    def judged(self) -> bool:
        """Whether any finished cell carries a convergence verdict."""
        return any(tally.total > tally.not_judged for tally in self.convergence.values())


def legend_lines(reference: str, convergence_line: str | None = None, flag_lines: list[str] | None = None,
                 references: dict[str, str] | None = None) -> list[str]:
    lines = [
        "Cells: mean and the 95% bootstrap interval over seeds (BCa from 3 seeds; with 2 seeds the percentile "
        "interval, i.e. their range; with 1 seed no interval, shown as ± 0), printed as mean ± half-width when "
        f"the interval is symmetric enough (its longer arm at most {numbers.ARM_RATIO:g} times the shorter, and "
        "the ± crosses zero only where the interval does), else as mean [low, high]. The half-width is rounded "
        "to 2 significant digits and the mean to the same decimal place (for [low, high]: the shorter arm's, or "
        "the longer's when the mean sits on a bound; "
        "each bound keeps 2 significant digits); a mean without spread keeps 3 significant digits.",
        "(ok/total): seeds with a score out of all seeds, shown when some failed.",
        f"{NOT_APPLICABLE}: the score does not apply to the method (graph recovery for a method that learns no "
        "graph; a method that trains on pairs or environments, on a dataset without them; reconstruction and "
        "interventional scores for a method without a decoder; a score a reference row does not stand for).",
        "Bold: decided on matched seeds among the methods of the column with the most seeds that have the score "
        "and no flagged seed: the best mean and every mean that prints the same at the coarser of the two "
        "precisions (ties). A mean over fewer seeds than the most in its column is never bold (it is not "
        "compared with means over more seeds); neither is a flagged score or a reference row. ↑ higher is "
        "better, ↓ lower is better.",
        f"{MARKER}: Wilcoxon signed-rank p < {stats.ALPHA} against {reference} on matched seeds, "
        "Holm-corrected over the comparisons of one score on one dataset.",
        "given: what the method receives besides the images (labels: factor labels during training; true graph: "
        "the dataset's causal graph; initial graph: a starting graph it may change; pairs: before/after "
        "intervention pairs; environments: which interventional environment each row comes from, not its "
        "target; nothing: unsupervised). latent: the number of latent dimensions it learns.",
    ]
    if references:
        lines.append("Reference rows (under the methods, marked (reference)): computed by the same runner on the "
                     "same evaluation rows to show what a score means, not methods: never ranked, bolded or "
                     "tested. " + "; ".join(f"{label}: {text}" for label, text in references.items()) + ".")
    return lines + ([convergence_line] if convergence_line else []) + (flag_lines or [])


def assumption_legend(tables: list[Table]) -> list[str]:
    """The legend entry for :data:`OUTSIDE` naming, per dataset and method, the assumptions its data break (the
    records' ``assumptions_broken``), or nothing when no row is outside its method's assumptions."""
    rows = [f"{label} on {table.dataset}: " + ", ".join(f"{text} ({key})" for key, text in broken.items())
            for table in tables for label in table.labels if (broken := table.facts(label).broken)]
    if not rows:
        return []
    return [f"{OUTSIDE} after a method's name: the dataset's data break an assumption the method makes, so its scores "
            "there are obtained outside the method's assumptions (the row is not left out of bold, tests or ranks). "
            f"Broken: {'; '.join(rows)}."]


def flag_legend(fired: dict[str, dict]) -> list[str]:
    """The legend entry for :data:`FLAG` naming each check that fired (``fired``: check name -> ``{cells,
    invalidates, reason}`` and optionally ``derived``, how many of the cells had it derived from the reference
    rows), or nothing when none did."""
    if not fired:
        return []

    def derived(entry: dict) -> str:
        count = entry.get("derived") or 0
        return f", {count} of them derived from the reference rows" if count else ""

    checks = "; ".join(f"{name} ({entry['cells']} cell{'s' * (entry['cells'] != 1)} with a flagged score in these "
                       f"tables{derived(entry)}; invalidates "
                       f"{', '.join(entry['invalidates']) or 'no score'}; first such cell: {entry['reason']})"
                       for name, entry in sorted(fired.items()))
    return [f"{FLAG} k/n: k of the n seeds with the score are flagged by a degeneracy check that invalidates it "
            f"(thresholds in docs/protocol.md); a flagged score is never bold. Checks that fired: {checks}."]


TRAINING_COLUMNS = ("dataset", "model", "batch", "training images", "reference run", "fraction of reference",
                    "CPU s per cell", "schedule", "converged", "evaluated representation")


def training_rows(tables: list[Table]) -> list[list[str]]:
    """Per dataset and method (reference rows last): batch size, images seen, the reference run and the
    fraction, the process CPU seconds per cell, the schedule, how many seeds converged, the evaluated
    representation."""
    rows = []
    for table in tables:
        for label in table.rows:
            method = table.facts(label)
            converged = method.convergence.seeds_text()
            name = label + (f" {REFERENCE_TAG}" if label in table.references else "")
            rows.append([table.dataset, name, method.batch_size, method.images, method.reference, method.fraction,
                         method.cpu, method.schedule, (f"{UNCONVERGED} " if method.convergence.marked else "") + converged,
                         method.representation])
    return rows


REFERENCE_TAG = "(reference)"
DEGENERATE_TEXT = ("Per method and degeneracy check (docs/protocol.md), the seeds whose tabulated scores it flags "
                   "(marked in the tables) and why: those scores measure an artefact of the run, not the method.")


@dataclass
class RankRows:
    """The rank table: a row of average ranks per label (body), then Friedman p and the critical
    difference (foot, kept below the body whatever the sort order)."""

    metrics: list[str]
    body: list[tuple[str, list[tuple[str, float]]]]  # label, (shown, sort value) per metric
    foot: list[tuple[str, list[str]]]
    legend: list[str] = field(default_factory=list)  # the line for ``§ k/n``, when a rank carries it


def rank_rows(ranks: list[stats.RankTest], flags: dict[tuple[str, str, str], tuple[int, int]] | None = None) -> RankRows:
    """Average ranks per label; the foot holds the Friedman permutation p and, across datasets, the critical
    difference (``> k-1`` when it cannot be reached), or, across seeds, the number of matched seeds. A rank whose
    label has flagged seeds for the score (``flags``: :attr:`ReportData.flags`) on the ranked datasets reads
    ``§ k/n``, summed over them."""
    flags = flags or {}
    labels = list(dict.fromkeys(label for rank in ranks for label in rank.average_ranks.index))
    body = [(label, [_flagged_rank(rank, label, flags) for rank in ranks]) for label in labels]
    foot = [("Friedman p", [numbers.significant(rank.friedman_p, 2) for rank in ranks])]
    if ranks and ranks[0].blocks == "seeds":
        foot.append(("matched seeds", [str(rank.per_dataset.shape[0]) for rank in ranks]))
    else:
        foot.append(("critical difference", [_critical_difference(rank) for rank in ranks]))
    marked = any(FLAG in shown for _, values in body for shown, _ in values)
    legend = [f"{FLAG} k/n after a rank: k of the label's n seeds with the score on the ranked dataset(s) are flagged "
              "by a degeneracy check that invalidates it (as in the leaderboard): the rank orders a flagged "
              "score."] if marked else []
    return RankRows([rank.metric for rank in ranks], body, foot, legend)


def ranked_datasets(rank: stats.RankTest) -> list[str]:
    """The datasets a rank test ranks over: its blocks across datasets, its own dataset across seeds."""
    return [rank.dataset] if rank.dataset is not None else [str(block) for block in rank.per_dataset.index]


def flag_text(flags: dict[tuple[str, str, str], tuple[int, int]], datasets: list[str], label: str, metric: str) -> str:
    """`` § k/n`` for ``label``'s flagged seeds of ``metric`` summed over ``datasets``, else empty."""
    counts = [flags.get((dataset, label, metric), (0, 0)) for dataset in datasets]
    flagged, seeds = sum(k for k, _ in counts), sum(n for _, n in counts)
    return f" {FLAG} {flagged}/{seeds}" if flagged else ""


def _flagged_rank(rank: stats.RankTest, label: str, flags: dict[tuple[str, str, str], tuple[int, int]]
                  ) -> tuple[str, float]:
    shown, value = _rank(rank.average_ranks.get(label, math.nan))
    return (shown + flag_text(flags, ranked_datasets(rank), label, rank.metric) if math.isfinite(value) else shown,
            value)


def _critical_difference(rank: stats.RankTest) -> str:
    shown = numbers.significant(rank.critical_difference, 3)
    return shown if rank.reachable or shown == "–" else f"{shown} (> {rank.per_dataset.shape[1] - 1}: unreachable)"


def p_methods(ranks: list[stats.RankTest]) -> str:
    """How the Friedman p-values of ``ranks`` were computed, each way once: ``exact permutation over ...``."""
    return "; ".join(dict.fromkeys(rank.p_method for rank in ranks if rank.p_method)) or "not computed"


def rank_text(ranks: list[stats.RankTest]) -> str:
    """The paragraph above a rank table: what a block is, the population the test speaks for, how p was
    computed."""
    if not ranks:
        return ""
    first = ranks[0]
    text = (f"Rank 1 is best; blocks = {first.blocks}. Population: {first.population}. Friedman statistic with a "
            f"permutation p (ranks permuted within each block): {p_methods(ranks)}.")
    if first.blocks == "datasets":
        text += (" Nemenyi critical difference at alpha 0.05 (Demsar 2006); it cannot be reached when it exceeds "
                 "k - 1, the largest possible gap between average ranks, and then no diagram is drawn.")
        text += "".join(f" {sentence}" for sentence in unreachable_sentences(ranks))
    return text


def unreachable_sentences(ranks: list[stats.RankTest]) -> list[str]:
    """One sentence per design (labels, blocks) whose critical difference cannot be reached, naming its scores."""
    designs: dict[tuple[int, int, float], list[str]] = {}
    for rank in ranks:
        if math.isfinite(rank.critical_difference) and not rank.reachable:
            blocks, groups = rank.per_dataset.shape
            designs.setdefault((groups, blocks, rank.critical_difference), []).append(rank.metric)
    return [f"With {groups} labels over {blocks} {ranks[0].blocks} the critical difference "
            f"{numbers.significant(cd, 3)} exceeds {groups - 1}, the largest gap two average ranks can have: no two "
            f"labels can differ by it, so no critical-difference diagram is drawn ({', '.join(metrics)})."
            for (groups, blocks, cd), metrics in designs.items()]


def _rank(value: float) -> tuple[str, float]:
    """An average rank with two decimals (ranks over N datasets are multiples of 1/N) and its sort value."""
    return ("–", math.nan) if value is None or not math.isfinite(value) else (f"{value:.2f}", float(value))


# --- paired differences --------------------------------------------------------------------------


@dataclass
class EffectTable:
    """Paired differences of one dataset against the comparison label: rows = labels, columns = metrics, each
    cell ``difference [low, high] (n)`` with the mark when Holm-significant."""

    dataset: str
    labels: list[str]
    metrics: list[str]
    cells: dict[tuple[str, str], str]
    legend: list[str] = field(default_factory=list)  # the lines for ``§ k/n``, when a cell carries it


def effect_tables(paired: stats.PairedTests | None, metrics: list[str],
                  flags: dict[tuple[str, str, str], tuple[int, int]] | None = None) -> list[EffectTable]:
    """A table of paired differences per dataset; a difference whose label has flagged seeds for the score
    (``flags``: :attr:`ReportData.flags`) reads ``§ k/n``, and the legend names the comparison's own flagged
    scores, which every difference of that column involves."""
    if paired is None or paired.table.empty:
        return []
    flags = flags or {}
    tables = []
    for dataset, group in paired.table.groupby("dataset", sort=False):
        cells = {}
        for row in group.itertuples():
            if row.n_pairs == 0:
                cells[(row.label, row.metric)] = "–"
                continue
            text = numbers.interval_text(row.mean_difference, row.difference_low, row.difference_high)
            text += f" ({row.n_pairs})" + (f" {MARKER}" if row.p_holm < stats.ALPHA else "")
            cells[(row.label, row.metric)] = text + flag_text(flags, [str(dataset)], row.label, row.metric)
        table = EffectTable(str(dataset), list(dict.fromkeys(group["label"])), list(metrics), cells)
        if any(FLAG in text for text in cells.values()):
            table.legend.append(f"{FLAG} k/n: k of the method's n seeds with the score are flagged by a degeneracy "
                                "check that invalidates it (as in the leaderboard): the difference involves a "
                                "flagged score.")
        compared = [f"{metric}{flag_text(flags, [str(dataset)], paired.comparison, metric)}" for metric in metrics
                    if flag_text(flags, [str(dataset)], paired.comparison, metric)]
        if compared:
            table.legend.append(f"{paired.comparison}'s own scores are flagged ({', '.join(compared)}): every "
                                "difference in those columns involves a flagged score.")
        tables.append(table)
    return tables


def effect_text(paired: stats.PairedTests | None) -> list[str]:
    """The paragraphs above the paired differences: what a cell is, the Holm family, the design's floor."""
    if paired is None:
        return []
    comparison = paired.comparison
    lines = [f"Each cell: the mean over matched seeds of (method - {comparison}), with the 95% bootstrap interval "
             "of that mean (BCa from 3 pairs, the percentile interval, i.e. the range, from 2; printed as in the "
             f"leaderboard), and (n) the matched seeds. {MARKER}: Holm-adjusted Wilcoxon signed-rank p < "
             f"{stats.ALPHA}. A positive difference is better for a ↑ score, a negative one for a ↓ score.",
             f"Holm family: each score on each dataset: the m comparisons of the other methods against {comparison} "
             "(reference rows are not compared)."]
    if not paired.table.empty:
        lines.append("Smallest attainable adjusted p for this design: "
                     + " ".join(stats.design_text(paired.table)))
    return lines
