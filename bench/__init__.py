"""crlbench: a benchmark harness for causal representation learning.

The package is the folder ``bench/`` of the repository; ``datasets/``, ``baselines/`` and ``icmvae/``
are installed as its subpackages ``crlbench.datasets``, ``crlbench.baselines`` and ``crlbench.icmvae``
(``[tool.setuptools]`` in pyproject.toml), so no top-level name but ``crlbench`` is taken. Its parts,
each allowed to import only those listed before it:

- :mod:`crlbench.core`: registry, typed parameters, config files, errors, file writes, graphs;
- :mod:`crlbench.training`: the model contract, backbones and trainer;
- :mod:`crlbench.metrics`, :mod:`crlbench.datasets`: metric variants and datasets (core only);
- :mod:`crlbench.icmvae`, :mod:`crlbench.baselines`: the methods (core, training);
- :mod:`crlbench.suites`: suite configs, cells, the runner, executors, result records, leases;
- :mod:`crlbench.tracking`: MLflow; :mod:`crlbench.reports`: statistics, figures, the report, comparisons;
- :mod:`crlbench.scores`: the results API, per-cell scores of a work directory or a report as a DataFrame;
- :mod:`crlbench.tuning`: Optuna studies; :mod:`crlbench.cli`: the command line over all of them.

Importing ``crlbench`` is cheap: heavy libraries (torch, mlflow, optuna) load only where used.
"""

__version__ = "0.1.0"
