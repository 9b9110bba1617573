"""Which cells a report may pool into one row: those that differ in their seed and nothing else.

A leaderboard row is one (dataset, label) and its seeds; its mean, interval and paired tests treat the cells
as seeds of one setting. A work directory can hold cells of one label under several settings (the smoke,
quick and a sensitivity suite's beta-VAE at 6, 300 and 1,500 steps), and a report over it would average
them and count each (setting, seed) as a seed. :func:`mixed_rows` finds such rows by comparing what a cell's
content hash covers (crlbench.suites.cell: the crlbench version, the dataset's version and resolved
parameters, image size among them, the model's version and resolved hyperparameters, the budget, the device,
the thread count, the precision, the pairs' and environments' versions), less the seed, and its evaluation
(split, sample sizes, intervention grid, representation) and metric options (of the metrics both cells ran).

The suite's name is not a setting: suites that share cells by design (the same cell in two suite files, one
hash and one record) or split a setting's seeds between them pool as one row.

:func:`check_pooling` raises :class:`MixedSettingsError` naming each mixed row, the settings that differ and
each value with its cells' seeds and suites, unless pooling was asked for; :func:`pooled_notes` are the
report's notes when it was.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from crlbench.core.errors import ConfigError

ABSENT = "(absent)"  # a setting a cell does not record (older records)
SHOWN_ROWS = 8  # mixed rows an error lists before "and N more"
SHOWN_SETTINGS = 6  # differing settings a row lists before "and N more"


@dataclass(frozen=True)
class Value:
    """One value of a differing setting, and the seeds and suites of the cells that have it."""

    text: str
    seeds: tuple[int, ...]
    suites: tuple[str, ...]

    def describe(self) -> str:
        """``300 (seeds 0-2; suite quick)``."""
        seeds = f"seed{'s' * (len(self.seeds) != 1)} {seed_ranges(self.seeds)}"
        suites = f"; suite{'s' * (len(self.suites) != 1)} {', '.join(self.suites)}" if self.suites else ""
        return f"{self.text} ({seeds}{suites})"


def seed_ranges(seeds: tuple[int, ...]) -> str:
    """``0-3, 5, 5`` for seeds 0, 1, 2, 3, 5, 5 (sorted; a repeated seed is listed again)."""
    parts: list[list[int]] = []
    for seed in seeds:
        if parts and seed == parts[-1][-1] + 1:
            parts[-1].append(seed)
        else:
            parts.append([seed])
    return ", ".join(f"{run[0]}-{run[-1]}" if len(run) > 2 else ", ".join(map(str, run)) for run in parts)


@dataclass(frozen=True)
class MixedRow:
    """A (dataset, label) row whose cells differ in more than their seed: setting path -> its values."""

    dataset: str
    label: str
    settings: dict[str, tuple[Value, ...]]

    def describe(self, shown: int = SHOWN_SETTINGS) -> str:
        lines = [f"{self.dataset} / {self.label}:"]
        for path, values in list(self.settings.items())[:shown]:
            lines.append(f"    {path}: " + "; ".join(value.describe() for value in values))
        if len(self.settings) > shown:
            rest = list(self.settings)[shown:]
            lines.append(f"    and {len(rest)} more settings: {', '.join(rest)}")
        return "\n".join(lines)


class MixedSettingsError(ConfigError):
    """A report (or comparison) would pool cells whose settings differ into one row."""

    def __init__(self, rows: list[MixedRow], suites: list[str] = ()) -> None:
        self.rows, self.suites = rows, list(suites)
        super().__init__(_message(self.rows, self.suites))

    def __reduce__(self):
        return type(self), (self.rows, self.suites)


def _message(rows: list[MixedRow], suites: list[str]) -> str:
    listed = "\n".join(row.describe() for row in rows[:SHOWN_ROWS])
    more = f"\nand {len(rows) - SHOWN_ROWS} more rows" if len(rows) > SHOWN_ROWS else ""
    recorded = f"; here: {', '.join(suites)}" if suites else ""
    return (f"{len(rows)} row{'s' * (len(rows) != 1)} would pool cells whose settings differ, as if they were seeds "
            f"of one setting:\n{listed}{more}\n"
            f"To report one setting: crlbench report FOLDER --suite NAME (the cells that suite recorded{recorded}), "
            f"or crlbench report SUITE.yaml --workdir WORKDIR (the suite's cells, those it shares with other suites "
            f"included). To show the settings as separate rows, give each its own label in the suite files. To pool "
            f"them anyway: crlbench report --pool (Python: write_report(..., pool=True)).")


def cell_settings(record: dict) -> dict[str, str]:
    """What a record's cell was computed with, less its seed and suite, flattened: ``{"budget.steps": "300",
    "dataset.params.size": "32", "evaluation.n_test": "1000", "metrics.dci@reg": "{}", ...}``. The hashed
    identity where the record has it, else the cell's own fields (records written before it)."""
    cell = record["cell"]
    identity = cell.get("identity") or {
        "dataset": {"name": cell.get("dataset"), "params": cell.get("dataset_params")},
        "model": {"name": cell.get("model"), "hyperparameters": cell.get("hyperparameters")},
        "budget": cell.get("budget"), "device": cell.get("device"), "threads": cell.get("threads"),
        "crlbench": cell.get("code_version")}
    settings = {key: value for key, value in identity.items() if key != "seed"}
    settings["evaluation"] = cell.get("evaluation")
    flat: dict[str, str] = {}
    _flatten(settings, "", flat)
    for metric in cell.get("metrics") or []:
        if isinstance(metric, dict) and "name" in metric:
            flat[f"metrics.{metric['name']}"] = _text(metric.get("options") or {})
    return flat


def _flatten(value: Any, path: str, into: dict[str, str]) -> None:
    if isinstance(value, dict) and value:
        for key, item in value.items():
            _flatten(item, f"{path}.{key}" if path else str(key), into)
    else:
        into[path] = _text(value)


def _text(value: Any) -> str:
    if value is None:
        return "none"
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)


def mixed_rows(records: list[dict]) -> list[MixedRow]:
    """The (dataset, label) rows of ``records`` whose cells differ in a setting (:func:`cell_settings`), in order
    of appearance. A metric's options count only between cells that both ran the metric."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        cell = record["cell"]
        groups.setdefault((cell["dataset"], cell.get("label") or cell["model"]), []).append(record)
    rows = []
    for (dataset, label), group in groups.items():
        settings = [cell_settings(record) for record in group]
        differing = {}
        for path in sorted(set().union(*settings)):
            cells: dict[str, list[dict]] = {}
            for record, setting in zip(group, settings):
                if path in setting or not path.startswith("metrics."):
                    cells.setdefault(setting.get(path, ABSENT), []).append(record)
            if len(cells) > 1:
                differing[path] = tuple(Value(text, tuple(sorted(r["cell"]["seed"] for r in members)),
                                              tuple(recorded_suites(members)))
                                        for text, members in sorted(cells.items(), key=_value_order))
        if differing:
            rows.append(MixedRow(dataset, label, differing))
    return rows


def _value_order(item: tuple[str, list[dict]]) -> tuple[float, str]:
    """Numbers in numeric order (6 before 300), then text."""
    try:
        return float(item[0]), item[0]
    except ValueError:
        return float("inf"), item[0]


def recorded_suites(records: list[dict]) -> list[str]:
    """The suite names the records' cells carry, sorted."""
    return sorted({str(record["cell"].get("suite")) for record in records if record["cell"].get("suite")})


def check_pooling(records: list[dict], *, pool: bool = False) -> list[MixedRow]:
    """The mixed rows of ``records``; :class:`MixedSettingsError` if there is one and ``pool`` is false."""
    rows = mixed_rows(records)
    if rows and not pool:
        raise MixedSettingsError(rows, recorded_suites(records))
    return rows


def pooled_notes(rows: list[MixedRow]) -> list[str]:
    """One note per row pooled on request: which settings it mixes and their values."""
    return [f"{row.dataset} / {row.label} pools cells whose settings differ (pooled on request): "
            + "; ".join(f"{path} " + ", ".join(value.text for value in values)
                        for path, values in row.settings.items()) + "."
            for row in rows]
