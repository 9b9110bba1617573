"""Tuning: Optuna studies over a model's hyperparameters. ``tune_config`` reads and validates a tune
file into a search space, objective, sampler and pruner; ``tune`` runs a study (:func:`~crlbench.tuning.tune.tune`)
from its parts: the storage and the study (``study``), one trial's cells and objective (``objective``), the
trials in this process and spawned workers (``workers``), progress lines (``progress``), the study in MLflow
(``trial_runs``), its report (``study_report``) and the best hyperparameters exported for suites (``export``).

May import: :mod:`crlbench.core`, :mod:`crlbench.training`, :mod:`crlbench.suites` and
:mod:`crlbench.tracking`; optuna is imported where it is used.
"""
