"""The convergence rule (crlbench.training.convergence) and the trainer's held-out monitor behind it."""

import math

import pytest
import torch

from crlbench.training.convergence import MONITOR_KEY, verdict
from crlbench.training.train import Budget, build_model, train
from test_trainer import same_weights, small  # noqa: F401  (the module fixture)


def curve(errors):
    return [{"loss": 1.0, MONITOR_KEY: error} for error in errors]


def test_a_flat_curve_converges_and_one_still_falling_does_not():
    plateau = verdict(curve([1.0, 0.5, 0.3] + [0.2] * 17))
    falling = verdict(curve([0.9 ** epoch for epoch in range(20)]))  # 10 % per epoch to the end
    assert plateau["converged"] is True and plateau["share"] == pytest.approx(0.0)
    assert falling["converged"] is False and falling["window_epochs"] == 2
    assert falling["share"] == pytest.approx((0.9 ** 17 - 0.9 ** 19) / (1 - 0.9 ** 19))
    assert falling["relative_change"] == pytest.approx(1 - 0.9 ** 2)
    assert "epochs brought" in falling["reason"] and falling["rule"]


def test_a_late_drop_fails_and_a_slow_creep_is_reported_beside_the_verdict():
    late_drop = verdict(curve([1.0, 0.4, 0.3] + [0.2] * 15 + [0.2, 0.1]))
    creep = verdict(curve([1.0, 0.1] + [0.1 * 0.98 ** epoch for epoch in range(1, 19)]))
    assert late_drop["converged"] is False and late_drop["share"] == pytest.approx(0.1 / 0.9)
    assert creep["converged"] is True and creep["relative_change"] > 0.03  # flat curve, error still creeping down


def test_a_wobble_is_judged_on_the_best_values():
    wobble = verdict(curve([1.0, 0.4, 0.3, 0.25] + [0.2, 0.21] * 8))   # no better than 0.2 at the end
    assert wobble["converged"] is True and wobble["share"] == 0.0


def test_an_unfinished_schedule_is_not_converged_and_too_short_a_run_is_not_judged():
    flat = curve([0.2] * 10)
    assert verdict(flat, {"finished": False})["converged"] is False
    assert "schedule" in verdict(flat, {"finished": False})["reason"]
    assert verdict(flat, {"finished": True})["converged"] is True
    assert verdict(curve([0.3, 0.2]))["converged"] is None
    assert verdict([{"loss": 1.0}] * 10)["converged"] is None  # an old history without the monitor
    assert verdict(curve([0.3, 0.2, math.nan]))["converged"] is None


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
    assert len(calls) == 3
