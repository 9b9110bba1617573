"""``index.html``: one self-contained page (figures as base64 PNG, inline CSS and JS, nothing fetched), rendered
from ``templates/report.html.j2``. Tables scroll inside their own box, header cells wrap, and every
table sorts by a click on a column header (again: the other way), with ``aria-sort`` and ▲/▼ showing
the order; the rank table's Friedman p and critical difference sit in a ``<tfoot>`` that sorting
leaves in place, and a leaderboard's reference rows in a second ``<tbody>`` under the methods that
sorting leaves in place too."""

from __future__ import annotations

import base64
from pathlib import Path

from jinja2 import Environment, PackageLoader

from crlbench.reports.controls import CEILING_TAG, MARK as CONTROL_MARK, TEXT as CONTROL_TEXT
from crlbench.reports.convergence import MARK as UNCONVERGED
from crlbench.reports.tables import (ARROWS, DEGENERATE_TEXT, MARKER, REFERENCE_TAG, TRAINING_COLUMNS, ReportData,
                                     effect_tables, effect_text, rank_rows, rank_text, training_rows)


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def render(data: ReportData) -> str:
    environment = Environment(loader=PackageLoader("crlbench.reports", "templates"), autoescape=True)
    sections, number = [], 0
    for name, items in data.figures:
        shown = []
        for item in items:
            number += 1
            shown.append((number, item.caption, png_data_uri(item.path)))
        if shown:
            sections.append((name, shown))
    return environment.get_template("report.html.j2").render(
        data=data, marker=MARKER, unconverged=UNCONVERGED, arrows=ARROWS, ranks=rank_rows(data.ranks, data.flags),
        rank_text=rank_text(data.ranks), figure_sections=sections, training_columns=TRAINING_COLUMNS,
        training_rows=training_rows(data.tables), reference_tag=REFERENCE_TAG, degenerate_text=DEGENERATE_TEXT,
        control_text=CONTROL_TEXT, control_mark=CONTROL_MARK, ceiling_tag=CEILING_TAG,
        effect_tables=effect_tables(data.paired, data.metrics, data.flags), effect_text=effect_text(data.paired),
        seed_ranks=[(dataset, rank_rows(tests, data.flags), rank_text(tests)) for dataset, tests in data.seed_ranks.items()])
