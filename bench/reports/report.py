"""Leaderboards and the HTML report from finished cells.

:func:`write_report` turns the records of :func:`crlbench.suites.results.load_records` into one folder::

    leaderboard.md    a linked table of contents, the protocol, a table per dataset, degenerate runs, negative
                      controls, paired differences, ranks, failed and partial cells, notes, captioned figures
    leaderboard.csv   long form: one row per (dataset, label, metric) with every number behind a cell, at full precision
    effects.csv       one row per (dataset, label, metric): the paired test and difference against the comparison label
    scores.csv        one row per cell and score (docs/protocol.md names its columns), for tools that read results
    leaderboard.tex   a booktabs table per dataset that fits one column of a two-column paper, with short captions
                      and the protocol in notes after the tables (crlbench.reports.latex)
    index.html        self-contained: contents, the protocol box, figures as base64 PNG (each a link to its file),
                      sortable tables, provenance footer; readable at phone width
    figures/*.png

A table cell reads ``mean ± halfwidth`` of the 95% bootstrap interval over seeds (crlbench.reports.stats),
the half-width at two significant digits and the mean to its decimal place, or ``mean [low, high]`` when
the interval is too asymmetric for a ``±`` (crlbench.reports.numbers), with ``(ok/total)`` when some seeds
failed or lack the score and ``§ k/n`` when k of its n seeds are flagged by a degeneracy check (the
record's ``checks``; for a record written before the checks, two of them derived from the report's reference
rows when the records are read, and for every method record latent_vs_untrained, its latent scores against the
untrained row's on the same seed: crlbench.reports.derived_checks) that invalidates the score; among the methods
with the most seeds in a column and no flagged seed, the best mean and those that print the same are bold (for
the score's direction), and ``†`` marks a Holm-corrected Wilcoxon p < 0.05 against the comparison label.
Reference rows (the record's ``reference``: copy, mean image...) are shown under the methods and never
ranked, bolded or tested. Neither is a negative control, a dataset whose records declare factors its images
cannot carry (``unidentifiable``; crlbench.reports.controls): its leaderboard says why it is not ranked, and the
"Negative controls" section shows per factor the supervised reference row's R² ceiling beside each method's.
``‡ k/n`` after a method's name: k of its n seeds did not converge by the trainer's rule
(crlbench.reports.convergence; a seed not judged is counted by its cause). ``¶`` after a method's name: the
dataset's data break an assumption the method makes (the records' ``assumptions_broken``), named in the legend.
Every table names what each method is given (labels, the true graph, an initial
graph, pairs, environments, or nothing) and its latent size; the protocol box at the top
states the suite, budget, image size, seeds, evaluation split and sizes, each method's resolved
hyperparameters, and the crlbench version and commit (crlbench.reports.protocol).
"""

from __future__ import annotations

import datetime
import importlib.metadata
import json
import os
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import pandas as pd

from crlbench.core.files import atomic_write
from crlbench.core.records import flagged_checks, is_reference
from crlbench.reports import convergence, figures, html, latex, markdown, numbers, protocol, stats
from crlbench.reports.controls import control_datasets, control_line, control_tables
from crlbench.reports.derived_checks import derivation_note, untrained_note, with_derived_checks
from crlbench.reports.columns import columns as score_columns
from crlbench.reports.pooling import check_pooling, pooled_notes
from crlbench.reports.protocol import given_text
from crlbench.reports.scores_frame import SCORES_COLUMNS, scores_frame  # noqa: F401 (SCORES_COLUMNS re-exported)
from crlbench.reports.tables import MARKER  # noqa: F401 (re-exported: the significance mark)
from crlbench.reports.tables import (Drawn, Entry, MethodFacts, ReportData, Table, assumption_legend, flag_legend,
                                     legend_lines)

DEFAULT_METRICS = [
    "dci@reg.disentanglement", "dci@reg.completeness", "dci@reg.informativeness_test", "mcc@pearson.mcc",
    "irs@dlib.irs", "mic@aligned.mic", "mic@aligned.tic", "counterfactual@probe.reconstruction_mse",
    "counterfactual@probe.counterfactual_mse", "counterfactual@probe.target_error",
    "counterfactual@probe.non_descendant_shift", "graph@card.shd", "graph@card.auroc",
]
STATS_LIBRARIES = ("scipy", "statsmodels", "scikit-posthocs", "pandas", "matplotlib")


# --- the cell frame ------------------------------------------------------------------------------


def records_frame(records: list[dict]) -> pd.DataFrame:
    """One row per record: dataset, label, model, seed, status, error, hash, the parts that failed in a
    partial record (``metric_errors``: its other scores stand), the metric variants that do not apply
    (``not_applicable``), then every score."""
    rows = []
    for record in records:
        cell, error = record["cell"], record.get("error")
        parts = record.get("metric_errors") or {}
        row = {"dataset": cell["dataset"], "label": cell.get("label") or cell["model"], "model": cell.get("model"),
               "seed": cell["seed"], "status": record["status"], "hash": record.get("hash"),
               "error": f"{error.get('type', 'Error')}: {error.get('message', '')}" if error else None,
               "metric_errors": "; ".join(f"{name}: {part.get('type', 'Error')}: {part.get('message', '')}"
                                          for name, part in parts.items()) or None,
               # the metric variants that do not apply ("*": none does, the method does not apply to the dataset)
               "not_applicable": "*" if record["status"] == "not_applicable"
               else " ".join(sorted(record.get("not_applicable") or {})) or None,
               "reference": is_reference(record)}
        row.update(record.get("scores") or {})
        rows.append(row)
    frame = pd.DataFrame(rows)
    for column in stats.ID_COLUMNS:
        if column not in frame:
            frame[column] = pd.Series(dtype=object)
    return frame[list(stats.ID_COLUMNS) + stats.score_columns(frame)]


def flag_counts(records: list[dict], metrics: list[str]) -> dict[tuple[str, str, str], int]:
    """Per (dataset, label, metric), how many ok seeds with a finite score have it flagged."""
    counts: dict[tuple[str, str, str], int] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        cell, flags = record["cell"], flagged_checks(record)
        for metric in metrics:
            value = (record.get("scores") or {}).get(metric)
            if metric in flags and isinstance(value, (int, float)) and np.isfinite(value):
                key = (cell["dataset"], cell.get("label") or cell["model"], metric)
                counts[key] = counts.get(key, 0) + 1
    return counts


def tabulated_flags(record: dict, metrics: list[str]) -> list[str]:
    """The checks that flag one of ``metrics`` in ``record`` (a method's; reference rows have none), sorted."""
    return sorted({name for score, checks in flagged_checks(record).items() if score in metrics for name in checks})


def fired_checks(records: list[dict], metrics: list[str]) -> dict[str, dict]:
    """The checks that flagged a tabulated score of some method's cell: name -> ``{cells, derived, invalidates,
    reason}`` (``derived``: how many of the cells had it derived from the reference rows; ``invalidates``: the
    patterns of all those cells, in order of appearance; the reason of the first such cell)."""
    fired: dict[str, dict] = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        for name in tabulated_flags(record, metrics):
            check = record["checks"][name]
            entry = fired.setdefault(name, {"cells": 0, "derived": 0, "invalidates": list(check.get("invalidates") or []),
                                            "reason": str(check.get("reason") or "no reason recorded")})
            entry["cells"] += 1
            entry["derived"] += bool(check.get("derived"))
            entry["invalidates"] += [pattern for pattern in check.get("invalidates") or []
                                     if pattern not in entry["invalidates"]]
    return fired


def degenerate_rows(records: list[dict], metrics: list[str]) -> list[dict]:
    """Per (dataset, method) and check that flagged a tabulated score of some of its seeds: the seeds flagged out
    of its finished ones, the scores the check invalidates, and the first flagged seed's reason (derived checks
    included). Which rows, or parts of rows, are artefacts rather than the method's, and why."""
    groups: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        if record.get("status") == "ok" and not is_reference(record):
            cell = record["cell"]
            groups.setdefault((cell["dataset"], cell.get("label") or cell["model"]), []).append(record)
    rows = []
    for (dataset, label), group in groups.items():
        found: dict[str, dict] = {}
        for record in group:
            for name in tabulated_flags(record, metrics):
                check = record["checks"][name]
                entry = found.setdefault(name, {"dataset": dataset, "label": label, "check": name, "flagged": 0,
                                                "invalidates": ", ".join(check.get("invalidates") or []),
                                                "reason": " ".join(str(check.get("reason") or "").split())})
                entry["flagged"] += 1
        rows += [{**entry, "seeds": f"{entry['flagged']}/{len(group)}"} for entry in found.values()]
    return rows


def reference_architectures(records: list[dict]) -> dict[str, str]:
    """Per reference row label, what it runs (its record's ``reference.architecture``)."""
    found: dict[str, str] = {}
    for record in records:
        if is_reference(record):
            label = record["cell"].get("label") or record["cell"]["model"]
            found.setdefault(label, str((record["reference"] or {}).get("architecture") or "not stated"))
    return found


def check_records(records: list[dict]) -> None:
    """Raise ValueError naming the first record that lacks what the report reads."""
    if not records:
        raise ValueError("write_report: no records (did the suite write any result.json?)")
    for index, record in enumerate(records):
        where = record.get("_dir", f"records[{index}]")
        cell = record.get("cell")
        if not isinstance(cell, dict) or "status" not in record:
            raise ValueError(f"{where}: a record needs 'status' and a 'cell' object")
        missing = [key for key in ("dataset", "seed") if key not in cell]
        if missing or not (cell.get("label") or cell.get("model")):
            raise ValueError(f"{where}: cell lacks {missing or ['label or model']}")


def select_metrics(frame: pd.DataFrame, metrics: list[str] | None) -> list[str]:
    """The score columns to tabulate: the requested ones, or the defaults present (else every score)."""
    available = stats.score_columns(frame)
    if metrics is not None:
        unknown = [metric for metric in metrics if metric not in available]
        if unknown:
            raise ValueError(f"write_report: unknown metrics {unknown}; the records have {sorted(available)}")
        return list(metrics)
    present = [metric for metric in DEFAULT_METRICS if metric in available]
    return present or sorted(available)


def label_order(frame: pd.DataFrame, reference: str) -> list[str]:
    """The comparison label (``reference``) first, then the other methods in order of appearance, then the
    reference rows."""
    labels = list(dict.fromkeys(frame["label"]))
    references = set(frame.loc[frame["reference"].fillna(False).astype(bool), "label"])
    return sorted(labels, key=lambda label: (label in references, label != reference))


# --- tables --------------------------------------------------------------------------------------


def method_facts(records: list[dict]) -> dict[tuple[str, str], MethodFacts]:
    """Per (dataset, label), the supervision, latent size, budget, schedule and convergence its records state."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for record in records:
        if record.get("status") == "ok":
            cell = record["cell"]
            grouped.setdefault((cell["dataset"], cell.get("label") or cell["model"]), []).append(record)
    tallies, broken = convergence.tallies(records), broken_assumptions(records)
    facts = {key: _facts(group) for key, group in grouped.items()}
    for key, method in facts.items():
        method.convergence = tallies.get(key, convergence.Tally())
        method.broken = broken.get(key, {})
    return facts


def broken_assumptions(records: list[dict]) -> dict[tuple[str, str], dict[str, str]]:
    """Per (dataset, label) of a method, the assumptions of the method its data break (the records'
    ``assumptions_broken``: key -> description, the first description given for each key), in order of
    appearance; a row none of whose records names one is absent."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for record in records:
        declared = record.get("assumptions_broken") or {}
        if declared and not is_reference(record):
            cell = record["cell"]
            broken = found.setdefault((cell["dataset"], cell.get("label") or cell["model"]), {})
            for key, text in declared.items():
                broken.setdefault(str(key), " ".join(str(text).split()) or "not described")
    return found


def _facts(records: list[dict]) -> MethodFacts:
    first = records[0]
    facts = MethodFacts(given=given_text(first.get("given")), latent_size=str(first.get("latent_size", "?")))
    budget = first["cell"].get("budget") or {}
    facts.batch_size = str(budget.get("batch_size", "?"))
    steps = (first.get("history") or {}).get("steps")
    fraction = first.get("budget_fraction")
    if fraction:
        facts.images = f"{fraction['images']:,}"
    elif steps is not None and budget.get("batch_size"):  # no reference declared: steps x batch, an upper bound
        facts.images = f"{steps * budget['batch_size']:,}"
    if fraction:
        reference = fraction["reference"]
        facts.reference = (f"{reference['epochs']} epochs" if reference.get("epochs") is not None
                           else f"{reference['steps']:,} steps of {reference.get('batch_size', '?')}")
        facts.fraction = f"{numbers.significant(100 * fraction['fraction'], 2)} %"
    facts.cpu = cpu_text([(record.get("timings") or {}).get("cpu_s") for record in records])
    schedules = [record.get("schedule") for record in records if record.get("schedule")]
    if schedules:
        finished = all(schedule.get("finished") for schedule in schedules)
        kind = schedules[0].get("kind", "?")
        facts.schedule = f"{kind}, " + ("finished" if finished else
                                        f"unfinished (full weight at step {schedules[0].get('full_weight_step')} "
                                        f"of {schedules[0].get('total_steps')})")
    representation = first.get("representation")
    if representation:
        facts.representation = f"{representation['kind']}: {representation['rule']} ({representation['codes']} codes)"
    return facts


def cpu_text(seconds: list[float | None]) -> str:
    """``"412 (380-455)"``: the median and range of the cells' process CPU seconds (``timings.cpu_s``: training
    summed across resumes, plus evaluation), over the records that have it, with how many lack it; ``–`` when
    none has it (records written before it was recorded)."""
    known = sorted(value for value in seconds if value is not None)
    if not known:
        return "–"
    text = f"{np.median(known):,.0f} ({known[0]:,.0f}–{known[-1]:,.0f})"
    return text + (f", {len(seconds) - len(known)} not recorded" if len(known) < len(seconds) else "")


def merged_statistics(summary: pd.DataFrame, tests: pd.DataFrame,
                      flags: dict[tuple[str, str, str], int] | None = None,
                      references: set[str] = frozenset(), unranked: set[str] = frozenset()) -> pd.DataFrame:
    """The summary with the paired tests and the bold / significant / flagged marks of each cell.

    ``best`` is decided on matched seeds: among the methods (not ``references``) of a (dataset, metric) whose
    count of seeds with the score is the most any method of that column has, and that no check flags
    (``flags``: flagged seeds per (dataset, label, metric)), the best mean and every mean that prints the
    same (crlbench.reports.numbers) are bold. Nothing is bold on an ``unranked`` dataset (a negative control:
    crlbench.reports.controls)."""
    flags = flags or {}
    merged = summary.merge(tests[["dataset", "label", "metric", "n_pairs", "p_value", "p_holm", "mean_difference",
                                  "difference_low", "difference_high"]],
                           on=["dataset", "label", "metric"], how="left")
    merged["reference"] = merged["label"].isin(references)
    merged["flagged"] = [flags.get(key, 0) for key in zip(merged["dataset"], merged["label"], merged["metric"])]
    merged["best"] = False
    for (dataset, _), index in merged.groupby(["dataset", "metric"], sort=False).groups.items():
        if dataset in unranked:
            continue
        group = merged.loc[index]
        methods = group[~group["reference"]]
        most = int(methods["n_ok"].max()) if len(methods) else 0
        eligible = ((~group["reference"]) & (group["flagged"] == 0) & (group["n_ok"] == most)).tolist()
        places = [numbers.interval_places(mean, low, high)
                  for mean, low, high in zip(group["mean"], group["ci_low"], group["ci_high"])]
        merged.loc[index, "best"] = numbers.best_and_ties(group["mean"].tolist(), [], group["direction"].iloc[0] == "max",
                                                          places=places, eligible=eligible)
    merged["best"] = merged["best"].astype(bool)
    merged["significant"] = merged["p_holm"] < stats.ALPHA
    return merged


def seed_flags(merged: pd.DataFrame) -> dict[tuple[str, str, str], tuple[int, int]]:
    """Per (dataset, label, metric) of :func:`merged_statistics`: (flagged seeds, seeds with the score), the
    ``§ k/n`` of the leaderboard, for the rank and paired-difference tables."""
    return {(dataset, label, metric): (int(flagged), int(n_ok)) for dataset, label, metric, flagged, n_ok
            in zip(merged["dataset"], merged["label"], merged["metric"], merged["flagged"], merged["n_ok"])}


def not_applicable_scores(frame: pd.DataFrame, metrics: list[str]) -> set[tuple[str, str, str]]:
    """(dataset, label, metric) whose score applies to none of the group's cells: each is a not-applicable
    cell, or lists the metric's variant (``graph@card`` of ``graph@card.shd``) as not applicable; for a
    reference row, also a score none of its ok cells has (it stands for other scores)."""
    found = set()
    for (dataset, label), group in frame.groupby(["dataset", "label"], sort=False):
        listed = [set(str(value).split()) for value in group["not_applicable"].fillna("")]
        reference = bool(group["reference"].fillna(False).any())
        ok = group[group["status"] == "ok"]
        for metric in metrics:
            variant = metric.split(".", 1)[0]
            if all("*" in names or variant in names for names in listed):
                found.add((dataset, label, metric))
            elif reference and len(ok) and pd.to_numeric(ok[metric], errors="coerce").isna().all():
                found.add((dataset, label, metric))
    return found


def build_tables(merged: pd.DataFrame, datasets: list[str], labels: list[str], metrics: list[str],
                 facts: dict[tuple[str, str], MethodFacts] | None = None,
                 not_applicable: set[tuple[str, str, str]] = frozenset(),
                 controls: dict[str, dict[str, str]] | None = None) -> list[Table]:
    """A leaderboard per dataset; a negative control's (``controls``: dataset -> its unidentifiable factors)
    carries the line saying why it is not ranked."""
    facts, controls = facts or {}, controls or {}
    tables = []
    for dataset in datasets:
        rows = merged[merged["dataset"] == dataset]
        present = [label for label in labels if label in set(rows["label"])]
        references = set(rows.loc[rows["reference"], "label"]) if "reference" in rows else set()
        entries = {(row.label, row.metric): Entry(row.mean, (row.ci_high - row.ci_low) / 2, int(row.n_ok),
                                                  int(row.n_total), bool(row.best), bool(row.significant),
                                                  (dataset, row.label, row.metric) in not_applicable,
                                                  row.ci_low, row.ci_high, int(getattr(row, "flagged", 0)))
                   for row in rows.itertuples()}
        methods = {label: facts.get((dataset, label), MethodFacts()) for label in present}
        tables.append(Table(dataset, [label for label in present if label not in references], metrics, entries,
                            methods, [label for label in present if label in references],
                            control_line(controls[dataset]) if dataset in controls else ""))
    return tables


def failed_cells(frame: pd.DataFrame) -> list[dict]:
    """Failed cells (not the partial ones: :func:`partial_cells`)."""
    failed = frame[(frame["status"] != "ok") & (frame["status"] != "not_applicable")]
    return [{"dataset": row.dataset, "label": row.label, "seed": row.seed, "hash": row.hash,
             "error": row.error if isinstance(row.error, str) else row.status}
            for row in failed.itertuples()]


def partial_cells(frame: pd.DataFrame) -> list[dict]:
    """Partial cells: finished, some of their metrics failed (listed), the other scores stand."""
    partial = frame[(frame["status"] == "ok") & frame["metric_errors"].notna()]
    return [{"dataset": row.dataset, "label": row.label, "seed": row.seed, "hash": row.hash,
             "error": f"partial (its other scores stand): {row.metric_errors}"}
            for row in partial.itertuples()]


# --- provenance ----------------------------------------------------------------------------------


def collect_provenance(records: list[dict], extra: dict | None) -> dict[str, str]:
    """Commits, library versions, hosts and dates of the records, plus ``extra`` and the report's own."""
    recorded = [record.get("provenance") or {} for record in records]
    versions: dict[str, set[str]] = {}
    for entry in recorded:
        for name, version in (entry.get("versions") or {}).items():
            versions.setdefault(name, set()).add(str(version))
    finished = sorted(str(entry["finished_at"]) for entry in recorded if entry.get("finished_at"))
    result = {
        "git commit(s)": _distinct(recorded, "git_commit"),
        "library versions": "; ".join(f"{name} {' / '.join(sorted(values))}"
                                      for name, values in sorted(versions.items())) or "unknown",
        "host(s)": _distinct(recorded, "host"),
        "cells finished": f"{finished[0]} to {finished[-1]}" if finished else "unknown",
        "report generated": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "report libraries": "; ".join(f"{name} {_version(name)}" for name in STATS_LIBRARIES),
    }
    for key, value in (extra or {}).items():
        result[str(key)] = value if isinstance(value, str) else json.dumps(value, default=str, sort_keys=True)
    return result


def _distinct(entries: list[dict], key: str) -> str:
    """The distinct values of ``key`` across provenance entries, comma-separated, or "unknown"."""
    return ", ".join(sorted({str(entry[key]) for entry in entries if entry.get(key)})) or "unknown"


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


# --- the report ----------------------------------------------------------------------------------


def ordered_records(records: list[dict], datasets: list[str], labels: list[str]) -> list[dict]:
    """Records sorted by dataset, label (reference first) and seed, so figures share the tables' order."""
    def key(record: dict) -> tuple[int, int, int]:
        cell = record["cell"]
        return datasets.index(cell["dataset"]), labels.index(cell.get("label") or cell["model"]), cell["seed"]
    return sorted(records, key=key)


def make_figures(records: list[dict], frame: pd.DataFrame, summary: pd.DataFrame, metrics: list[str],
                 ranks: list[stats.RankTest], folder: Path) -> list[tuple[str, list[Drawn]]]:
    """Every figure of the report with its caption, grouped in the sections the HTML and markdown show."""
    def present(*items) -> list[Drawn]:
        return [item for item in items if item is not None]

    matrices = [item for variant, matrix in figures.MATRIX_FIGURES
                for item in figures.matrix_heatmaps(records, folder, variant=variant, matrix=matrix)]
    return [
        ("Scores per model (95% bootstrap CI, seeds as dots)", figures.point_plots(frame, summary, metrics, folder)),
        ("Critical-difference diagrams", present(*(figures.critical_difference(rank, folder) for rank in ranks))),
        ("Reconstruction against disentanglement", present(figures.reconstruction_scatter(frame, folder))),
        ("Matrices (rows = codes, columns = factors, mean over seeds)", matrices),
        ("Training curves", present(figures.training_curves(records, folder, convergence.tallies(records)))),
        ("Scores during training (validation sample)",
         figures.score_curves(records, folder, convergence=convergence.tallies(records))),
        ("Interventions (lowest seed)", figures.intervention_grids(records, folder)),
    ]


def write_report(records: list[dict], out_dir: str | os.PathLike, *, title: str, reference_label: str = "icm_vae",
                 metrics: list[str] | None = None, provenance: dict | None = None,
                 suite: Mapping[str, Any] | None = None, pool: bool = False, figures: bool = True) -> list[Path]:
    """Write the leaderboards (md, csv, tex), ``index.html`` and ``figures/`` into ``out_dir``.

    ``records`` are result records (crlbench.suites.results.load_records; ``_dir`` locates matrices and
    intervention grids). ``metrics`` are score columns such as ``dci@reg.disentanglement``, by
    default those of ``DEFAULT_METRICS`` present in the records. ``provenance`` adds entries to the
    HTML and markdown footer. ``suite`` (optional: ``SuiteConfig.to_dict()`` and ``cells``, the planned
    count) adds the declared budget, the description and the planned cells to the protocol box.
    A (dataset, label) row whose cells differ in more than their seed (budget, image size, evaluation...:
    crlbench.reports.pooling) raises :class:`crlbench.reports.pooling.MixedSettingsError` before anything is
    written, unless ``pool`` (then the notes name what was pooled). ``figures=False`` leaves out ``figures/`` (the
    tables and numbers are the same; the committed-report tests rebuild only those). Returns the written paths,
    figures included.
    """
    check_records(records)
    pooled = check_pooling(records, pool=pool)
    records = with_derived_checks(records)  # latent_vs_untrained for every method record; two more for records
    # that predate the checks (all from the reference rows)
    out_dir = Path(out_dir)
    frame = records_frame(records)
    metrics = select_metrics(frame, metrics)
    datasets, labels = list(dict.fromkeys(frame["dataset"])), label_order(frame, reference_label)
    frame = frame.iloc[np.lexsort((frame["seed"], frame["label"].map(labels.index),
                                   frame["dataset"].map(datasets.index)))].reset_index(drop=True)
    references = set(frame.loc[frame["reference"].astype(bool), "label"])
    controls = control_datasets(records)  # negative controls: their images cannot carry some factors
    # only methods, on datasets that are not negative controls, are tested, ranked or bold
    ranked = frame[~frame["label"].isin(references) & ~frame["dataset"].isin(controls)]
    summary = stats.summarise(frame, metrics)
    tests = stats.paired_tests(ranked, metrics, reference=reference_label)
    ranks = [stats.rank_test(ranked, metric) for metric in metrics]
    seed_ranks = {dataset: [stats.seed_rank_test(ranked, dataset, metric) for metric in metrics]
                  for dataset in datasets if dataset in set(ranked["dataset"])}
    merged = merged_statistics(summary, tests.table, flag_counts(records, metrics), references, set(controls))
    facts = method_facts(records)
    tallies = convergence.tallies(records)
    records = ordered_records(records, datasets, labels)
    architectures = reference_architectures(records)
    tables = build_tables(merged, datasets, labels, metrics, facts, not_applicable_scores(frame, metrics), controls)
    data = ReportData(title, reference_label, metrics, score_columns(metrics), tables, ranks, failed_cells(frame),
                      pooled_notes(pooled) + tests.notes + [note for rank in ranks for note in rank.notes]
                      + [note for tests_of in seed_ranks.values() for rank in tests_of for note in rank.notes],
                      collect_provenance(records, provenance), protocol.describe(records, suite),
                      convergence.per_label(tallies),
                      legend_lines(reference_label, convergence.legend_line(convergence.overall(tallies)),
                                   flag_legend(fired_checks(records, metrics)) + derivation_note(records)
                                   + untrained_note(records) + assumption_legend(tables),
                                   architectures),
                      paired=tests, seed_ranks=seed_ranks, partial=partial_cells(frame), references=architectures,
                      flags=seed_flags(merged), degenerate=degenerate_rows(records, metrics),
                      controls=control_tables(records, controls, labels))
    data.figures = make_figures(records, frame, summary, metrics, ranks, out_dir / "figures") if figures else []
    written = _write_texts(out_dir, data, with_facts(merged, facts, data), tests.table, scores_frame(records))
    return written + [item.path for _, items in data.figures for item in items]


def with_facts(merged: pd.DataFrame, facts: dict[tuple[str, str], MethodFacts], data: ReportData) -> pd.DataFrame:
    """The long-form table with each score's short name, what each method is given, its latent size, budget
    fraction, unconverged seeds and the keys of the assumptions its data break, space-separated (for the CSV)."""
    merged = merged.copy()
    merged.insert(merged.columns.get_loc("metric") + 1, "short_name", [data.column(m).short for m in merged["metric"]])
    keys = list(zip(merged["dataset"], merged["label"]))
    for column in ("given", "latent_size", "fraction", "cpu"):
        merged[{"fraction": "budget_fraction", "cpu": "cpu_s_per_cell"}.get(column, column)] = [
            getattr(facts.get(key, MethodFacts()), column) for key in keys]
    tallies = [facts.get(key, MethodFacts()).convergence for key in keys]
    merged["seeds_unconverged"] = [tally.unconverged for tally in tallies]
    merged["seeds_not_judged"] = [tally.not_judged for tally in tallies]
    merged["assumptions_broken"] = [" ".join(facts.get(key, MethodFacts()).broken) for key in keys]
    return merged


def _write_texts(out_dir: Path, data: ReportData, merged: pd.DataFrame, effects: pd.DataFrame,
                 scores: pd.DataFrame) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    effects = effects.assign(comparison=data.reference)
    texts = {"leaderboard.md": markdown.render(data, out_dir), "leaderboard.tex": latex.render(data),
             "index.html": html.render(data, out_dir), "leaderboard.csv": merged.to_csv(index=False),
             "effects.csv": effects.to_csv(index=False), "scores.csv": scores.to_csv(index=False)}
    for name, text in texts.items():
        write_text(out_dir / name, text)
    return [out_dir / name for name in texts]


def write_text(path: Path, text: str) -> None:
    """Write ``text`` atomically (crlbench.core.files.atomic_write: a locked temporary, swept if a write is killed)."""
    atomic_write(path, lambda handle: handle.write(text.encode("utf-8")))
