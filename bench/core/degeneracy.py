"""The rules of the degeneracy checks (docs/protocol.md, "Degeneracy checks"): stated tests that tell a score
of a run that learned nothing from a score of the method, on measured quantities. What they read from a
cell is :mod:`crlbench.suites.checks` (the runner); a report derives two of them from its reference rows for
records that predate the checks (:mod:`crlbench.reports.derived_checks`).

Each check gives ``{"flagged", "value", "threshold", "reference_value", "invalidates", "reason"}``:
``flagged`` is true when the check fires, false when it passes and null when it does not apply to the
model or could not be computed (``reason`` says which); ``value`` is the model's quantity,
``reference_value`` what it is compared with, ``threshold`` the bound at which it fires, in ``value``'s
unit; ``invalidates`` lists ``fnmatch`` patterns over the record's score names that a flagged check
makes unreadable. The record keeps them under ``checks``, check name -> check:

* ``reconstruction_vs_mean_image``: the reconstruction error (``reconstruction.mse``) against that of
  the training split's mean image on the same rows; fires when the model is not better;
* ``posterior_collapse``: the KL of the posterior against the standard normal prior, summed over codes,
  which bounds the information the code carries about the image (Hoffman & Johnson 2016, "ELBO
  surgery": E_x KL(q(z|x) || p(z)) = I(x; z) + KL(q(z) || p(z))); fires below one bit;
* ``constant_codes``: the spread of each factor code the latent metrics read, std / root mean square on
  the evaluation sample; fires when a code varies less than :data:`CONSTANT_CODE_SPREAD` of its size;
* ``inert_do``: how much the model's do() moves its image (``counterfactual@probe.do_change``) against
  how much the true counterfactual moves it (``copy_mse``); fires below :data:`INERT_DO_FRACTION`;
* ``counterfactual_vs_copy``: ``counterfactual@probe.counterfactual_mse`` against returning the source
  image unchanged (``copy_mse``); fires when the model is not better.

One more is only ever derived in a report, because it needs another cell's scores
(:data:`DERIVED_CHECK_NAMES`, :mod:`crlbench.reports.derived_checks`):

* ``latent_vs_untrained``: each latent score against the ``untrained`` reference row's (the shared backbone's
  codes at their seeded initial weights) on the same rows and seed; fires when some score is not better, and
  invalidates exactly those scores.

A reference row (a model with ``reference_for``) gets every check null.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import numpy as np

RECONSTRUCTION_RATIO = 1.0  # fires when reconstruction.mse >= 1.0 x the mean image's error (no margin)
POSTERIOR_INFORMATION_NATS = math.log(2)  # fires when sum_i KL_i < one bit: the code cannot split any factor in two
ACTIVE_CODE_NATS = 0.01  # the reason counts the codes at or above it (reported, not part of the rule)
CONSTANT_CODE_SPREAD = 1e-3  # fires when a factor code's std / RMS < 1e-3: it varies below its 4th significant digit
INERT_DO_FRACTION = 0.1  # fires when the do() moves its image by < 0.1 x the true counterfactual's change (MSE)
COUNTERFACTUAL_RATIO = 1.0  # fires when counterfactual_mse >= 1.0 x copy_mse (no margin)
INTERVENTIONAL = "counterfactual@probe"  # the metric whose scores inert_do and counterfactual_vs_copy read

CHECK_NAMES = ("reconstruction_vs_mean_image", "posterior_collapse", "constant_codes", "inert_do",
               "counterfactual_vs_copy")
DERIVED_CHECK_NAMES = ("latent_vs_untrained",)  # derived in the report from another cell's scores, never by the runner
UNTRAINED_MARGIN = 0.0  # latent_vs_untrained fires when a score is not better than the untrained row's (no margin)
# Scores latent_vs_untrained leaves out: the probe's fit on its own training rows (informativeness_train, mse_train),
# the test error that informativeness_test restates in factor units (mse_test), and a count with no better direction
# (irs num_active_dims). Matched on the part of the score name after the metric.
DIAGNOSTIC_SCORES = ("informativeness_train", "mse_train", "mse_test", "num_active_dims")


def check(flagged: bool | None, invalidates: Iterable[str], reason: str, value: float | None = None,
          threshold: float | None = None, reference_value: float | None = None) -> dict[str, Any]:
    """One check in the record's form (plain floats, None for what was not measured)."""
    as_float = lambda number: None if number is None else float(number)  # noqa: E731
    return {"flagged": None if flagged is None else bool(flagged), "value": as_float(value),
            "threshold": as_float(threshold), "reference_value": as_float(reference_value),
            "invalidates": list(invalidates), "reason": reason}


def invalidated(name: str, latent_metrics: Iterable[str] = ()) -> list[str]:
    """The score patterns check ``name`` invalidates when it fires; ``latent_metrics`` are the cell's metrics
    computed from the stored codes (their scores are ``<metric>.<score>``)."""
    latent = [f"{metric}.*" for metric in latent_metrics]
    interventional = [f"{INTERVENTIONAL}.*"]
    return {"reconstruction_vs_mean_image": ["reconstruction.mse", *interventional],
            "posterior_collapse": [*latent, *interventional], "constant_codes": latent,
            "inert_do": interventional, "counterfactual_vs_copy": interventional}[name]


def not_finite(*values: float) -> bool:
    """Whether any of ``values`` is NaN or infinite (a diverged run): its check is null, neither passed nor fired."""
    return not all(math.isfinite(float(value)) for value in values)


# --- the five checks, on measured quantities -----------------------------------------------------


def reconstruction_vs_mean_image(model_mse: float | None, mean_image_mse: float | None,
                                 missing: str | None = None) -> dict[str, Any]:
    """``reconstruction.mse`` against the training mean image's MSE on the same rows; fires when the model
    is not better (``model_mse >= RECONSTRUCTION_RATIO * mean_image_mse``)."""
    return not_better("reconstruction_vs_mean_image", model_mse, mean_image_mse, RECONSTRUCTION_RATIO,
                      missing or "reconstruction.mse was not computed",
                      f"reconstruction MSE {model_mse} is not finite", "reconstruction MSE",
                      lambda baseline: f"the training mean image's {baseline:.4g} on the same rows")


def posterior_collapse(kl_per_code: np.ndarray | None, latent_metrics: Iterable[str],
                       missing: str | None = None) -> dict[str, Any]:
    """The posterior's KL against N(0, I) summed over codes (nats, averaged over the evaluation images);
    fires below ``POSTERIOR_INFORMATION_NATS``, which bounds I(x; z) from above: then no code, nor all
    codes together, carries one bit about the image."""
    invalidates = invalidated("posterior_collapse", latent_metrics)
    if kl_per_code is None:
        return check(None, invalidates, missing or "the model gives no posterior KL per code")
    kl = np.asarray(kl_per_code, dtype=np.float64)
    if not_finite(*kl):
        return check(None, invalidates, "the posterior KL is not finite")
    total = float(kl.sum())
    active = int((kl >= ACTIVE_CODE_NATS).sum())
    flagged = total < POSTERIOR_INFORMATION_NATS
    return check(flagged, invalidates, value=total, threshold=POSTERIOR_INFORMATION_NATS,
                 reason=f"KL(q(z|x) || N(0, I)) summed over the {len(kl)} codes is {total:.4g} nats "
                        f"({'below' if flagged else 'not below'} log 2, an upper bound on I(x; z)); "
                        f"{active} of {len(kl)} codes have KL >= {ACTIVE_CODE_NATS} nats")


def code_spread(codes: np.ndarray) -> np.ndarray:
    """std / root mean square of each column of ``codes`` [N, K] (0 for a column of zeros): a scale-free
    spread in [0, 1]."""
    codes = np.asarray(codes, dtype=np.float64)
    rms = np.sqrt(np.mean(codes**2, axis=0))
    std = codes.std(axis=0)
    return np.divide(std, rms, out=np.zeros_like(std), where=rms > 0)


def constant_codes(codes: np.ndarray | None, latent_metrics: Iterable[str],
                   missing: str | None = None) -> dict[str, Any]:
    """The smallest std / RMS over the factor codes [N, K] the latent metrics read; fires below
    ``CONSTANT_CODE_SPREAD`` (a code whose value is the same to 3 significant digits on every image)."""
    invalidates = invalidated("constant_codes", latent_metrics)
    if codes is None or len(codes) < 2:
        return check(None, invalidates, missing or "fewer than 2 evaluation codes")
    if not np.all(np.isfinite(codes)):
        return check(None, invalidates, "the codes are not finite")
    spread = code_spread(codes)
    constant = [int(k) for k in np.flatnonzero(spread < CONSTANT_CODE_SPREAD)]
    named = f"codes {constant} of {len(spread)} are" if constant else f"none of the {len(spread)} codes is"
    return check(bool(constant), invalidates, value=float(spread.min()), threshold=CONSTANT_CODE_SPREAD,
                 reason=f"std / RMS of each factor code on the evaluation sample: {named} below "
                        f"{CONSTANT_CODE_SPREAD:g} (smallest {spread.min():.3g})")


def inert_do(do_change: float | None, copy_mse: float | None, missing: str | None = None) -> dict[str, Any]:
    """How much the do() moves the model's image (``do_change``: its do() against its null do()) against
    how much the true counterfactual moves the source (``copy_mse``), both averaged over factors; fires
    when ``do_change < INERT_DO_FRACTION * copy_mse``."""
    invalidates = invalidated("inert_do")
    if do_change is None or copy_mse is None:
        return check(None, invalidates, missing or f"{INTERVENTIONAL} gave no do_change / copy_mse")
    if not_finite(do_change, copy_mse):
        return check(None, invalidates, f"do_change {do_change} or copy_mse {copy_mse} is not finite")
    threshold = INERT_DO_FRACTION * copy_mse
    flagged = do_change < threshold
    return check(flagged, invalidates, value=do_change, threshold=threshold, reference_value=copy_mse,
                 reason=f"the do() moves the model's image by {do_change:.4g} (MSE against its null do()), "
                        f"{'less' if flagged else 'not less'} than {INERT_DO_FRACTION:g} x the true "
                        f"counterfactual's change {copy_mse:.4g}")


def counterfactual_vs_copy(counterfactual_mse: float | None, copy_mse: float | None,
                           missing: str | None = None) -> dict[str, Any]:
    """``counterfactual_mse`` against returning the source image (``copy_mse``), on the same samples; fires
    when the model is not better (``counterfactual_mse >= COUNTERFACTUAL_RATIO * copy_mse``)."""
    return not_better("counterfactual_vs_copy", counterfactual_mse, copy_mse, COUNTERFACTUAL_RATIO,
                      missing or f"{INTERVENTIONAL} gave no counterfactual_mse / copy_mse",
                      f"counterfactual_mse {counterfactual_mse} or copy_mse {copy_mse} is not finite",
                      "counterfactual MSE", lambda baseline: f"copying the source image ({baseline:.4g}) on the same samples")


def not_better(name: str, error: float | None, baseline: float | None, ratio: float, missing: str, unreadable: str,
               what: str, against) -> dict[str, Any]:
    """Check ``name``: a model's ``error`` against a trivial ``baseline``'s on the same rows; fires when it is not
    better (``error >= ratio * baseline``); null, with ``missing`` or ``unreadable`` as its reason, when either is
    absent or not finite. The reason reads ``<what> <error> is [not ]below <against(baseline)>``."""
    invalidates = invalidated(name)
    if error is None or baseline is None:
        return check(None, invalidates, missing)
    if not_finite(error, baseline):
        return check(None, invalidates, unreadable)
    threshold = ratio * baseline
    flagged = error >= threshold
    return check(flagged, invalidates, value=error, threshold=threshold, reference_value=baseline,
                 reason=f"{what} {error:.4g} is {'not ' if flagged else ''}below {against(baseline)}")


def latent_vs_untrained(scores: Mapping[str, float], untrained: Mapping[str, float],
                        direction: Callable[[str], str], missing: str | None = None) -> dict[str, Any]:
    """A method's latent ``scores`` against the ``untrained`` reference row's on the same rows and seed (score name
    -> value, both). Compared: the scores both hold, finite in both, but :data:`DIAGNOSTIC_SCORES`; ``direction``
    gives ``"max"`` (higher is better) or ``"min"`` per score name (crlbench.reports.stats.direction). Fires when
    some score is not better than the untrained row's (``<=`` for ``max``, ``>=`` for ``min``; margin
    :data:`UNTRAINED_MARGIN`) and invalidates exactly those score names. ``value``, ``reference_value`` and
    ``threshold`` are of the score with the least advantage over the untrained row (the first flagged one when
    it fires); the reason names every flagged score with both values."""
    compared = sorted(name for name, value in scores.items()
                      if name in untrained and name.split(".", 1)[-1] not in DIAGNOSTIC_SCORES
                      and _finite_number(value) and _finite_number(untrained[name]))
    if not compared:
        return check(None, [], missing or "no latent score of the method is also scored, finite, by the untrained row")
    signs = {name: 1.0 if direction(name) == "max" else -1.0 for name in compared}
    advantage = {name: signs[name] * (float(scores[name]) - float(untrained[name])) for name in compared}
    flagged = [name for name in compared if advantage[name] <= UNTRAINED_MARGIN]
    closest = flagged[0] if flagged else min(compared, key=advantage.__getitem__)
    floor = float(untrained[closest])

    def reading(name: str) -> str:
        word = "above" if signs[name] > 0 else "below"
        return (f"{name} {float(scores[name]):.4g} is {'not ' if name in flagged else ''}{word} the untrained "
                f"backbone's {float(untrained[name]):.4g}")

    if flagged:
        reason = "; ".join(reading(name) for name in flagged) + " on the same rows"
        if len(flagged) < len(compared):
            others = len(compared) - len(flagged)
            reason += f" ({others} other latent score{'s' * (others != 1)} better than it)"
    else:
        reason = (f"all {len(compared)} latent scores are better than the untrained backbone's on the same rows "
                  f"(closest: {reading(closest)})")
    return check(bool(flagged), flagged, reason, value=scores[closest],
                 threshold=floor + signs[closest] * UNTRAINED_MARGIN, reference_value=floor)


def _finite_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
