"""benchmarks/time_breakdown.py, where a suite's time goes (docs/performance.md)."""

import pytest

from benchmark_fixture import load_benchmark


@pytest.fixture(scope="module")
def time_breakdown():
    return load_benchmark("time_breakdown")


def timings(steps: float, monitor: float, metrics: dict, total: float, cpu: float = 10.0) -> dict:
    return {"train_s": steps + monitor, "monitor_s": monitor, "encode_s": 1.0, "metrics_s": metrics,
            "checks_s": 0.5, "total_s": total, "cpu_s": cpu}


def record(dataset: str, label: str, status: str = "ok", **kwargs) -> dict:
    return {"status": status, "cell": {"dataset": dataset, "model": label, "label": label}, "timings": timings(**kwargs)}


def test_each_phase_is_its_share_of_the_cell_and_the_rest_is_other(time_breakdown):
    shares = time_breakdown.phase_shares(timings(80.0, 10.0, {"dci@reg": 3.0, "mcc@pearson": 1.0}, total=100.0))
    assert shares == pytest.approx({"steps": 0.8, "monitor": 0.1, "encode": 0.01, "metrics": 0.04, "checks": 0.005,
                                    "other": 0.045})
    assert time_breakdown.phase_shares({"train_s": 1.0}) is None  # an older record without the phases


def test_rows_group_finished_cells_by_dataset_and_method(time_breakdown):
    records = [record("pendulum", "a", steps=90.0, monitor=5.0, metrics={"dci@reg": 2.0}, total=100.0, cpu=40.0),
               record("pendulum", "a", steps=45.0, monitor=2.5, metrics={"dci@reg": 1.0}, total=50.0, cpu=60.0),
               record("pendulum", "a", status="failed", steps=1.0, monitor=0.0, metrics={}, total=2.0),
               record("flow", "a", steps=10.0, monitor=1.0, metrics={"mic@aligned": 5.0, "dci@reg": 1.0}, total=20.0)]
    rows = {(row["dataset"], row["method"]): row for row in time_breakdown.breakdown(records)}
    assert rows["pendulum", "a"]["cells"] == 2 and rows["pendulum", "a"]["cpu_s"] == 50.0
    assert rows["pendulum", "a"]["steps"] == pytest.approx(0.9)
    assert rows["flow", "a"]["slowest_metric"] == "mic@aligned"
    overall = time_breakdown.totals(records)
    assert overall["cells"] == 3 and overall["steps"] == pytest.approx((90 + 45 + 10) / 170)
    assert "| all | all | 3 |" in time_breakdown.render(list(rows.values()), overall)
