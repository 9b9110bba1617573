"""Numbers as every report format prints them (markdown, HTML, LaTeX; the CSV keeps full precision).

A mean with an uncertainty follows the usual rule for reporting measurements (Taylor, *An
Introduction to Error Analysis*, 1997, sec. 2.2; BIPM GUM, 2008, sec. 7.2.6): the uncertainty is
rounded to two significant digits and the mean to the same decimal place, so ``0.0012 ± 0.00031``
prints ``0.00120 ± 0.00031`` and ``1787.136 ± 12.4`` prints ``1787 ± 12``. A mean without spread
(one seed, or equal seeds) keeps three significant digits. Two means tie when they print the same at
the coarser of their two precisions: the best cell of a column and every cell tied with it are bold.
"""

from __future__ import annotations

import math

SPREAD_DIGITS = 2  # significant digits of an uncertainty
MEAN_DIGITS = 3  # significant digits of a value printed without uncertainty


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


def mean_places(mean: float, spread: float) -> int:
    """The decimal places a mean is printed with: those of its spread at two significant digits, or three
    significant digits of the mean when there is no spread."""
    if math.isfinite(spread) and spread > 0:
        return places_for(spread, SPREAD_DIGITS)
    return places_for(mean, MEAN_DIGITS) if math.isfinite(mean) and mean else MEAN_DIGITS - 1


def mean_and_spread(mean: float, spread: float) -> tuple[str, str]:
    """The printed mean and spread: ``("0.00120", "0.00031")``, ``("1787", "12")``; a zero or undefined
    spread prints ``"0"``, an undefined mean ``"–"``."""
    if not math.isfinite(mean):
        return "–", ""
    places = mean_places(mean, spread)
    return fixed(mean, places), (fixed(spread, places) if math.isfinite(spread) and spread > 0 else "0")


def plus_minus(mean: float, spread: float, sign: str = "±") -> str:
    """``mean ± spread`` by the rule above; ``–`` for an undefined mean."""
    shown_mean, shown_spread = mean_and_spread(mean, spread)
    return shown_mean if not shown_spread else f"{shown_mean} {sign} {shown_spread}"


def ties(first: float, first_places: int, second: float, second_places: int) -> bool:
    """Whether two means print the same at the coarser of their two precisions."""
    places = min(first_places, second_places)
    return fixed(first, places) == fixed(second, places)


def best_and_ties(means: list[float], spreads: list[float], maximise: bool) -> list[bool]:
    """Per entry, whether it is the best mean (max or min) or ties with it as printed; NaN is never best."""
    finite = [index for index, mean in enumerate(means) if math.isfinite(mean)]
    if not finite:
        return [False] * len(means)
    pick = max if maximise else min
    best = pick(finite, key=lambda index: means[index])
    best_places = mean_places(means[best], spreads[best])
    return [index in finite and ties(means[index], mean_places(means[index], spreads[index]),
                                     means[best], best_places)
            for index in range(len(means))]
