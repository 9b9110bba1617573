"""Synthetic cell folders for the report tests and the report benchmark.

``write_cells`` writes what a finished suite leaves behind (bench/suites/results.py): ``result.json`` for each
(dataset, label, seed), the matrices of ``dci@reg`` and ``mic@aligned`` as npz, and a small
``interventions.npz``. Scores follow a per-label quality so that one label (``icm_vae`` by default) is
clearly best on every score, whichever its direction: higher-is-better scores grow with quality,
lower-is-better ones (mse, shift, error) shrink with it.

Records carry what the runner writes: the cell's resolved identity (image size, hyperparameters),
evaluation settings, provenance with the crlbench version and, unless ``monitored=False`` (a record
from before the per-epoch monitor), ``history.epochs[i]["heldout_reconstruction_mse"]`` and a
``convergence`` verdict: converged, except the (dataset, label, seed) cells in ``unconverged``.

A dataset in ``UNIDENTIFIABLE`` (``chamber_f3``) is a negative control: its records carry ``unidentifiable`` and
r2@linear's per-factor scores (``r2@linear.r2_<k>``), near the label's quality on the factors the images carry and
near a tenth of it on the others. The label ``supervised`` is the supervised reference row (its ``reference`` set).

A (dataset, label) in ``ASSUMPTIONS_BROKEN`` (``contrastive_crl`` on ``pendulum``, a nonlinear SCM) is a method run
on data that break one of its assumptions: its records carry ``assumptions_broken``, as the runner writes it
(crlbench.suites.runner.broken_assumptions).
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from pathlib import Path

import numpy as np

from crlbench.suites.results import write_json, write_npz

DATASETS = ("pendulum", "flow", "causal_circuit")
LABELS = ("icm_vae", "causal_vae", "dear", "beta_vae")
QUALITY = {"icm_vae": 0.9, "causal_vae": 0.6, "dear": 0.5, "beta_vae": 0.3}
GIVEN = {"icm_vae": ["labels", "true graph"], "causal_vae": ["labels", "initial graph"], "dear": ["labels", "true graph"],
         "beta_vae": []}
LATENT = {"icm_vae": 16, "causal_vae": 16, "dear": 6, "beta_vae": 16}
HYPERPARAMETERS = {"icm_vae": {"concept_dim": 4, "beta": 1.2, "schedule": "budget"}, "causal_vae": {"alpha": 0.3},
                   "dear": {"free_dims": 2}, "beta_vae": {"beta": 4.0}}
RULE = ("converged: the best held-out reconstruction error of the last 10% of the epochs improves on the best "
        "before them by less than 2%, and every schedule (warm-up) finished")
FACTORS = {
    "pendulum": ["pendulum_angle", "light_angle", "shadow_length", "shadow_position"],
    "flow": ["ball_size", "hole", "water_height", "water_flow"],
    "causal_circuit": ["robot_arm", "red_light", "green_light", "blue_light"],
    "chamber_f3": ["blue", "green", "pol_1", "red", "pol_2"],
}
CONTROL = "chamber_f3"  # a negative control: its images cannot carry pol_1 and pol_2
UNIDENTIFIABLE = {CONTROL: {"pol_1": "the hexagon's colour depends on the polariser angles only through "
                                     "cos^2(pol_1 - pol_2)",
                            "pol_2": "as pol_1: only cos^2(pol_1 - pol_2) reaches the image"}}
CEILING = "supervised"  # the supervised reference row
QUALITY[CEILING], GIVEN[CEILING], LATENT[CEILING] = 0.95, ["labels"], 5
OUTSIDE = "contrastive_crl"  # a method that assumes a linear Gaussian latent SCM, which Pendulum's is not
QUALITY[OUTSIDE], GIVEN[OUTSIDE], LATENT[OUTSIDE] = 0.4, ["environments"], 4
ASSUMPTIONS_BROKEN = {("pendulum", OUTSIDE): {"linear_scm": "a linear Gaussian latent SCM"}}


def write_cells(root: str | Path, *, datasets=DATASETS, labels=LABELS, seeds=(0, 1, 2),
                failed: tuple[str, str, int] | None = ("pendulum", "dear", 2), image_size: int = 8,
                codes: int = 8, samples: int = 4, epochs: int = 5, reconstruction: bool = True,
                noise: float = 0.02, monitored: bool = True,
                unconverged: Collection[tuple[str, str, int]] = ()) -> list[Path]:
    """Write one cell folder per (dataset, label, seed) under ``root/cells``; return the folders."""
    folders = []
    for dataset in datasets:
        for label in labels:
            for seed in seeds:
                rng = np.random.default_rng([len(dataset), sum(map(ord, label)), seed])
                folder = Path(root) / "cells" / _hash(dataset, label, seed)
                if failed == (dataset, label, seed):
                    write_json(folder / "result.json", _failed_record(dataset, label, seed, folder.name, epochs))
                else:
                    quality = QUALITY.get(label, 0.5)
                    factors = FACTORS.get(dataset, [f"factor_{k}" for k in range(4)])
                    record = _record(dataset, label, seed, folder.name, factors, quality, rng, epochs,
                                     reconstruction, noise)
                    if monitored:
                        _monitor(record, (dataset, label, seed) not in unconverged, rng)
                    _write_matrices(folder, codes, len(factors), quality, rng)
                    _write_interventions(folder, factors, image_size, samples, rng)
                    write_json(folder / "result.json", record)
                folders.append(folder)
    return folders


def _hash(dataset: str, label: str, seed: int) -> str:
    return hashlib.sha256(f"{dataset}/{label}/{seed}".encode()).hexdigest()[:16]


def _cell(dataset: str, label: str, seed: int, epochs: int = 5) -> dict:
    model = label.split(" ")[0]
    budget = {"epochs": epochs, "steps": None, "batch_size": 64}
    hyperparameters = HYPERPARAMETERS.get(model, {"width": 8})
    return {"suite": "synthetic", "dataset": dataset, "dataset_params": {"size": 8}, "model": model,
            "label": label, "hyperparameters": {key: hyperparameters[key] for key in ("schedule",)
                                                if key in hyperparameters},  # what the suite set; identity resolves all
            "seed": seed, "budget": budget,
            "metrics": [{"name": name, "options": {}}
                        for name in ("dci@reg", "mcc@pearson", "irs@dlib", "mic@aligned", "counterfactual@probe")],
            "evaluation": {"split": "test", "n_train": 200, "n_test": 100, "interventions": 4,
                           "representation": "factor_codes"},
            "device": "cpu", "threads": 1,
            "identity": {"crlbench": "0.1.0",
                         "dataset": {"name": dataset, "version": "1.0", "params": {"size": 8, "seed": 0}},
                         "model": {"name": model, "version": "1", "hyperparameters": hyperparameters},
                         "seed": seed, "budget": budget, "device": "cpu", "threads": 1}}


def _provenance() -> dict:
    return {"versions": {"crlbench": "0.1.0", "python": "3.11", "numpy": np.__version__}, "git_commit": "0123abc",
            "host": "fixture-host", "finished_at": "2024-05-01T12:00:00+00:00"}


def _monitor(record: dict, converged: bool, rng) -> None:
    """Per-epoch held-out reconstruction errors that flatten out (or still fall, when not ``converged``), and
    the trainer's verdict on them."""
    epochs = record["history"]["epochs"]
    level = record["scores"].get("counterfactual@probe.reconstruction_mse", 0.05) + 1e-3
    for index, epoch in enumerate(epochs):
        decay = 0.5 ** index if converged else 1 - 0.15 * index
        epoch["heldout_reconstruction_mse"] = float(level * (1 + 4 * decay) * (1 + 0.01 * rng.random()))
    record["convergence"] = {"converged": converged, "improvement": 0.004 if converged else 0.15,
                             "window_epochs": 1, "schedule_finished": True if record.get("schedule") else None,
                             "reason": "fixture", "rule": RULE}


def _failed_record(dataset: str, label: str, seed: int, cell_hash: str, epochs: int = 5) -> dict:
    return {"schema": 1, "hash": cell_hash, "status": "failed", "cell": _cell(dataset, label, seed, epochs),
            "factors": FACTORS.get(dataset, []), "adjacency": [],
            "error": {"type": "FloatingPointError", "message": "loss became NaN at epoch 3",
                      "traceback": "Traceback (most recent call last): ..."},
            "scores": {}, "metrics": {}, "history": {"epochs": [], "steps": 0}, "timings": {},
            "provenance": _provenance()}


def _record(dataset, label, seed, cell_hash, factors, quality, rng, epochs, reconstruction, noise) -> dict:
    def high() -> float:
        return float(np.clip(quality + noise * rng.standard_normal(), 0, 1))

    def low() -> float:
        return float(max(0.0, (1 - quality) * 0.1 + noise * 0.1 * rng.standard_normal()))

    metrics = {
        "dci@reg": ({"disentanglement": high(), "completeness": high(), "informativeness_test": high()},
                    ["importance"]),
        "mcc@pearson": ({"mcc": high()}, []),
        "irs@dlib": ({"irs": high()}, []),
        "mic@aligned": ({"mic": high(), "tic": high()}, ["mic", "tic"]),
        "counterfactual@probe": ({"reconstruction_mse": low(), "counterfactual_mse": low(), "target_error": low(),
                                  "non_descendant_shift": low()}, []),
    }
    scores = {f"{variant}.{name}": value for variant, (values, _) in metrics.items() for name, value in values.items()}
    if reconstruction:
        scores["reconstruction.mse"] = low()
    history = [{"loss": float(100 * (1 - quality / 2) / (epoch + 1) + rng.random()), "kl": float(rng.random())}
               for epoch in range(epochs)]
    k = len(factors)
    record = {"schema": 1, "hash": cell_hash, "status": "ok", "cell": _cell(dataset, label, seed, epochs),
            "factors": factors, "adjacency": np.triu(np.ones((k, k), dtype=int), 1).tolist(), "error": None,
            "scores": scores,
            "metrics": {variant: {"scores": values, "notes": [], "info": {}, "matrices": matrices}
                        for variant, (values, matrices) in metrics.items()},
            "history": {"epochs": history, "steps": epochs * 10},
            "given": GIVEN.get(label), "latent_size": LATENT.get(label, 8),
            "representation": {"kind": "factor_codes", "rule": "concept block mean", "codes": k, "block_size": 1},
            "budget_fraction": {"images": epochs * 640, "reference_images": 101 * 5000,
                                "fraction": epochs * 640 / (101 * 5000), "reference": {"epochs": 101}},
            "schedule": ({"kind": "budget", "warmup_start_step": 1, "full_weight_step": 47, "total_steps": epochs * 10,
                          "finished": True} if label == "icm_vae" else None),
            "timings": {"train_s": 1.0, "encode_s": 0.1, "metrics_s": 0.2, "total_s": 1.3, "cpu_s": 100.0 + 10 * seed},
            "provenance": _provenance()}
    _add_control(record, quality, rng, noise)
    if (dataset, label) in ASSUMPTIONS_BROKEN:
        record["assumptions_broken"] = dict(ASSUMPTIONS_BROKEN[(dataset, label)])
    return record


def _add_control(record: dict, quality: float, rng, noise: float) -> None:
    """What the supervised reference row's record adds (``reference``), and a negative control's:
    ``unidentifiable`` and r2@linear's scores, per factor and their mean."""
    cell = record["cell"]
    if cell["label"] == CEILING:
        record["reference"] = {"for": ["latent"], "architecture": "ConvEncoder regressing the standardised factors"}
    unidentifiable = UNIDENTIFIABLE.get(cell["dataset"])
    if not unidentifiable:
        return
    scores = {f"r2_{k}": float(np.clip((0.1 if name in unidentifiable else 1.0) * quality
                                       + noise * rng.standard_normal(), -1, 1))
              for k, name in enumerate(record["factors"])}
    scores["r2"] = float(np.mean(list(scores.values())))
    record["unidentifiable"] = dict(unidentifiable)
    record["metrics"]["r2@linear"] = {"scores": scores, "notes": [], "info": {}, "matrices": []}
    record["scores"].update({f"r2@linear.{name}": value for name, value in scores.items()})


def _write_matrices(folder: Path, codes: int, factors: int, quality: float, rng) -> None:
    """Importance and MIC matrices [codes, factors]: diagonal blocks, sharper for better labels."""
    aligned = np.zeros((codes, factors))
    aligned[np.arange(codes), np.arange(codes) % factors] = 1.0
    importance = quality * aligned + (1 - quality) * rng.random((codes, factors))
    write_npz(folder / "metrics" / "dci@reg.npz", {"importance": importance / importance.sum()})
    mic = np.clip(quality * aligned + 0.2 * rng.random((codes, factors)), 0, 1)
    write_npz(folder / "metrics" / "mic@aligned.npz", {"mic": mic, "tic": mic * 0.5})


def _write_interventions(folder: Path, factors: list[str], size: int, samples: int, rng) -> None:
    k = len(factors)
    shape = (k, samples, size, size, 3)
    truth = rng.integers(0, 256, size=shape, dtype=np.uint8)
    model = np.clip(truth.astype(int) + rng.integers(-40, 40, size=shape), 0, 255).astype(np.uint8)
    write_npz(folder / "interventions.npz", {
        "source": rng.integers(0, 256, size=(samples, size, size, 3), dtype=np.uint8),
        "truth": truth, "model": model, "values": rng.random((k, samples)),
        "factor_names": np.array(factors)})
