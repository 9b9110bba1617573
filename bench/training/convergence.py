"""Whether a training run converged, by one stated rule (importable without torch). The runner stores
the verdict in each record's ``convergence``; reports read it from there.

The trainer records the reconstruction error of a fixed held-out sample after every epoch
(``heldout_reconstruction_mse`` in the history, :data:`MONITOR_KEY`). With ``best(t)`` the lowest
error up to epoch ``t`` (best-so-far values, so an epoch-to-epoch wobble neither passes nor fails a
run), a run *converged* when

* its learning curve has flattened: the last 10 % of the epochs lowered ``best`` by less than 2 % of
  the run's whole reduction (first epoch to the end of the run), and
* every schedule the model follows (ICM-VAE's warm-up) finished within the budget.

The record also keeps the window's ``relative_change``: its reduction as a fraction of the error
itself. That stricter reading fails runs whose pixel error still creeps down at a flat curve (a VAE's
error falls a few percent per epoch long after its representation metrics settle), so it is
reported beside the verdict, not used for it. A run with fewer than :data:`MIN_EPOCHS` monitored
epochs is not judged (``converged: None``).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MONITOR_KEY = "heldout_reconstruction_mse"
WINDOW = 0.10      # the last 10 % of the epochs
TOLERANCE = 0.02   # brought less than 2 % of the run's reduction of the error
MIN_EPOCHS = 3
RULE = (f"converged: the last {WINDOW:.0%} of the epochs lowered the best held-out reconstruction error by less "
        f"than {TOLERANCE:.0%} of the run's whole reduction, and every schedule (warm-up) finished")


def verdict(epochs: Sequence[dict[str, float]], schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    """The convergence verdict of a run from its per-epoch history and its model's ``schedule()``."""
    errors = [float(record[MONITOR_KEY]) for record in epochs if MONITOR_KEY in record]
    finished = None if schedule is None else bool(schedule.get("finished"))
    result: dict[str, Any] = {"converged": None, "share": None, "relative_change": None, "window_epochs": None,
                              "schedule_finished": finished, "rule": RULE}
    if len(errors) < MIN_EPOCHS or not all(math.isfinite(error) for error in errors):
        result["reason"] = (f"not judged: {len(errors)} epoch(s) with a held-out reconstruction error "
                            f"(needs {MIN_EPOCHS}, all finite)")
        return result
    window = max(1, math.ceil(WINDOW * len(errors)))
    before, last = min(errors[:-window]), min(errors[-window:])
    late = max(0.0, before - last)
    whole = errors[0] - last
    share = late / whole if whole > 0 else 0.0
    flat = share < TOLERANCE
    result.update(share=share, relative_change=late / before if before > 0 else 0.0, window_epochs=window,
                  converged=flat and finished is not False)
    reasons = [f"the last {window} of {len(errors)} epochs brought {share:.1%} of the run's reduction of the held-out "
               f"error ({'<' if flat else '>='} {TOLERANCE:.0%}; {result['relative_change']:.1%} of the error itself)"]
    if finished is False:
        reasons.append("a schedule did not finish within the budget")
    result["reason"] = "; ".join(reasons)
    return result
