"""What crlbench's values become in MLflow: metric names MLflow accepts (:func:`metric_name`), params and tags
clipped to MLflow's lengths (:func:`tag_entities`, :func:`clip`), metrics (:func:`metric_entities`), batches
within its per-request limits (:func:`log_batch`), the provenance and source tags every run carries
(:func:`provenance_tags`, :func:`source_tags`), and a half-logged run ended FAILED (:func:`mark_broken`).

Score names: MLflow 3.17 accepts metric names made of alphanumerics, ``_ - . / space`` (and ``:``
outside Windows). Metric variants are named like ``dci@reg``, so every other character, ``@``
included, becomes ``_``: ``dci@reg.disentanglement`` is logged as ``dci_reg.disentanglement``.

Importing this module does not import mlflow; it loads on first use.
"""

from __future__ import annotations

import contextlib
import getpass
import json
import numbers
import re
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from crlbench.tracking.store import first_line

if TYPE_CHECKING:
    from mlflow import MlflowClient

TAG_LIMIT = 8000  # MLflow's MAX_TAG_VAL_LENGTH
PARAM_LIMIT = 6000  # MLflow's MAX_PARAM_VAL_LENGTH
_NOT_IN_NAMES = re.compile(r"[^\w./\- ]")  # MLflow's allowed name characters, less the colon (Windows)
_BATCH = {"metrics": 1000, "params": 100, "tags": 100}  # MLflow's log_batch limits
TAG_TRACKING_ERROR = "crlbench.tracking_error"


def metric_name(key: str) -> str:
    """The MLflow metric name of a score key: characters MLflow refuses (``@``) become ``_``."""
    return _NOT_IN_NAMES.sub("_", key)


def provenance_tags(provenance: Mapping[str, Any]) -> dict[str, str]:
    """Run tags from a result record's ``provenance``: git commit, host and library versions."""
    tags = {f"crlbench.lib.{name}": str(version) for name, version in (provenance.get("versions") or {}).items()}
    for key in ("git_commit", "host"):
        if provenance.get(key) is not None:
            tags[f"crlbench.{key}"] = str(provenance[key])
    return tags


def source_tags(source_name: str | None, git_commit: str | None = None) -> dict[str, str]:
    """MLflow's standard source tags, which its UI shows in the runs table's Source and User columns and
    filters on: ``mlflow.source.name`` (the suite or tune config, else ``crlbench``), ``mlflow.source.type``
    (``LOCAL``), ``mlflow.source.git.commit`` (when known) and ``mlflow.user`` (the user running crlbench).
    A run is created with them (MLflow reads the user only then)."""
    tags = {"mlflow.source.name": str(source_name or "crlbench"), "mlflow.source.type": "LOCAL"}
    if git_commit:
        tags["mlflow.source.git.commit"] = str(git_commit)
    with contextlib.suppress(Exception):  # no user name (a container without /etc/passwd entry): MLflow's default
        tags["mlflow.user"] = getpass.getuser()
    return tags


def log_batch(client: MlflowClient, run_id: str, metrics: Sequence = (), params: Sequence = (), tags: Sequence = ()) -> None:
    """``log_batch`` in chunks within MLflow's per-request limits."""
    for kind, entities in (("metrics", metrics), ("params", params), ("tags", tags)):
        size = _BATCH[kind]
        for start in range(0, len(entities), size):
            client.log_batch(run_id, **{kind: list(entities[start:start + size])})


def metric_entities(values: Mapping[str, Any], timestamp_ms: int) -> list:
    """MLflow metrics at ``timestamp_ms``, step 0, of the values that are numbers (others are left out)."""
    from mlflow.entities import Metric

    return [Metric(key, float(value), timestamp_ms, 0) for key, value in values.items() if is_number(value)]


def tag_entities(values: Mapping[str, Any]) -> list:
    """MLflow tags of the values that are not None, named as metrics are and clipped to MLflow's length."""
    from mlflow.entities import RunTag

    return [RunTag(metric_name(key), clip(as_text(value), keep="head")) for key, value in values.items() if value is not None]


def mark_broken(client: MlflowClient | None, run_id: str | None, error: Exception) -> None:
    """End a half-logged run FAILED, so the UI does not show it running forever."""
    if client is None or run_id is None:
        return
    with contextlib.suppress(Exception):
        client.set_tag(run_id, TAG_TRACKING_ERROR, clip(first_line(error), keep="head"))
    with contextlib.suppress(Exception):
        client.set_terminated(run_id, status="FAILED")


def flattened(values: Mapping[str, Any], prefix: str, separator: str = ".") -> dict[str, Any]:
    """Nested mappings as one level, keys joined by ``separator`` under ``prefix``."""
    flat = {}
    for key, value in values.items():
        name = f"{prefix}{separator}{key}"
        if isinstance(value, Mapping):
            flat.update(flattened(value, name, separator))
        else:
            flat[name] = value
    return flat


def as_text(value: Any) -> str:
    """``value`` as a param or tag text: strings as they are, lists and dicts as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple, dict)):
        return json.dumps(value, default=str)
    return str(value)


def clip(text: str, keep: str, limit: int = TAG_LIMIT) -> str:
    """``text`` within MLflow's tag length (or ``limit``), keeping its head (a message) or tail (a traceback)."""
    if len(text) <= limit:
        return text
    mark = "\n[...]\n"
    room = limit - len(mark)
    return text[:room] + mark if keep == "head" else mark + text[-room:]


def is_number(value: Any) -> bool:
    """Whether ``value`` is a real number (a bool is not)."""
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def now_ms() -> int:
    """Now, in milliseconds since the epoch (MLflow's timestamps)."""
    return int(time.time() * 1000)
