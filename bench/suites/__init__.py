"""Suites, the benchmark itself: suite configs expanded into cells (``suite_config``), the cell and its
content hash (``cell``), one cell trained and evaluated (``runner``) with the scores it reads on a
validation sample during training (``monitor``) and the codes and images both read (``representation``),
cells run in this process or in spawned workers (``executor``), the executor interface and ``--executor``
(``dispatch``), a Slurm job array (``slurm``, submitit) and Ray tasks (``ray_cells``) as executors, one cell
as a cluster task runs it under its lease (``cell_task``), result records and cell folders (``results``), a
suite planned, run and resumed (``suite``) and the per-cell leases that let launchers and cluster tasks
share a work directory (``lease``), and the model files ``crlbench run`` shares with suites
(``model_files``). ``slurm`` and ``ray_cells`` import submitit and ray inside their functions: optional
extras.

May import: :mod:`crlbench.core`, :mod:`crlbench.training` and :mod:`crlbench.metrics`; models and
datasets only through the registry. ``suite`` imports :mod:`crlbench.tracking` inside the function
that logs a suite's cells (tracking reads ``results`` and ``lease``). ``cell`` imports nothing of the
suite config; the config builds cells.
"""
