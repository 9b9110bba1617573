"""A short training run of every model on Pendulum, then the metric battery on the test split.

Not a result: a few epochs on 2 cores show that each model trains end to end and how the metrics
read them. Run: ``.venv/bin/python benchmarks/short_run.py [--epochs 3]``.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from crlbench.core import registry
from crlbench.metrics import compute, compute_with_model
from crlbench.training.train import Budget, build_model, train


def latents(model, images: np.ndarray) -> np.ndarray:
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float().div_(255.0)
    model.eval()
    return torch.cat([model.encode(x[i:i + 256]).flatten(1) for i in range(0, len(x), 256)]).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workdir", default="runs")
    args = parser.parse_args()
    dataset = registry.dataset("pendulum", cache_dir=f"{args.workdir}/data")
    train_split, test_split = dataset.split("train"), dataset.split("test")
    rows = []
    for name in ("beta_vae", "icm_vae", "causal_vae", "dear"):
        start = time.perf_counter()
        model = build_model(name, dataset.card, seed=args.seed)
        history = train(model, train_split.images, train_split.factors, budget=Budget(epochs=args.epochs),
                        seed=args.seed, progress=False)
        seconds = time.perf_counter() - start
        probe_rows = np.random.default_rng(args.seed).choice(len(train_split), size=2000, replace=False)  # grid-ordered split
        z_train, z_test = latents(model, train_split.images[probe_rows]), latents(model, test_split.images)
        y_train, y_test = train_split.factors[probe_rows], test_split.factors
        dci = compute("dci@reg", z_train, y_train, z_test, y_test, seed=args.seed).scores
        mcc = compute("mcc@pearson", z_test, y_test)
        irs = compute("irs@dlib", z_test, y_test).scores["irs"]
        r2 = compute("r2@linear", z_train, y_train, z_test, y_test).scores["r2"]
        if model.aligned:
            block = z_test.shape[1] // len(dataset.card.factors)
            mic = compute("mic@aligned", z_test[:1000], y_test[:1000], block_size=block).scores
        else:
            mic = compute("mic@matched", z_test[:1000], y_test[:1000]).scores
            model.set_alignment([block[0] for block in mcc.info["alignment"]["blocks"]])
        counterfactual = compute_with_model("counterfactual@probe", model, dataset, train_split, test_split,
                                            seed=args.seed).scores
        rows.append((name, seconds, history.epochs[-1], dci, mcc.scores["mcc"], irs, r2, mic, counterfactual))
        spread = float(z_test.std(axis=0).mean())
        print(f"{name}: trained {args.epochs} epochs in {seconds:.0f} s; last epoch {history.epochs[-1]}; "
              f"mean latent std on test {spread:.4f}", flush=True)

    print("\n| model | train s | DCI D | DCI C | DCI I (R^2) | MCC | IRS | R^2 | MIC | TIC | cf MSE | non-desc shift |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name, seconds, _, dci, mcc, irs, r2, mic, cf in rows:
        print(f"| {name} | {seconds:.0f} | {dci['disentanglement']:.3f} | {dci['completeness']:.3f} | "
              f"{dci['informativeness_test']:.3f} | {mcc:.3f} | {irs:.3f} | {r2:.3f} | {mic['mic']:.3f} | "
              f"{mic['tic']:.3f} | {cf['counterfactual_mse']:.4f} | {cf['non_descendant_shift']:.3f} |")


if __name__ == "__main__":
    main()
