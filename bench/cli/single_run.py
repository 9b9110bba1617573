"""``crlbench run``: one cell from flags, as the one-cell suite a suite naming the model's file would make
(:func:`single_run_suite`), its flags checked in their own terms before the suite is built
(:func:`check_run_flags`), and the suite config's errors phrased in the flags' terms (:func:`in_flag_terms`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from crlbench.cli.common import EPILOG, keep_checkpoints_argument, key_values, work_arguments
from crlbench.cli.suite import run_suite_and_print
from crlbench.core import registry
from crlbench.core.errors import ConfigError

DEFAULT_METRICS = ("dci@reg", "mcc@pearson", "irs@dlib", "r2@linear", "mic@aligned", "counterfactual@probe")


def add_run_command(commands: Any) -> None:
    """``crlbench run``."""
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
    work_arguments(single)
    keep_checkpoints_argument(single)
    single.set_defaults(handler=run_single_command)


def run_single_command(args: argparse.Namespace) -> int:
    return run_suite_and_print(single_run_suite(args), args, print_cells=True)


def single_run_suite(args: argparse.Namespace):
    """The one-cell suite of ``crlbench run``: the model as a suite names its model file (hyperparameters, per
    dataset values, reference batch size and run), then ``--set`` and ``--batch-size`` over it."""
    from crlbench.suites.model_files import model_file
    from crlbench.suites.suite_config import suite_from_dict

    check_run_flags(args)
    budget = {key: value for key, value in (("epochs", args.epochs), ("steps", args.steps)) if value is not None}
    values = key_values(args.hyperparameters, "--set")
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
        "datasets": [{"name": args.dataset, "params": key_values(args.dataset_params, "--data")}],
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
    dataset_params = key_values(args.dataset_params, "--data")
    _check_flag_params("--data", registry.registry("dataset").get(args.dataset).Params, dataset_params)
    hyperparameters = key_values(args.hyperparameters, "--set")
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
