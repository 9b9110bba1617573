"""The ``crlbench`` command line: thin wrappers that parse, call the library and print."""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import logging
import os
import signal
import sqlite3
import sys
import tempfile
import warnings
import time
from pathlib import Path
from typing import Any

import yaml

from crlbench import __version__
from crlbench.core import registry
from crlbench.core.config import DatasetConfig, load_dataset_config
from crlbench.core.errors import ConfigError, CrlbenchError
from crlbench.tracking.ui import READY_TIMEOUT_S

KIND_CHOICES = {"models": "model", "datasets": "dataset", "metrics": "metric"}
MAX_COUNT = 64  # images per row of a preview

# Exit statuses (the --help epilog and the README say the same).
EXIT_OK = 0
EXIT_INTERNAL = 1  # a bug: Python's own status for an uncaught exception, with its traceback
EXIT_INPUT = 2  # bad input or an unusable path: one message naming the file, key, flag or path
EXIT_PARTIAL = 3  # suite, run: no cell failed, but some finished partial (a metric failed, the other scores stand)
EXIT_FAILED = 10  # + the number of failed cells (or trials), at most 99
EXIT_FAILED_MAX = 99
EXIT_INTERRUPTED = 130  # Ctrl-C: 128 + SIGINT, as a shell reports a command stopped by it
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away (| head): 128 + SIGPIPE, as for other Unix tools
EPILOG = f"""exit status:
  {EXIT_OK}       success
  {EXIT_INTERNAL}       internal error (a bug: Python prints a traceback)
  {EXIT_INPUT}       bad input (config file, flag, name) or an unusable path (a work directory or report
          folder that cannot be written, an unreachable tracking server): one message naming it;
          checked before any work (a path that turns unwritable later stops the run the same way)
  {EXIT_PARTIAL}       suite, run: no cell failed, but some are partial (a metric failed; the other scores stand)
  {EXIT_FAILED}-{EXIT_FAILED_MAX}   the command ran but N cells failed (suite, run): {EXIT_FAILED} + N, at most \
{EXIT_FAILED_MAX};
          tune: no trial completed, {EXIT_FAILED} + N failed trials ({EXIT_FAILED}: every trial was pruned)
  {EXIT_INTERRUPTED}     interrupted (Ctrl-C): run the same command again to resume
  {EXIT_BROKEN_PIPE}     the reader of the output closed it early (e.g. | head): output stops quietly"""
READ_ONLY = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(message)s")
    if not hasattr(args, "handler"):
        parser.print_help()
        return EXIT_INPUT
    try:
        return args.handler(args)
    except CrlbenchError as error:
        print(f"crlbench: error: {error}", file=sys.stderr)
        return EXIT_INPUT
    except KeyboardInterrupt:
        print("crlbench: interrupted; run the same command again to resume (finished cells are kept)", file=sys.stderr)
        return EXIT_INTERRUPTED
    except Exception as error:  # noqa: BLE001 - a path that cannot be written is the user's to fix, not a bug
        message = unwritable(error)
        if message is None:
            raise
        print(f"crlbench: error: {message}", file=sys.stderr)
        return EXIT_INPUT


def failed_status(failed: int, partial: int = 0) -> int:
    """The exit status of a command that ran and saw ``failed`` cells (or trials) fail and ``partial`` cells
    finish with some metrics failed: failures first, then :data:`EXIT_PARTIAL`, else :data:`EXIT_OK`."""
    if failed > 0:
        return min(EXIT_FAILED + failed, EXIT_FAILED_MAX)
    return EXIT_PARTIAL if partial > 0 else EXIT_OK


def unwritable(error: BaseException) -> str | None:
    """The message for an error that says a path cannot be written (permission denied, read-only file
    system, read-only SQLite database), found in ``error`` or the errors it was raised from; else None."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in READ_ONLY and (error.filename or error.errno == errno.EROFS):
            place = f" {error.filename}" if error.filename else ""
            return f"cannot write{place}: {error.strerror or error}; the work directory, the report folder " \
                   f"and the databases in them must be writable"
        if isinstance(error, sqlite3.OperationalError) and any(
                text in str(error) for text in ("readonly database", "unable to open database file")):
            return f"cannot write a SQLite database ({error}); the work directory and the databases in it " \
                   f"must be writable"
        error = error.__cause__ or error.__context__
    return None


def writable_folder(path: Path, what: str) -> Path:
    """Create the folder ``path`` if missing and check that files can be created in it, before any work;
    a :class:`ConfigError` naming ``what`` and the path otherwise. Root ignores permission bits, so
    the check creates (and removes) a file rather than asking ``os.access``."""
    try:
        if path.exists() and not path.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, "it is a file, not a folder", str(path))
        path.mkdir(parents=True, exist_ok=True)
        descriptor, probe = tempfile.mkstemp(dir=path, prefix=".crlbench-", suffix=".probe")
        os.close(descriptor)
        os.unlink(probe)
    except OSError as error:
        raise ConfigError(f"cannot write to {what} {path}: {error.strerror or error}; give a folder where "
                          f"crlbench may create files") from None
    return path


def console() -> int:
    """The ``crlbench`` console script: ``main`` with warnings printed as one plain line, and a reader
    that closes the output early (``crlbench list metrics | head -1``) ending it quietly with
    :data:`EXIT_BROKEN_PIPE` instead of a ``BrokenPipeError`` traceback."""
    warnings.showwarning = _show_warning
    try:
        status = main()
        sys.stdout.flush()  # inside the try: a small output meets the closed pipe only here
    except BrokenPipeError:
        # Python flushes stdout again at exit: point it at /dev/null so that flush cannot fail too.
        with contextlib.suppress(OSError, ValueError):
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    return status


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    print(f"crlbench: warning: {message}", file=sys.stderr)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="crlbench", description=__doc__, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"crlbench {__version__}")
    commands = parser.add_subparsers(title="commands")

    listing = commands.add_parser("list", help="list registered models, datasets and metrics")
    listing.add_argument("kind", nargs="?", choices=sorted(KIND_CHOICES), help="one kind only")
    listing.add_argument("--plugins", dest="plugins", action="append", default=[], metavar="MODULE",
                         help="import a plugin module first, as a suite's 'plugins:' does, so its models, "
                              "datasets and metrics are listed (repeatable; installed or on PYTHONPATH)")
    listing.set_defaults(handler=run_list)

    data = commands.add_parser("data", help="generate, inspect and preview datasets")
    data_commands = data.add_subparsers(title="data commands", required=True)
    for name, handler, text in (
        ("generate", run_generate, "generate (or verify the cache of) a dataset"),
        ("show", run_show, "write a PNG of samples and ground-truth intervention strips"),
        ("card", run_card, "print a dataset's card as YAML"),
    ):
        command = data_commands.add_parser(name, help=text)
        _dataset_arguments(command)
        command.set_defaults(handler=handler)
        if name == "show":
            command.add_argument("--out", required=True, type=Path, help="PNG file to write")
            command.add_argument("--split", default="train", help="split to sample (default: train)")
            command.add_argument("--count", type=int, default=8, help="images per row (default: 8)")

    suite = commands.add_parser("suite", help="run a suite of (dataset x model x seed) cells", epilog=EPILOG,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    suite.add_argument("config", type=Path, help="a suite YAML file (configs/suites/*.yaml)")
    _work_arguments(suite)
    suite.add_argument("--workers", type=int, default=1,
                       help="parallel worker processes on this machine, sharing its GPUs: worker i trains on "
                            "cuda:(i mod GPUs) (default: 1)")
    suite.add_argument("--dry-run", action="store_true", help="list the cells and their state; run nothing")
    suite.add_argument("--retry-failed", action="store_true", help="run cells recorded as failed again")
    _keep_checkpoints_argument(suite)
    _executor_arguments(suite)
    suite.set_defaults(handler=run_suite_command)

    single = commands.add_parser("run", help="train and evaluate one cell from flags", epilog=EPILOG,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    single.add_argument("--dataset", required=True, help="a registered dataset name (a plugin's with --plugins)")
    single.add_argument("--model", required=True, help="a registered model name (a plugin's with --plugins)")
    single.add_argument("--seed", type=int, default=0)
    single.add_argument("--epochs", type=int)
    single.add_argument("--steps", type=int)
    single.add_argument("--batch-size", type=int,
                        help="the batch size (default: the model file's reference batch size, else 64; a budget in "
                             "steps is given in batches of 64 and rescaled to the same number of images, as in a suite)")
    single.add_argument("--model-file", metavar="PATH",
                        help="the model file whose hyperparameters, reference batch size and reference run the cell "
                             "uses (default: the shipped configs/models/MODEL.yaml, as a suite naming it; 'none': the "
                             "model's Config defaults and batch size 64)")
    single.add_argument("--set", dest="hyperparameters", action="append", default=[], metavar="KEY=VALUE",
                        help="a model hyperparameter (repeatable)")
    single.add_argument("--data", dest="dataset_params", action="append", default=[], metavar="KEY=VALUE",
                        help="a dataset parameter, e.g. --data size=32 (repeatable)")
    single.add_argument("--metric", dest="metrics", action="append", metavar="NAME",
                        help=f"a metric variant (repeatable; default: {', '.join(DEFAULT_METRICS)})")
    single.add_argument("--label", help="the model's name in reports (default: the model name)")
    single.add_argument("--plugins", dest="plugins", action="append", default=[], metavar="MODULE",
                        help="import a plugin module first, as a suite's 'plugins:' does, so that --model, --dataset "
                             "and --metric may name what it registers (repeatable; installed or on PYTHONPATH)")
    _work_arguments(single)
    _keep_checkpoints_argument(single)
    single.set_defaults(handler=run_single_command)

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
    report.set_defaults(handler=run_report_command)

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
    compare.add_argument("--labels", nargs=2, metavar=("A", "B"),
                         help="method label A against label B, e.g. icm_vae 'icm_vae (tuned)'")
    compare.add_argument("--metric", dest="metrics", action="append", metavar="SCORE",
                         help="a score key, e.g. dci@reg.disentanglement (repeatable; default: the report's scores)")
    compare.add_argument("--workdir", type=Path, default=None,
                         help="work directory of suite YAML sources (default: $CRLBENCH_WORKDIR or runs)")
    compare.add_argument("--out", type=Path, help="write compare.md and compare.csv here (default: markdown to stdout)")
    compare.add_argument("--pool", action="store_true",
                         help="let a side pool cells of one (dataset, label) whose settings differ")
    compare.set_defaults(handler=run_compare_command)

    tuning = commands.add_parser("tune", help="run (or resume) an Optuna study for one model on one dataset",
                                 epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    tuning.add_argument("config", type=Path, help="a tuning YAML file (configs/tune/*.yaml)")
    _work_arguments(tuning)
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

    ui = commands.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for a work directory")
    ui.add_argument("--workdir", type=Path, default=None, help="work directory (default: $CRLBENCH_WORKDIR or runs)")
    ui.add_argument("--port", type=int, default=5000, help="port of the UI on 127.0.0.1 (default: 5000)")
    ui.add_argument("--start-timeout", type=float, default=READY_TIMEOUT_S, metavar="SECONDS",
                    help="how long the server may take to answer before crlbench ui gives up and stops it "
                         f"(default: {READY_TIMEOUT_S:g})")
    ui.set_defaults(handler=run_ui_command)
    return parser


DEFAULT_METRICS = ("dci@reg", "mcc@pearson", "irs@dlib", "r2@linear", "mic@aligned", "counterfactual@probe")


def _work_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("--workdir", type=Path, default=None, help="work directory (default: $CRLBENCH_WORKDIR or runs)")
    tracking = command.add_mutually_exclusive_group()
    tracking.add_argument("--tracking-uri", help="MLflow tracking URI (default: sqlite:///WORKDIR/mlflow.db)")
    tracking.add_argument("--no-tracking", action="store_true", help="do not log to MLflow")


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


def _keep_checkpoints_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument("--keep-checkpoints", action="store_true",
                         help="keep finished cells' full checkpoints (optimiser state, last.pt.prev); by default "
                              "only what later metrics need, the model weights, is kept")


def _workdir(args: argparse.Namespace) -> Path:
    return args.workdir if args.workdir is not None else Path(os.environ.get("CRLBENCH_WORKDIR", "runs"))


def _writable_workdir(args: argparse.Namespace) -> Path:
    """The work directory, checked writable before any work (see :func:`writable_folder`)."""
    source = ("--workdir" if args.workdir is not None else
              "$CRLBENCH_WORKDIR" if "CRLBENCH_WORKDIR" in os.environ else "the default, runs")
    return writable_folder(_workdir(args), f"the work directory ({source})")


def _tracking_uri(args: argparse.Namespace, workdir: Path) -> str | None:
    if args.no_tracking:
        return None
    if args.tracking_uri:
        return args.tracking_uri
    from crlbench.tracking.mlflow_runs import default_tracking_uri

    return default_tracking_uri(workdir)


def run_suite_command(args: argparse.Namespace) -> int:
    from crlbench.suites.suite_config import load_suite

    config = load_suite(args.config)
    return _run_suite(config, args)


def run_single_command(args: argparse.Namespace) -> int:
    return _run_suite(single_run_suite(args), args)


def single_run_suite(args: argparse.Namespace):
    """The one-cell suite of ``crlbench run``: the model as a suite names its model file (hyperparameters, per
    dataset values, reference batch size and run), then ``--set`` and ``--batch-size`` over it."""
    from crlbench.suites.model_files import model_file
    from crlbench.suites.suite_config import suite_from_dict

    check_run_flags(args)
    budget = {key: value for key, value in (("epochs", args.epochs), ("steps", args.steps)) if value is not None}
    values = _key_values(args.hyperparameters, "--set")
    # --set also over the model file's per-dataset values, which a suite's hyperparameters do not override
    model: dict[str, Any] = {"name": args.model, "hyperparameters": values, "per_dataset": {args.dataset: values}}
    if args.model_file is None:
        shipped = model_file(args.model) if args.model in registry.registry("model") else None
        if shipped is not None:
            model["config"] = str(shipped)
    elif args.model_file != "none":
        model["config"] = str(Path(args.model_file).resolve())
    if args.batch_size is not None:  # the flag wins over the model file's reference batch size
        model["training"] = {"batch_size": args.batch_size,
                             "per_dataset": {args.dataset: {"batch_size": args.batch_size}}}
    if args.label:
        model["label"] = args.label
    data = {
        "name": "run",
        "seeds": [args.seed],
        "budget": {**budget, "batch_size": args.batch_size or 64},
        "datasets": [{"name": args.dataset, "params": _key_values(args.dataset_params, "--data")}],
        "models": [model],
        "metrics": list(args.metrics or DEFAULT_METRICS),
    }
    if args.plugins:
        data["plugins"] = list(args.plugins)
    try:
        return suite_from_dict(data, where=RUN_SUITE)
    except ConfigError as error:  # what check_run_flags does not foresee, still named by its flag
        raise ConfigError(in_flag_terms(str(error), args)) from None


RUN_SUITE = "crlbench run"  # the source the one-cell suite's errors name, which in_flag_terms rephrases


def check_run_flags(args: argparse.Namespace) -> None:
    """``crlbench run``'s flags checked in their own terms, before its one-cell suite is built: the plugins
    imported, then each name, number and KEY=VALUE parameter (``--model 'foo': unknown model; known: ...``)."""
    registry.load_plugins(args.plugins, source="--plugins")
    _check_flag_name("--dataset", args.dataset, "dataset")
    _check_flag_name("--model", args.model, "model")
    if args.steps is None and args.epochs is None:
        raise ConfigError("give the training budget: --steps N (optimiser steps) or --epochs N, or both (whichever "
                          "ends first)")
    for flag, value in (("--steps", args.steps), ("--epochs", args.epochs), ("--batch-size", args.batch_size)):
        if value is not None and value <= 0:
            raise ConfigError(f"{flag} must be a positive integer; got {value}")
    if args.seed < 0:
        raise ConfigError(f"--seed must be a non-negative integer; got {args.seed}")
    for index, metric in enumerate(args.metrics or ()):
        _check_flag_name("--metric", metric, "metric")
        if metric in args.metrics[:index]:
            raise ConfigError(f"--metric {metric!r} is given twice")
    if args.model_file not in (None, "none") and not Path(args.model_file).is_file():
        raise ConfigError(f"--model-file {args.model_file!r}: no such file (a model YAML file, or 'none')")
    dataset_params = _key_values(args.dataset_params, "--data")
    _check_flag_params("--data", registry.registry("dataset").get(args.dataset).Params, dataset_params)
    hyperparameters = _key_values(args.hyperparameters, "--set")
    if hyperparameters:
        _check_flag_params("--set", registry.model_declaration(args.model).Config, hyperparameters)


def _check_flag_name(flag: str, value: str, kind: str) -> None:
    """A :class:`ConfigError` ``FLAG 'value': unknown KIND; known: ...`` unless ``value`` is a registered name."""
    from crlbench.core.errors import unknown_name

    names = registry.registry(kind)
    if value not in names:  # a listed name, or the alias of a renamed one (the suite resolves it, warning)
        message = str(unknown_name(kind, value, names.names()))  # "unknown KIND 'value'; known: ... (did you mean ...)"
        raise ConfigError(f"{flag} {value!r}: " + message.replace(f"unknown {kind} {value!r}", f"unknown {kind}", 1))


def _check_flag_params(flag: str, params_type: type, values: dict[str, Any]) -> None:
    """``values`` (from ``flag KEY=VALUE``) checked as ``params_type`` checks them: names, types, ranges."""
    from crlbench.core.params import parse_params

    try:
        parse_params(params_type, values, owner=flag)
    except TypeError:  # a field without a default, which a model file gives: the suite checks the whole set
        return
    except ConfigError as error:  # a dataclass's own range checks do not know the flag
        raise ConfigError(str(error) if str(error).startswith(flag) else f"{flag}: {error}") from None


def in_flag_terms(message: str, args: argparse.Namespace) -> str:
    """A suite-config error of ``crlbench run``'s one-cell suite with its key path (``key 'models[0]'``) named by
    the flag that set it (``--model 'foo'``); a message that names a file (a model file) is kept as it is."""
    prefix = f"{RUN_SUITE}: "
    if not message.startswith(prefix):
        return message
    rest = message[len(prefix):]
    flags = {"key 'models[0]'": f"--model {args.model!r}", "key 'datasets[0]'": f"--dataset {args.dataset!r}",
             "key 'budget'": "the budget (--steps, --epochs, --batch-size)", "key 'seeds'": "--seed",
             "key 'plugins'": "--plugins",
             **{f"key 'metrics[{index}]'": f"--metric {name!r}"
                for index, name in enumerate(args.metrics or DEFAULT_METRICS)}}
    for key, flag in flags.items():
        if rest.startswith(key):
            return flag + rest[len(key):]
    return rest


def _run_suite(config, args: argparse.Namespace) -> int:
    from crlbench.suites.suite import STATES, plan, run_suite

    workdir = _workdir(args)
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
    _writable_workdir(args)
    start = time.perf_counter()
    tracking_uri = _tracking_uri(args, workdir)
    with _keep_checkpoints(getattr(args, "keep_checkpoints", False)), _progress_lines(terminal_bar=True):
        summary = run_suite(config, workdir, workers=workers, tracking_uri=tracking_uri,
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
    if args.handler is run_single_command:
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


@contextlib.contextmanager
def _keep_checkpoints(keep: bool):
    """``--keep-checkpoints``: $CRLBENCH_KEEP_CHECKPOINTS for the run (worker processes inherit it)."""
    from crlbench.training.budget import KEEP_CHECKPOINTS  # no torch

    if not keep:
        yield
        return
    before = os.environ.get(KEEP_CHECKPOINTS)
    os.environ[KEEP_CHECKPOINTS] = "1"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(KEEP_CHECKPOINTS, None)
        else:
            os.environ[KEEP_CHECKPOINTS] = before


@contextlib.contextmanager
def _progress_lines(terminal_bar: bool):
    """Print the progress lines the library logs (crlbench.suites.progress: one per finished cell or trial) on
    stdout, where logs of the run collect; with ``terminal_bar``, not when stdout and stderr are both
    terminals, where the bar shows the same numbers."""
    from crlbench.suites.progress import PROGRESS_LOGGER

    logger = logging.getLogger(PROGRESS_LOGGER)
    terminal = all(getattr(stream, "isatty", lambda: False)() for stream in (sys.stdout, sys.stderr))
    handler = logging.NullHandler() if terminal_bar and terminal else logging.StreamHandler(sys.stdout)
    handler.setFormatter(logging.Formatter("%(message)s"))
    before = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False  # once, here: not again through --verbose's handler on stderr
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(before[0])
        logger.propagate = before[1]


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


def run_report_command(args: argparse.Namespace) -> int:
    from crlbench.reports.pooling import check_pooling
    from crlbench.reports.report import write_report
    from crlbench.scores import select_records
    from crlbench.suites.results import load_records
    from crlbench.suites.runner import provenance

    if args.source.suffix in (".yaml", ".yml"):
        from crlbench.suites.suite import suite_records
        from crlbench.suites.suite_config import load_suite

        config = load_suite(args.source)
        records = suite_records(config, _workdir(args))
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
                         provenance={"report_commit": provenance()["git_commit"]}, suite=suite, pool=args.pool)
    print(f"wrote {len(files)} files to {args.out} in {time.perf_counter() - start:.1f} s ({len(records)} cells)")
    return 0


def run_compare_command(args: argparse.Namespace) -> int:
    from crlbench.reports.compare import compare_scores, render_markdown
    from crlbench.scores import load_scores

    if len(args.sources) > 2:
        raise ConfigError(f"compare: give one or two sources, not {len(args.sources)}")
    if len(args.sources) == 1 and not (args.suites or args.labels):
        raise ConfigError("compare: give a second source, or split one with --suites A B or --labels A B")
    sources = args.sources if len(args.sources) == 2 else args.sources * 2  # one source serves both sides
    sides, names = [], []
    for index, source in enumerate(sources):
        suites = [args.suites[index]] if args.suites else None
        labels = [args.labels[index]] if args.labels else None
        sides.append(load_scores(source, workdir=args.workdir, suites=suites, labels=labels,
                                 check_settings=not args.pool))
        names.append(" ".join([str(source)] + [f"suite {name}" for name in suites or []]
                              + [f"label {name}" for name in labels or []]) + f" ({sides[-1]['hash'].nunique()} cells)")
    try:
        table = compare_scores(*sides, scores=args.metrics, labels=tuple(args.labels) if args.labels else None)
    except ValueError as error:
        raise ConfigError(str(error)) from None
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
        study = stored_study(config, storage=args.storage, study_name=args.study_name, workdir=_workdir(args))
        states = state_counts(study)
        done = "in its storage; no trial run (--export-only)"
    else:
        workdir = _writable_workdir(args)
        start = time.perf_counter()
        with _progress_lines(terminal_bar=False):  # a line per trial, on a terminal too: there is no bar
            study = tune(config, storage=args.storage, study_name=args.study_name, n_trials=args.n_trials,
                         workers=args.workers, workdir=workdir, tracking_uri=_tracking_uri(args, workdir))
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


def run_ui_command(args: argparse.Namespace) -> int:
    """Start the MLflow UI and, once its server answers HTTP, print each crlbench experiment's URL in the
    model-training view (crlbench.tracking.ui; MLflow 3 opens on its GenAI pages otherwise). The server runs
    under a supervisor (crlbench.core.supervisor) that holds its process group: on SIGTERM, SIGHUP or Ctrl-C
    the whole group gets SIGTERM (SIGKILL after a few seconds), and when this process dies however it dies the
    supervisor takes the group down. A port already in use is refused before anything starts; a server that
    exits, or does not answer within --start-timeout seconds, before any URL is printed is an error."""
    import subprocess

    from crlbench.tracking.mlflow_runs import _client, default_tracking_uri, ui_command
    from crlbench.tracking.ui import (HEALTH, check_port_free, experiment_url, mark_model_training, stop_group,
                                      ui_experiments, wait_until_answering)

    if args.start_timeout <= 0:
        raise ConfigError(f"--start-timeout must be a positive number of seconds; got {args.start_timeout:g}")
    workdir = _workdir(args)
    check_port_free(args.port)
    _client(default_tracking_uri(workdir))  # a new store is created whole, under its lock, before the server opens it
    command = ui_command(workdir, port=args.port)
    base = f"http://127.0.0.1:{args.port}"
    experiments = ui_experiments(workdir)
    mark_model_training(workdir, experiments)
    print(f"starting the MLflow UI (waiting up to {args.start_timeout:g} s for it to answer at {base}): "
          + " ".join(command), flush=True)
    # the supervisor leads the server's process group (uvicorn workers and all) and dies with this process
    server = subprocess.Popen([sys.executable, "-m", "crlbench.core.supervisor", *command])

    def stop(signum, frame):  # noqa: ARG001
        raise _Stop(signum)

    previous = {signum: signal.signal(signum, stop) for signum in (signal.SIGTERM, signal.SIGHUP)}
    try:
        seconds = wait_until_answering(base + HEALTH, server, timeout_s=args.start_timeout)
        print(f"ready after {seconds:.0f} s; open (runs in MLflow's model-training view, cells sorted by name):")
        for experiment_id, name in experiments:
            print(f"  {name}: {experiment_url(base, experiment_id)}")
        if not experiments:
            print(f"  no crlbench experiment in {workdir} yet: {experiment_url(base)}")
        sys.stdout.flush()
        return server.wait()
    except (_Stop, KeyboardInterrupt) as stopped:
        stop_group(server)
        return 128 + stopped.signum if isinstance(stopped, _Stop) else EXIT_OK
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if server.poll() is None:
            stop_group(server)


class _Stop(Exception):
    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _key_values(items: list[str], flag: str) -> dict[str, Any]:
    values = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"{flag} {item!r}: expected KEY=VALUE")
        values[key] = yaml.safe_load(text)
    return values


def _dataset_arguments(command: argparse.ArgumentParser) -> None:
    command.add_argument("dataset", help="a registered dataset name, or a dataset config YAML file")
    command.add_argument("--size", type=int, help="image side in pixels (default: 64)")
    command.add_argument("--seed", type=int, help="dataset seed (default: 0)")
    command.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
        help="any other dataset parameter, e.g. --set split_rule=random (repeatable)",
    )
    command.add_argument("--workdir", type=Path,
                         help="work directory; data is cached in WORKDIR/data (default: $CRLBENCH_WORKDIR or runs)")


def run_list(args: argparse.Namespace) -> int:
    registry.load_plugins(args.plugins, source="--plugins")
    kinds = [KIND_CHOICES[args.kind]] if args.kind else list(KIND_CHOICES.values())
    for kind in kinds:
        entries = registry.registry(kind).entries()
        print(f"{kind}s:")
        if not entries:
            print("  (none registered)")
        for entry in entries:
            print(f"  {entry.name:<20} {entry.target}  [{entry.provider}]")
    return 0


def run_generate(args: argparse.Namespace) -> int:
    dataset = _build_dataset(args)
    start = time.perf_counter()
    sizes = {name: len(dataset.split(name)) for name in dataset.split_names}
    seconds = time.perf_counter() - start
    verb = "loaded from cache" if dataset.loaded_from_cache else "generated"
    print(f"{dataset.name} v{dataset.version}: {verb} in {seconds:.1f} s -> {dataset.cache_path()}")
    print("  splits: " + ", ".join(f"{name} {size}" for name, size in sizes.items()))
    print("  factors: " + ", ".join(dataset.card.factor_names))
    return 0


def run_show(args: argparse.Namespace) -> int:
    from PIL import Image

    from crlbench.reports.preview import dataset_preview

    if not 0 < args.count <= MAX_COUNT:
        raise ConfigError(f"--count must be an integer from 1 to {MAX_COUNT}; got {args.count}")
    formats = Image.registered_extensions()
    if args.out.suffix.lower() not in formats:
        raise ConfigError(f"--out {args.out}: unknown image format; use a file name ending in .png (or {', '.join(sorted(formats)[:8])}, ...)")
    dataset = _build_dataset(args)
    image = dataset_preview(dataset, split=args.split, count=args.count)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    image.save(args.out)
    print(f"wrote {args.out} ({image.width}x{image.height})")
    return 0


def run_card(args: argparse.Namespace) -> int:
    card = _build_dataset(args).card.to_dict()
    print(yaml.safe_dump(json.loads(json.dumps(card)), sort_keys=False, width=100))
    return 0


def _build_dataset(args: argparse.Namespace) -> Any:
    if args.dataset.endswith((".yaml", ".yml")):
        config = load_dataset_config(args.dataset)
    else:
        config = DatasetConfig(args.dataset)
    overrides = {key: value for key, value in (("size", args.size), ("seed", args.seed)) if value is not None}
    overrides.update(_key_values(args.overrides, "--set"))
    cache_dir = None if args.workdir is None else args.workdir / "data"  # None: the dataset's default
    return config.build(cache_dir=cache_dir, **overrides)
