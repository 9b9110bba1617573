"""Fidelity of the numpy renderer: mean absolute RGB difference against the reference generators'
own 96x96 renders (tests/data/reference_samples), in grey levels (0..255) per pixel and channel.

Run: ``.venv/bin/python benchmarks/render_fidelity.py``.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from crlbench.datasets.flow import draw_flow, water_flow, water_height
from crlbench.datasets.pendulum import draw_pendulum, shadow_length, shadow_position

SAMPLES = Path(__file__).resolve().parents[1] / "tests" / "data" / "reference_samples"


def load(folder: str):
    rows = list(csv.DictReader(open(SAMPLES / folder / "manifest.csv")))
    images = np.stack([np.asarray(Image.open(SAMPLES / folder / r["file"]))[..., :3] for r in rows])
    return (lambda key: np.array([float(r[key]) for r in rows])), images.astype(float)


def report(name: str, ours: np.ndarray, theirs: np.ndarray) -> None:
    error = np.abs(ours.astype(float) - theirs).mean(axis=(1, 2, 3))
    print(f"{name:<9} {len(error)} images: mean {error.mean():.3f}, worst {error.max():.3f}, "
          f"pixels off by more than 64 grey levels: {np.mean(np.abs(ours - theirs).max(-1) > 64):.2%}")


def main() -> None:
    column, images = load("pendulum")
    i, j = column("i"), column("j")
    report("pendulum", draw_pendulum(np.stack([i, j, shadow_length(i, j), shadow_position(i, j)], 1), 96), images)
    column, images = load("flow")
    height = water_height(column("r"), column("h_raw"))
    factors = np.stack([column("r"), column("hole"), height, water_flow(column("hole"), height)], 1)
    report("flow", draw_flow(factors, column("jet_epsilon"), 96), images)


if __name__ == "__main__":
    main()
