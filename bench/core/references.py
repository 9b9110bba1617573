"""What a reference row stands for (docs/protocol.md, "Reference rows"): the pseudo-names a model's
``reference_for`` may hold besides metric names, and their expansion. Importable without torch; the
expansion of :data:`LATENT` reads the metric registry at run time, so a plugin's metric that reads the
representation counts too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from crlbench.core import registry

log = logging.getLogger(__name__)

RECONSTRUCTION = "reconstruction"  # stands for reconstruction.mse
LATENT = "latent"  # stands for every registered metric variant that reads the representation (needs_model False)


def latent_metrics() -> tuple[str, ...]:
    """Every registered metric variant with ``needs_model`` False, by name (imports the metric modules). A
    listed metric that cannot be loaded (a broken plugin's entry point) is left out with a warning: it cannot
    be computed for any cell either."""
    metrics, names = registry.registry("metric"), []
    for name in metrics.names():
        try:
            variant = metrics.get(name)
        except Exception as error:  # noqa: BLE001 - any import error of someone else's module
            log.warning("metric %r is listed but cannot be loaded (%s: %s); it is not counted among the latent "
                        "metrics", name, type(error).__name__, error)
            continue
        if not getattr(variant, "needs_model", False):
            names.append(name)
    return tuple(names)


def expanded(reference_for: Iterable[str]) -> tuple[str, ...]:
    """``reference_for`` with :data:`LATENT` replaced by :func:`latent_metrics`, in order, without repeats."""
    names: list[str] = []
    for name in reference_for:
        names.extend(latent_metrics() if name == LATENT else (name,))
    return tuple(dict.fromkeys(names))


def stands_for_name(reference_for: Iterable[str], name: str) -> bool:
    """Whether a model whose ``reference_for`` is given is scored on ``name`` (a metric variant or
    :data:`RECONSTRUCTION`): a method (empty) on every score; a reference row on those it lists, and on any
    variant that reads the representation when it lists :data:`LATENT` (only ``name``'s module is imported)."""
    reference_for = tuple(reference_for)
    if not reference_for or name in reference_for:
        return True
    if LATENT not in reference_for or name == RECONSTRUCTION or name not in registry.registry("metric"):
        return False
    return not getattr(registry.metric(name), "needs_model", False)
