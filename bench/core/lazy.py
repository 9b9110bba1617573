"""A module imported on first attribute access, so that importing its user stays light.

Metric and dataset modules are imported to validate a suite (their options, their parameters) before
any computation; a rerun with nothing to do must not pay for scipy, numba or torch there.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Any


class LazyModule:
    """Stands for module ``name``; the first attribute read imports it."""

    def __init__(self, name: str) -> None:
        self._name = name

    def _module(self) -> ModuleType:
        return importlib.import_module(self._name)

    def __getattr__(self, attr: str) -> Any:
        if attr.startswith("__"):
            raise AttributeError(attr)
        return getattr(self._module(), attr)

    def __repr__(self) -> str:
        return f"<lazy module {self._name!r}>"


def lazy_module(name: str) -> Any:
    """Module ``name``, imported when one of its attributes is first read."""
    return LazyModule(name)
