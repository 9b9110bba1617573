"""``crlbench suite FILE``: a suite planned (``--dry-run``), run by an executor (local workers, a Slurm job array,
Ray tasks: the ``--executor`` flags, each refused unless it applies), logged to MLflow (the hook
:class:`crlbench.tracking.mlflow_runs.MlflowTracking` given to :func:`crlbench.suites.suite.run_suite`) or
ingested (``--ingest``), and summarised; ``crlbench run`` runs its one-cell suite the same way.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import time
from pathlib import Path
from typing import Any

from crlbench.cli.common import (EPILOG, chosen_tracking_uri, chosen_workdir, failed_status, keep_checkpoints_argument,
                                 keeping_checkpoints, progress_lines, work_arguments, writable_workdir)
from crlbench.core.errors import ConfigError


def add_suite_command(commands: Any) -> None:
    """``crlbench suite``."""
    suite = commands.add_parser("suite", help="run a suite of (dataset x model x seed) cells", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    suite.add_argument("config", type=Path, help="a suite YAML file (configs/suites/*.yaml)")
    work_arguments(suite)
    suite.add_argument("--workers", type=int, default=1,
                       help="parallel worker processes on this machine, sharing its GPUs: worker i trains on "
                            "cuda:(i mod GPUs) (default: 1)")
    suite.add_argument("--dry-run", action="store_true", help="list the cells and their state; run nothing")
    suite.add_argument("--retry-failed", action="store_true", help="run cells recorded as failed again")
    keep_checkpoints_argument(suite)
    _executor_arguments(suite)
    suite.set_defaults(handler=run_suite_command)


def _executor_arguments(command: argparse.ArgumentParser) -> None:
    """``--executor`` and its options (crlbench.suites.dispatch, .slurm, .ray_cells)."""
    from crlbench.suites.dispatch import EXECUTORS

    command.add_argument("--executor", choices=EXECUTORS, default="local",
                         help="what runs the cells: local worker processes (default), a Slurm job array "
                              "(pip install 'crlbench[slurm]') or Ray tasks (pip install 'crlbench[ray]'); the "
                              "work directory must be on a filesystem the cluster's nodes share (unless "
                              "--ray-no-shared-workdir)")
    command.add_argument("--detach", action="store_true",
                         help="with --executor slurm: return once the cells are submitted; run the same command "
                              "again to collect what finished (and wait for the rest, unless --detach again)")
    command.add_argument("--ingest", action="store_true",
                         help="run nothing: log to MLflow the finished cells it does not hold yet (e.g. cells a "
                              "detached Slurm array finished)")
    slurm = command.add_argument_group("Slurm (--executor slurm)")
    slurm.add_argument("--slurm-partition", help="the partition the array tasks run in (default: the cluster's)")
    slurm.add_argument("--slurm-time", default="60",
                       help="each cell's time limit, as Slurm's --time: MINUTES, H:MM:SS, D-HH[:MM[:SS]] "
                            "(default: 60); a task out of time is requeued (3 times at most) and resumes from "
                            "its checkpoint")
    slurm.add_argument("--slurm-gpus-per-cell", type=int, default=0, help="GPUs each array task asks for (default: 0)")
    slurm.add_argument("--slurm-cpus-per-cell", type=int, default=None,
                       help="CPUs each array task asks for (default: the suite's threads)")
    slurm.add_argument("--slurm-array-parallelism", type=int, default=256,
                       help="array tasks running at once, at most (default: 256)")
    slurm.add_argument("--slurm-sbatch", action="append", default=[], metavar="KEY[=VALUE]",
                       help="another #SBATCH option for every task, e.g. account=mylab, qos=high, exclusive "
                            "(repeatable)")
    ray = command.add_argument_group("Ray (--executor ray)")
    ray.add_argument("--ray-address", default="auto",
                     help="the Ray cluster: auto (the one this machine belongs to, as `ray start` set it up) or "
                          "HOST:PORT of its head (default: auto)")
    ray.add_argument("--ray-cpus-per-cell", type=float, default=None,
                     help="CPUs each cell's task reserves (default: the suite's threads)")
    ray.add_argument("--ray-gpus-per-cell", type=float, default=0.0,
                     help="GPUs each cell's task reserves; a fraction (0.25) lets small cells share a GPU (default: 0)")
    ray.add_argument("--ray-no-shared-workdir", action="store_true",
                     help="the Ray nodes do not see the work directory: each task runs in a folder of its node "
                          "and returns the cell's files, which this launcher writes into the work directory")


def run_suite_command(args: argparse.Namespace) -> int:
    from crlbench.suites.suite_config import load_suite

    config = load_suite(args.config)
    return run_suite_and_print(config, args)


def mlflow_hook(tracking_uri: str | None) -> Any:
    """The hook that logs a suite's cells to MLflow at ``tracking_uri`` (:mod:`crlbench.suites.tracking_hook`),
    or None (``--no-tracking``)."""
    if tracking_uri is None:
        return None
    from crlbench.tracking.mlflow_runs import MlflowTracking

    return MlflowTracking(tracking_uri)


def run_suite_and_print(config, args: argparse.Namespace, print_cells: bool = False) -> int:
    """Run (or, with ``--dry-run``, plan) the suite ``config`` as the flags in ``args`` say and print its
    summary; with ``print_cells``, each cell's scores and where its record, report and MLflow run are."""
    from crlbench.suites.suite import STATES, plan, run_suite

    workdir = chosen_workdir(args)
    if getattr(args, "dry_run", False):
        planned = plan(config, workdir)
        print(f"suite {config.name}: {len(planned)} cells in {workdir}")
        for item in planned:
            note = " (checkpoint)" if item.resumable and item.state == "pending" else ""
            note = f" (elsewhere: {item.holder})" if item.state == "running" else note
            print(f"  {item.cell.hash}  {item.state:<8} {item.cell.title}{note}")
        counts = {state: sum(p.state == state for p in planned) for state in STATES}
        print("  " + ", ".join(f"{count} {state}" for state, count in counts.items()))
        print(f"  work directory size: {_workdir_size(workdir)}")
        return 0
    workers = getattr(args, "workers", 1)
    if workers < 1:
        raise ConfigError(f"--workers must be a positive integer; got {workers}")
    ingest = getattr(args, "ingest", False)
    if ingest and args.no_tracking:
        raise ConfigError("--ingest logs finished cells to MLflow: it cannot be used with --no-tracking")
    if ingest:
        _nothing_runs(args, workers)
    executor = _executor(args, config) if hasattr(args, "executor") and not ingest else None  # ingest runs nothing
    writable_workdir(args)
    start = time.perf_counter()
    tracking_uri = chosen_tracking_uri(args, workdir)
    with keeping_checkpoints(getattr(args, "keep_checkpoints", False)), progress_lines(terminal_bar=True):
        summary = run_suite(config, workdir, workers=workers, tracking=mlflow_hook(tracking_uri),
                            retry_failed=getattr(args, "retry_failed", False), executor=executor, ingest=ingest)
    seconds = time.perf_counter() - start
    if ingest:
        print(f"suite {config.name}: logged {summary.logged} finished cell(s) to MLflow ({tracking_uri}); "
              f"{summary.cached + summary.failed + summary.not_applicable} finished in all, {len(config.cells()) - len(summary.records)} "
              f"not finished")
        return 0
    elsewhere = f"{summary.elsewhere} ran elsewhere, " if summary.elsewhere else ""
    in_flight = f"{summary.in_flight} in flight, " if summary.in_flight else ""
    not_applicable = f"{summary.not_applicable} not applicable, " if summary.not_applicable else ""
    partial = f"{summary.partial} partial (a metric failed), " if summary.partial else ""
    print(f"suite {config.name}: {summary.ok} ran, {summary.cached} already done, {elsewhere}{in_flight}{not_applicable}"
          f"{partial}{summary.failed} failed in {seconds:.1f} s; results in {workdir / 'cells'}")
    if summary.in_flight:
        print(f"  {summary.in_flight} cell(s) submitted and not finished yet: run the same command again to collect "
              "them (add --detach to return at once), or --ingest to log the finished ones to MLflow")
    for title, error in summary.failures:
        print(f"  failed: {title}: {error}")
    if print_cells:
        for record in summary.records:
            _print_cell(record, workdir, tracking_uri, config.name)
    return failed_status(summary.failed, summary.partial)


EXECUTOR_DEFAULTS = {"slurm_partition": None, "slurm_time": "60", "slurm_gpus_per_cell": 0, "slurm_cpus_per_cell": None,
                     "slurm_array_parallelism": 256, "slurm_sbatch": [], "ray_address": "auto",
                     "ray_cpus_per_cell": None, "ray_gpus_per_cell": 0.0, "ray_no_shared_workdir": False}


def _nothing_runs(args: argparse.Namespace, workers: int) -> None:
    """``--ingest`` runs no cell: a flag saying how cells run would be ignored, so it is refused."""
    given = [f"--{key.replace('_', '-')}" for key, default in EXECUTOR_DEFAULTS.items()
             if getattr(args, key, default) != default]
    given += ["--detach"] if getattr(args, "detach", False) else []
    given += [f"--executor {args.executor}"] if getattr(args, "executor", "local") != "local" else []
    given += [f"--workers {workers}"] if workers != 1 else []
    given += ["--retry-failed"] if getattr(args, "retry_failed", False) else []
    if given:
        raise ConfigError(f"--ingest runs no cell, so it takes no option of how cells run; got {', '.join(given)}")


def _executor(args: argparse.Namespace, config):
    """The executor the ``--executor`` flags name; a flag of another executor is an error."""
    from crlbench.suites.dispatch import executor_named

    name = args.executor
    defaults = EXECUTOR_DEFAULTS
    for key, default in defaults.items():
        owner = key.split("_")[0]
        if owner != name and getattr(args, key) != default:
            raise ConfigError(f"--{key.replace('_', '-')} applies to --executor {owner}, not --executor {name}")
    if args.detach and name != "slurm":
        raise ConfigError(f"--detach applies to --executor slurm, not --executor {name}")
    if name != "local" and args.workers != 1:
        raise ConfigError(f"--workers applies to --executor local; --executor {name} runs each cell as its own task "
                          f"(see --{name}-cpus-per-cell)")
    if name == "slurm":
        from crlbench.suites.dispatch import require

        require("slurm")
        from crlbench.suites.slurm import SlurmOptions, parse_sbatch, parse_time

        options = SlurmOptions(partition=args.slurm_partition, time_min=parse_time(args.slurm_time),
                               gpus_per_cell=args.slurm_gpus_per_cell,
                               cpus_per_cell=config.threads if args.slurm_cpus_per_cell is None else args.slurm_cpus_per_cell,
                               array_parallelism=args.slurm_array_parallelism,
                               sbatch=parse_sbatch(args.slurm_sbatch), detach=args.detach)
        return executor_named("slurm", slurm=options)
    if name == "ray":
        from crlbench.suites.dispatch import require

        require("ray")
        from crlbench.suites.ray_cells import RayOptions

        cpus = float(config.threads) if args.ray_cpus_per_cell is None else args.ray_cpus_per_cell
        options = RayOptions(address=args.ray_address, cpus_per_cell=cpus,
                             gpus_per_cell=args.ray_gpus_per_cell, shared_workdir=not args.ray_no_shared_workdir)
        return executor_named("ray", ray=options)
    return executor_named("local", workers=args.workers)


def _print_cell(record: dict[str, Any], workdir: Path, tracking_uri: str | None, suite_name: str) -> None:
    """One cell's scores as an aligned table, then where its record, report and MLflow run are."""
    from crlbench.suites.results import RESULT, cell_dir

    folder = cell_dir(workdir, record["hash"])
    scores = record.get("scores") or {}
    if scores:
        width = max(len(name) for name in scores)
        print(f"\n  {'score':<{width}}  {'value':>10}")
        for name, value in scores.items():
            text = f"{value:.4g}" if isinstance(value, (int, float)) and not isinstance(value, bool) else str(value)
            print(f"  {name:<{width}}  {text:>10}")
    print(f"\n  record:  {folder / RESULT}")
    print(f"  report:  crlbench report {workdir / 'cells'} --out reports/{suite_name}")
    if tracking_uri is None:
        print("  MLflow:  not tracked (--no-tracking)")
        return
    from crlbench.tracking.mlflow_runs import logged_run

    experiment = f"crlbench/{suite_name}"
    run_id = logged_run(folder, tracking_uri, experiment, record)
    where = f"run {run_id}" if run_id else "no run logged"
    print(f"  MLflow:  experiment {experiment}, {where} (crlbench ui --workdir {workdir})")


def _workdir_size(workdir: Path) -> str:
    """The bytes under ``workdir``, and how many of them are checkpoints, in megabytes."""
    total = checkpoints = 0
    for root, _, files in os.walk(workdir):
        for name in files:
            with contextlib.suppress(OSError):
                size = os.lstat(os.path.join(root, name)).st_size
                total += size
                if os.path.basename(root) == "checkpoint":
                    checkpoints += size
    return f"{total / 1e6:.1f} MB ({checkpoints / 1e6:.1f} MB of it checkpoints)"
