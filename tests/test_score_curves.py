"""The report's score curves (crlbench.reports.figures.score_curves): the scores read during training."""

import numpy as np

from crlbench.reports import figures
from crlbench.reports.convergence import tallies
from crlbench.training.convergence import verdict

SCORES = ("dci@reg.disentanglement", "mcc@pearson.mcc")


def record(label, seed, readings=10, schedule=None, dataset="pendulum"):
    rng = np.random.default_rng(seed)
    evaluations = [{"step": 86 * (i + 1), "epoch": float(i + 1),
                    "scores": {name: float(0.5 + 0.01 * rng.standard_normal()) for name in SCORES}}
                   for i in range(readings)]
    return {"status": "ok", "cell": {"dataset": dataset, "model": label, "label": label, "seed": seed},
            "scores": {name: 0.55 for name in SCORES}, "history": {"epochs": [], "evaluations": evaluations},
            "convergence": verdict([], schedule, evaluations)}


def test_each_watched_score_gets_a_figure_with_a_panel_per_dataset(tmp_path):
    records = [record(label, seed, dataset=dataset) for dataset in ("pendulum", "flow")
               for label in ("beta_vae", "icm_vae") for seed in (0, 1)]
    records[2]["convergence"] = verdict([], {"finished": True, "full_weight_step": 86 * 9}, records[2]["history"]["evaluations"])
    drawn = figures.score_curves(records, tmp_path, convergence=tallies(records))
    assert [item.path.name for item in drawn] == ["curve_dci-reg-disentanglement.png", "curve_mcc-pearson-mcc.png"]
    assert all(item.path.stat().st_size > 0 for item in drawn)
    assert "validation sample (never the test split)" in drawn[0].caption and "diamonds" in drawn[0].caption
    assert "cheaper trees" in drawn[0].caption and "cheaper trees" not in drawn[1].caption
    assert "Dashed, ‡ k/n" in drawn[0].caption  # icm_vae seed 0 on pendulum: too few readings after full weight
    assert figures.full_weight_epoch([records[2]]) == 9.0


def test_seeds_are_aligned_on_their_epochs_and_a_missing_reading_is_nan():
    first, second = record("beta_vae", 0, readings=4), record("beta_vae", 1, readings=3)
    epochs, values = figures.score_readings([first, second], SCORES[0])
    assert epochs.tolist() == [1.0, 2.0, 3.0, 4.0] and values.shape == (2, 4) and np.isnan(values[1, 3])


def test_records_without_readings_draw_no_curve_and_never_fail(tmp_path):
    old = record("beta_vae", 0)
    del old["history"]["evaluations"]
    assert figures.score_curves([old, {"status": "failed", "cell": old["cell"]}], tmp_path) == []
    drawn = figures.score_curves([old, record("icm_vae", 0)], tmp_path)
    assert len(drawn) == 2
