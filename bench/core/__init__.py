"""The core every other part builds on: the registries of models, datasets and metrics (``registry``),
typed parameter dataclasses (``params``), dataset config files (``config``), the error types
(``errors``), atomic and locked file writes (``files``), causal graph helpers (``graph``), predicates
over a cell's result record (``records``: a reference row, a partial cell, flagged scores), what a
reference row's ``reference_for`` names (``references``) and the rules of the degeneracy checks
(``degeneracy``: thresholds and the scores each invalidates, shared by the runner and the reports).

May import: the standard library, numpy and PyYAML; nothing else of crlbench (the registry loads
models, datasets and metrics by module name, at lookup).
"""
