"""The core every other part builds on: the registries of models, datasets and metrics (``registry``),
typed parameter dataclasses (``params``), dataset config files (``config``), the error types
(``errors``), atomic and locked file writes (``files``) and causal graph helpers (``graph``).

May import: the standard library, numpy and PyYAML; nothing else of crlbench (the registry loads
models, datasets and metrics by module name, at lookup).
"""
