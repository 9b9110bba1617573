"""Tracking: every finished cell logged once to MLflow, from its result record and cell folder, under a parent
run per invocation (``mlflow_runs``: the suite's record and
:class:`~crlbench.tracking.mlflow_runs.MlflowTracking`, the hook a suite is given to log to MLflow), with the
store checked, created under a lock and served (``store``), values clipped and named as MLflow takes them
(``entities``), one cell as a run (``cell_runs``), runs of dead invocations closed and each record logged once
(``exactly_once``), and the MLflow UI opened on the model-training view (``ui``).

May import: :mod:`crlbench.core` and the records and leases of :mod:`crlbench.suites` (``results``, ``lease``,
``provenance``, ``suite_config``); the suites never import tracking: they report their cells through the hook
they are given (:mod:`crlbench.suites.tracking_hook`). mlflow is imported where it is used, and
:mod:`crlbench.reports` (``figures``) inside the function that draws a cell's intervention grid as an image.
"""
