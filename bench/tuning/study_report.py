"""A study's report: ``summary.json`` (trials by state, the best value, trial and hyperparameters, parameter
importances with a note when they are noise), ``trials.csv`` (every trial) and Optuna's plots, naming the
objective and the intermediate values (:func:`study_report`).
"""

from __future__ import annotations

import os
import textwrap
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crlbench.suites.results import write_json
from crlbench.tracking.store import redacted
from crlbench.tuning.objective import CELLS, SEED_VALUES
from crlbench.tuning.study import INTERMEDIATE, best_trial, state_counts
from crlbench.tuning.tune_config import experimental_features

if TYPE_CHECKING:
    import optuna
    import pandas as pd

IMPORTANCE_MIN_TRIALS = 20  # below this many complete trials, parameter importances are noise


def study_report(study: optuna.Study, out_dir: str | os.PathLike, storage_url: str | None = None) -> Path:
    """Write ``summary.json``, ``trials.csv`` (:func:`trials_table`) and Optuna's plots
    (``optimization_history.png``, ``param_importances.png``, ``parallel_coordinate.png``, and
    ``intermediate_values.png`` when trials reported some) to ``out_dir``; a plot that cannot be drawn is
    skipped with a note. Returns the path of ``summary.json``.

    The plots call the objective "objective" and print its full name (the study's metric name) under their
    title, and label the intermediate values with the study's ``crlbench.intermediate``, rather than
    "Objective Value". With fewer than :data:`IMPORTANCE_MIN_TRIALS` complete trials, ``importance_note``
    (and the importance plot's title) says that the importances are noise."""
    import optuna

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    complete = study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
    names = sorted({name for trial in complete for name in trial.params})
    states = state_counts(study)
    url = storage_url or _storage_url(study)
    target = (study.metric_names or [None])[0] or study.user_attrs.get("crlbench.objective") or "Objective Value"
    intermediate = study.user_attrs.get(INTERMEDIATE) or "intermediate value"
    importance_note = None
    if len(complete) < IMPORTANCE_MIN_TRIALS:
        importance_note = (f"only {len(complete)} complete trial(s): parameter importances from fewer than "
                           f"{IMPORTANCE_MIN_TRIALS} are noise; do not read them as which hyperparameter matters")
    summary: dict[str, Any] = {
        "study": study.study_name,
        "direction": study.direction.name.lower(),
        "objective": study.user_attrs.get("crlbench.objective"),
        "objective_name": target,
        "intermediate": study.user_attrs.get(INTERMEDIATE),
        "storage": redacted(url) if url else None,
        "trials": sum(states.values()),
        "states": states,
        "best": None, "importances": None, "importance_note": importance_note, "figures": [], "notes": [],
    }
    if complete:
        best = best_trial(study)
        summary["best"] = {"value": best.value, "params": best.params, "trial": best.number,
                           "seed_values": best.user_attrs.get(SEED_VALUES)}
    plotting = optuna.visualization.matplotlib
    plots: list[tuple[str, Callable | None, str | None]] = [
        # the objective's full name as an axis label or rotated tick crowds the figure out: it goes under the title
        ("optimization_history", lambda s: _objective_titled(plotting.plot_optimization_history(
            s, target_name="objective"), target), "no complete trial" if not complete else None),
        ("parallel_coordinate", lambda s: _objective_titled(plotting.plot_parallel_coordinate(
            s, target_name="objective"), target),
         "no complete trial" if not complete else None)]
    if any(trial.intermediate_values for trial in study.get_trials(deepcopy=False)):
        plots.append(("intermediate_values", lambda s: _labelled(plotting.plot_intermediate_values(s), intermediate),
                      None))
    importance_skip = ("fewer than 2 complete trials" if len(complete) < 2 else
                       "only one searched hyperparameter" if len(names) < 2 else None)
    if importance_skip is None:
        evaluator = optuna.importance.FanovaImportanceEvaluator(seed=0)
        with experimental_features():
            summary["importances"] = optuna.importance.get_param_importances(study, evaluator=evaluator)
        plots.insert(1, ("param_importances", lambda s: _objective_titled(_without_legend(
            plotting.plot_param_importances(s, evaluator=evaluator, target_name="objective")), target,
            importance_note), None))
    else:
        plots.insert(1, ("param_importances", None, importance_skip))
    if importance_note is not None and importance_skip is None:
        summary["notes"].append(f"param_importances.png: {importance_note}")
    for name, plot, skip in plots:
        if skip is None:
            skip = _save_plot(plot, study, out / f"{name}.png")
        if skip is None:
            summary["figures"].append(f"{name}.png")
        else:
            summary["notes"].append(f"{name}.png skipped: {skip}")
    trials_table(study).to_csv(out / "trials.csv", index=False)
    path = out / "summary.json"
    write_json(path, summary)
    return path


def trials_table(study: optuna.Study) -> pd.DataFrame:
    """One row per trial: number, state, value, each searched hyperparameter (``param_<name>``), the value per
    tuning seed (``seed_<seed>``), the wall seconds from start to completion and the hashes of its cells
    (``cells``, space-separated: the records under ``<workdir>/tune/<study>/cells/``)."""
    import pandas as pd

    rows = []
    for trial in study.get_trials(deepcopy=False):
        seconds = ((trial.datetime_complete - trial.datetime_start).total_seconds()
                   if trial.datetime_start and trial.datetime_complete else None)
        row = {"number": trial.number, "state": trial.state.name, "value": trial.value}
        row.update({f"param_{name}": value for name, value in sorted(trial.params.items())})
        row.update({f"seed_{seed}": value for seed, value in (trial.user_attrs.get(SEED_VALUES) or {}).items()})
        row.update({"seconds": seconds, "cells": " ".join(trial.user_attrs.get(CELLS) or [])})
        rows.append(row)
    return pd.DataFrame(rows)


def _labelled(axes: Any, label: str) -> Any:
    """Optuna's intermediate-values plot with ``label`` on its value axis (it has no ``target_name``)."""
    axes.set_ylabel(label)
    return axes


def _objective_titled(axes: Any, target: str, note: str | None = None) -> Any:
    """A plot whose objective is named "objective", with what that is (``target``) and ``note`` (a warning
    about what the plot shows) under its title."""
    title = axes.get_title(loc="left") or axes.get_title()  # Optuna's style sets it on the left
    lines = [title, textwrap.fill(f"objective: {target}", 70)] + ([textwrap.fill(note, 70)] if note else [])
    axes.set_title("")
    axes.set_title("\n".join(lines), loc="left", fontsize=9)
    return axes


def _without_legend(axes: Any) -> Any:
    """A one-objective plot without its legend (Optuna names the study's metric there, over the bars)."""
    if axes.get_legend() is not None:
        axes.get_legend().remove()
    return axes


def _save_plot(plot: Callable, study: optuna.Study, path: Path) -> str | None:
    """Draw ``plot(study)`` to ``path``; the reason when it could not be drawn."""
    import matplotlib.pyplot as plt

    try:
        with warnings.catch_warnings():  # a single trial draws flat axes, which matplotlib warns about
            warnings.simplefilter("ignore")
            axes = plot(study)
    except Exception as error:  # noqa: BLE001 - a plot is a convenience; the summary is what matters
        return f"{type(error).__name__}: {error}"
    figure = (axes.flat[0] if isinstance(axes, np.ndarray) else axes).figure
    try:
        figure.savefig(path, dpi=110, bbox_inches="tight")
    finally:
        plt.close(figure)
    return None


def _storage_url(study: optuna.Study) -> str | None:
    """The URL of the study's RDB storage (Optuna wraps it in a cache), if it has one."""
    storage = getattr(study, "_storage", None)
    return getattr(getattr(storage, "_backend", storage), "url", None)
