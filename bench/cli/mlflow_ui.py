"""``crlbench ui``: the MLflow UI of a work directory, under a supervisor that takes the server's process group
down with it, its URLs printed once the server answers, on MLflow's model-training view.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from crlbench.cli.common import EXIT_OK, chosen_workdir
from crlbench.core.errors import ConfigError
from crlbench.tracking.ui import READY_TIMEOUT_S


def add_ui_command(commands: Any) -> None:
    """``crlbench ui``."""
    ui = commands.add_parser("ui", help="start the MLflow UI on 127.0.0.1 for a work directory")
    ui.add_argument("--workdir", type=Path, default=None, help="work directory (default: $CRLBENCH_WORKDIR or runs)")
    ui.add_argument("--port", type=int, default=5000, help="port of the UI on 127.0.0.1 (default: 5000)")
    ui.add_argument("--start-timeout", type=float, default=READY_TIMEOUT_S, metavar="SECONDS",
                    help="how long the server may take to answer before crlbench ui gives up and stops it "
                         f"(default: {READY_TIMEOUT_S:g})")
    ui.set_defaults(handler=run_ui_command)


def run_ui_command(args: argparse.Namespace) -> int:
    """Start the MLflow UI and, once its server answers HTTP, print each crlbench experiment's URL in the
    model-training view (crlbench.tracking.ui; MLflow 3 opens on its GenAI pages otherwise). The server runs
    under a supervisor (crlbench.core.supervisor) that holds its process group: on SIGTERM, SIGHUP or Ctrl-C
    the whole group gets SIGTERM (SIGKILL after a few seconds), and when this process dies however it dies the
    supervisor takes the group down. A port already in use is refused before anything starts; a server that
    exits, or does not answer within --start-timeout seconds, before any URL is printed is an error."""
    import subprocess

    from crlbench.tracking.mlflow_runs import default_tracking_uri, ui_command
    from crlbench.tracking.store import mlflow_client
    from crlbench.tracking.ui import (HEALTH, check_port_free, experiment_url, mark_model_training, stop_group,
                                      ui_experiments, wait_until_answering)

    if args.start_timeout <= 0:
        raise ConfigError(f"--start-timeout must be a positive number of seconds; got {args.start_timeout:g}")
    workdir = chosen_workdir(args)
    check_port_free(args.port)
    mlflow_client(default_tracking_uri(workdir))  # a new store is created whole, under its lock, before the server opens it
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
