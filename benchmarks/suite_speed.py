"""Suite speed on this machine: the smoke suite's first run, its rerun, and report generation.

Goals (issue 5): smoke suite under 5 minutes on 2 cores, a rerun of a finished suite under 5% of
its first run, a report under 30 s. Pass ``--report-only SUITE --workdir DIR`` to time only the
report of a suite that has already run (the quick suite, say), and ``--finished DIR`` to time only the
``--dry-run`` and the rerun of a finished smoke work directory, with the heavy libraries they import
(issue 17: under a second, no torch, scipy or numba).
Run: ``.venv/bin/python benchmarks/suite_speed.py [--workers 2]``.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def timed(*args: str) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "crlbench", *args], check=False, cwd=ROOT,
                   env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"}, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_imports(suite: str, workdir: str) -> list[str]:
    """The heavy libraries a ``--dry-run`` of ``suite`` in ``workdir`` imports."""
    code = ("import sys\nfrom crlbench.cli import main\n"
            f"main(['suite', {suite!r}, '--workdir', {workdir!r}, '--dry-run'])\n"
            "print('heavy:', *(m for m in ('torch', 'scipy', 'numba', 'sklearn', 'mlflow') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    lines = [line for line in done.stdout.splitlines() if line.startswith("heavy:")]
    return lines[-1].split()[1:] if lines else ["(the dry run failed)"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--workers", default="2")
    parser.add_argument("--report-only", metavar="SUITE")
    parser.add_argument("--workdir")
    parser.add_argument("--finished", metavar="DIR", help="a finished smoke work directory: time only its dry run and rerun")
    args = parser.parse_args()
    if args.finished:
        suite = str(ROOT / "configs" / "suites" / "smoke.yaml")
        dry = min(timed("suite", suite, "--workdir", args.finished, "--dry-run") for _ in range(3))
        rerun = min(timed("suite", suite, "--workdir", args.finished) for _ in range(3))
        print(f"finished smoke suite, {os.cpu_count()} cores (best of 3): --dry-run {dry:.2f} s, rerun {rerun:.2f} s; "
              f"heavy modules imported by the dry run: {', '.join(heavy_imports(suite, args.finished)) or 'none'}")
        return
    if args.report_only:
        with tempfile.TemporaryDirectory() as out:
            print(f"report of {args.report_only}: {timed('report', args.report_only, '--workdir', args.workdir, '--out', out):.1f} s")
        return
    suite = str(ROOT / "configs" / "suites" / "smoke.yaml")
    with tempfile.TemporaryDirectory() as workdir:
        first = timed("suite", suite, "--workdir", workdir, "--workers", args.workers)
        again = timed("suite", suite, "--workdir", workdir, "--workers", args.workers)
        report = timed("report", suite, "--workdir", workdir, "--out", str(Path(workdir) / "report"))
    print(f"smoke suite, {args.workers} workers, {os.cpu_count()} cores: first run {first:.1f} s "
          f"(data generation and MLflow store creation included), rerun {again:.1f} s "
          f"({100 * again / first:.1f}% of the first), report {report:.1f} s")


if __name__ == "__main__":
    main()
