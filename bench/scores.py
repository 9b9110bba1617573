"""The results API: per-cell scores as a pandas DataFrame, one row per cell and score.

:func:`load_scores` reads a work directory (the ``cells/*/result.json`` records of the result store,
:mod:`crlbench.suites.results`), one of its cell folders, a suite file (its cells in a work directory, those it
shares with other suites included) or a report folder (the ``scores.csv`` that ``crlbench report`` wrote), and
returns the same columns from each (:mod:`crlbench.reports.scores_frame` names them): ``suite``, ``budget``,
``seed``, ``method`` (the label the tables show), ``model``, ``dataset``, ``score``, ``value``, ``status``,
``flags`` (the degeneracy checks that invalidate the score, ``;``-joined, those the report derives from its
reference rows included), ``reference``, ``converged``, ``hash``, ``epochs``, ``steps``, ``batch_size`` and
``image_size``. Rows are sorted by dataset, method, seed and score::

    >>> from crlbench.scores import load_scores
    >>> scores = load_scores("reports/standard_v1")          # or a work directory: load_scores("runs")
    >>> ok = scores[scores["status"].isin(["ok", "partial"]) & (scores["score"] == "mcc@pearson.mcc")]
    >>> table = ok.groupby(["dataset", "method"])["value"].agg(["mean", "count"])
    >>> int(table.loc[("pendulum", "icm_vae"), "count"])  # seeds
    8

Unflagged scores only: ``scores[scores["flags"] == ""]``; one suite's budget: ``scores[scores["epochs"] == 30]``.
Two sets of scores side by side with paired tests: :func:`crlbench.reports.compare.compare_scores` and
``crlbench compare``.

This module is not the record store (:mod:`crlbench.suites.results` reads and writes the records); it reads
records through it and builds frames with the report's code.

May import: :mod:`crlbench.core`, :mod:`crlbench.suites`, :mod:`crlbench.reports`.
"""

from __future__ import annotations

import os
from collections.abc import Collection
from pathlib import Path

import pandas as pd

from crlbench.core.errors import ConfigError
from crlbench.reports.derived_checks import with_derived_checks
from crlbench.reports.pooling import check_pooling, recorded_suites
from crlbench.reports.scores_frame import SCORES_COLUMNS, scores_frame, typed
from crlbench.suites.results import load_records

SCORES_CSV = "scores.csv"
ORDER = ["dataset", "method", "seed", "score"]


def load_scores(path: str | os.PathLike, *, workdir: str | os.PathLike | None = None,
                suites: Collection[str] | None = None, labels: Collection[str] | None = None,
                check_settings: bool = False) -> pd.DataFrame:
    """The scores under ``path``, one row per cell and score (columns :data:`SCORES_COLUMNS`).

    ``path`` is a work directory, its ``cells`` folder or one cell folder; a suite YAML file, whose cells are
    read from ``workdir`` (default ``$CRLBENCH_WORKDIR``, else ``runs``); or a report folder or its
    ``scores.csv``. ``suites`` keeps the cells those suites recorded (each record's ``cell.suite``), ``labels``
    the rows of those methods. With ``check_settings``, a (dataset, method) whose cells differ in more than
    their seed (crlbench.reports.pooling) raises :class:`crlbench.reports.pooling.MixedSettingsError`; a report
    folder was checked when it was written. Raises :class:`crlbench.core.errors.ConfigError` when ``path``
    holds no records and no ``scores.csv``, or the filters leave nothing.
    """
    path = Path(path)
    csv = path if path.suffix == ".csv" else path / SCORES_CSV
    if csv.is_file():
        frame = typed(pd.read_csv(csv, dtype=str, keep_default_na=False))
        frame = _selected(frame, suites, labels, recorded=sorted(set(frame["suite"]) - {""}), where=csv)
    else:
        records = with_derived_checks(load_cell_records(path, workdir=workdir))  # before the filters: the reference
        selected = select_records(records, suites=suites, labels=labels, where=path)  # rows derive the flags
        if check_settings:
            check_pooling(selected)
        frame = typed(scores_frame(selected))
    return frame.sort_values(ORDER, kind="stable").reset_index(drop=True)


def load_cell_records(path: str | os.PathLike, *, workdir: str | os.PathLike | None = None) -> list[dict]:
    """The result records under ``path`` (a work directory, its ``cells`` folder, a cell folder), or those of the
    suite file ``path`` in ``workdir`` (labelled as the suite labels them); ConfigError if there are none."""
    path = Path(path)
    if path.suffix in (".yaml", ".yml"):
        from crlbench.suites.suite import suite_records
        from crlbench.suites.suite_config import load_suite

        workdir = Path(workdir if workdir is not None else os.environ.get("CRLBENCH_WORKDIR", "runs"))
        records = suite_records(load_suite(path), workdir)
        where = f"{path} in {workdir}"
    elif path.is_dir():
        records, where = load_records(path), str(path)
    else:
        raise ConfigError(f"{path}: expected a work directory, a cell or report folder, a scores.csv or a suite "
                          f"YAML file")
    if not records:
        raise ConfigError(f"{where}: no result records and no {SCORES_CSV} (run the suite first)")
    return records


def select_records(records: list[dict], *, suites: Collection[str] | None = None,
                   labels: Collection[str] | None = None, where: object = "the records") -> list[dict]:
    """The records whose cell's suite is in ``suites`` and whose label (else model) is in ``labels`` (each filter
    only when given); ConfigError naming the suites and labels there are when nothing is left."""
    def label(record: dict) -> str:
        return record["cell"].get("label") or record["cell"]["model"]

    kept = [record for record in records
            if (suites is None or record["cell"].get("suite") in set(suites))
            and (labels is None or label(record) in set(labels))]
    if not kept:
        raise ConfigError(_nothing_left(where, suites, labels, recorded_suites(records),
                                        sorted({label(record) for record in records})))
    return kept


def _selected(frame: pd.DataFrame, suites: Collection[str] | None, labels: Collection[str] | None, *,
              recorded: list[str], where: object) -> pd.DataFrame:
    keep = pd.Series(True, index=frame.index)
    if suites is not None:
        keep &= frame["suite"].isin(list(suites))
    if labels is not None:
        keep &= frame["method"].isin(list(labels))
    kept = frame[keep]
    if kept.empty:
        raise ConfigError(_nothing_left(where, suites, labels, recorded, sorted(set(frame["method"]))))
    return kept


def _nothing_left(where: object, suites, labels, recorded: list[str], methods: list[str]) -> str:
    asked = " and ".join(text for text in (f"suite {', '.join(suites)}" if suites is not None else "",
                                           f"label {', '.join(labels)}" if labels is not None else "") if text)
    return (f"{where}: no cell of {asked}; the suites recorded there: {', '.join(recorded) or 'none named'}; "
            f"the labels: {', '.join(methods)}")


__all__ = ["SCORES_COLUMNS", "load_scores", "load_cell_records", "select_records"]
