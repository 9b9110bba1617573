"""What ICM-VAE's reference warm-up does to its latent, epoch by epoch, on Pendulum.

The reference schedule (``warmup_start_epoch=2``) trains epochs 0 and 1 with alpha = beta = 0 and
switches the prior on in epoch 2. This script trains ICM-VAE with that schedule and, after every
epoch, reads a fixed sample of 512 training images: the latent spread (standard deviation of each
code, averaged over codes), each concept block's mean code's absolute Pearson correlation with its
factor, the reconstruction MSE, and the warm-up weights in force.

Run (one configuration per call; results go to --out as JSON and print as a markdown table)::

    .venv/bin/python benchmarks/icmvae_warmup.py --seeds 0 1 2 --epochs 10
    .venv/bin/python benchmarks/icmvae_warmup.py --seeds 0 --epochs 10 --decoder per_concept
    .venv/bin/python benchmarks/icmvae_warmup.py --seeds 0 --epochs 10 --backbone reference
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import torch

from crlbench.core import registry
from crlbench.training.train import Budget, build_model, train

SAMPLE = 512


def readout(model, images: torch.Tensor, factors: np.ndarray) -> dict[str, float | list[float]]:
    """Latent spread, per-factor |corr(block mean, factor)| and reconstruction MSE on ``images``."""
    model.eval()
    with torch.no_grad():
        latent = model.encode(images).numpy()  # [N, K, k]
        reconstruction = float(((model.reconstruct(images) - images) ** 2).mean())
    block_means = latent.mean(axis=2).astype(np.float64)
    correlations = []
    for k in range(factors.shape[1]):
        with np.errstate(invalid="ignore", divide="ignore"):  # a constant block has no correlation: 0
            correlation = np.corrcoef(block_means[:, k], factors[:, k])[0, 1]
        correlations.append(float(abs(np.nan_to_num(correlation))))
    return {"spread": float(latent.reshape(len(latent), -1).std(axis=0).mean()),
            "correlations": correlations, "reconstruction_mse": reconstruction}


def run(seed: int, epochs: int, size: int, hyperparameters: dict, workdir: str) -> list[dict]:
    dataset = registry.dataset("pendulum", cache_dir=f"{workdir}/data", size=size)
    split = dataset.split("train")
    rows = np.sort(np.random.default_rng(1234).choice(len(split), size=SAMPLE, replace=False))
    images = torch.from_numpy(split.images[rows]).permute(0, 3, 1, 2).float().div_(255.0)
    model = build_model("icm_vae", dataset.card, seed=seed, **hyperparameters)
    log: list[dict] = []
    start = time.perf_counter()

    def after_epoch(epoch: int, losses: dict[str, float]) -> None:
        entry = {"seed": seed, "epoch": epoch - 1, "alpha": model.alpha, "beta": model.beta,
                 "loss": losses, "seconds": time.perf_counter() - start, **readout(model, images, split.factors[rows])}
        log.append(entry)
        print(json.dumps(entry), flush=True)

    train(model, split.images, split.factors, budget=Budget(epochs=epochs, batch_size=64), seed=seed,
          callbacks=[after_epoch], progress=False)
    return log


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--backbone", default="conv", choices=["conv", "reference"])
    parser.add_argument("--decoder", default="shared", choices=["shared", "per_concept"])
    parser.add_argument("--warmup-start-epoch", type=int, default=2)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--workdir", default="runs")
    parser.add_argument("--out", default=None, help="JSON file for the per-epoch log")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    hyperparameters = {"backbone": args.backbone, "decoder": args.decoder, "warmup_start_epoch": args.warmup_start_epoch}
    logs = {seed: run(seed, args.epochs, args.size, hyperparameters, args.workdir) for seed in args.seeds}
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps({"settings": vars(args), "logs": logs}, indent=1))
    print(f"\nICM-VAE on Pendulum {args.size}x{args.size}, {hyperparameters}, batch 64, torch {torch.__version__}")
    print("| seed | epoch | beta | latent spread | |corr| per factor | reconstruction MSE |")
    print("|---|---|---|---|---|---|")
    for seed, log in logs.items():
        for entry in log:
            correlations = " ".join(f"{c:.2f}" for c in entry["correlations"])
            print(f"| {seed} | {entry['epoch']} | {entry['beta']:.4f} | {entry['spread']:.2e} | {correlations} | "
                  f"{entry['reconstruction_mse']:.4f} |")


if __name__ == "__main__":
    main()
