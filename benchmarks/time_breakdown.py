"""Where a suite's time goes, from its records: training steps, the per-epoch readings of the validation sample,
encoding, each metric, the degeneracy checks, and the rest (loading data, building the model, writing files).

Every finished record (status ok; a partial cell is ok with a metric missing) holds ``timings``
(:mod:`crlbench.suites.runner`): the wall seconds of each phase of its last invocation and the process CPU seconds
of the cell (training summed across resumes). Wall seconds on a machine shared with other jobs stretch with the
load, so the table gives each phase's share of the cell's wall time (the median over the cells of a dataset and
method, each share taken within one cell, under one load) and the median CPU seconds per cell, which the load does
not inflate.

Run: ``python benchmarks/time_breakdown.py DIR [DIR ...] [--out FILE.md]`` (a suite's work directory, or a
committed report's folder).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from pathlib import Path

import numpy as np

from crlbench.suites.results import load_records

PHASES = ("steps", "monitor", "encode", "metrics", "checks", "other")


def phase_shares(timings: dict) -> dict[str, float] | None:
    """Each phase's share of one cell's wall time; None when the record lacks a phase (an older schema)."""
    needed = ("train_s", "monitor_s", "encode_s", "metrics_s", "checks_s", "total_s")
    if any(key not in timings for key in needed) or not timings["total_s"] > 0:
        return None
    metrics = sum(timings["metrics_s"].values())
    seconds = {"steps": timings["train_s"] - timings["monitor_s"], "monitor": timings["monitor_s"],
               "encode": timings["encode_s"], "metrics": metrics, "checks": timings["checks_s"]}
    seconds["other"] = max(timings["total_s"] - sum(seconds.values()), 0.0)
    return {phase: value / timings["total_s"] for phase, value in seconds.items()}


def slowest_metric(timings: dict) -> str:
    """The metric that took the most wall seconds in one cell."""
    return max(timings["metrics_s"], key=timings["metrics_s"].get) if timings.get("metrics_s") else "-"


def breakdown(records: list[dict]) -> list[dict]:
    """One row per (dataset, method): cells, median CPU seconds, median phase shares, the most frequent slowest
    metric."""
    groups: dict[tuple[str, str], list[dict]] = defaultdict(list)
    for record in records:
        if record.get("status") == "ok" and record.get("timings"):
            cell = record["cell"]
            groups[(cell["dataset"], cell.get("label") or cell["model"])].append(record["timings"])
    rows = []
    for (dataset, method), timings in sorted(groups.items()):
        shares = [share for share in map(phase_shares, timings) if share is not None]
        slowest = [slowest_metric(t) for t in timings]
        row = {"dataset": dataset, "method": method, "cells": len(timings),
               "cpu_s": float(np.median([t["cpu_s"] for t in timings if "cpu_s" in t] or [np.nan])),
               "slowest_metric": max(set(slowest), key=slowest.count)}
        row.update({phase: float(np.median([share[phase] for share in shares])) if shares else np.nan
                    for phase in PHASES})
        rows.append(row)
    return rows


def totals(records: list[dict]) -> dict[str, float]:
    """CPU seconds of all finished cells, and the share of the summed wall seconds in each phase."""
    timings = [record["timings"] for record in records if record.get("status") == "ok" and record.get("timings")]
    wall = {phase: 0.0 for phase in PHASES}
    for t in timings:
        shares = phase_shares(t)
        if shares is not None:
            for phase in PHASES:
                wall[phase] += shares[phase] * t["total_s"]
    whole = sum(wall.values()) or np.nan
    return {"cells": len(timings), "cpu_s": float(sum(t.get("cpu_s", 0.0) for t in timings)),
            **{phase: wall[phase] / whole for phase in PHASES}}


def render(rows: list[dict], overall: dict[str, float]) -> str:
    """A markdown table of :func:`breakdown`'s rows and the overall line."""
    head = ("| dataset | method | cells | CPU s per cell (median) | steps | per-epoch readings | encode | metrics "
            "| checks | other | slowest metric |")
    lines = [head, "|" + "---|" * 11]
    for row in rows:
        shares = " | ".join(f"{100 * row[phase]:.1f} %" for phase in PHASES)
        lines.append(f"| {row['dataset']} | {row['method']} | {row['cells']} | {row['cpu_s']:.0f} | {shares} "
                     f"| {row['slowest_metric']} |")
    shares = " | ".join(f"{100 * overall[phase]:.1f} %" for phase in PHASES)
    lines.append(f"| all | all | {overall['cells']} | {overall['cpu_s']:.0f} in all | {shares} | |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("workdirs", nargs="+", type=Path, help="suite work directories or committed report folders")
    parser.add_argument("--out", type=Path, help="also write the table to this markdown file")
    args = parser.parse_args()
    records = [record for workdir in args.workdirs for record in load_records(workdir)]
    text = ("Share of each cell's wall time per phase (median over cells) and CPU seconds per cell, from "
            f"{len(records)} records in {', '.join(map(str, args.workdirs))}.\n\n" + render(breakdown(records), totals(records)))
    print(text)
    if args.out:
        args.out.write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
