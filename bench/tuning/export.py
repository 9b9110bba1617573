"""A study's best hyperparameters exported as a model file a suite uses
(``{config: ../tuned/<file>.yaml, label: <model> (tuned)}``): where it goes (:func:`export_path`), which study
wrote an exported file (:func:`exported_study`), and the file itself (:func:`export_best`), which reproduces the
best trial's cells.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import yaml

from crlbench.core.errors import ConfigError
from crlbench.core.files import atomic_write
from crlbench.suites.suite_config import check_name
from crlbench.tuning.study import best_trial, state_counts
from crlbench.tuning.tune_config import TuneConfig

if TYPE_CHECKING:
    import optuna


def export_path(config: TuneConfig, study_name: str, out_dir: str | os.PathLike = "configs/tuned") -> Path:
    """Where :func:`export_best` writes study ``study_name``'s best hyperparameters: ``<out_dir>/<study>.yaml``
    when the study's name starts with ``<model>-<dataset>`` (as the shipped configs' names do, so
    ``icm_vae-pendulum`` exports ``icm_vae-pendulum.yaml``), else ``<out_dir>/<model>-<dataset>-<study>.yaml``:
    the file always names the pair and the study, and two studies of one pair export two files."""
    pair = f"{config.model.name}-{config.dataset.name}"
    check_name(study_name, "study name")
    stem = study_name if study_name == pair or study_name.startswith(f"{pair}-") else f"{pair}-{study_name}"
    return Path(out_dir) / f"{stem}.yaml"


def exported_study(path: str | os.PathLike) -> str | None:
    """The study an exported model file came from (its header line), or None (a file written otherwise)."""
    with contextlib.suppress(OSError, UnicodeDecodeError):
        with open(path, encoding="utf-8") as handle:
            for line in handle:
                if not line.startswith("#"):
                    break
                match = _EXPORT_HEADER.match(line)
                if match:
                    return match.group(1)
    return None


_EXPORT_HEADER = re.compile(r"# Exported by `crlbench tune` from study '([^']*)'")


def export_best(study: optuna.Study, config: TuneConfig, out_dir: str | os.PathLike = "configs/tuned",
                force: bool = False) -> Path:
    """Write :func:`export_path` (``<out_dir>/<model>-<dataset>[-<study>].yaml``): a model file with the
    best trial's hyperparameters.

    A suite uses it as ``{config: ../tuned/<file>.yaml, label: <model> (tuned)}``. The
    hyperparameters are the tune config's model entry (for the tuned dataset) with the best values
    on top, and its ``training`` (reference batch size and run, for that dataset) is the entry's, so the
    file reproduces the best trial's cells. The same study's earlier export is
    replaced; a file exported by another study (or not by ``crlbench tune``) only with ``force``,
    else :class:`ConfigError`.
    """
    best = best_trial(study)
    path = export_path(config, study.study_name, out_dir)
    if path.exists() and not force:
        owner = exported_study(path)
        if owner != study.study_name:
            made_by = f"study {owner!r}" if owner is not None else "something other than `crlbench tune`"
            raise ConfigError(f"{path} was exported by {made_by}, not study {study.study_name!r}: not overwritten; "
                              f"use --force to replace it, or another --study-name")
    finished = best.datetime_complete or datetime.datetime.now()
    counts = state_counts(study)
    budget = ", ".join(f"{key} {value}" for key, value in dataclasses.asdict(config.budget).items() if value is not None)
    description = (f"{config.model.name} tuned on {config.dataset.name} by Optuna study {study.study_name!r}: "
                   f"{config.objective.describe()} ({config.objective.direction}, val split, mean over seeds "
                   f"{list(config.seeds)}) = {best.value:.6g} at trial {best.number} of {sum(counts.values())} "
                   f"({finished:%Y-%m-%d}); budget {budget}")
    data = {"name": config.model.name, "description": description,
            "hyperparameters": _plain(config.hyperparameters(best.params))}
    training = config.model.training_for(config.dataset.name)  # the trials' reference batch size and run
    if training:
        data["training"] = _plain(training)
    header = (f"# Exported by `crlbench tune` from study {study.study_name!r}. Use it in a suite as\n"
              f"#   models: [{{config: ../tuned/{path.name}, label: {config.model.name} (tuned)}}]\n")
    text = header + yaml.safe_dump(data, sort_keys=False, width=100)
    atomic_write(path, lambda handle: handle.write(text.encode()))
    return path


def _plain(value: Any) -> Any:
    """Tuples as lists and numpy scalars as Python numbers, for YAML."""
    if isinstance(value, dict):
        return {key: _plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(item) for item in value]
    if isinstance(value, np.generic):
        return value.item()
    return value
