"""Whether a training run converged, judged on its scores by one stated rule (importable without torch).
The runner stores the verdict in each record's ``convergence``; reports read it from there.

During training the runner reads a few scores of a fixed validation sample (never the test split) at
the cadence :func:`reading_cadence` gives, into the history's ``evaluations``: ``{step, epoch, scores}``
with the watched scores :data:`WATCHED` (DCI disentanglement, MCC) and the held-out reconstruction error.
A run *converged* (:func:`verdict`) when

* every watched score has settled: over the readings of the last third of the run's steps (only
  those at or after the step where the model's schedule reaches full weight, ``full_weight_step``,
  ICM-VAE's warm-up), the least-squares slope of the score against the epoch is not significantly
  different from zero relative to the residual noise (two-sided t test of the slope, alpha
  :data:`ALPHA`), or the fitted trend moves the score by less than :data:`DRIFT_TOLERANCE` over
  the window whatever its significance; and
* every schedule the model follows finished within the budget.

A window needs :data:`MIN_WINDOW_READINGS` readings. A run with fewer in its last third is not judged
(``converged: None``: too short for the rule); a run whose schedule reaches full weight so late that
fewer readings follow it is *not converged* (its scores under the full objective are not shown to have
settled), and the record says how many readings followed. A fluctuation around a level (an
oscillation faster than the window) has no trend and passes; its size is recorded as the score's
``noise``. A slower oscillation is indistinguishable from a trend within the window and fails.

The old rule on the held-out reconstruction error (:func:`reconstruction_verdict`) is kept in the
verdict's ``reconstruction`` as a sanity check; it does not decide ``converged``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

MONITOR_KEY = "heldout_reconstruction_mse"
WATCHED = ("dci@reg.disentanglement", "mcc@pearson.mcc")  # the scores whose trend decides convergence
READINGS = 20           # readings a run aims at: every epoch, or every k steps when it has fewer epochs
MIN_STEP_GAP = 10       # but never closer than this many optimisation steps
WINDOW = 1 / 3          # the last third of the run's steps
MIN_WINDOW_READINGS = 5
ALPHA = 0.05            # two-sided t test of the window's slope
DRIFT_TOLERANCE = 0.01  # a trend moving a score by less than this over the window counts as settled
RULE = (f"converged: over the last third of the run (readings at or after the schedule's full weight only, at "
        f"least {MIN_WINDOW_READINGS}), the least-squares slope of DCI disentanglement and of MCC on the "
        f"validation sample is not significant against the residual noise (two-sided t test, alpha {ALPHA}) or "
        f"moves the score by less than {DRIFT_TOLERANCE} over the window, and every schedule (warm-up) finished")

# the old rule on the reconstruction error, kept as a sanity check
RECONSTRUCTION_WINDOW = 0.10      # the last 10 % of the epochs
RECONSTRUCTION_TOLERANCE = 0.02   # brought less than 2 % of the run's reduction of the error
MIN_EPOCHS = 3
RECONSTRUCTION_RULE = (f"the last {RECONSTRUCTION_WINDOW:.0%} of the epochs lowered the best held-out reconstruction "
                       f"error by less than {RECONSTRUCTION_TOLERANCE:.0%} of the run's whole reduction")


def reading_cadence(total_steps: int, steps_per_epoch: int) -> int | None:
    """Steps between mid-epoch readings: None (epoch ends only) when the run has at least :data:`READINGS`
    epochs, else ``max(MIN_STEP_GAP, ceil(total_steps / READINGS))``. Every epoch end is read either way."""
    if total_steps >= READINGS * steps_per_epoch:
        return None
    return max(MIN_STEP_GAP, math.ceil(total_steps / READINGS))


def verdict(epochs: Sequence[dict[str, float]], schedule: dict[str, Any] | None = None,
            evaluations: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """The convergence verdict of a run from its per-epoch history, its model's ``schedule()`` and its
    score readings (``history["evaluations"]``)."""
    finished = None if schedule is None else bool(schedule.get("finished"))
    full_weight = _full_weight_step(schedule)
    readings = sorted((reading for reading in evaluations if reading.get("scores")), key=lambda r: r["step"])
    result: dict[str, Any] = {"converged": None, "rule": RULE, "schedule_finished": finished,
                              "full_weight_step": full_weight, "readings": len(readings),
                              "readings_after_full_weight": None, "window": None, "scores": {},
                              "reconstruction": reconstruction_verdict(epochs, schedule)}
    if full_weight is not None:
        result["readings_after_full_weight"] = sum(1 for reading in readings if reading["step"] >= full_weight)
    if not readings:
        result["reason"] = "not judged: no score readings in the history"
        return _with_schedule(result, finished)
    end = readings[-1]["step"]
    start = end - math.floor(WINDOW * end + 1e-9)  # the last third of the steps, from step 2T/3 on
    late_schedule = full_weight is not None and full_weight > start
    start = max(start, full_weight or 0)
    window = [reading for reading in readings if reading["step"] >= start]
    result["window"] = {"from_step": start, "to_step": end, "readings": len(window)}
    if len(window) < MIN_WINDOW_READINGS:
        if late_schedule:
            result["converged"] = False
            result["reason"] = (f"only {len(window)} reading(s) after the schedule reached full weight at step "
                                f"{full_weight} of {end} (needs {MIN_WINDOW_READINGS}): the scores under the full "
                                "objective are not shown to have settled")
        else:
            result["reason"] = (f"not judged: {len(window)} reading(s) in the last third of the run (needs "
                                f"{MIN_WINDOW_READINGS}): the run is too short for the rule")
        return _with_schedule(result, finished)
    result["scores"] = {name: score_trend([(r["epoch"], r["scores"].get(name)) for r in window]) for name in WATCHED}
    settled = [trend["settled"] for trend in result["scores"].values()]
    if any(state is False for state in settled):
        result["converged"] = False
    elif all(state is True for state in settled):
        result["converged"] = True
    result["reason"] = "; ".join(f"{name} {trend['reason']}" for name, trend in result["scores"].items())
    return _with_schedule(result, finished)


def score_trend(points: Sequence[tuple[float, float | None]]) -> dict[str, Any]:
    """The trend of one score over a window of (epoch, value) readings: the least-squares slope per epoch,
    the drift it makes over the window, the residual noise (standard deviation, n - 2 degrees of freedom),
    the slope's t statistic and its critical value, and whether the score has ``settled``."""
    points = [(float(x), float(y)) for x, y in points if y is not None and math.isfinite(float(y))]
    trend: dict[str, Any] = {"settled": None, "readings": len(points), "slope_per_epoch": None, "drift": None,
                             "noise": None, "t": None, "t_critical": None, "last": points[-1][1] if points else None}
    if len(points) < MIN_WINDOW_READINGS:
        trend["reason"] = f"not judged: {len(points)} finite reading(s) in the window (needs {MIN_WINDOW_READINGS})"
        return trend
    from scipy import stats

    n = len(points)
    xs, ys = [x for x, _ in points], [y for _, y in points]
    x_mean, y_mean = sum(xs) / n, sum(ys) / n
    spread = sum((x - x_mean) ** 2 for x in xs)
    if spread <= 0:
        trend["reason"] = "not judged: every reading of the window is at the same epoch"
        return trend
    slope = sum((x - x_mean) * (y - y_mean) for x, y in zip(xs, ys)) / spread
    residuals = [y - (y_mean + slope * (x - x_mean)) for x, y in zip(xs, ys)]
    noise = math.sqrt(sum(r * r for r in residuals) / (n - 2))
    drift = slope * (max(xs) - min(xs))
    t = slope / (noise / math.sqrt(spread)) if noise > 0 else (0.0 if slope == 0 else math.copysign(math.inf, slope))
    critical = float(stats.t.ppf(1 - ALPHA / 2, n - 2))
    settled = abs(t) < critical or abs(drift) < DRIFT_TOLERANCE
    trend.update(settled=settled, slope_per_epoch=slope, drift=drift, noise=noise,
                 t=t if math.isfinite(t) else None, t_critical=critical)
    moves = f"drifts {drift:+.3g} over {n} readings (noise {noise:.2g}, t = {t:.2f}"
    trend["reason"] = (f"{moves}, |t| {'<' if abs(t) < critical else '>='} {critical:.2f}): "
                       + ("settled" if settled else "still trending"))
    return trend


def reconstruction_verdict(epochs: Sequence[dict[str, float]], schedule: dict[str, Any] | None = None) -> dict[str, Any]:
    """The old rule on the per-epoch held-out reconstruction error (a sanity check beside :func:`verdict`).

    With ``best(t)`` the lowest error up to epoch ``t``, the run's curve has flattened when the last 10 %
    of the epochs lowered ``best`` by less than 2 % of the run's whole reduction (first epoch to the end);
    ``converged`` also needs every schedule finished. ``relative_change`` is the window's reduction as a
    fraction of the error itself. Fewer than :data:`MIN_EPOCHS` monitored epochs: not judged.
    """
    errors = [float(record[MONITOR_KEY]) for record in epochs if MONITOR_KEY in record]
    finished = None if schedule is None else bool(schedule.get("finished"))
    result: dict[str, Any] = {"converged": None, "share": None, "relative_change": None, "window_epochs": None,
                              "schedule_finished": finished, "rule": RECONSTRUCTION_RULE}
    if len(errors) < MIN_EPOCHS or not all(math.isfinite(error) for error in errors):
        result["reason"] = (f"not judged: {len(errors)} epoch(s) with a held-out reconstruction error "
                            f"(needs {MIN_EPOCHS}, all finite)")
        return result
    window = max(1, math.ceil(RECONSTRUCTION_WINDOW * len(errors)))
    before, last = min(errors[:-window]), min(errors[-window:])
    late = max(0.0, before - last)
    whole = errors[0] - last
    share = late / whole if whole > 0 else 0.0
    flat = share < RECONSTRUCTION_TOLERANCE
    result.update(share=share, relative_change=late / before if before > 0 else 0.0, window_epochs=window,
                  converged=flat and finished is not False)
    reasons = [f"the last {window} of {len(errors)} epochs brought {share:.1%} of the run's reduction of the held-out "
               f"error ({'<' if flat else '>='} {RECONSTRUCTION_TOLERANCE:.0%}; {result['relative_change']:.1%} of "
               "the error itself)"]
    if finished is False:
        reasons.append("a schedule did not finish within the budget")
    result["reason"] = "; ".join(reasons)
    return result


def _full_weight_step(schedule: dict[str, Any] | None) -> int | None:
    """The step from which the model's objective is final (``full_weight_step`` of its schedule), if it says."""
    step = (schedule or {}).get("full_weight_step")
    return int(step) if isinstance(step, (int, float)) and not isinstance(step, bool) else None


def _with_schedule(result: dict[str, Any], finished: bool | None) -> dict[str, Any]:
    """An unfinished schedule makes the run unconverged, whatever the scores say."""
    if finished is False:
        result["converged"] = False
        result["reason"] = f"a schedule did not finish within the budget; {result['reason']}"
    return result
