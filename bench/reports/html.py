"""``index.html``: one self-contained page (figures as base64 PNG, inline CSS and JS, nothing fetched), rendered
from ``templates/report.html.j2``. It opens with a table of contents linking every section and per-dataset
table (crlbench.reports.contents). Tables scroll inside their own box, header cells wrap, and every table sorts
by a click anywhere on a column header (again: the other way; a button filling the header cell takes the
keyboard), with ``aria-sort`` and ▲/▼ showing the order; the rank table's Friedman p and critical difference sit
in a ``<tfoot>`` that sorting leaves in place, and a leaderboard's reference rows in a second ``<tbody>`` under
the methods that sorting leaves in place too. At phone width (390 px) nothing widens the page: long tokens
(hashes, score keys) wrap, wide tables scroll in their box, and figures scale to the width, each a link to its
PNG file under ``figures/`` to open it full size."""

from __future__ import annotations

import base64
from pathlib import Path

from jinja2 import Environment, PackageLoader

from crlbench.reports.contents import anchor, contents
from crlbench.reports.controls import CEILING_TAG, MARK as CONTROL_MARK, TEXT as CONTROL_TEXT
from crlbench.reports.convergence import MARK as UNCONVERGED
from crlbench.reports.tables import (ARROWS, DEGENERATE_TEXT, MARKER, REFERENCE_TAG, TRAINING_COLUMNS, ReportData,
                                     effect_tables, effect_text, rank_rows, rank_text, training_rows)


def png_data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def figure_link(path: Path, out_dir: Path | None) -> str:
    """Where a figure's full-size link points: its PNG relative to the report folder ``out_dir`` (the page's
    own), else the file's URI."""
    path = Path(path)
    if out_dir is not None and path.resolve().is_relative_to(Path(out_dir).resolve()):
        return path.resolve().relative_to(Path(out_dir).resolve()).as_posix()
    return path.resolve().as_uri()


def render(data: ReportData, out_dir: Path | None = None) -> str:
    """The page of ``data``; ``out_dir`` is the folder it is written to, for the figures' links."""
    environment = Environment(loader=PackageLoader("crlbench.reports", "templates"), autoescape=True)
    sections, number = [], 0
    for name, items in data.figures:
        shown = []
        for item in items:
            number += 1
            shown.append((number, item.caption, png_data_uri(item.path), figure_link(item.path, out_dir)))
        if shown:
            sections.append((name, shown))
    return environment.get_template("report.html.j2").render(
        data=data, contents=contents(data), anchor=anchor, marker=MARKER, unconverged=UNCONVERGED, arrows=ARROWS,
        ranks=rank_rows(data.ranks, data.flags),
        rank_text=rank_text(data.ranks), figure_sections=sections, training_columns=TRAINING_COLUMNS,
        training_rows=training_rows(data.tables), reference_tag=REFERENCE_TAG, degenerate_text=DEGENERATE_TEXT,
        control_text=CONTROL_TEXT, control_mark=CONTROL_MARK, ceiling_tag=CEILING_TAG,
        effect_tables=effect_tables(data.paired, data.metrics, data.flags), effect_text=effect_text(data.paired),
        seed_ranks=[(dataset, rank_rows(tests, data.flags), rank_text(tests)) for dataset, tests in data.seed_ranks.items()])
