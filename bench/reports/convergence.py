"""Which cells converged, from each record's ``convergence`` verdict, tallied per method for the tables.

The runner judges every run by one stated rule (crlbench.training.convergence: the trend of the scores
read on a validation sample during training) and stores ``convergence`` = ``{converged, reason, rule,
schedule_finished, scores, reconstruction, ...}`` in its record; ``converged`` is null when the run was
not judged (too few readings in the last third of a short run). Records written before that field
existed count as not judged too, and are counted apart (``unrecorded``); records of the earlier
reconstruction-only rule keep their verdict and name their rule. Nothing here fails on any of them. A
method's row is marked with :data:`MARK` when one of its seeds did not converge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crlbench.core.records import is_reference

MARK = "‡"
LATEX_MARK = r"$^\ddagger$"


@dataclass
class Tally:
    """Converged, unconverged and not judged runs of one group of ok records."""

    converged: int = 0
    unconverged: int = 0
    not_judged: int = 0
    rules: list[str] = field(default_factory=list)
    unrecorded: int = 0  # of not_judged: records without any convergence verdict (written before the monitor)
    unreadable: int = 0  # of not_judged: enough readings, but a watched score had too few finite ones in the window

    @property
    def total(self) -> int:
        return self.converged + self.unconverged + self.not_judged

    @property
    def marked(self) -> bool:
        return self.unconverged > 0

    def add(self, record: dict) -> None:
        verdict = record.get("convergence") or {}
        state = verdict.get("converged")
        if state is None:
            self.not_judged += 1
            self.unrecorded += not verdict
            self.unreadable += unreadable(verdict)
        elif state:
            self.converged += 1
        else:
            self.unconverged += 1
        rule = verdict.get("rule")
        if rule and rule not in self.rules:
            self.rules.append(rule)

    def merge(self, other: "Tally") -> "Tally":
        merged = Tally(self.converged + other.converged, self.unconverged + other.unconverged,
                       self.not_judged + other.not_judged, list(self.rules), self.unrecorded + other.unrecorded,
                       self.unreadable + other.unreadable)
        merged.rules += [rule for rule in other.rules if rule not in merged.rules]
        return merged

    def seeds_text(self) -> str:
        """``2/3 seeds unconverged`` (with ``, 1 not judged`` when some were not), ``3/3 converged``, or
        ``not judged``."""
        if self.total == 0 or self.not_judged == self.total:
            return "not judged"
        head = (f"{self.unconverged}/{self.total} seeds unconverged" if self.unconverged
                else f"{self.converged}/{self.total} converged")
        return head + (f", {self.not_judged} not judged" if self.not_judged else "")

    def mark(self) -> str:
        """``‡ 2/3`` for a marked group, else empty."""
        return f"{MARK} {self.unconverged}/{self.total}" if self.marked else ""


def unreadable(verdict: dict) -> bool:
    """Whether a null verdict had readings enough in its window but a watched score had too few finite ones
    there (a non-finite score: crlbench.training.convergence.score_trend), rather than too few readings."""
    window = (verdict.get("window") or {}).get("readings")
    trends = [trend for trend in (verdict.get("scores") or {}).values() if isinstance(trend, dict)]
    return isinstance(window, int) and any(trend.get("settled") is None and (trend.get("readings") or 0) < window
                                           for trend in trends)


def tallies(records: list[dict]) -> dict[tuple[str, str], Tally]:
    """Per (dataset, label), the convergence of its ok records; reference rows (the record's ``reference``) are
    not methods and are left out (copy and mean_image read no watched score, so none could be judged)."""
    result: dict[tuple[str, str], Tally] = {}
    for record in records:
        if record.get("status") == "ok" and not is_reference(record):
            cell = record["cell"]
            result.setdefault((cell["dataset"], cell.get("label") or cell["model"]), Tally()).add(record)
    return result


def per_label(groups: dict[tuple[str, str], Tally]) -> dict[str, Tally]:
    """The tallies of each label summed over datasets (for tables across datasets)."""
    result: dict[str, Tally] = {}
    for (_, label), tally in groups.items():
        result[label] = result.get(label, Tally()).merge(tally)
    return result


def overall(groups: dict[tuple[str, str], Tally]) -> Tally:
    total = Tally()
    for tally in groups.values():
        total = total.merge(tally)
    return total


def summary_text(total: Tally) -> str:
    """The protocol's sentence: ``3 of 48 cells did not converge by the rule: ...``, or why none was judged."""
    if total.total == 0:
        return "no finished cells"
    if total.unrecorded == total.total:
        return (f"not judged: none of the {total.total} finished cells records a convergence verdict "
                "(records written before the per-epoch held-out monitor)")
    rules = " / ".join(total.rules) or "not stated in the records"
    if total.not_judged == total.total:
        return f"not judged: none of the {total.total} finished cells could be judged ({_not_judged_text(total)}); the rule: {rules}"
    text = f"{total.unconverged} of {total.total} cells did not converge by the rule: {rules}"
    if total.not_judged:
        text += f"; {total.not_judged} not judged ({_not_judged_text(total)})"
    return text


def _not_judged_text(total: Tally) -> str:
    """Why cells were not judged, from each record's verdict: too few score readings for the rule, a watched
    score that read non-finite, and records without a verdict."""
    parts = []
    few = total.not_judged - total.unrecorded - total.unreadable
    if few:
        parts.append(f"{few} with too few score readings for the rule (runs too short, or readings at one epoch)")
    if total.unreadable:
        parts.append(f"{total.unreadable} with a watched score unreadable: too few finite readings in the window")
    if total.unrecorded:
        parts.append(f"{total.unrecorded} written before the per-epoch monitor")
    return "; ".join(parts)


def legend_line(total: Tally) -> str | None:
    """The tables' legend entry for :data:`MARK`, or None when no cell was judged."""
    if total.not_judged == total.total:
        return None
    rules = " / ".join(total.rules) or "not stated in the records"
    return (f"{MARK} k/n: k of the method's n finished seeds did not converge. The rule ({rules}) is the "
            "trainer's; seeds without a verdict (too few score readings in a short run, a score read non-finite, "
            "older records) are not counted as unconverged.")
