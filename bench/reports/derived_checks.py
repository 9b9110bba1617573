"""Degeneracy checks derived in a report for method records written before the checks existed
(docs/protocol.md, "Degeneracy checks", the committed standard records).

Two of the five checks compare a method's recorded score with a trivial baseline's on the same rows, and
the report's reference rows recorded that baseline: the evaluation sample depends only on the cell's
seed and evaluation settings (the runner's evaluation stream), and ``counterfactual@probe``'s samples
and target values only on its seed (the cell's metric stream) and options, never on the model. So, for
a method record with no ``checks``:

* ``reconstruction_vs_mean_image``: its ``reconstruction.mse`` against the ``mean_image`` reference
  row's ``reconstruction.mse``;
* ``counterfactual_vs_copy``: its ``counterfactual@probe.counterfactual_mse`` against the ``copy``
  reference row's ``counterfactual@probe.counterfactual_mse`` (the ``copy_mse`` of the same samples),

each with the rule, threshold and ``invalidates`` of :mod:`crlbench.core.degeneracy`, marked
``"derived": true`` with the reference cell's hash under ``reference_cell``. The reference row must match
the method's cell on dataset, dataset parameters (and the resolved dataset identity where both record it),
seed and the evaluation settings that pick the rows (split, n_train, n_test); for the counterfactual also
on the metric's options (the suite's, and the resolved ones and the metric seed where both record them).
Without such a row, or without the method's score, the check is null and says why. ``posterior_collapse``,
``constant_codes`` and ``inert_do`` need the model, its codes or ``do_change``: they stay absent (not
recorded). Reference rows are returned as they are.

One check is derived for every finished method record, with or without recorded ``checks``, because no cell can
compute it alone: ``latent_vs_untrained`` (:func:`crlbench.core.degeneracy.latent_vs_untrained`), the record's
latent scores against those of the ``untrained`` reference row (the shared backbone's codes at their seeded
initial weights) on the same rows and seed (:func:`_same_rows`), each score compared only where the two cells ran
its metric with the same options (the suite's, and the resolved options and metric seed where both record them).
It invalidates exactly the scores that are not better than the untrained row's; without a matching row it is null
and says why.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from crlbench.core.degeneracy import (
    DERIVED_CHECK_NAMES, INTERVENTIONAL, counterfactual_vs_copy, latent_vs_untrained, reconstruction_vs_mean_image)
from crlbench.core.records import is_reference
from crlbench.reports.stats import direction

MEAN_IMAGE, COPY, UNTRAINED = "mean_image", "copy", "untrained"  # the registered reference rows the checks read
PREDATING_CHECKS = ("reconstruction_vs_mean_image", "counterfactual_vs_copy")  # derived for records without checks
(LATENT_VS_UNTRAINED,) = DERIVED_CHECK_NAMES  # "latent_vs_untrained": derived for every method record
COUNTERFACTUAL_MSE = f"{INTERVENTIONAL}.counterfactual_mse"
PREDATES = "the record predates the checks"


def predates_checks(record: dict) -> bool:
    """Whether ``record`` is a finished method cell written before the degeneracy checks (it has no ``checks``)."""
    return record.get("status") == "ok" and not is_reference(record) and record.get("checks") is None


def with_derived_checks(records: list[dict]) -> list[dict]:
    """``records`` with, for each finished method record, a copy whose ``checks`` add the derived
    ``latent_vs_untrained`` and, for a record that predates the checks, the derived ``reconstruction_vs_mean_image``
    and ``counterfactual_vs_copy``; reference rows and unfinished cells unchanged."""
    means, copies, untrained = (_by_rows(records, model) for model in (MEAN_IMAGE, COPY, UNTRAINED))
    derived = []
    for record in records:
        if record.get("status") != "ok" or is_reference(record):
            derived.append(record)
            continue
        rows = _rows_key(record["cell"])  # only reference rows of the same rows can match: no scan of the others
        checks = (derived_checks(record, means.get(rows, []), copies.get(rows, [])) if predates_checks(record)
                  else dict(record["checks"]))
        checks[LATENT_VS_UNTRAINED] = derived_latent_vs_untrained(record, untrained.get(rows, []))
        derived.append({**record, "checks": checks})
    return derived


def _by_rows(records: list[dict], model: str) -> dict[tuple, list[dict]]:
    """The finished ``model`` reference rows of ``records``, grouped by the rows they evaluate (:func:`_rows_key`)."""
    groups: dict[tuple, list[dict]] = {}
    for record in records:
        if _reference(record, model):
            groups.setdefault(_rows_key(record["cell"]), []).append(record)
    return groups


def derived_latent_vs_untrained(record: dict, untrained: list[dict]) -> dict[str, Any]:
    """``latent_vs_untrained`` of a method ``record`` against the first of the ``untrained`` reference rows on the
    same rows and seed, over the scores of the metrics both ran with the same options; marked derived."""
    scores = record.get("scores") or {}
    for reference in untrained:
        if not _same_rows(record, reference):
            continue
        floor = {name: value for name, value in (reference.get("scores") or {}).items()
                 if name in scores and _same_metric(record, reference, name.split(".", 1)[0])}
        cell_hash = reference.get("hash") or reference["cell"].get("hash")
        source = f"reference row {reference['cell'].get('label') or UNTRAINED} (cell {cell_hash})"
        result = latent_vs_untrained(scores, floor, direction, f"not derived from {source}: no latent score of the "
                                     "method is also scored, finite and with the same metric options, by that row")
        if result["flagged"] is not None:
            result["reason"] = f"derived in the report from {source}, same seed and rows: {result['reason']}"
        return {**result, "derived": True, "reference_cell": cell_hash}
    return {**latent_vs_untrained({}, {}, direction,
                                  f"not derived: the report has no {UNTRAINED} reference row on the same rows "
                                  f"({_rows_text(record['cell'])})"),
            "derived": True, "reference_cell": None}


def derived_checks(record: dict, means: list[dict], copies: list[dict]) -> dict[str, dict[str, Any]]:
    """The two checks of a method ``record`` derived from the ``mean_image`` rows ``means`` and the ``copy``
    rows ``copies`` (reference records of any cells: the matching one is chosen)."""
    mean_image = _matching(record, means, "reconstruction.mse", _same_rows)
    copy = _matching(record, copies, COUNTERFACTUAL_MSE, _same_samples)
    return {
        "reconstruction_vs_mean_image": _derived(
            reconstruction_vs_mean_image, MEAN_IMAGE, record, "reconstruction.mse", mean_image,
            "reconstruction.mse was not computed"),
        "counterfactual_vs_copy": _derived(
            counterfactual_vs_copy, COPY, record, COUNTERFACTUAL_MSE, copy,
            f"{INTERVENTIONAL} gave no counterfactual_mse"),
    }


def _derived(rule: Callable[..., dict[str, Any]], model: str, record: dict, score: str, reference: dict | None,
             no_score: str) -> dict[str, Any]:
    """``rule`` (of crlbench.core.degeneracy) on ``record``'s ``score`` against the ``model`` reference row
    ``reference``'s (None: no matching row), marked derived."""
    value = (record.get("scores") or {}).get(score)
    if reference is None:
        return {**rule(value, None, f"not derived: {PREDATES} and the report has no {model} reference row with "
                                    f"{score} on the same rows ({_rows_text(record['cell'])})"),
                "derived": True, "reference_cell": None}
    cell_hash = reference.get("hash") or reference["cell"].get("hash")
    source = f"reference row {reference['cell'].get('label') or model} (cell {cell_hash})"
    if value is None:
        result = rule(None, None, f"not derived from {source}: {PREDATES} and {no_score}")
    else:
        result = rule(value, reference["scores"][score])
        result["reason"] = (f"derived in the report from {source} on the same rows, because {PREDATES}: "
                            f"{result['reason']}")
    return {**result, "derived": True, "reference_cell": cell_hash}


def _reference(record: dict, model: str) -> bool:
    return is_reference(record) and record.get("status") == "ok" and record["cell"].get("model") == model


def _matching(record: dict, references: list[dict], score: str, same: Callable[[dict, dict], bool]) -> dict | None:
    """The first of ``references`` on the same rows as ``record`` (``same``) with a finite ``score``."""
    for reference in references:
        value = (reference.get("scores") or {}).get(score)
        if isinstance(value, (int, float)) and math.isfinite(value) and same(record, reference):
            return reference
    return None


def _same_rows(a: dict, b: dict) -> bool:
    """Whether two records' cells evaluate the same rows: dataset, its parameters (and resolved identity where
    both record one), seed, and the evaluation settings that pick the rows."""
    return _rows_key(a["cell"]) == _rows_key(b["cell"]) and _agree(_identity_dataset(a), _identity_dataset(b))


def _same_samples(a: dict, b: dict) -> bool:
    """:func:`_same_rows` and the same ``counterfactual@probe`` options (the suite's; the resolved options and
    the metric seed where both records hold them)."""
    if not _same_rows(a, b):
        return False
    options = [_suite_options(record["cell"]) for record in (a, b)]
    return options[0] is not None and options[0] == options[1] and _same_metric(a, b, INTERVENTIONAL)


def _same_metric(a: dict, b: dict, metric: str) -> bool:
    """Whether two records ran ``metric`` alike: the suite's options, the resolved options and the metric seed
    agree where both record them."""
    stored = [(record.get("metrics") or {}).get(metric) or {} for record in (a, b)]
    resolved = [(entry.get("info") or {}).get("options") for entry in stored]
    seeds = [(entry.get("settings") or {}).get("seed") for entry in stored]
    suite = [_suite_options(record["cell"], metric) for record in (a, b)]
    return _agree(*suite) and _agree(*resolved) and _agree(*seeds)


def _rows_key(cell: dict) -> tuple:
    evaluation = cell.get("evaluation") or {}
    return (cell.get("dataset"), _canonical(cell.get("dataset_params") or {}), cell.get("seed"),
            evaluation.get("split"), evaluation.get("n_train"), evaluation.get("n_test"))


def _identity_dataset(record: dict) -> Any:
    return ((record["cell"].get("identity") or {}).get("dataset")) or None


def _suite_options(cell: dict, metric: str = INTERVENTIONAL) -> Any:
    specs = [spec for spec in cell.get("metrics") or []
             if isinstance(spec, dict) and spec.get("name") == metric]
    return _canonical(specs[0].get("options") or {}) if specs else None


def _agree(a: Any, b: Any) -> bool:
    """Equal, or not recorded by one of the two."""
    return a is None or b is None or _canonical(a) == _canonical(b)


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _rows_text(cell: dict) -> str:
    evaluation = cell.get("evaluation") or {}
    return (f"dataset {cell.get('dataset')} {_canonical(cell.get('dataset_params') or {})}, seed {cell.get('seed')}, "
            f"evaluation {evaluation.get('split')} n_train {evaluation.get('n_train')} "
            f"n_test {evaluation.get('n_test')}")


def derivation_note(records: list[dict]) -> list[str]:
    """The legend line for records that predate the checks (after :func:`with_derived_checks`): how many, which
    checks were derived for how many of them, and that the other three are unknown; nothing when none predates or
    the report has no ``mean_image`` or ``copy`` reference row (then the legend is as it was before the checks)."""
    predating = [record for record in records if record.get("status") == "ok" and not is_reference(record)
                 and any(isinstance(check, dict) and check.get("derived")
                         for check in ((record.get("checks") or {}).get(name) for name in PREDATING_CHECKS))]
    if not predating or not any(_reference(record, MEAN_IMAGE) or _reference(record, COPY) for record in records):
        return []
    counts = {name: sum((record["checks"].get(name) or {}).get("flagged") is not None for record in predating)
              for name in ("reconstruction_vs_mean_image", "counterfactual_vs_copy")}
    sources = {"reconstruction_vs_mean_image": f"{MEAN_IMAGE} row's reconstruction.mse",
               "counterfactual_vs_copy": f"{COPY} row's {COUNTERFACTUAL_MSE}"}
    derived = "; ".join(f"{name} derived for {count} of them from the {sources[name]} on the same rows"
                        for name, count in counts.items())
    cells = f"{len(predating)} method cell{'s predate' if len(predating) != 1 else ' predates'}"
    return [f"{cells} the degeneracy checks (no recorded "
            f"checks): {derived} (derived from the reference rows, same rule and threshold; where no matching row "
            "exists the check is unknown); posterior_collapse, constant_codes and inert_do are unknown for them "
            "(they need the model, its codes or do_change, which those records do not hold)."]


def untrained_note(records: list[dict]) -> list[str]:
    """The legend line for ``latent_vs_untrained`` (after :func:`with_derived_checks`): what it compares, per seed,
    and for how many method cells it was derived, fired and was unknown; nothing when the report has no
    ``untrained`` reference row."""
    if not any(_reference(record, UNTRAINED) for record in records):
        return []
    checks = [(record.get("checks") or {}).get(LATENT_VS_UNTRAINED) for record in records
              if record.get("status") == "ok" and not is_reference(record)]
    verdicts = [check.get("flagged") for check in checks if isinstance(check, dict)]
    return [f"{LATENT_VS_UNTRAINED} (derived in the report for every method cell): each latent score of a cell against "
            f"the {UNTRAINED} reference row's on the same seed and rows (dataset, its parameters, evaluation split and "
            "sizes), the backbone's codes at their seeded initial weights; a score not better than it (no margin; "
            "train-fit and count diagnostics left out) is flagged on that seed. "
            f"Fired for {verdicts.count(True)} of {len(verdicts)} method cells, unknown (no matching {UNTRAINED} row "
            f"or no shared score) for {verdicts.count(None)}."]
