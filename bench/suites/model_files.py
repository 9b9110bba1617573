"""The model files crlbench ships (``configs/models/<name>.yaml``): each method's reference batch size,
reference run and hyperparameters, as the suites read them.

``crlbench run --model X`` trains with ``X``'s file, as a suite naming ``../models/X.yaml`` does. The files
stay in the repository's ``configs/models/`` (the suites' relative paths keep working) and are installed as
package data at ``crlbench/configs/models/`` (pyproject.toml ``[tool.setuptools]``): this module finds the
installed copy first and the checkout's folder beside an editable install's ``bench/`` otherwise.
"""

from __future__ import annotations

from pathlib import Path

import crlbench


def model_files_folder() -> Path | None:
    """The folder of the shipped model files, or None when neither an installed copy nor a checkout holds one."""
    package = Path(crlbench.__file__).resolve().parent
    for folder in (package / "configs" / "models", package.parent / "configs" / "models"):
        if folder.is_dir():
            return folder
    return None


def model_file(name: str) -> Path | None:
    """``<name>.yaml`` among the shipped model files; None for a model without one (a plugin's, for example)."""
    folder = model_files_folder()
    if folder is None:
        return None
    path = folder / f"{name}.yaml"
    return path if path.is_file() else None
