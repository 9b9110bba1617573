"""How long ``crlbench suite --dry-run`` takes to plan a 10,000-cell suite (goal: under 5 s).

Writes a suite of the seven built-in methods and the four reference rows on Pendulum with 910 seeds
(10,010 cells) into a temporary folder, times ``crlbench suite FILE --workdir EMPTY --dry-run`` in a fresh
process (wall seconds, best of ``--repeats``), and with ``--profile`` prints the functions that take the
largest share of one in-process planning (cProfile, cumulative time). Timings on a machine shared with
other jobs are slower: say which when quoting them.
Run: ``.venv/bin/python benchmarks/dry_run_speed.py [--seeds 910] [--repeats 3] [--profile]``.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
MODELS = ("icm_vae", "causal_vae", "scm_vae", "dear", "beta_vae", "ivae", "ilcm",
          "copy", "mean_image", "supervised", "untrained")


def write_suite(folder: Path, seeds: int) -> Path:
    suite = {"name": "dry-run-speed", "seeds": list(range(seeds)), "budget": {"epochs": 30, "batch_size": 64},
             "datasets": [{"config": str(ROOT / "configs" / "datasets" / "pendulum.yaml"), "params": {"size": 32}}],
             "models": [{"config": str(ROOT / "configs" / "models" / f"{name}.yaml")} for name in MODELS],
             "metrics": ["dci@reg", "mcc@pearson", "counterfactual@probe"]}
    path = folder / "suite.yaml"
    path.write_text(yaml.safe_dump(suite))
    return path


def timed_dry_run(suite: Path, workdir: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "crlbench", "suite", str(suite), "--workdir", str(workdir), "--dry-run"],
                   check=True, stdout=subprocess.DEVNULL, env={**os.environ, "MLFLOW_DISABLE_TELEMETRY": "true"})
    return time.perf_counter() - start


def profile(suite: Path, workdir: Path, top: int = 12) -> str:
    from crlbench.suites.suite import plan
    from crlbench.suites.suite_config import load_suite

    profiler = cProfile.Profile()
    profiler.enable()
    planned = plan(load_suite(suite), workdir)
    profiler.disable()
    out = io.StringIO()
    pstats.Stats(profiler, stream=out).sort_stats("cumulative").print_stats(top)
    return f"planned {len(planned)} cells in process\n" + out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=910, help="seeds per model (11 models: 910 -> 10,010 cells)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profile", action="store_true", help="also print a cProfile of one planning")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        suite = write_suite(Path(tmp), args.seeds)
        workdir = Path(tmp) / "work"
        times = [timed_dry_run(suite, workdir) for _ in range(args.repeats)]
        cells = args.seeds * len(MODELS)
        print(f"dry run of {cells:,} cells: best {min(times):.2f} s of {args.repeats} "
              f"({', '.join(f'{t:.2f}' for t in times)} s; goal < 5 s)")
        if args.profile:
            print(profile(suite, workdir))


if __name__ == "__main__":
    main()
