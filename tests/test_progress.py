"""Progress that reaches logs: the ETA estimator, the line per finished cell or trial, and what a suite prints
without a terminal (issue 26)."""

import datetime
import logging
import re
from types import SimpleNamespace

import pytest

from crlbench.suites.progress import PROGRESS_LOGGER, CellProgress, duration, estimate_eta
from crlbench.tuning.progress import TrialProgress
from suite_fixture import write_suite

LINE = re.compile(r"^cell (\d+)/(\d+) (\S+): (.+) in (\S+ ?s?); (\S+) elapsed, ETA (unknown|[\d:]+)")


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def record(label: str, dataset: str = "pendulum", seed: int = 0, seconds: float | None = 10.0,
           status: str = "ok") -> dict:
    return {"status": status, "cell": {"label": label, "dataset": dataset, "seed": seed},
            "timings": {} if seconds is None else {"total_s": seconds}}


def cells(*pairs: tuple[str, str, int]) -> list:
    """Cell stand-ins: ``count`` cells of each (label, dataset)."""
    return [SimpleNamespace(label=label, dataset=dataset) for label, dataset, count in pairs for _ in range(count)]


# --- the estimator ----------------------------------------------------------------------------------

def test_the_eta_costs_each_method_and_dataset_at_the_mean_of_its_own_finished_cells():
    finished = {("dear", "pendulum"): [100.0, 140.0], ("beta_vae", "pendulum"): [10.0]}
    left = {("dear", "pendulum"): 3, ("beta_vae", "pendulum"): 4}
    estimate = estimate_eta(finished, left, parallel=1)
    assert estimate.seconds == pytest.approx(3 * 120 + 4 * 10) and estimate.assumed == 0 and estimate.left == 7
    assert estimate_eta(finished, left, parallel=2).seconds == pytest.approx((3 * 120 + 4 * 10) / 2)


def test_a_pair_with_nothing_finished_is_costed_at_the_median_of_all_finished_cells_and_said_so():
    # the median: a first cell that generated its dataset (90 s) does not set the cost of every cell left
    finished = {("dear", "pendulum"): [90.0], ("beta_vae", "pendulum"): [10.0, 20.0]}
    left = {("dear", "pendulum"): 1, ("icm_vae", "flow"): 2}
    estimate = estimate_eta(finished, left, parallel=1)
    assert estimate.seconds == pytest.approx(90 + 2 * 20) and estimate.assumed == 2
    assert estimate.describe() == "ETA 2:10 (2 of 3 cells left at the median of all finished cells)"
    assert estimate.describe(short=True) == "ETA 2:10 (2 of 3 at the median cell)"


def test_before_any_cell_finished_the_eta_is_unknown():
    estimate = estimate_eta({}, {("dear", "pendulum"): 3}, parallel=2)
    assert estimate.seconds is None and estimate.describe() == "ETA unknown"
    assert estimate_eta({("dear", "pendulum"): []}, {("dear", "pendulum"): 3}, 1).seconds is None


def test_nothing_left_takes_no_time_and_fewer_cells_than_workers_do_not_divide_further():
    assert estimate_eta({}, {("dear", "pendulum"): 0}, parallel=4).seconds == 0.0
    # one cell left on four workers still takes one cell's time
    assert estimate_eta({"a": [60.0]}, {"a": 1}, parallel=4).seconds == pytest.approx(60.0)
    assert estimate_eta({"a": [60.0]}, {"a": 3}, parallel=0).seconds == pytest.approx(180.0)


def test_durations_read_as_minutes_and_hours():
    assert [duration(s) for s in (0, 59.6, 161, 3723)] == ["0:00", "1:00", "2:41", "1:02:03"]


# --- the line per cell ------------------------------------------------------------------------------

def test_each_finished_cell_logs_its_title_status_time_and_the_suites_progress(caplog):
    clock = Clock()
    progress = CellProgress(cells(("dear", "pendulum", 2), ("beta_vae", "pendulum", 2)), parallel=1, bar=False,
                            clock=clock)
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        clock.now += 125
        first = progress.finished(record("dear", seconds=120.0))
        clock.now += 12
        second = progress.finished(record("beta_vae", seed=1, seconds=11.5, status="failed"))
    assert first == ("cell 1/4 pendulum/dear/seed0: ok in 2:00; 2:05 elapsed, "
                     "ETA 6:00 (2 of 3 cells left at the median of all finished cells)")  # 120 + 2 x 120
    assert second == "cell 2/4 pendulum/beta_vae/seed1: failed in 11.5 s; 2:17 elapsed, ETA 2:12"  # 120 + 11.5
    assert [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER] == [first, second]


def test_a_record_without_a_wall_time_counts_as_done_but_not_towards_the_means():
    progress = CellProgress(cells(("dear", "pendulum", 3)), parallel=1, bar=False, clock=Clock())
    line = progress.finished(record("dear", seconds=None, status="failed"))  # its worker died
    assert line.startswith("cell 1/3 pendulum/dear/seed0: failed in ?;") and line.endswith("ETA unknown")
    assert progress.finished(record("dear", seed=1, seconds=30.0)).endswith("ETA 0:30")


def test_a_partial_cell_and_a_cell_run_elsewhere_say_so():
    progress = CellProgress(cells(("dear", "pendulum", 2)), parallel=1, bar=False, clock=Clock())
    partial = {**record("dear"), "metric_errors": {"mic@aligned": "boom"}}
    assert "seed0: partial (a metric failed) in 10.0 s" in progress.finished(partial)
    assert "seed1: ok, ran elsewhere in 10.0 s" in progress.finished(record("dear", seed=1), "ran elsewhere")


def test_a_suite_without_a_terminal_prints_a_line_per_finished_cell(tmp_path, data_dir, capsys):
    # Before issue 26 a suite whose output went to a file printed nothing until its summary line.
    from crlbench.cli import main

    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data").symlink_to(data_dir, target_is_directory=True)
    path = write_suite(tmp_path, seeds=[0, 1], models=[{"name": "beta_vae"}])
    assert main(["suite", str(path), "--workdir", str(workdir), "--no-tracking"]) == 0
    out = capsys.readouterr().out.splitlines()
    lines = [LINE.match(line) for line in out if line.startswith("cell ")]
    assert [(m.group(1), m.group(2), m.group(3), m.group(4)) for m in lines] == [
        ("1", "2", "pendulum/beta_vae/seed0", "ok"), ("2", "2", "pendulum/beta_vae/seed1", "ok")]
    assert lines[0].group(7) != "unknown" and lines[1].group(7) == "0:00"
    assert out[-1].startswith("suite tiny: 2 ran")  # the summary still comes last


def test_the_suite_bar_counts_every_cell_once_across_one_worker_batches(tmp_path, data_dir, caplog):
    # One worker runs one cell per executor call: the suite's bar (and its lines) span the batches.
    from crlbench.suites.suite import run_suite
    from crlbench.suites.suite_config import load_suite

    workdir = tmp_path / "work"
    workdir.mkdir()
    (workdir / "data").symlink_to(data_dir, target_is_directory=True)
    config = load_suite(write_suite(tmp_path, seeds=[0, 1], models=[{"name": "beta_vae"}]))
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        run_suite(config, workdir, progress=False)
        run_suite(config, workdir, progress=False)  # nothing left to do: no line
    assert [r.getMessage().split(":")[0] for r in caplog.records if r.name == PROGRESS_LOGGER] == [
        "cell 1/2 pendulum/beta_vae/seed0", "cell 2/2 pendulum/beta_vae/seed1"]


# --- the line per trial -----------------------------------------------------------------------------

def trial(number: int, state: str, seconds: float, value: float | None = None, error: str | None = None):
    start = datetime.datetime(2026, 1, 1, 12, 0, 0)
    return SimpleNamespace(number=number, state=SimpleNamespace(name=state), value=value, datetime_start=start,
                           datetime_complete=start + datetime.timedelta(seconds=seconds),
                           user_attrs={"crlbench.error": error} if error else {})


def test_each_finished_trial_logs_its_value_state_time_best_and_the_eta(caplog):
    clock = Clock()
    progress = TrialProgress("tiny", total=4, parallel=2, clock=clock)
    study = SimpleNamespace(best_trial=SimpleNamespace(value=0.9, number=0))
    with caplog.at_level(logging.INFO, logger=PROGRESS_LOGGER):
        clock.now += 70
        lines = progress.report(study, [trial(1, "PRUNED", 20.0), trial(0, "COMPLETE", 60.0, 0.9),
                                        trial(2, "RUNNING", 5.0)])
        assert progress.report(study, [trial(0, "COMPLETE", 60.0, 0.9)]) == []  # reported once
    assert lines == [
        "study tiny: trial 0 complete (value 0.9) in 1:00; best 0.9 at trial 0; 1/4 trials, 1:10 elapsed, ETA 1:30",
        "study tiny: trial 1 pruned in 20.0 s; best 0.9 at trial 0; 2/4 trials, 1:10 elapsed, ETA 0:40"]
    assert [r.getMessage() for r in caplog.records if r.name == PROGRESS_LOGGER] == lines


def test_a_failed_trial_says_why_and_before_a_complete_trial_there_is_no_best():
    class NoBest:
        @property
        def best_trial(self):
            raise ValueError("no complete trial")

    progress = TrialProgress("tiny", total=2, parallel=1, clock=Clock())
    (line,) = progress.report(NoBest(), [trial(0, "FAIL", 3.0, error="cell x failed: TrainingDiverged: NaN loss")])
    assert line.startswith("study tiny: trial 0 failed (cell x failed: TrainingDiverged: NaN loss) in 3.0 s; "
                           "no complete trial yet; 1/2 trials")


def test_the_trial_line_reads_the_error_attribute_the_objective_writes():
    from crlbench.tuning import progress, tune

    assert progress.ERROR_ATTR == tune.ERROR
