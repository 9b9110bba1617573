"""The convergence rule on the scores read during training (crlbench.training.convergence), its reading
cadence, the reconstruction rule kept as a sanity check, and the trainer's monitor behind them."""

import math

import numpy as np
import pytest
import torch

from crlbench.training.convergence import (DRIFT_TOLERANCE, MIN_WINDOW_READINGS, MONITOR_KEY, WATCHED,
                                           reading_cadence, reconstruction_verdict, verdict)
from crlbench.training.train import Budget, build_model, train
from test_trainer import pendulum32, same_weights, small  # noqa: F401  (the module fixtures)


def curve(errors):
    return [{"loss": 1.0, MONITOR_KEY: error} for error in errors]


def readings(values, per_epoch=1):
    """A history's evaluations: reading i at step (i + 1) * per_epoch, every watched score = values[i]."""
    return [{"step": (i + 1) * per_epoch, "epoch": float(i + 1), "scores": {name: float(v) for name in WATCHED}}
            for i, v in enumerate(values)]


def noisy(levels, size=0.02, seed=0):
    return np.asarray(levels, dtype=float) + size * np.random.default_rng(seed).standard_normal(len(levels))


# --- the rule on the scores ---------------------------------------------------------------------


def test_a_noisy_plateau_converges():
    rising_then_flat = np.minimum(np.arange(1, 31) / 10, 1.0) * 0.6  # reaches 0.6 at epoch 10 of 30
    result = verdict([], None, readings(noisy(rising_then_flat)))
    assert result["converged"] is True
    assert result["window"] == {"from_step": 20, "to_step": 30, "readings": 11}
    for name in WATCHED:
        trend = result["scores"][name]
        assert trend["settled"] is True and abs(trend["t"]) < trend["t_critical"]
        assert trend["noise"] == pytest.approx(0.02, rel=0.6)  # the residual noise is the noise put in


def test_a_rising_curve_does_not_converge():
    result = verdict([], None, readings(noisy(0.3 + 0.01 * np.arange(30))))  # +0.01 per epoch to the end
    assert result["converged"] is False
    trend = result["scores"][WATCHED[0]]
    assert trend["settled"] is False and trend["slope_per_epoch"] == pytest.approx(0.01, abs=0.005)
    assert "still trending" in result["reason"]


def test_a_fast_oscillation_around_a_level_converges_and_its_size_is_recorded_as_noise():
    """Decided: a fluctuation without a trend is not a failure to converge (the report shows its size)."""
    oscillating = 0.5 + 0.05 * np.sin(np.arange(30) * math.pi / 2)  # period 4 epochs, +-0.05
    result = verdict([], None, readings(oscillating))
    trend = result["scores"][WATCHED[0]]
    assert result["converged"] is True and trend["settled"] is True
    assert trend["noise"] > DRIFT_TOLERANCE


def test_an_oscillation_slower_than_the_window_reads_as_a_trend():
    slow = 0.5 + 0.1 * np.sin(np.arange(30) * math.pi / 20)  # half a period over the last third: still falling
    assert verdict([], None, readings(slow))["converged"] is False


def test_a_significant_but_negligible_drift_counts_as_settled():
    creeping = 0.6 + 0.0005 * np.arange(30)  # a perfect trend, 0.005 over the last third
    trend = verdict([], None, readings(creeping))["scores"][WATCHED[0]]
    assert trend["settled"] is True and abs(trend["drift"]) < DRIFT_TOLERANCE


def test_too_few_readings_are_not_judged():
    short = verdict([], None, readings([0.5] * 8))  # the last third holds 3 readings
    assert short["converged"] is None and short["window"]["readings"] < MIN_WINDOW_READINGS
    assert short["reason"].startswith("not judged") and "too short" in short["reason"]
    assert verdict(curve([0.2] * 10))["converged"] is None  # a history without score readings
    assert verdict(curve([0.2] * 10))["reason"] == "not judged: no score readings in the history"


def test_a_schedule_reaching_full_weight_late_leaves_too_few_readings_and_is_not_converged():
    late = {"finished": True, "full_weight_step": 28, "total_steps": 30}
    result = verdict([], late, readings([0.5] * 30))
    assert result["converged"] is False
    assert result["readings_after_full_weight"] == 3 and result["full_weight_step"] == 28
    assert "only 3 reading(s) after the schedule reached full weight at step 28" in result["reason"]


def test_readings_before_full_weight_are_left_out_of_the_window():
    # before full weight at step 24 the score still climbs; from there it is flat
    values = np.concatenate([np.linspace(0.2, 0.6, 23), [0.6] * 7])
    schedule = {"finished": True, "full_weight_step": 24}
    result = verdict([], schedule, readings(values))
    assert result["window"]["from_step"] == 24 and result["window"]["readings"] == 7
    assert result["converged"] is True
    assert verdict([], None, readings(values))["converged"] is False  # the last third includes the climb


def test_an_unfinished_schedule_is_not_converged():
    result = verdict([], {"finished": False}, readings(noisy([0.5] * 30)))
    assert result["converged"] is False and result["reason"].startswith("a schedule did not finish")


def test_a_watched_score_missing_leaves_the_run_unjudged_unless_another_fails():
    history = readings(noisy([0.5] * 30))
    for reading in history:
        del reading["scores"][WATCHED[1]]
    assert verdict([], None, history)["converged"] is None
    assert verdict([], None, history)["scores"][WATCHED[1]]["settled"] is None


def test_the_reconstruction_rule_is_kept_beside_the_verdict():
    epochs = curve([1.0, 0.5, 0.3] + [0.2] * 27)
    result = verdict(epochs, None, readings(noisy([0.5] * 30)))
    assert result["reconstruction"]["converged"] is True and result["reconstruction"]["share"] == pytest.approx(0.0)
    assert result["reconstruction"] == reconstruction_verdict(epochs)


def test_the_reading_cadence_gives_short_runs_enough_readings():
    assert reading_cadence(30 * 86, 86) is None  # the standard suite: every epoch
    assert reading_cadence(200, 86) == 10        # the quick suite: every 10 steps and every epoch end
    assert reading_cadence(12, 172) == 10        # never closer than 10 steps
    assert reading_cadence(1000, 86) == 50


# --- the reconstruction rule (the sanity check) -------------------------------------------------


def test_a_flat_reconstruction_curve_passes_and_one_still_falling_does_not():
    plateau = reconstruction_verdict(curve([1.0, 0.5, 0.3] + [0.2] * 17))
    falling = reconstruction_verdict(curve([0.9 ** epoch for epoch in range(20)]))  # 10 % per epoch to the end
    assert plateau["converged"] is True and plateau["share"] == pytest.approx(0.0)
    assert falling["converged"] is False and falling["window_epochs"] == 2
    assert falling["share"] == pytest.approx((0.9 ** 17 - 0.9 ** 19) / (1 - 0.9 ** 19))
    assert falling["relative_change"] == pytest.approx(1 - 0.9 ** 2)
    assert "epochs brought" in falling["reason"] and falling["rule"]


def test_a_late_drop_fails_the_reconstruction_rule_and_a_slow_creep_is_reported_beside_it():
    late_drop = reconstruction_verdict(curve([1.0, 0.4, 0.3] + [0.2] * 15 + [0.2, 0.1]))
    creep = reconstruction_verdict(curve([1.0, 0.1] + [0.1 * 0.98 ** epoch for epoch in range(1, 19)]))
    assert late_drop["converged"] is False and late_drop["share"] == pytest.approx(0.1 / 0.9)
    assert creep["converged"] is True and creep["relative_change"] > 0.03


def test_a_reconstruction_wobble_is_judged_on_the_best_values():
    wobble = reconstruction_verdict(curve([1.0, 0.4, 0.3, 0.25] + [0.2, 0.21] * 8))
    assert wobble["converged"] is True and wobble["share"] == 0.0


def test_the_reconstruction_rule_needs_three_finite_epochs_and_a_finished_schedule():
    flat = curve([0.2] * 10)
    assert reconstruction_verdict(flat, {"finished": False})["converged"] is False
    assert reconstruction_verdict(flat, {"finished": True})["converged"] is True
    assert reconstruction_verdict(curve([0.3, 0.2]))["converged"] is None
    assert reconstruction_verdict([{"loss": 1.0}] * 10)["converged"] is None
    assert reconstruction_verdict(curve([0.3, 0.2, math.nan]))["converged"] is None


# --- the trainer's monitor ----------------------------------------------------------------------


def test_the_monitor_is_recorded_every_epoch_and_leaves_training_unchanged(small):  # noqa: F811
    card, images, factors = small
    calls = []

    def monitor(model):
        calls.append(model.training)
        torch.randn(1000)  # a monitor that draws random numbers must not move training's stream
        return {MONITOR_KEY: 0.5}

    runs = []
    for hook in (None, monitor):
        model = build_model("beta_vae", card, seed=0)
        history = train(model, images, factors, budget=Budget(epochs=3, batch_size=32), seed=0, progress=False,
                        monitor=hook)
        runs.append((model, history))
    (plain, plain_history), (monitored, monitored_history) = runs
    assert same_weights(plain, monitored)
    assert [record[MONITOR_KEY] for record in monitored_history.epochs] == [0.5] * 3
    assert all(MONITOR_KEY not in record for record in plain_history.epochs)
    assert [(reading["step"], reading["epoch"]) for reading in monitored_history.evaluations] == [(3, 1.0), (6, 2.0), (9, 3.0)]
    assert plain_history.evaluations == [] and len(calls) == 3


# --- the report's texts -------------------------------------------------------------------------


def ok_record(convergence):
    record = {"status": "ok", "cell": {"dataset": "pendulum", "model": "beta_vae", "label": "beta_vae", "seed": 0}}
    return record | ({"convergence": convergence} if convergence is not None else {})


def test_cells_too_short_for_the_rule_are_said_to_be_so_not_called_old_records():
    from crlbench.reports import convergence as report

    short = verdict(curve([0.2] * 2), None, readings([0.5] * 3))
    total = report.overall(report.tallies([ok_record(short), ok_record(short)]))
    text = report.summary_text(total)
    assert text.startswith("not judged: none of the 2 finished cells could be judged (2 too short for the rule, "
                           "with fewer score readings in the last third of the run than it needs)")
    assert "predates" not in text and "the rule: converged: over the last third" in text
    assert report.legend_line(total) is None and total.seeds_text() == "not judged: 2 too short"
    mixed = report.overall(report.tallies([ok_record(short), ok_record(None), ok_record(verdict([], None, [])),
                                           ok_record(verdict([], None, readings(0.01 * np.arange(30))))]))
    assert report.summary_text(mixed).endswith(
        "; 3 not judged (1 too short for the rule, with fewer score readings in the last third of the run than it "
        "needs; 1 with no score readings during training; 1 whose record predates the convergence rule, with no "
        "verdict recorded)")
    assert mixed.unconverged == 1 and mixed.marked
    assert mixed.seeds_text() == "1/4 seeds unconverged, 3 not judged: 1 too short, 1 without readings, 1 predating the rule"


def test_the_legend_counts_the_seeds_not_judged_by_their_true_cause():
    """A smoke-sized suite: some runs judged, the others too short for the rule. The legend says they were too
    short, counted, and blames no old record."""
    from crlbench.reports import convergence as report

    short = verdict([], None, readings([0.5] * 3))
    judged = verdict([], None, readings(0.01 * np.arange(30)))
    line = report.legend_line(report.overall(report.tallies([ok_record(short)] * 3 + [ok_record(judged)])))
    assert line.endswith("Seeds without a verdict are not counted as unconverged: 3 here (3 too short for the rule, "
                         "with fewer score readings in the last third of the run than it needs).")
    assert "older" not in line and "predates" not in line


def test_a_score_read_non_finite_is_said_unreadable_not_too_few_readings():
    """A run with readings enough whose watched score read NaN in its window is not judged because the score is
    unreadable: the report says that, not that the run was too short."""
    from crlbench.reports import convergence as report

    history = readings(noisy([0.5] * 30))
    for reading in history:
        reading["scores"][WATCHED[0]] = math.nan
    unreadable = verdict([], None, history)
    assert unreadable["converged"] is None
    short = verdict([], None, readings([0.5] * 3))
    text = report.summary_text(report.overall(report.tallies([ok_record(unreadable), ok_record(short)])))
    assert "(1 too short for the rule" in text
    assert "1 with a watched score read non-finite, too few finite readings left in the window" in text
    alone = report.summary_text(report.overall(report.tallies([ok_record(unreadable)])))
    assert "too short" not in alone and "non-finite" in alone


def test_records_without_any_verdict_read_as_predating_the_rule():
    from crlbench.reports import convergence as report

    total = report.overall(report.tallies([ok_record(None)] * 3))
    assert report.summary_text(total) == ("not judged: none of the 3 finished cells records a convergence verdict "
                                          "(the records predate the convergence rule)")
