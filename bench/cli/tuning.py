"""``crlbench tune FILE``: an Optuna study run or resumed (:func:`crlbench.tuning.tune.tune`), its report written,
and its best hyperparameters exported for suites (``--export``; ``--export-only`` exports without training).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from crlbench.cli.common import (EPILOG, EXIT_FAILED, chosen_tracking_uri, chosen_workdir, failed_status,
                                 progress_lines, work_arguments, writable_folder, writable_workdir)
from crlbench.core.errors import ConfigError


def add_tune_command(commands: Any) -> None:
    """``crlbench tune``."""
    tuning = commands.add_parser("tune", help="run (or resume) an Optuna study for one model on one dataset",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tuning.add_argument("config", type=Path, help="a tuning YAML file (configs/tune/*.yaml)")
    work_arguments(tuning)
    tuning.add_argument("--storage", help="Optuna RDB URL (default: sqlite:///WORKDIR/optuna.db); a PostgreSQL "
                        "URL (postgresql+psycopg2://...) lets workers on several machines join one study")
    tuning.add_argument("--study-name", help="the study to create or resume (default: the config's name)")
    tuning.add_argument("--n-trials", type=int, help="trials in all, counting earlier ones (default: the config's)")
    tuning.add_argument("--workers", type=int, default=1,
                        help="local worker processes on the study, sharing this machine's GPUs (default: 1)")
    exporting = tuning.add_mutually_exclusive_group()
    exporting.add_argument("--export", action="store_true",
                           help="after the trials, write the best hyperparameters to configs/tuned/<model>-<dataset>"
                           "[-<study>].yaml (the study's name, unless it starts with <model>-<dataset>)")
    exporting.add_argument("--export-only", action="store_true",
                           help="run no trial: export the best of the trials the study's storage already holds "
                           "(an error if the study does not exist or has no complete trial)")
    tuning.add_argument("--force", action="store_true",
                        help="with --export or --export-only: replace a file another study exported")
    tuning.set_defaults(handler=run_tune_command)


def run_tune_command(args: argparse.Namespace) -> int:
    import optuna

    from crlbench.suites.suite_config import check_name
    from crlbench.tuning.tune import (export_best, load_tune, state_counts, stored_study, study_folder, study_report,
                                      tune)

    optuna.logging.set_verbosity(optuna.logging.INFO if args.verbose else optuna.logging.WARNING)
    config = load_tune(args.config)
    if args.study_name is not None:
        check_name(args.study_name, "--study-name")
    if args.export_only:
        given = ([f"--n-trials {args.n_trials}"] if args.n_trials is not None else []) + (
            [f"--workers {args.workers}"] if args.workers != 1 else [])
        if given:
            raise ConfigError(f"--export-only runs no trial, so it takes no option of how trials run; got "
                              f"{', '.join(given)}")
    export_dir = args.config.resolve().parent.parent / "tuned"  # configs/tune/x.yaml -> configs/tuned/
    if args.export or args.export_only:
        writable_folder(export_dir, "the export folder")
    if args.export_only:  # the trials the storage holds; nothing trained, no report or MLflow run written
        study = stored_study(config, storage=args.storage, study_name=args.study_name, workdir=chosen_workdir(args))
        states = state_counts(study)
        done = "in its storage; no trial run (--export-only)"
    else:
        workdir = writable_workdir(args)
        start = time.perf_counter()
        with progress_lines(terminal_bar=False):  # a line per trial, on a terminal too: there is no bar
            study = tune(config, storage=args.storage, study_name=args.study_name, n_trials=args.n_trials,
                         workers=args.workers, workdir=workdir, tracking_uri=chosen_tracking_uri(args, workdir))
        seconds = time.perf_counter() - start
        states = state_counts(study)
        summary = study_report(study, study_folder(workdir, study.study_name) / "report", storage_url=args.storage)
        done = f"after {seconds:.1f} s; report in {summary.parent}"
    counts = ", ".join(f"{count} {state.lower()}" for state, count in states.items() if count)
    print(f"study {study.study_name}: {sum(states.values())} trials{f' ({counts})' if counts else ''} {done}")
    if not states["COMPLETE"]:
        print("crlbench: error: no trial completed; nothing to export", file=sys.stderr)
        return failed_status(states["FAIL"]) if states["FAIL"] else EXIT_FAILED
    print(f"  best value {study.best_value:.6g} at trial {study.best_trial.number}: {study.best_params}")
    if args.export or args.export_only:  # configs/tuned/<model>-<dataset>[-<study>].yaml, beside the suites using it
        path = export_best(study, config, export_dir, force=args.force)
        print(f"  exported to {path}")
    return 0
