"""Does the leaderboard's order of the top pair depend on image size or on budget?

Reads the records of the four sensitivity suites (``configs/suites/sensitivity/{32,64}px-{short,long}.yaml``),
each from its own work directory and only the cells of its suite file (32px-long's are the standard suite's
seeds 0-4, so ``reports/standard`` can be its work directory), and prints, per condition and score, both
methods' means and the paired difference over matched seeds (first method minus second) with its 95 % bootstrap interval
(crlbench.reports.stats.bootstrap_interval) and the standardised paired effect d_z = mean / sd of the
differences (Cohen 1988, sec. 2.3.5). A difference whose interval excludes 0 orders the pair in that
condition (from three matched seeds on); the last column says which one is ahead by the score's direction,
and the one before it how many seeds of each method a recorded degeneracy check flags on that score. ``--out`` also writes the
table as markdown.

Run: ``python benchmarks/sensitivity.py --workdir 32px-short=DIR --workdir 64px-short=DIR ...
[--pair icm_vae causal_vae] [--out reports/sensitivity/summary.md]``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from crlbench.core.records import flagged_checks
from crlbench.reports.stats import bootstrap_interval, direction
from crlbench.suites.results import load_records
from crlbench.suites.suite_config import load_suite

SCORES = ("dci@reg.disentanglement", "mcc@pearson.mcc", "counterfactual@probe.counterfactual_mse")
CONDITIONS = ("32px-short", "32px-long", "64px-short", "64px-long")
MIN_PAIRS = 3  # fewer matched seeds order nothing (a bootstrap interval of one or two values says little)
SUITES = Path(__file__).resolve().parent.parent / "configs" / "suites" / "sensitivity"


def seed_scores(records: list[dict], label: str, score: str) -> dict[int, float]:
    """One method's score per seed, from its ok records."""
    return {record["cell"]["seed"]: float(record["scores"][score]) for record in records
            if record.get("status") == "ok" and (record["cell"].get("label") or record["cell"]["model"]) == label
            and score in record.get("scores", {})}


def flagged_seeds(records: list[dict], label: str, score: str) -> int:
    """Seeds of ``label`` whose recorded degeneracy checks flag ``score`` (crlbench.core.records)."""
    return sum(1 for record in records if record.get("status") == "ok"
               and (record["cell"].get("label") or record["cell"]["model"]) == label and score in flagged_checks(record))


def paired_row(records: list[dict], first: str, second: str, score: str) -> dict:
    """Both means over the matched seeds, their paired difference with its interval, d_z, the flagged seeds of
    each and who is ahead (only when the interval excludes 0 over at least MIN_PAIRS seeds)."""
    a, b = seed_scores(records, first, score), seed_scores(records, second, score)
    seeds = sorted(set(a) & set(b))
    differences = np.array([a[seed] - b[seed] for seed in seeds])
    interval = bootstrap_interval(differences)
    spread = differences.std(ddof=1) if len(differences) > 1 else np.nan
    effect = interval.mean / spread if spread and np.isfinite(spread) and spread > 0 else np.nan
    better = first if (interval.mean > 0) == (direction(score) == "max") else second
    ordered = len(seeds) >= MIN_PAIRS and (interval.low > 0 or interval.high < 0)
    return {"score": score, "pairs": len(seeds), first: np.mean([a[s] for s in seeds]) if seeds else np.nan,
            second: np.mean([b[s] for s in seeds]) if seeds else np.nan, "difference": interval.mean,
            "low": interval.low, "high": interval.high, "d_z": effect,
            "flagged": f"{flagged_seeds(records, first, score)} / {flagged_seeds(records, second, score)}",
            "ahead": better if ordered else ("neither (interval includes 0)" if len(seeds) >= MIN_PAIRS
                                             else f"neither (fewer than {MIN_PAIRS} pairs)")}


def suite_cells(condition: str) -> set[str]:
    """The cell hashes of a condition's suite file: 32px-long's cells are the standard suite's seeds 0-4, so a
    work directory holding the whole standard suite (reports/standard) gives it only those."""
    return {cell.hash for cell in load_suite(SUITES / f"{condition}.yaml").cells()}


def condition_records(workdirs: dict[str, Path], cells: dict[str, set[str]] | None = None) -> dict[str, list[dict]]:
    """Each condition's records (in :data:`CONDITIONS` order), read once; ``cells`` (condition -> hashes) keeps
    only those."""
    records = {}
    for condition in CONDITIONS:
        if condition in workdirs:
            found = load_records(Path(workdirs[condition]) / "cells")
            records[condition] = found if cells is None else [r for r in found if r["hash"] in cells[condition]]
    return records


def table(records: dict[str, list[dict]], first: str, second: str) -> list[dict]:
    """The paired rows per condition and score, from :func:`condition_records`."""
    return [{"condition": condition, **paired_row(found, first, second, score)}
            for condition, found in records.items() for score in SCORES]


def sources(records: dict[str, list[dict]], workdirs: dict[str, Path], cells: dict[str, set[str]]) -> list[str]:
    """One line per condition: its work directory, how many of its suite's cells have records there, and the
    commit(s) that wrote them."""
    lines = []
    for condition, found in records.items():
        commits = sorted({(record.get("provenance") or {}).get("git_commit") or "unknown" for record in found})
        lines.append(f"- {condition}: `configs/suites/sensitivity/{condition}.yaml`, {len(found)} of its "
                     f"{len(cells[condition])} cells from `{workdirs[condition]}`, written at "
                     f"{', '.join(commit[:7] for commit in commits)}")
    return lines


def markdown(rows: list[dict], first: str, second: str, header: list[str] | None = None) -> str:
    """The table, after ``header`` lines (the sources) and how to read it when given."""
    lines = []
    if header is not None:
        lines += ["# Does the order of the top pair depend on image size or on budget?", "",
                  "Written by `benchmarks/sensitivity.py` from the records of the four sensitivity suites (32 or 64 px "
                  "x the quick suite's 200 steps or the standard suite's 30 epochs; Pendulum, seeds 0-4):", "",
                  *header, "",
                  f"Difference: {first} minus {second} on matched seeds, with its 95 % bootstrap interval; d_z: the "
                  "mean difference over their standard deviation (from 3 pairs). A pair is ordered in a condition when "
                  f"the interval excludes 0 over at least {MIN_PAIRS} pairs; `ahead` names who is better by the "
                  "score's direction. Flagged seeds: per method, the seeds a degeneracy check flags on that score "
                  "(such a score is an artefact, not the method's). Partial cells (a do() refused) have no "
                  "counterfactual score, hence fewer pairs there.", ""]
    lines += [f"| condition | score | pairs | {first} | {second} | difference [95 % interval] | d_z | flagged seeds | ahead |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        effect = f"{row['d_z']:.2f}" if row["pairs"] >= MIN_PAIRS and np.isfinite(row["d_z"]) else "–"
        lines.append(f"| {row['condition']} | {row['score']} | {row['pairs']} | {row[first]:.4g} | {row[second]:.4g} | "
                     f"{row['difference']:+.3g} [{row['low']:+.3g}, {row['high']:+.3g}] | {effect} | "
                     f"{row['flagged']} | {row['ahead']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", action="append", required=True, metavar="CONDITION=DIR",
                        help=f"a condition ({', '.join(CONDITIONS)}) and the work directory holding its cells/")
    parser.add_argument("--pair", nargs=2, default=("icm_vae", "causal_vae"), metavar=("FIRST", "SECOND"))
    parser.add_argument("--out", type=Path, help="also write the table as markdown here")
    args = parser.parse_args()
    workdirs = dict(item.split("=", 1) for item in args.workdir)
    unknown = set(workdirs) - set(CONDITIONS)
    if unknown:
        parser.error(f"--workdir: unknown condition(s) {sorted(unknown)}; accepted: {', '.join(CONDITIONS)}")
    cells = {condition: suite_cells(condition) for condition in workdirs}
    paths = {key: Path(value) for key, value in workdirs.items()}
    records = condition_records(paths, cells)
    rows = table(records, *args.pair)
    print(markdown(rows, *args.pair), end="")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(markdown(rows, *args.pair, header=sources(records, paths, cells)))


if __name__ == "__main__":
    main()
