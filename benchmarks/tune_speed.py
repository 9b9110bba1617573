"""Tuning speed on this machine: what a trial costs outside training, and 1 vs 2 workers.

Goals (issue 6): under 1 s per trial outside the runner's recorded train/encode/metrics time, and
2 workers finishing a fixed number of trials in at most 0.6x the wall time of 1 worker (2 cores).
Each study runs in a fresh process, as ``crlbench tune`` would, after a one-trial warm-up study
that generates the dataset into the shared cache. The model is beta-VAE on 32x32 Pendulum.
Run: ``.venv/bin/python benchmarks/tune_speed.py [--trials 8] [--steps 40]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def tune_file(directory: Path, steps: int) -> Path:
    path = directory / "speed.yaml"
    path.write_text(yaml.safe_dump({
        "name": "speed",
        "model": {"name": "beta_vae"},
        "dataset": {"name": "pendulum", "params": {"size": 32}},
        "search_space": {"lr": {"type": "float", "low": 1e-4, "high": 1e-3, "log": True},
                         "beta": {"type": "float", "low": 1.0, "high": 8.0}},
        "objective": {"metric": "mcc@pearson.mcc", "direction": "maximize"},
        "seeds": [0],
        "budget": {"steps": steps, "batch_size": 32},
        "sampler": {"type": "random", "seed": 0},
        "evaluation": {"n_train": 200, "n_test": 200, "interventions": 2},
    }))
    return path


def run_study(path: Path, workdir: Path, name: str, trials: int, workers: int) -> dict:
    """Run one study in a fresh process; its wall time and, per trial, wall and runner seconds."""
    code = textwrap.dedent(f"""
        import json, time
        import optuna
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        from crlbench.tuning.tune import load_tune, tune
        start = time.perf_counter()
        study = tune(load_tune({str(path)!r}), workdir={str(workdir)!r}, study_name={name!r},
                     n_trials={trials}, workers={workers})
        wall = time.perf_counter() - start
        rows = [((t.datetime_complete - t.datetime_start).total_seconds(), t.user_attrs.get("crlbench.runner_s", 0.0),
                 t.state.name, t.user_attrs.get("crlbench.worker")) for t in study.trials]
        print(json.dumps({{"tune_s": wall, "trials": rows}}))
    """)
    env = {**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"study {name} failed:\n{done.stderr}")
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["process_s"] = time.perf_counter() - start
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--steps", type=int, default=40, help="training steps per trial (batches of 32)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        workdir = Path(folder)
        path = tune_file(workdir, args.steps)
        run_study(path, workdir, "warm-up", 1, 1)
        one = run_study(path, workdir, "one-worker", args.trials, 1)
        two = run_study(path, workdir, "two-workers", args.trials, 2)
    overheads = [wall - runner for wall, runner, _, _ in one["trials"]]
    between = (one["tune_s"] - sum(wall for wall, _, _, _ in one["trials"])) / args.trials
    states = {state for _, _, state, _ in one["trials"] + two["trials"]}
    print(f"{args.trials} trials of beta-VAE, {args.steps} steps each, {os.cpu_count()} cores; trial states: {sorted(states)}")
    print(f"overhead per trial outside train/encode/metrics: median {statistics.median(overheads):.3f} s, "
          f"max {max(overheads):.3f} s (first trial of the process: {overheads[0]:.3f} s); "
          f"between trials (sampler, storage): {between:.3f} s")
    print(f"wall time, whole process: 1 worker {one['process_s']:.1f} s, 2 workers {two['process_s']:.1f} s "
          f"= {two['process_s'] / one['process_s']:.2f}x; tune() alone: {one['tune_s']:.1f} s vs "
          f"{two['tune_s']:.1f} s = {two['tune_s'] / one['tune_s']:.2f}x")
    for label, result in (("1 worker", one), ("2 workers", two)):
        by_worker: dict[str, list[float]] = {}
        for _, runner, _, worker in result["trials"]:
            by_worker.setdefault(worker, []).append(runner)
        print(f"{label}: runner seconds per trial by process (the first includes torch's warm-up): "
              + "; ".join(" ".join(f"{value:.1f}" for value in values) for values in by_worker.values()))


if __name__ == "__main__":
    main()
