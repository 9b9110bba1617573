"""Time ``crlbench.reports.report.write_report`` on a synthetic suite: 4 models x 3 datasets x 3 seeds (36 cells),
64x64 intervention grids (8 samples per factor) and 16 x 4 matrices, one cell failed.

The cells come from ``tests/report_fixture.py``, the generator the report tests use. Prints the
wall-clock and CPU seconds of the whole report and the wall-clock seconds of its parts. Run:
``MPLBACKEND=Agg .venv/bin/python benchmarks/report_speed.py``.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # report_fixture; crlbench itself is installed

from crlbench.reports import figures, report, stats  # noqa: E402
from crlbench.suites.results import load_records  # noqa: E402
from report_fixture import write_cells  # noqa: E402


def timed(name: str, action) -> object:
    start = time.perf_counter()
    result = action()
    print(f"  {name:<22} {time.perf_counter() - start:6.2f} s")
    return result


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        write_cells(folder, image_size=64, codes=16, samples=8, epochs=50)
        records = load_records(folder)
        start, cpu_start = time.perf_counter(), time.process_time()
        paths = report.write_report(records, Path(folder) / "report", title="report speed")
        total, cpu = time.perf_counter() - start, time.process_time() - cpu_start
        size = sum(path.stat().st_size for path in paths) / 2**20
        print(f"write_report: {len(records)} cells, {len(paths)} files ({size:.1f} MiB) in {total:.2f} s "
              f"wall, {cpu:.2f} s CPU (one process; the wall time grows with other load on the machine)")
        print("parts (run again, one by one):")
        frame = report.records_frame(records)
        metrics = report.select_metrics(frame, None)
        summary = timed("bootstrap intervals", lambda: stats.summarise(frame, metrics))
        timed("paired tests", lambda: stats.paired_tests(frame, metrics))
        ranks = timed("rank tests", lambda: [stats.rank_test(frame, metric) for metric in metrics])
        out = Path(folder) / "parts"
        timed("point plots", lambda: figures.point_plots(frame, summary, metrics, out))
        timed("critical difference", lambda: [figures.critical_difference(rank, out) for rank in ranks])
        timed("matrix heatmaps", lambda: [figures.matrix_heatmaps(records, out, variant=variant, matrix=matrix)
                                          for variant, matrix in figures.MATRIX_FIGURES])
        timed("scatter", lambda: figures.reconstruction_scatter(frame, out))
        timed("training curves", lambda: figures.training_curves(records, out))
        timed("intervention grids", lambda: figures.intervention_grids(records, out))


if __name__ == "__main__":
    main()
