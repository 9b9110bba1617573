"""Chaos soak: two launchers share one work directory while a seeded driver kills, pauses and corrupts.

Each round starts two launchers (``run_suite`` with two local workers each, MLflow on SQLite, heartbeats
every ``--heartbeat`` s, leases stale after ``--stale`` s) on a fresh work directory holding a small suite
of slow, cheap cells (the test plugin's linear autoencoder, which sleeps in every step). Until the round's
cells are done, a driver seeded with ``--seed`` sends random events to the launchers and their workers:
SIGKILL, SIGSTOP then SIGCONT up to twice the stale time later (so leases go stale and are taken over),
and corrupt files (a checkpoint, a metric file, a history or a record cut to half its size); a killed
launcher is replaced. Then everything is resumed, a last launcher runs with ``--retry-failed`` (the
documented recovery for cells whose worker was killed), and the invariants are checked:

- one final record per cell, ok, with exactly the scores of an undisturbed run of the same suite;
- every record carries a lease token no larger than the newest issued for its cell (crlbench.core.fencing);
- each record logged exactly once: one FINISHED MLflow run per record, the final one included (a record
  cut in half is computed again, a new record, and gets a run of its own);
- no process of the soak is left;
- nothing written outside the soak's folder: the fresh HOME and TMPDIR given to every process stay empty.

Rounds repeat until ``--minutes`` have passed. The seed and the number of events survived are printed,
so a failure replays: ``python benchmarks/chaos_soak.py --seed N``. Exit status 1 when an invariant fails.
Run: ``.venv/bin/python benchmarks/chaos_soak.py [--minutes 8] [--seed N]`` (``make soak``).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PLUGINS = ROOT / "tests" / "plugins"
LAUNCHER = textwrap.dedent("""
    import logging, sys
    from crlbench.suites.suite import run_suite
    from crlbench.suites.suite_config import load_suite
    from crlbench.tracking.mlflow_runs import MlflowTracking

    if __name__ == "__main__":
        logging.basicConfig(level=logging.WARNING, format="%(message)s")
        suite, workdir, heartbeat, stale, retry = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4]), sys.argv[5] == "1"
        summary = run_suite(load_suite(suite), workdir, workers=2, progress=False, retry_failed=retry,
                            tracking=MlflowTracking("sqlite:///" + workdir + "/mlflow.db"), heartbeat_s=heartbeat,
                            stale_after_s=stale)
        print("summary ok", summary.ok, "failed", summary.failed, flush=True)
""")
CORRUPTIBLE = ("checkpoint/last.pt", "history.json", "result.json", "metrics/*.json")
ROUND_LIMIT_S = 600.0  # a round's launchers must end this long after the chaos does (else a violation, not a hang)


def suite(cells: int) -> dict:
    return {"name": "soak", "plugins": ["crl_plugin_models"], "seeds": list(range(cells)),
            "budget": {"steps": 40, "batch_size": 16},  # 10 epochs of 4 steps, a checkpoint after each
            "datasets": [{"name": "causal_circuit", "params": {"size": 32, "n_train": 64, "n_val": 16, "n_test": 48}}],
            "models": [{"name": "linear_ae", "hyperparameters": {"step_seconds": 0.15}}],
            "metrics": ["mcc@pearson"], "evaluation": {"n_train": 40, "n_test": 40, "interventions": 2}}


class Soak:
    def __init__(self, root: Path, seed: int, heartbeat: float, stale: float):
        self.root, self.rng, self.heartbeat, self.stale = root, random.Random(seed), heartbeat, stale
        self.home, self.tmp = root / "home", root / "tmp"
        self.home.mkdir()
        self.tmp.mkdir()
        self.suite = root / "suite.yaml"
        self.script = root / "launcher.py"
        self.script.write_text(LAUNCHER)
        self.env = {**os.environ, "HOME": str(self.home), "TMPDIR": str(self.tmp), "OMP_NUM_THREADS": "1",
                    "PYTHONPATH": os.pathsep.join([str(PLUGINS), os.environ.get("PYTHONPATH", "")]),
                    "MLFLOW_DISABLE_TELEMETRY": "true"}
        self.sessions: list[int] = []  # every launcher's session id (= its pid)
        self.paused: list[tuple[int, float]] = []  # (pid, when to resume it)
        self.events: Counter = Counter()

    def launch(self, workdir: Path, retry: bool = False) -> subprocess.Popen:
        process = subprocess.Popen([sys.executable, str(self.script), str(self.suite), str(workdir), str(self.heartbeat),
                                    str(self.stale), "1" if retry else "0"], env=self.env, cwd=self.root,
                                   start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.sessions.append(process.pid)
        return process

    def processes(self) -> list[int]:
        """Live processes of every launcher's session (workers, resource trackers, the launchers)."""
        found = []
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                fields = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if fields[0] != "Z" and int(fields[3]) in self.sessions:  # state, ppid, pgrp, session
                found.append(int(entry))
        return found

    def event(self, launchers: list[subprocess.Popen], workdir: Path) -> None:
        kind = self.rng.choices(["kill launcher", "kill worker", "pause", "corrupt"], weights=[1, 2, 4, 3])[0]
        live = [p for p in launchers if p.poll() is None]
        others = sorted(set(self.processes()) - {p.pid for p in live})
        if kind == "kill launcher" and live:
            self._signal(self.rng.choice(live).pid, signal.SIGKILL)
        elif kind == "kill worker" and others:
            self._signal(self.rng.choice(others), signal.SIGKILL)
        elif kind == "pause" and (live or others):
            pid = self.rng.choice([p.pid for p in live] + others)
            if self._signal(pid, signal.SIGSTOP):
                self.paused.append((pid, time.monotonic() + self.rng.uniform(0.5, 2 * self.stale)))
        elif kind == "corrupt":
            files = [path for pattern in CORRUPTIBLE for path in workdir.glob(f"cells/*/{pattern}")]
            if not files:
                return
            target = self.rng.choice(sorted(files))
            try:
                target.write_bytes(target.read_bytes()[: target.stat().st_size // 2])
            except OSError:
                return
        else:
            return
        self.events[kind] += 1

    def resume_due(self, everything: bool = False) -> None:
        now, left = time.monotonic(), []
        for pid, when in self.paused:
            if everything or when <= now:
                self._signal(pid, signal.SIGCONT)
            else:
                left.append((pid, when))
        self.paused = left

    def _signal(self, pid: int, signum: int) -> bool:
        try:
            os.kill(pid, signum)
            return True
        except (ProcessLookupError, PermissionError):
            return False

    def round(self, workdir: Path, deadline: float) -> str | None:
        """One round; what went wrong with the round itself (it did not finish in time), else None."""
        launchers = [self.launch(workdir), self.launch(workdir)]
        limit = max(deadline, time.monotonic()) + ROUND_LIMIT_S
        while any(p.poll() is None for p in launchers):
            if time.monotonic() > limit:
                self.resume_due(everything=True)
                return f"its launchers were still running {ROUND_LIMIT_S:.0f} s after the chaos ended"
            time.sleep(self.rng.uniform(0.5, 3.0))
            self.resume_due()
            if time.monotonic() < deadline:
                self.event(launchers, workdir)
                launchers = [p for p in launchers if p.poll() is None or p.returncode == 0]
                while len(launchers) < 2 and not self.done(workdir):  # a killed launcher is replaced
                    launchers.append(self.launch(workdir))
        self.resume_due(everything=True)
        for _ in range(3):  # the documented recovery: --retry-failed runs the killed workers' cells again
            final = self.launch(workdir, retry=True)
            try:
                final.wait(timeout=ROUND_LIMIT_S)
            except subprocess.TimeoutExpired:
                return f"a --retry-failed launcher was still running after {ROUND_LIMIT_S:.0f} s"
            if self.done(workdir):
                break
        return None

    def done(self, workdir: Path) -> bool:
        records = [read(path) for path in workdir.glob("cells/*/result.json")]
        return len(records) == len(suite(self.cells)["seeds"]) and all(r and r.get("status") == "ok" for r in records)


def read(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def scores_by_cell(workdir: Path) -> dict[str, dict]:
    return {path.parent.name: (read(path) or {}).get("scores") for path in workdir.glob("cells/*/result.json")}


def violations(soak: Soak, workdir: Path, reference: dict[str, dict]) -> list[str]:
    from mlflow import MlflowClient

    from crlbench.core.fencing import newest_token

    found = []
    records = {path.parent.name: read(path) for path in workdir.glob("cells/*/result.json")}
    if set(records) != set(reference):
        found.append(f"cells with a record: {sorted(records)} != {sorted(reference)}")
    for cell, record in records.items():
        if not record or record.get("status") != "ok":
            found.append(f"cell {cell}: not ok: {record and record.get('status')}")
        elif record["scores"] != reference.get(cell):
            found.append(f"cell {cell}: scores differ from the undisturbed run's")
        elif record.get("lease_token", 0) > newest_token(workdir / "cells" / cell):
            found.append(f"cell {cell}: lease token {record.get('lease_token')} above the newest issued")
    client = MlflowClient(tracking_uri=f"sqlite:///{workdir}/mlflow.db")
    logged = Counter((run.data.tags.get("crlbench.cell_hash"), run.data.tags.get("crlbench.finished_at"))
                     for run in client.search_runs([e.experiment_id for e in client.search_experiments()],
                                                   "attributes.status = 'FINISHED'")
                     if run.data.tags.get("crlbench.cell_hash"))
    for (cell, finished_at), count in logged.items():
        if count > 1:
            found.append(f"cell {cell}: its record of {finished_at} has {count} FINISHED MLflow runs")
    for cell, record in records.items():
        finished_at = ((record or {}).get("provenance") or {}).get("finished_at")
        if logged[(cell, finished_at)] != 1:
            found.append(f"cell {cell}: its final record ({finished_at}) has {logged[(cell, finished_at)]} "
                         f"FINISHED MLflow runs")
    deadline = time.monotonic() + 20
    while (left := soak.processes()) and time.monotonic() < deadline:
        time.sleep(0.2)
    if left:
        found.append(f"processes left: {left}")
    for folder in (soak.home, soak.tmp):
        written = sorted(str(path.relative_to(folder)) for path in folder.rglob("*"))
        if written:
            found.append(f"written outside the work directory, in {folder.name}: {written[:10]}")
    return found


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=8.0, help="chaos lasts this long (then the last round ends)")
    parser.add_argument("--seed", type=int, default=None, help="the driver's seed (default: from the clock, printed)")
    parser.add_argument("--cells", type=int, default=10)
    parser.add_argument("--heartbeat", type=float, default=0.5)
    parser.add_argument("--stale", type=float, default=3.0)
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else int(time.time()) % 100000
    print(f"chaos soak: seed {seed}, {args.minutes} min, {args.cells} cells a round, heartbeat {args.heartbeat} s, "
          f"stale after {args.stale} s", flush=True)
    root = Path(tempfile.mkdtemp(prefix="crlbench-soak-"))
    soak = Soak(root, seed, args.heartbeat, args.stale)
    soak.cells = args.cells
    soak.suite.write_text(yaml.safe_dump(suite(args.cells)))
    problems: list[str] = []
    try:
        reference_dir = root / "reference"
        soak.launch(reference_dir).wait(timeout=900)
        reference = scores_by_cell(reference_dir)
        if len(reference) != args.cells or None in reference.values():
            print(f"the undisturbed run did not finish its {args.cells} cells", flush=True)
            return 1
        deadline, rounds = time.monotonic() + 60 * args.minutes, 0
        while time.monotonic() < deadline:
            rounds += 1
            workdir = root / f"round-{rounds}"
            stuck = soak.round(workdir, deadline)
            found = [stuck] if stuck else violations(soak, workdir, reference)
            problems += [f"round {rounds}: {text}" for text in found]
            print(f"round {rounds}: {sum(soak.events.values())} events so far ({dict(soak.events)}); "
                  f"{'ok' if not found else f'{len(found)} violation(s)'}", flush=True)
            if found:
                break
    finally:
        soak.resume_due(everything=True)
        for pid in soak.processes():
            soak._signal(pid, signal.SIGKILL)
    total = sum(soak.events.values())
    print(f"seed {seed}: {total} events survived in {rounds} round(s) ({dict(soak.events)})", flush=True)
    for text in problems:
        print("VIOLATION", text, flush=True)
    if not problems:
        shutil.rmtree(root, ignore_errors=True)
    else:
        print(f"the soak's files are kept in {root}", flush=True)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
