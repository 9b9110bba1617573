"""The ``crlbench`` command line: thin wrappers that parse, call the library and print.

``crlbench.cli:console`` is the console script and ``python -m crlbench``; :func:`main` runs one command
from its arguments. Each group of commands has its module: ``list`` and ``data`` (:mod:`crlbench.cli.data`),
``suite`` (:mod:`crlbench.cli.suite`), ``run`` (:mod:`crlbench.cli.single_run`), ``report`` and ``compare``
(:mod:`crlbench.cli.reporting`), ``tune`` (:mod:`crlbench.cli.tuning`) and ``ui`` (:mod:`crlbench.cli.mlflow_ui`);
what they share, the exit statuses included, is :mod:`crlbench.cli.common`. The names the command line had
before it was split are importable from here.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import warnings

from crlbench import __version__
from crlbench.cli.common import (EPILOG, EXIT_BROKEN_PIPE, EXIT_FAILED, EXIT_FAILED_MAX, EXIT_INPUT, EXIT_INTERNAL,
                                 EXIT_INTERRUPTED, EXIT_OK, EXIT_PARTIAL, READ_ONLY, failed_status, unwritable,
                                 writable_folder)
from crlbench.cli.data import (KIND_CHOICES, MAX_COUNT, add_data_commands, add_list_command, run_card, run_generate,
                               run_list, run_show)
from crlbench.cli.mlflow_ui import add_ui_command, run_ui_command
from crlbench.cli.reporting import add_compare_command, add_report_command, run_compare_command, run_report_command
from crlbench.cli.single_run import (DEFAULT_METRICS, RUN_SUITE, add_run_command, check_run_flags, in_flag_terms,
                                     run_single_command, single_run_suite)
from crlbench.cli.suite import EXECUTOR_DEFAULTS, add_suite_command, run_suite_command
from crlbench.cli.tuning import add_tune_command, run_tune_command
from crlbench.core.errors import CrlbenchError

__all__ = ["DEFAULT_METRICS", "EPILOG", "EXECUTOR_DEFAULTS", "EXIT_BROKEN_PIPE", "EXIT_FAILED", "EXIT_FAILED_MAX",
           "EXIT_INPUT", "EXIT_INTERNAL", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_PARTIAL", "KIND_CHOICES", "MAX_COUNT",
           "READ_ONLY", "RUN_SUITE", "build_parser", "check_run_flags", "console", "failed_status", "in_flag_terms",
           "main", "single_run_suite", "unwritable", "writable_folder",
           # each command's handler
           "run_card", "run_compare_command", "run_generate", "run_list", "run_report_command", "run_show",
           "run_single_command", "run_suite_command", "run_tune_command", "run_ui_command"]

DESCRIPTION = "The ``crlbench`` command line: thin wrappers that parse, call the library and print."  # --help's


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
    parser = argparse.ArgumentParser(prog="crlbench", description=DESCRIPTION, epilog=EPILOG,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    parser.add_argument("--version", action="version", version=f"crlbench {__version__}")
    commands = parser.add_subparsers(title="commands")
    for add in (add_list_command, add_data_commands, add_suite_command, add_run_command, add_report_command,
                add_compare_command, add_tune_command, add_ui_command):
        add(commands)
    return parser
