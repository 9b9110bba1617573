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
recorded). Records that carry ``checks`` and reference rows are returned as they are.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

from crlbench.core.degeneracy import INTERVENTIONAL, counterfactual_vs_copy, reconstruction_vs_mean_image
from crlbench.core.records import is_reference

MEAN_IMAGE, COPY = "mean_image", "copy"  # the registered reference rows the two checks read
COUNTERFACTUAL_MSE = f"{INTERVENTIONAL}.counterfactual_mse"
PREDATES = "the record predates the checks"


def predates_checks(record: dict) -> bool:
    """Whether ``record`` is a finished method cell written before the degeneracy checks (it has no ``checks``)."""
    return record.get("status") == "ok" and not is_reference(record) and record.get("checks") is None


def with_derived_checks(records: list[dict]) -> list[dict]:
    """``records`` with, for each method record that predates the checks, a copy carrying the derived
    ``reconstruction_vs_mean_image`` and ``counterfactual_vs_copy`` under ``checks``; the others unchanged."""
    means = [record for record in records if _reference(record, MEAN_IMAGE)]
    copies = [record for record in records if _reference(record, COPY)]
    return [{**record, "checks": derived_checks(record, means, copies)} if predates_checks(record) else record
            for record in records]


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
    if options[0] is None or options[0] != options[1]:
        return False
    stored = [(record.get("metrics") or {}).get(INTERVENTIONAL) or {} for record in (a, b)]
    resolved = [(entry.get("info") or {}).get("options") for entry in stored]
    seeds = [(entry.get("settings") or {}).get("seed") for entry in stored]
    return _agree(*resolved) and _agree(*seeds)


def _rows_key(cell: dict) -> tuple:
    evaluation = cell.get("evaluation") or {}
    return (cell.get("dataset"), _canonical(cell.get("dataset_params") or {}), cell.get("seed"),
            evaluation.get("split"), evaluation.get("n_train"), evaluation.get("n_test"))


def _identity_dataset(record: dict) -> Any:
    return ((record["cell"].get("identity") or {}).get("dataset")) or None


def _suite_options(cell: dict) -> Any:
    specs = [spec for spec in cell.get("metrics") or []
             if isinstance(spec, dict) and spec.get("name") == INTERVENTIONAL]
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
                         for check in (record.get("checks") or {}).values())]
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
