"""Tracking: every finished cell logged once to MLflow, from its result record and cell folder, under
a parent run per invocation, with the store created under a lock and runs of dead invocations
closed (``mlflow_runs``).

May import: :mod:`crlbench.core` and the records and leases of :mod:`crlbench.suites`
(``results``, ``lease``); mlflow is imported where it is used, and :mod:`crlbench.reports` (``figures``)
inside the function that draws a cell's intervention grid as an image.
"""
