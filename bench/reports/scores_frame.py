"""One row per cell and score: the frame behind a report's ``scores.csv`` and :func:`crlbench.scores.load_scores`.

:func:`scores_frame` builds it from result records (a cell without scores, failed or not applicable, gets one
row with an empty ``score``); :func:`typed` gives a frame built from records and one read back from
``scores.csv`` the same dtypes, so both sources load into equal frames. The columns (docs/protocol.md,
"scores.csv", says what each holds):

============== ====================================================================================================
``suite``      the suite that ran the cell (its record's ``cell.suite``)
``budget``     the budget as text, ``30 epochs of 64`` (crlbench.reports.protocol.budget_text)
``seed``       the cell's seed
``method``     the label of the cell's row in the tables (``icm_vae``, ``icm_vae (tuned)``); else the model
``model``      the registered model
``dataset``    the dataset
``score``      the score's key, ``dci@reg.disentanglement``
``value``      the score at full precision
``status``     ok, partial (some metrics failed, this score stands), failed or not_applicable
``flags``      the degeneracy checks that invalidate this score, ``;``-joined (crlbench.core.records.flagged_checks)
``reference``  whether the cell is a reference row (copy, mean image...) rather than a method
``converged``  the trainer's convergence verdict; empty (NA) when it was not judged
``hash``       the cell's content hash: its folder under ``cells/``
``epochs``     the budget's epochs, ``steps`` its steps, ``batch_size`` its batch size (each NA when unset)
``image_size`` the dataset's image side in pixels (its resolved ``size`` parameter)
============== ====================================================================================================

A ``scores.csv`` written before the last four columns existed loads with the budget's parts parsed from
``budget`` and ``image_size`` NA.
"""

from __future__ import annotations

import re
from typing import Any

import pandas as pd

from crlbench.core.records import flagged_checks, is_partial, is_reference
from crlbench.reports.protocol import budget_text

SCORES_COLUMNS = ["suite", "budget", "seed", "method", "model", "dataset", "score", "value", "status", "flags",
                  "reference", "converged", "hash", "epochs", "steps", "batch_size", "image_size"]
TEXT_COLUMNS = ["suite", "budget", "method", "model", "dataset", "score", "status", "flags", "hash"]
COUNT_COLUMNS = ["epochs", "steps", "batch_size", "image_size"]


def scores_frame(records: list[dict]) -> pd.DataFrame:
    """``scores.csv``: one row per cell and score (a cell without scores, failed or not applicable, gets one row
    with an empty score), columns :data:`SCORES_COLUMNS`; status is ok, partial, failed or not_applicable."""
    rows = []
    for record in records:
        cell = record["cell"]
        status = "partial" if is_partial(record) else record["status"]
        converged = (record.get("convergence") or {}).get("converged")
        flags = flagged_checks(record)
        budget = cell.get("budget") or {}
        base = {"suite": cell.get("suite"), "budget": budget_text(cell.get("budget")), "seed": cell["seed"],
                "method": cell.get("label") or cell["model"], "model": cell.get("model"), "dataset": cell["dataset"],
                "status": status, "reference": is_reference(record),
                "converged": "" if converged is None else bool(converged), "hash": record.get("hash"),
                "epochs": budget.get("epochs"), "steps": budget.get("steps"), "batch_size": budget.get("batch_size"),
                "image_size": image_size(cell)}
        scores = record.get("scores") or {}
        for score, value in (sorted(scores.items()) or [("", None)]):
            rows.append({**base, "score": score, "value": value, "flags": ";".join(flags.get(score, []))})
    return pd.DataFrame(rows, columns=SCORES_COLUMNS)


def image_size(cell: dict[str, Any]) -> int | None:
    """The image side a cell trained on: its resolved dataset ``size`` (the identity's), else the suite's."""
    resolved = ((cell.get("identity") or {}).get("dataset") or {}).get("params") or {}
    size = resolved.get("size", (cell.get("dataset_params") or {}).get("size"))
    return int(size) if isinstance(size, (int, float)) else None


def typed(frame: pd.DataFrame) -> pd.DataFrame:
    """``frame`` (from :func:`scores_frame`, or ``scores.csv`` read as text) with fixed dtypes: text columns as
    ``str`` (empty when unknown), ``seed`` int, ``value`` float (NaN when absent), ``reference`` bool,
    ``converged`` pandas' nullable boolean, the budget's parts and ``image_size`` nullable ``Int64``. A frame
    lacking the budget's parts gets them parsed from ``budget``; one lacking ``image_size`` gets NA."""
    frame = frame.copy()
    for column in TEXT_COLUMNS:
        frame[column] = frame[column].map(lambda value: "" if value is None or value != value else str(value))
    frame["seed"] = pd.to_numeric(frame["seed"]).astype("int64")
    frame["value"] = pd.to_numeric(frame["value"], errors="coerce").astype("float64")
    frame["reference"] = frame["reference"].map(lambda value: value is True or str(value) == "True").astype(bool)
    frame["converged"] = frame["converged"].map(_verdict).astype("boolean")
    parsed = pd.DataFrame([budget_parts(text) for text in frame["budget"]], index=frame.index,
                          columns=["epochs", "steps", "batch_size"])
    for column in COUNT_COLUMNS:
        values = frame[column] if column in frame else parsed.get(column, pd.Series(pd.NA, index=frame.index))
        frame[column] = pd.to_numeric(values.replace("", pd.NA), errors="coerce").astype("Int64")
    return frame[SCORES_COLUMNS]


def _verdict(value: Any) -> Any:
    text = str(value)
    return True if text == "True" else False if text == "False" else pd.NA


def budget_parts(text: str) -> tuple[int | None, int | None, int | None]:
    """(epochs, steps, batch size) from a budget's text (:func:`crlbench.reports.protocol.budget_text`):
    ``10 epochs or 2,000 steps of 64`` gives (10, 2000, 64); a part the text does not state is None."""
    def number(pattern: str) -> int | None:
        found = re.search(pattern, text or "")
        return int(found.group(1).replace(",", "")) if found else None
    return number(r"([\d,]+) epochs"), number(r"([\d,]+) steps"), number(r"of ([\d,]+)")
