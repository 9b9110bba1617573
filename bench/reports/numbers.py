"""Numbers as every report format prints them (markdown, HTML, LaTeX; the CSV keeps full precision).

A mean with an uncertainty follows the usual rule for reporting measurements (Taylor, *An
Introduction to Error Analysis*, 1997, sec. 2.2; BIPM GUM, 2008, sec. 7.2.6): the uncertainty is
rounded to two significant digits and the mean to the same decimal place, so ``0.0012 ± 0.00031``
prints ``0.00120 ± 0.00031`` and ``1787.136 ± 12.4`` prints ``1787 ± 12``. A mean without spread
(one seed, or equal seeds) keeps three significant digits. Two means tie when they print the same at
the coarser of their two precisions: the best cell of a column and every cell tied with it are bold.

A ``±`` states a symmetric interval. A bootstrap interval need not be one, so an interval prints as
``mean ± half-width`` only when it is symmetric enough that the ``±`` does not misstate it
(:func:`symmetric_enough`: the longer arm at most :data:`ARM_RATIO` times the shorter, and ``mean ±
half-width`` crosses zero only when the interval does); otherwise as ``mean [low, high]``, the mean to
two significant digits of its shorter arm and each bound to two significant digits of its own (never
fewer decimals than the mean, at most two more): ``0.00012 [0.000018, 0.00042]``, not ``0.00012 ± 0.00020``.
"""

from __future__ import annotations

import math

SPREAD_DIGITS = 2  # significant digits of an uncertainty
MEAN_DIGITS = 3  # significant digits of a value printed without uncertainty
ARM_RATIO = 1.5  # an interval whose longer arm exceeds this multiple of the shorter prints as [low, high]


def magnitude(value: float) -> int:
    """The power of ten of the leading digit of ``value`` (0 for 0)."""
    return int(math.floor(math.log10(abs(value)))) if value else 0


def places_for(value: float, digits: int) -> int:
    """The decimal places that show ``value`` with ``digits`` significant digits; negative places round to
    tens, hundreds... A value that rounds up to the next power of ten (0.0996 at 2 digits) gets the places
    of its rounded form (0.10)."""
    places = digits - 1 - magnitude(value)
    rounded = round(value, places)
    return digits - 1 - magnitude(rounded) if rounded else places


def fixed(value: float, places: int) -> str:
    """``value`` rounded to ``places`` decimal places (negative: to tens, hundreds...), no exponent, no -0."""
    if not math.isfinite(value):
        return "–" if math.isnan(value) else f"{value}"
    rounded = round(value, places)
    text = f"{rounded:.{max(places, 0)}f}"
    return text[1:] if text.startswith("-") and float(text) == 0 else text


def significant(value: float, digits: int = MEAN_DIGITS) -> str:
    """``value`` with ``digits`` significant digits, without an exponent."""
    if value is None or not math.isfinite(value):
        return "–"
    return fixed(value, places_for(value, digits)) if value else "0"


def readable(value: float, digits: int = MEAN_DIGITS) -> str:
    """A value as a person writes it: whole numbers (grid indices, counts) without decimals, others with
    ``digits`` significant digits: ``-40``, ``147``, ``0.473``, ``12.3``."""
    if value is not None and math.isfinite(value) and float(value).is_integer() and abs(value) < 10 ** 15:
        return str(int(value))
    return significant(value, digits)


RESOLUTION = 1e-12  # a spread or interval width below this fraction of the value is floating-point noise


def resolved(value: float, spread: float) -> float:
    """``spread``, or 0 when it is below :data:`RESOLUTION` of ``|value|`` (an MIC of 1.0000000000000002 over
    seeds whose bootstrap interval is 4e-16 wide has no spread worth seventeen decimals)."""
    return spread if math.isfinite(spread) and spread > RESOLUTION * abs(value) else 0.0


def mean_places(mean: float, spread: float) -> int:
    """The decimal places a mean is printed with: those of its spread at two significant digits, or three
    significant digits of the mean when there is no spread (or only floating-point noise, :func:`resolved`)."""
    spread = resolved(mean, spread) if math.isfinite(mean) else spread
    if math.isfinite(spread) and spread > 0:
        return places_for(spread, SPREAD_DIGITS)
    return places_for(mean, MEAN_DIGITS) if math.isfinite(mean) and mean else MEAN_DIGITS - 1


def mean_and_spread(mean: float, spread: float) -> tuple[str, str]:
    """The printed mean and spread: ``("0.00120", "0.00031")``, ``("1787", "12")``; a zero or undefined
    spread prints ``"0"``, an undefined mean ``"–"``."""
    if not math.isfinite(mean):
        return "–", ""
    spread = resolved(mean, spread)
    places = mean_places(mean, spread)
    return fixed(mean, places), (fixed(spread, places) if spread > 0 else "0")


def plus_minus(mean: float, spread: float, sign: str = "±") -> str:
    """``mean ± spread`` by the rule above; ``–`` for an undefined mean."""
    shown_mean, shown_spread = mean_and_spread(mean, spread)
    return shown_mean if not shown_spread else f"{shown_mean} {sign} {shown_spread}"


def ties(first: float, first_places: int, second: float, second_places: int) -> bool:
    """Whether two means print the same at the coarser of their two precisions."""
    places = min(first_places, second_places)
    return fixed(first, places) == fixed(second, places)


def best_and_ties(means: list[float], spreads: list[float], maximise: bool, *, places: list[int] | None = None,
                  eligible: list[bool] | None = None) -> list[bool]:
    """Per entry, whether it is the best mean (max or min) or ties with it as printed; NaN is never best.

    ``places`` are the decimal places each mean prints with (by default :func:`mean_places` of its spread);
    entries not ``eligible`` are neither best nor tied (a reference row, a flagged score, fewer seeds)."""
    places = places if places is not None else [mean_places(mean, spread) for mean, spread in zip(means, spreads)]
    eligible = eligible if eligible is not None else [True] * len(means)
    finite = [index for index, mean in enumerate(means) if math.isfinite(mean) and eligible[index]]
    if not finite:
        return [False] * len(means)
    pick = max if maximise else min
    best = pick(finite, key=lambda index: means[index])
    return [index in finite and ties(means[index], places[index], means[best], places[best])
            for index in range(len(means))]


def symmetric_enough(mean: float, low: float, high: float) -> bool:
    """Whether ``mean ± (high - low) / 2`` states the interval ``[low, high]`` without misstating it: its arms
    (``mean - low``, ``high - mean``) differ by at most a factor :data:`ARM_RATIO`, and the ``±`` form crosses
    zero only when the interval does. Zero-width and undefined intervals count as symmetric."""
    if not all(math.isfinite(value) for value in (mean, low, high)) or high <= low:
        return True
    below, above = max(mean - low, 0.0), max(high - mean, 0.0)
    if min(below, above) * ARM_RATIO < max(below, above):
        return False
    halfwidth = (high - low) / 2
    return (mean - halfwidth < 0) == (low < 0) and (mean + halfwidth > 0) == (high > 0)


def _without_noise(mean: float, low: float, high: float) -> tuple[float, float]:
    """``(low, high)``, or ``(mean, mean)`` when the interval's width is floating-point noise (:func:`resolved`)."""
    values = (mean, low, high)
    if all(math.isfinite(value) for value in values) and resolved(max(map(abs, values)), high - low) == 0:
        return mean, mean
    return low, high


def interval_places(mean: float, low: float, high: float) -> int:
    """The decimal places of a mean printed with its interval: those of the half-width when the interval prints
    as ``±`` (:func:`mean_places`), else those of its shorter arm at two significant digits, or of the longer
    arm when the shorter is 0 (the mean sits on a bound, or outside the interval)."""
    low, high = _without_noise(mean, low, high)
    halfwidth = (high - low) / 2 if math.isfinite(low) and math.isfinite(high) else math.nan
    if symmetric_enough(mean, low, high):
        return mean_places(mean, halfwidth)
    below, above = max(mean - low, 0.0), max(high - mean, 0.0)
    return places_for(min(below, above) or max(below, above), SPREAD_DIGITS)


BOUND_EXTRA_PLACES = 2  # a bound prints at most this many decimals finer than the mean it brackets


def bound_text(value: float, places: int) -> str:
    """A bound of an interval: two significant digits of its own, never fewer decimals than ``places`` and at
    most :data:`BOUND_EXTRA_PLACES` more; a bound that rounds to zero there prints as zero at ``places`` (a
    bootstrap bound of -3e-16 is floating-point noise around zero, not a value worth seventeen decimals)."""
    own = places_for(value, SPREAD_DIGITS) if value else places
    text = fixed(value, min(max(places, own), places + BOUND_EXTRA_PLACES))
    return fixed(0.0, places) if math.isfinite(value) and float(text) == 0 else text


def interval_parts(mean: float, low: float, high: float) -> tuple[str, str]:
    """The printed mean and what follows it: ``("0.50", "± 0.12")``, ``("0.00012", "[0.000018, 0.00042]")``,
    ``("0.0123", "± 0")`` for an interval without width, ``("–", "")`` for an undefined mean."""
    if not math.isfinite(mean):
        return "–", ""
    low, high = _without_noise(mean, low, high)
    if symmetric_enough(mean, low, high):
        halfwidth = (high - low) / 2 if math.isfinite(low) and math.isfinite(high) else math.nan
        shown_mean, shown_spread = mean_and_spread(mean, halfwidth)
        return shown_mean, f"± {shown_spread}"
    places = interval_places(mean, low, high)
    return fixed(mean, places), f"[{bound_text(low, places)}, {bound_text(high, places)}]"


def interval_arms(mean: float, low: float, high: float) -> tuple[str, str, str] | None:
    """An interval too asymmetric for a ``±`` as the printed mean and its two arms, ``("0.00985", "+0.00062",
    "−0.0011")``: each arm to two significant digits of its own, never fewer decimals than the mean (the
    notation ``mean^{+above}_{-below}``); None when the interval prints as ``±`` (:func:`interval_parts`)."""
    if not math.isfinite(mean):
        return None
    low, high = _without_noise(mean, low, high)
    if symmetric_enough(mean, low, high):
        return None
    places = interval_places(mean, low, high)
    above, below = max(high - mean, 0.0), max(mean - low, 0.0)
    return fixed(mean, places), f"+{bound_text(above, places)}", f"−{bound_text(below, places)}"


def interval_text(mean: float, low: float, high: float, sign: str = "±") -> str:
    """``mean ± half-width`` or ``mean [low, high]`` by the rule above; ``–`` for an undefined mean."""
    shown_mean, rest = interval_parts(mean, low, high)
    return f"{shown_mean} {rest.replace('±', sign, 1)}" if rest else shown_mean
