"""Suites, the benchmark itself: suite configs expanded into cells (``suite_config``), the cell and its
content hash (``cell``), one cell trained and evaluated (``runner``) with the scores it reads on a
validation sample during training (``monitor``), the codes and images both read (``representation``), the
threads and GPU a cell computes with (``cell_resources``) and where and with what it ran (``provenance``);
the contract every executor implements (``executor_contract``), cells run in this process or in spawned
workers (``executor``, the local executor), a Slurm job array (``slurm``, submitit) and Ray tasks
(``ray_cells``) as executors, the choice by ``--executor`` name (``dispatch``), and one cell as a cluster task
runs it under its lease (``cell_task``); result records and cell folders (``results``), a suite planned
against a work directory (``planning``), run and resumed (``suite``), the hook through which it reports its
cells to a tracking store (``tracking_hook``), the per-cell leases that let launchers and cluster tasks
share a work directory (``lease``), and the model files ``crlbench run`` shares with suites
(``model_files``). ``slurm`` and ``ray_cells`` import submitit and ray inside their functions: optional
extras.

May import: :mod:`crlbench.core`, :mod:`crlbench.training` and :mod:`crlbench.metrics`; models and
datasets only through the registry. The suites never import :mod:`crlbench.tracking`, which reads their
records and leases: a suite is given its tracking hook. The executors import ``executor_contract``, which
imports none of them; ``runner`` imports no executor. ``cell`` imports nothing of the suite config; the
config builds cells.
"""
