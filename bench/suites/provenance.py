"""Where a cell ran and with what: a record's ``ran_on`` (:func:`placement`) and ``provenance``
(:func:`provenance`: library versions, the git commit, the host and the time).

The runner writes both into every record; the executors write them into the failed records of cells
whose worker or task gave none; tracking and reports read them. Importing this module imports neither
torch nor the runner: the libraries are read when the first provenance is asked for.
"""

from __future__ import annotations

import datetime
import functools
import platform
import subprocess
from pathlib import Path
from typing import Any

import crlbench


def placement(executor: str, task_id: str | None, **extra: Any) -> dict[str, Any]:
    """Where a cell ran, as its record's ``ran_on`` says: the executor (``local``, ``slurm``, ``ray``), the
    host, and the task id (a local worker's pid, a Slurm job array task ``<job>_<index>``, a Ray task id)."""
    return {"executor": executor, "host": platform.node(), "task_id": task_id, **extra}


def provenance() -> dict[str, Any]:
    """Library versions, the git commit, the host and the time, recorded with every result."""
    return {**_static_provenance(), "finished_at": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")}


@functools.lru_cache(maxsize=1)
def _static_provenance() -> dict[str, Any]:
    import numpy as np
    import pandas
    import scipy
    import sklearn
    import torch

    versions = {"crlbench": crlbench.__version__, "python": platform.python_version(), "torch": torch.__version__,
                "numpy": np.__version__, "scipy": scipy.__version__, "scikit-learn": sklearn.__version__,
                "pandas": pandas.__version__}
    return {"versions": versions, "git_commit": git_commit(), "host": platform.node(),
            "torch_threads": torch.get_num_threads()}


@functools.lru_cache(maxsize=1)
def git_commit() -> str | None:
    """HEAD of the checkout crlbench runs from, with ``+dirty`` when tracked files are modified."""
    root = Path(crlbench.__file__).resolve().parent.parent  # the package is the folder bench/ of the checkout
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return commit + ("+dirty" if dirty else "")
