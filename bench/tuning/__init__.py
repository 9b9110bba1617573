"""Tuning: Optuna studies over a model's hyperparameters. ``tune_config`` reads and validates a tune
file into a search space, objective, sampler and pruner; ``tune`` runs the trials (each a small suite
of cells) in this process and spawned workers, logs them to MLflow and exports the best
hyperparameters for suites.

May import: :mod:`crlbench.core`, :mod:`crlbench.training`, :mod:`crlbench.suites` and
:mod:`crlbench.tracking`; optuna is imported where it is used.
"""
