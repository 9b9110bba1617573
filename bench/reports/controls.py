"""Negative controls: datasets whose images cannot carry some of their factors, kept out of every ranking.

A dataset declares the factors no method can recover from its images, with the reason (its ``unidentifiable``;
``chamber_f3`` draws one uniformly coloured hexagon whose colour depends on the polariser angles pol_1 and pol_2
only through cos^2(pol_1 - pol_2)); the runner copies the declaration into each record of the dataset
(crlbench.suites.results). A score on such a dataset cannot say which method recovers the factors best, so the
report shows the dataset's leaderboard but orders no method on it: :func:`control_datasets` is the one list the
report consults to leave it out of bold, paired tests, rank tests and critical-difference diagrams
(crlbench.reports.report.write_report). What the report shows instead, per factor (:func:`control_tables`): the
``supervised`` reference row's mean over seeds of r2@linear's per-factor R² (``r2@linear.r2_<k>``, k indexing the
record's ``factors``), the ceiling of what an encoder trained on the labels reads from these images at this
budget, beside each method's.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from crlbench.core.records import is_reference
from crlbench.reports import numbers

CEILING_MODEL = "supervised"  # the reference row whose per-factor R² is the ceiling
PER_FACTOR = "r2@linear.r2_{index}"  # r2@linear's score of the record's factor ``index``
MARK = "✗"  # a factor no method can recover from the images
CEILING_TAG = "(reference, ceiling)"  # after the supervised row's name
TEXT = ("A negative control is a dataset whose images cannot carry some of its factors (the dataset declares them; "
        "the record's unidentifiable): no method can recover those, so the dataset is left out of everything that "
        "orders methods (bold, paired tests, ranks across datasets and within it across seeds, critical-difference "
        "diagrams); its leaderboard above is shown, not ranked. Per factor: the mean over seeds of r2@linear's "
        "per-factor R² (r2@linear.r2_<k>), first the supervised reference row's, the ceiling (what an encoder "
        "trained on the labels reads from these images at this budget), then each method's; (ok/total) when some "
        f"seeds lack the score. {MARK}: a factor no method can recover, with the reason; on such a factor the "
        "ceiling is what the images carry about it through the factors they do show, not the factor itself.")


@dataclass
class ControlRow:
    """One row of a control's table: a label and its mean per-factor R² as printed, one per factor."""

    label: str
    cells: list[str]
    ceiling: bool = False  # the supervised reference row


@dataclass
class ControlTable:
    """The per-factor R² of one negative control: rows = the ceiling, then the methods; columns = its factors."""

    dataset: str
    factors: list[str]
    unidentifiable: dict[str, str]  # factor -> why no method can recover it
    rows: list[ControlRow] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what is missing: no supervised row, no r2@linear scores

    def header(self, factor: str) -> str:
        """The factor's column name, with :data:`MARK` when it cannot be recovered."""
        return f"{factor} {MARK}" if factor in self.unidentifiable else factor

    def reasons(self) -> list[str]:
        """``✗ pol_1: <why>``, one line per unidentifiable factor."""
        return [f"{MARK} {factor}: {reason}" for factor, reason in self.unidentifiable.items()]


def control_datasets(records: list[dict]) -> dict[str, dict[str, str]]:
    """The negative controls among the records' datasets: dataset -> {factor: reason} from the records'
    ``unidentifiable`` (the first reason given for each factor), in order of appearance. A dataset none of whose
    records declares a factor is not one."""
    controls: dict[str, dict[str, str]] = {}
    for record in records:
        declared = record.get("unidentifiable") or {}
        if declared:
            reasons = controls.setdefault(record["cell"]["dataset"], {})
            for factor, reason in declared.items():
                reasons.setdefault(str(factor), " ".join(str(reason).split()) or "no reason recorded")
    return controls


def control_line(unidentifiable: dict[str, str]) -> str:
    """The line under a control's leaderboard: not ranked, and why."""
    return (f"Negative control, not ranked: its images cannot carry {', '.join(unidentifiable)}, so nothing here is "
            "bold or tested and it is left out of the ranks (per-factor ceilings under Negative controls).")


def control_tables(records: list[dict], controls: dict[str, dict[str, str]], labels: list[str]) -> list[ControlTable]:
    """Per negative control (``controls``: :func:`control_datasets`), the per-factor R² table: the
    ``supervised`` reference row(s) first, then the methods in the order of ``labels``; a note instead of what
    is missing (no supervised row, no ``r2@linear`` per-factor score)."""
    return [_control_table(dataset, unidentifiable,
                           [record for record in records if record["cell"]["dataset"] == dataset], labels)
            for dataset, unidentifiable in controls.items()]


def _control_table(dataset: str, unidentifiable: dict[str, str], records: list[dict],
                   labels: list[str]) -> ControlTable:
    factors = next((list(record["factors"]) for record in records if record.get("factors")), list(unidentifiable))
    table = ControlTable(dataset, factors, dict(unidentifiable))
    values: dict[str, dict[str, list[float]]] = {}  # label -> factor -> finite scores over ok seeds
    cells: dict[str, int] = {}  # label -> cells, failed ones included
    ceilings, methods = set(), set()
    for record in records:
        label = record["cell"].get("label") or record["cell"]["model"]
        if is_reference(record):
            if record["cell"].get("model") != CEILING_MODEL:
                continue  # the other reference rows stand for other things
            ceilings.add(label)
        else:
            methods.add(label)
        cells[label] = cells.get(label, 0) + 1
        scores = (record.get("scores") or {}) if record.get("status") == "ok" else {}
        for index, factor in enumerate(record.get("factors") or factors):
            value = scores.get(PER_FACTOR.format(index=index))
            if isinstance(value, (int, float)) and math.isfinite(value):
                values.setdefault(label, {}).setdefault(factor, []).append(float(value))
    if not values:
        table.notes.append(f"No r2@linear per-factor scores (r2@linear.r2_<k>) on {dataset}: neither the ceiling "
                           "nor the methods' recovery of each factor can be shown (the suite must run r2@linear).")
        return table
    if not ceilings:
        table.notes.append(f"No {CEILING_MODEL} reference row on {dataset}: there is no ceiling to read the methods' "
                           f"scores against (add the {CEILING_MODEL} reference row to the suite).")
    elif not any(label in values for label in ceilings):
        table.notes.append(f"The {CEILING_MODEL} reference row on {dataset} has no r2@linear per-factor score: there "
                           "is no ceiling to read the methods' scores against.")
    ordered = [label for label in labels if label in ceilings] + [label for label in labels if label in methods]
    table.rows = [ControlRow(label, [_mean_text(values.get(label, {}).get(factor, []), cells[label])
                                     for factor in factors], label in ceilings) for label in ordered]
    return table


def _mean_text(scores: list[float], cells: int) -> str:
    """The mean with three significant digits, ``(ok/total)`` when some cells lack the score; ``–`` for none."""
    if not scores:
        return "–"
    counts = f" ({len(scores)}/{cells})" if len(scores) < cells else ""
    return numbers.significant(float(np.mean(scores))) + counts
