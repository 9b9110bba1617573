"""The protocol box at the top of a report: what was run, derived from the result records (and the suite
config when the report is made from one), so a reader can state the setup without opening a file.

Each record holds its cell (``cell``: suite, dataset and resolved parameters in ``identity``, model and
resolved hyperparameters, seed, budget, evaluation settings, metrics), what the method was given
(``given``), its ``latent_size`` and ``provenance`` (crlbench version, git commit);
bench/suites/runner.py writes them. Values that differ between records are listed with the cells
they belong to, never silently collapsed.
"""

from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Mapping

from crlbench.core.records import is_partial
from crlbench.reports import convergence


@dataclass
class MethodRow:
    """One method (a label) on the datasets where it ran with identical settings."""

    label: str
    model: str
    datasets: str
    given: str
    latent_size: str
    budget: str
    hyperparameters: str


@dataclass
class Protocol:
    """The box: named facts in display order, then a row per method."""

    facts: list[tuple[str, str]]
    methods: list[MethodRow]


def given_text(given: list[str] | None) -> str:
    if given is None:
        return "not declared"
    return ", ".join(given) if given else "nothing"


def budget_text(budget: Mapping[str, Any] | None) -> str:
    """``200 steps of 64``, ``10 epochs of 64``, ``10 epochs or 500 steps of 64`` (whichever comes first)."""
    if not budget:
        return "?"
    parts = [f"{budget['epochs']} epochs" if budget.get("epochs") else "",
             f"{budget['steps']:,} steps" if budget.get("steps") else ""]
    return " or ".join(part for part in parts if part) + f" of {budget.get('batch_size', '?')}"


def images_text(budget: Mapping[str, Any] | None) -> str:
    if budget and budget.get("steps") and not budget.get("epochs"):
        return f" ({budget['steps'] * budget.get('batch_size', 0):,} images)"
    return ""


def seeds_text(cells: list[Mapping[str, Any]], datasets: list[str]) -> str:
    """``0, 1, 2 (3 seeds, the same for every method and dataset)``, or each method's seeds where they differ."""
    seeds: dict[tuple[str, str], list[int]] = defaultdict(list)
    for cell in cells:
        seeds[(cell.get("label") or cell["model"], cell["dataset"])].append(int(cell["seed"]))
    shown = {group: ", ".join(map(str, sorted(set(values)))) for group, values in seeds.items()}
    if len(set(shown.values())) == 1:
        count = len(set(next(iter(seeds.values()))))
        return f"{next(iter(shown.values()))} ({count} seed{'s' * (count != 1)}, the same for every method and dataset)"
    return distinct(shown, lambda pairs: methods_on(pairs, datasets))


def distinct(values_by_owner: Mapping[Any, str], owners_text=lambda owners: ", ".join(map(str, owners))) -> str:
    """One value when all owners agree, else the most common value followed by the exceptions and their owners:
    ``200 steps of 64, except 100 steps of 128 for dear``."""
    owners: dict[str, list] = defaultdict(list)
    for owner, value in values_by_owner.items():
        owners[value].append(owner)
    ordered = sorted(owners.items(), key=lambda item: -len(item[1]))
    if len(ordered) == 1:
        return ordered[0][0]
    return f"{ordered[0][0]}, except " + "; ".join(f"{value} for {owners_text(names)}" for value, names in ordered[1:])


def methods_on(pairs: list[tuple[str, str]], datasets: list[str]) -> str:
    """(label, dataset) pairs as ``dear, icm_vae on causal_circuit``: a label on every dataset is named alone."""
    grouped: dict[str, list[str]] = defaultdict(list)
    for label, dataset in pairs:
        grouped[label].append(dataset)
    return ", ".join(label if set(names) >= set(datasets) else f"{label} on {', '.join(names)}"
                     for label, names in grouped.items())


def image_size(cell: Mapping[str, Any]) -> str:
    params = ((cell.get("identity") or {}).get("dataset") or {}).get("params") or cell.get("dataset_params") or {}
    size = params.get("size")
    return f"{size}×{size} px" if size else "dataset default"


def evaluation_text(cell: Mapping[str, Any]) -> str:
    evaluation = cell.get("evaluation") or {}
    split = evaluation.get("split", "test")
    holdout = (cell.get("identity") or {}).get("validation_holdout")
    where = (f"{split} ({holdout:.0%} of the training split held out, the same for every seed)" if holdout
             else f"{split} split")
    return (f"{where}; predictors fitted on {evaluation.get('n_train', '?')} training images, scored on "
            f"{evaluation.get('n_test', '?')} {split} images; representation "
            f"{evaluation.get('representation', 'factor_codes')}; {evaluation.get('interventions', '?')} "
            "intervention sources per cell")


def metrics_text(cell: Mapping[str, Any]) -> str:
    entries = []
    for metric in cell.get("metrics") or []:
        if isinstance(metric, str):
            entries.append(metric)
        else:
            options = metric.get("options") or {}
            entries.append(metric["name"] + (f" {json.dumps(options, sort_keys=True)}" if options else ""))
    return ", ".join(entries) or "?"


def hyperparameters_text(cell: Mapping[str, Any]) -> str:
    """The resolved hyperparameters (every default filled in: the cell's ``identity``) as ``name=value, ...``;
    for a record without an identity, the ones the suite set."""
    resolved = ((cell.get("identity") or {}).get("model") or {}).get("hyperparameters")
    values = resolved if resolved is not None else cell.get("hyperparameters") or {}
    return ", ".join(f"{name}={json.dumps(value)}" for name, value in values.items()) or "defaults"


def method_rows(records: list[dict]) -> list[MethodRow]:
    """One row per label and set of identical settings, datasets joined; labels in the order of ``records``."""
    rows: dict[tuple, list[str]] = {}
    for record in records:
        cell = record["cell"]
        key = (cell.get("label") or cell["model"], cell["model"], given_text(record.get("given")),
               str(record.get("latent_size", "?")), budget_text(cell.get("budget")), hyperparameters_text(cell))
        datasets = rows.setdefault(key, [])
        if cell["dataset"] not in datasets:
            datasets.append(cell["dataset"])
    labels = list(dict.fromkeys(key[0] for key in rows))
    return [MethodRow(label, model, ", ".join(datasets), given, latent, budget, hyper)
            for (label, model, given, latent, budget, hyper), datasets
            in sorted(rows.items(), key=lambda item: labels.index(item[0][0]))]


def describe(records: list[dict], suite: Mapping[str, Any] | None = None) -> Protocol:
    """The protocol of ``records`` (ok ones describe the methods; all count as cells), in the order of
    ``records``. ``suite`` is the suite config as a mapping (``SuiteConfig.to_dict()`` plus ``cells``, the
    planned count), optional."""
    suite = suite or {}
    ok = [record for record in records if record.get("status") == "ok"] or records
    cells = [record["cell"] for record in records]
    by_dataset = {cell["dataset"]: cell for cell in cells}
    by_group = {(cell.get("label") or cell["model"], cell["dataset"]): cell for cell in cells}
    provenance = [record.get("provenance") or {} for record in records]
    failed = sum(record.get("status") not in ("ok", "not_applicable") for record in records)
    skipped = sum(record.get("status") == "not_applicable" for record in records)
    partial = sum(is_partial(record) for record in records)
    planned = f" of {suite['cells']} planned" if suite.get("cells") else ""
    budget = budget_text(suite["budget"]) + images_text(suite["budget"]) if suite.get("budget") else None
    per_method = distinct({group: budget_text(cell.get("budget")) for group, cell in by_group.items()},
                          lambda pairs: methods_on(pairs, list(by_dataset)))
    facts = [
        ("suite", suite.get("name") or _joined(cell.get("suite") for cell in cells)),
        ("cells", f"{len(records)}{planned} ({len(records) - failed - skipped - partial} finished"
                  + (f", {partial} partial (some metrics failed, the other scores stand)" if partial else "")
                  + f", {failed} failed" + (f", {skipped} not applicable)" if skipped else ")")),
        ("budget", f"{budget}; trained: {per_method}" if budget else per_method),
        ("image size", distinct({name: image_size(cell) for name, cell in by_dataset.items()})),
        ("seeds", seeds_text(cells, list(by_dataset))),
        ("evaluation", distinct({name: evaluation_text(cell) for name, cell in by_dataset.items()})),
        ("metrics", distinct({name: metrics_text(cell) for name, cell in by_dataset.items()})),
        ("device", distinct({name: f"{cell.get('device', '?')}, {cell.get('threads', 1)} thread(s) per cell, "
                                   f"{cell.get('precision', 'fp32')} training"
                             for name, cell in by_dataset.items()})),
        ("convergence", convergence.summary_text(convergence.overall(convergence.tallies(records)))),
        ("crlbench version", _joined(entry.get("versions", {}).get("crlbench") for entry in provenance)),
        ("git commit", _joined(entry.get("git_commit") for entry in provenance)),
    ]
    if suite.get("description"):
        facts.insert(1, ("description", str(suite["description"])))
    return Protocol(facts, method_rows(ok))


def _joined(values) -> str:
    return ", ".join(sorted({str(value) for value in values if value})) or "unknown"
