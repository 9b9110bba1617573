"""Which cells converged, from each record's ``convergence`` verdict, tallied per method for the tables.

The runner judges every run by one stated rule (crlbench.training.convergence: the trend of the scores
read on a validation sample during training) and stores ``convergence`` = ``{converged, reason, rule,
schedule_finished, readings, window, scores, reconstruction, ...}`` in its record; ``converged`` is null when
the run was not judged. The report says why, per cell (:func:`cause`), and counts each cause apart
(:data:`CAUSES`): too short for the rule (fewer readings in the last third of the run than the rule needs),
no score readings at all, every reading of the window in one epoch, a watched score read non-finite, or a
record that predates the rule (no ``convergence`` field: written before the monitor). Records of the earlier
reconstruction-only rule keep their verdict and name their rule. Nothing here fails on any of them. A
method's row is marked with :data:`MARK` when one of its seeds did not converge.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crlbench.core.records import is_reference

MARK = "‡"
LATEX_MARK = r"$^\ddagger$"
# Why a run was not judged -> (the protocol's words, the tables' short words), in the order they are listed
CAUSES = {
    "too_short": ("too short for the rule, with fewer score readings in the last third of the run than it needs",
                  "too short"),
    "no_readings": ("with no score readings during training", "without readings"),
    "one_epoch": ("with every reading of the window at one epoch", "with readings at one epoch"),
    "unreadable": ("with a watched score read non-finite, too few finite readings left in the window",
                   "with a score read non-finite"),
    "predates": ("whose record predates the convergence rule, with no verdict recorded", "predating the rule"),
}


def cause(verdict: dict | None) -> str:
    """Why a run whose verdict is null was not judged (a key of :data:`CAUSES`), from what its record holds:
    no verdict at all, no readings, a watched score with too few finite readings, readings at one epoch, else a
    window with too few readings (a short run; for the earlier reconstruction rule, too few epochs)."""
    if not verdict:
        return "predates"
    if verdict.get("readings") == 0:
        return "no_readings"
    if unreadable(verdict):
        return "unreadable"
    trends = [trend for trend in (verdict.get("scores") or {}).values() if isinstance(trend, dict)]
    if any("same epoch" in str(trend.get("reason") or "") for trend in trends):
        return "one_epoch"
    return "too_short"


@dataclass
class Tally:
    """Converged, unconverged and not judged runs of one group of ok records, with why each was not judged."""

    converged: int = 0
    unconverged: int = 0
    not_judged: int = 0
    rules: list[str] = field(default_factory=list)
    causes: dict[str, int] = field(default_factory=dict)  # of not_judged: cause (a key of CAUSES) -> runs

    @property
    def total(self) -> int:
        return self.converged + self.unconverged + self.not_judged

    @property
    def marked(self) -> bool:
        return self.unconverged > 0

    @property
    def unrecorded(self) -> int:
        """Runs whose record holds no verdict at all (written before the monitor)."""
        return self.causes.get("predates", 0)

    def add(self, record: dict) -> None:
        verdict = record.get("convergence") or {}
        state = verdict.get("converged")
        if state is None:
            self.not_judged += 1
            why = cause(verdict)
            self.causes[why] = self.causes.get(why, 0) + 1
        elif state:
            self.converged += 1
        else:
            self.unconverged += 1
        rule = verdict.get("rule")
        if rule and rule not in self.rules:
            self.rules.append(rule)

    def merge(self, other: "Tally") -> "Tally":
        merged = Tally(self.converged + other.converged, self.unconverged + other.unconverged,
                       self.not_judged + other.not_judged, list(self.rules), dict(self.causes))
        merged.rules += [rule for rule in other.rules if rule not in merged.rules]
        for why, count in other.causes.items():
            merged.causes[why] = merged.causes.get(why, 0) + count
        return merged

    def causes_text(self, short: bool = True) -> str:
        """``2 too short, 1 predating the rule``: the not-judged runs counted by cause, in the order of
        :data:`CAUSES` (the protocol's longer words unless ``short``)."""
        return (", " if short else "; ").join(f"{self.causes[why]} {CAUSES[why][1 if short else 0]}"
                                              for why in CAUSES if self.causes.get(why))

    def seeds_text(self) -> str:
        """``2/3 seeds unconverged`` (with ``, 1 not judged: too short`` when some were not), ``3/3 converged``,
        or ``not judged: 3 too short``; ``–`` for no finished run."""
        if self.total == 0:
            return "–"
        if self.not_judged == self.total:
            return f"not judged: {self.causes_text()}"
        head = (f"{self.unconverged}/{self.total} seeds unconverged" if self.unconverged
                else f"{self.converged}/{self.total} converged")
        return head + (f", {self.not_judged} not judged: {self.causes_text()}" if self.not_judged else "")

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
    """The protocol's sentence: ``3 of 48 cells did not converge by the rule: ...; 2 not judged (2 too short for
    the rule ...)``, or why none was judged, each cause counted (:data:`CAUSES`)."""
    if total.total == 0:
        return "no finished cells"
    if total.unrecorded == total.total:
        return (f"not judged: none of the {total.total} finished cells records a convergence verdict "
                "(the records predate the convergence rule)")
    rules = " / ".join(total.rules) or "not stated in the records"
    if total.not_judged == total.total:
        return (f"not judged: none of the {total.total} finished cells could be judged "
                f"({total.causes_text(short=False)}); the rule: {rules}")
    text = f"{total.unconverged} of {total.total} cells did not converge by the rule: {rules}"
    if total.not_judged:
        text += f"; {total.not_judged} not judged ({total.causes_text(short=False)})"
    return text


def legend_line(total: Tally) -> str | None:
    """The tables' legend entry for :data:`MARK`, with the seeds not judged counted by cause, or None when no
    cell was judged."""
    if total.not_judged == total.total:
        return None
    rules = " / ".join(total.rules) or "not stated in the records"
    line = (f"{MARK} k/n: k of the method's n finished seeds did not converge. The rule ({rules}) is the "
            "trainer's.")
    if total.not_judged:
        line += (f" Seeds without a verdict are not counted as unconverged: {total.not_judged} here "
                 f"({total.causes_text(short=False)}).")
    return line
