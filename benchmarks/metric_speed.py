"""Time every metric variant on 10000 samples x 16 codes x 4 factors (MIC on 2000), and say where
each spends its time (the three functions with the most own time, from cProfile).

Factors are integers in 0..19 (20 classes, the worst case for ``dci@dlib``); codes mix them
linearly with noise. Run: ``.venv/bin/python benchmarks/metric_speed.py [--skip-dlib]``.
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import time

import numpy as np

from crlbench.metrics import compute, library_versions
from crlbench.metrics.mine import mine_score

DEFAULT_BATTERY = ["dci@reg", "irs@dlib", "irs@suter", "mig", "sap@discrete", "sap@continuous", "modularity",
                   "mcc@pearson", "mcc@spearman", "r2@linear"]


def data(n: int, codes: int = 16, factors: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 20, size=(2 * n, factors)).astype(np.float64)
    mixing = rng.normal(size=(factors, codes)) * (rng.random((factors, codes)) < 0.3)
    z = y @ mixing + rng.normal(size=(2 * n, codes))
    return z[:n], y[:n], z[n:], y[n:]


WAITING = ("sleep", "acquire", "wait", "poll")  # the main process waiting on joblib workers


def hotspots(profile: cProfile.Profile, count: int = 3) -> str:
    stats = pstats.Stats(profile).stats
    ranked = sorted(stats.items(), key=lambda item: item[1][2], reverse=True)
    waiting = sum(own for name, (_, _, own, _, _) in ranked if any(w in name[2] for w in WAITING))
    busy = [(name, own) for name, (_, _, own, _, _) in ranked if not any(w in name[2] for w in WAITING)]
    text = "; ".join(f"{name[2]} ({own:.2f} s)" for name, own in busy[:count])
    return f"worker processes, one fit per factor ({waiting:.2f} s); " + text if waiting > 0.5 else text


def timed(variant: str, arrays, **options) -> float:
    profile = cProfile.Profile()
    start = time.perf_counter()
    profile.enable()
    compute(variant, *arrays, seed=0, **options)
    profile.disable()
    seconds = time.perf_counter() - start
    print(f"  {variant:<15} {seconds:7.2f} s   time in: {hotspots(profile)}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--skip-dlib", action="store_true", help="skip dci@dlib (minutes)")
    args = parser.parse_args()
    print(f"{os.cpu_count()} cores; {library_versions()}")
    arrays = data(10000)
    print("\ndefault battery, n = 10000 train + 10000 test, 16 codes, 4 factors:")
    total = sum(timed(variant, arrays) for variant in DEFAULT_BATTERY)
    print(f"  {'total':<15} {total:7.2f} s")

    small = data(2000)
    mine_score(small[0][:50, 0], small[1][:50, 0])  # compile the numba kernels outside the timings
    start = time.perf_counter()
    pairs = [(i, k) for i in range(16) for k in range(4)]
    for i, k in pairs:
        mine_score(small[0][:, i], small[1][:, k])
    per_pair = (time.perf_counter() - start) / len(pairs)
    print(f"\nMIC, n = 2000: {per_pair:.3f} s per pair over {len(pairs)} pairs (minepy 1.2.6 here: 0.15 s)")
    for variant in ("mic@matched", "mic@aligned", "mic@flat"):
        options = {"block_size": 4} if variant != "mic@matched" else {}
        timed(variant, small, **options)

    if not args.skip_dlib:
        print("\ndci@dlib, n = 10000, 20-class factors:")
        for jobs in (1, -1):
            timed("dci@dlib", arrays, n_jobs=jobs)


if __name__ == "__main__":
    main()
