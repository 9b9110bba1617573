"""Predicates over a cell's result record (the JSON of crlbench.suites.results), shared by the suite
runner, its summaries and the reports so each reads a record one way: a reference row, a partial cell,
and the scores a degeneracy check flags (docs/protocol.md, "Reference rows" and "Degeneracy checks").
"""

from __future__ import annotations

import fnmatch


def is_reference(record: dict) -> bool:
    """Whether the record is a reference row (its ``reference`` is set), not a method."""
    return record.get("reference") is not None


def is_partial(record: dict) -> bool:
    """Whether the record finished with some of its metrics failed (its other scores stand)."""
    return record.get("status") == "ok" and bool(record.get("partial") or record.get("metric_errors"))


def flagged_checks(record: dict) -> dict[str, list[str]]:
    """Per score of the record, the checks with ``flagged: true`` whose ``invalidates`` patterns match it
    (``fnmatch.fnmatchcase``); scores no check flags are left out. Reference rows are exempt."""
    if is_reference(record):
        return {}
    fired = [(name, check.get("invalidates") or []) for name, check in (record.get("checks") or {}).items()
             if isinstance(check, dict) and check.get("flagged") is True]
    flags = {}
    for score in record.get("scores") or {}:
        names = [name for name, patterns in fired if any(fnmatch.fnmatchcase(score, pattern) for pattern in patterns)]
        if names:
            flags[score] = names
    return flags
