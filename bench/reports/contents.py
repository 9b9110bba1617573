"""The table of contents that ``leaderboard.md`` and ``index.html`` open with, and the anchors of its sections.

Both renderers show the sections in one order (:func:`contents`) and put each anchor (:func:`anchor`) on the
heading it names: in the HTML as the heading's ``id``, in the markdown as an ``<a id="...">`` before it (the
same dataset heads several sections, so a heading's own text cannot be its anchor). A section appears only when
the report has it (paired differences, negative controls, partial cells, notes, figures).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from crlbench.reports.tables import ReportData, effect_tables


@dataclass
class Section:
    """A heading of the report: its title, its anchor and the headings under it (datasets, figure groups)."""

    title: str
    id: str
    children: list["Section"] = field(default_factory=list)


def anchor(*parts: str) -> str:
    """``anchor("leaderboard", "causal_circuit")`` -> ``"leaderboard-causal-circuit"``: lower case, every run of
    other characters than letters and digits one hyphen."""
    return "-".join(re.sub(r"[^a-z0-9]+", "-", str(part).lower()).strip("-") for part in parts)


def _datasets(section: str, datasets: list[str]) -> list[Section]:
    return [Section(dataset, anchor(section, dataset)) for dataset in datasets]


def contents(data: ReportData) -> list[Section]:
    """The report's sections in the order both renderers show them, each with its datasets or figure groups."""
    sections = [Section("Protocol", "protocol"),
                Section("Leaderboard", "leaderboard", _datasets("leaderboard", [t.dataset for t in data.tables])),
                Section("Degenerate runs", "degenerate-runs")]
    if data.controls:
        sections.append(Section("Negative controls", "negative-controls",
                                _datasets("control", [table.dataset for table in data.controls])))
    sections.append(Section("Training budgets and schedules", "training"))
    paired = effect_tables(data.paired, data.metrics, data.flags)
    if paired:
        sections.append(Section(f"Paired differences against {data.reference}", "paired-differences",
                                _datasets("paired", [table.dataset for table in paired])))
    sections.append(Section("Average ranks across datasets", "ranks"))
    if data.seed_ranks:
        sections.append(Section("Average ranks within each dataset, across seeds", "seed-ranks",
                                _datasets("seed-ranks", list(data.seed_ranks))))
    sections.append(Section("Failed cells", "failed-cells"))
    if data.partial:
        sections.append(Section("Partial cells", "partial-cells"))
    if data.notes:
        sections.append(Section("Notes", "notes"))
    groups = [name for name, items in data.figures if items]
    if groups:
        sections.append(Section("Figures", "figures", [Section(name, anchor("figures", name)) for name in groups]))
    return sections + [Section("Provenance", "provenance")]
