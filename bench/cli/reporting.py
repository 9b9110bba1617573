"""``crlbench report`` (leaderboards, figures and the HTML report of a suite or a folder of results, refusing to
pool cells whose settings differ unless ``--pool``) and ``crlbench compare`` (two sides paired on seeds).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from crlbench.cli.common import EPILOG, EXIT_OK, chosen_workdir, writable_folder
from crlbench.core.errors import ConfigError


def add_report_command(commands: Any) -> None:
    """``crlbench report``."""
    report = commands.add_parser("report", help="write leaderboards, figures and an HTML report", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    report.add_argument("source", type=Path, help="a suite YAML file, or a folder of results (e.g. runs/cells)")
    report.add_argument("--out", type=Path, required=True, help="the report folder, e.g. reports/quick")
    report.add_argument("--workdir", type=Path, default=None,
                        help="work directory of a suite (default: $CRLBENCH_WORKDIR or runs)")
    report.add_argument("--title", help="the report's title (default: the suite's name)")
    report.add_argument("--reference", default="icm_vae", help="label that paired tests compare against")
    report.add_argument("--suite", dest="suites", action="append", metavar="NAME",
                        help="with a folder: only the cells this suite recorded (repeatable); a suite YAML file "
                        "also picks the cells it shares with other suites")
    report.add_argument("--pool", action="store_true",
                        help="pool cells of one (dataset, label) whose settings differ (budget, image size, "
                        "evaluation...) into one row; refused by default")
    report.add_argument("--no-figures", dest="figures", action="store_false",
                        help="write the tables and the HTML without figures (the same numbers, several times faster)")
    report.set_defaults(handler=run_report_command)


def add_compare_command(commands: Any) -> None:
    """``crlbench compare``."""
    compare = commands.add_parser(
        "compare", epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter,
        help="two work directories, two suites or two labels side by side, paired on seeds",
        description="Per dataset, method and score: both means, the paired difference b - a over matched seeds\n"
        "with its 95% bootstrap interval, and the exact Wilcoxon signed-rank p.\n"
        "Two commits: two work directories, e.g. crlbench compare runs-main runs-branch.")
    compare.add_argument("sources", type=Path, nargs="+", metavar="SOURCE",
                         help="side a, then side b (or one source for both, split by --suites or --labels): a work "
                         "directory, a report folder (its scores.csv) or a suite YAML file (its cells in --workdir)")
    compare.add_argument("--suites", nargs=2, metavar=("A", "B"), help="the cells suite A recorded against suite B's")
    compare.add_argument("--labels", nargs=2, metavar=("A", "B"), action="append",
                         help="method label A against label B, e.g. icm_vae 'icm_vae (tuned)' (repeatable: one "
                         "table of every pair)")
    compare.add_argument("--metric", dest="metrics", action="append", metavar="SCORE",
                         help="a score key, e.g. dci@reg.disentanglement (repeatable; default: the report's scores)")
    compare.add_argument("--workdir", type=Path, default=None,
                         help="work directory of suite YAML sources (default: $CRLBENCH_WORKDIR or runs)")
    compare.add_argument("--out", type=Path, help="write compare.md and compare.csv here (default: markdown to stdout)")
    compare.add_argument("--pool", action="store_true",
                         help="let a side pool cells of one (dataset, label) whose settings differ")
    compare.set_defaults(handler=run_compare_command)


def run_report_command(args: argparse.Namespace) -> int:
    from crlbench.reports.pooling import check_pooling
    from crlbench.reports.report import write_report
    from crlbench.scores import select_records
    from crlbench.suites.results import load_records
    from crlbench.suites.provenance import provenance

    if args.source.suffix in (".yaml", ".yml"):
        from crlbench.suites.suite import suite_records
        from crlbench.suites.suite_config import load_suite

        config = load_suite(args.source)
        records = suite_records(config, chosen_workdir(args))
        title = args.title or config.name
        suite = {**config.to_dict(), "cells": len(config.cells())}  # the protocol box's declared budget and plan
        missing = len(config.cells()) - len(records)
        if missing:
            print(f"crlbench: warning: {missing} of {len(config.cells())} cells of {config.name} have no result yet",
                  file=sys.stderr)
    elif args.source.is_dir():
        records = load_records(args.source)
        title = args.title or args.source.name
        suite = None
    else:
        raise ConfigError(f"{args.source}: expected a suite YAML file or a folder of results")
    if not records:
        raise ConfigError(f"{args.source}: no results found (run the suite first)")
    if args.suites:
        if suite is not None:
            raise ConfigError(f"--suite: {args.source} is a suite file, which picks its own cells; give a folder of "
                              f"results instead")
        records = select_records(records, suites=args.suites, where=args.source)
    check_pooling(records, pool=args.pool)  # before the report folder is made
    writable_folder(args.out, "the report folder (--out)")
    start = time.perf_counter()
    files = write_report(records, args.out, title=title, reference_label=args.reference,
                         provenance={"report_commit": provenance()["git_commit"]}, suite=suite, pool=args.pool,
                         figures=args.figures)
    print(f"wrote {len(files)} files to {args.out} in {time.perf_counter() - start:.1f} s ({len(records)} cells)")
    return 0


def run_compare_command(args: argparse.Namespace) -> int:
    import pandas as pd

    from crlbench.reports.compare import compare_scores, render_markdown
    from crlbench.scores import load_scores

    if len(args.sources) > 2:
        raise ConfigError(f"compare: give one or two sources, not {len(args.sources)}")
    if len(args.sources) == 1 and not (args.suites or args.labels):
        raise ConfigError("compare: give a second source, or split one with --suites A B or --labels A B")
    sources = args.sources if len(args.sources) == 2 else args.sources * 2  # one source serves both sides
    tables, names = [], [[], []]
    for pair in args.labels or [None]:
        sides = []
        for index, source in enumerate(sources):
            suites = [args.suites[index]] if args.suites else None
            labels = [pair[index]] if pair else None
            sides.append(load_scores(source, workdir=args.workdir, suites=suites, labels=labels,
                                     check_settings=not args.pool))
            names[index].append(" ".join([str(source)] + [f"suite {name}" for name in suites or []]
                                         + [f"label {name}" for name in labels or []])
                                + f" ({sides[-1]['hash'].nunique()} cells)")
        try:
            tables.append(compare_scores(*sides, scores=args.metrics, labels=tuple(pair) if pair else None))
        except ValueError as error:
            raise ConfigError(str(error)) from None
    table = pd.concat(tables, ignore_index=True)
    names = ["; ".join(side) for side in names]
    text = render_markdown(table, names=tuple(names))
    if args.out is None:
        print(text, end="")
        return EXIT_OK
    from crlbench.reports.report import write_text

    writable_folder(args.out, "the comparison folder (--out)")
    write_text(args.out / "compare.md", text)
    write_text(args.out / "compare.csv", table.to_csv(index=False))
    print(f"wrote compare.md and compare.csv to {args.out} ({len(table)} row{'s' * (len(table) != 1)})")
    return EXIT_OK
