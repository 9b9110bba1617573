"""A small synthetic stand-in for the Causal Chamber's ``lt_crl_benchmark_v1`` in the published layout.

``<root>/lt_crl_benchmark_v1/buchholz_1_<env>/buchholz_1_<env>.csv`` plus ``images_64/<image_file>``: set-points
drawn from buchholz_1's SCM (population standardisation), rendered by crlbench's F3 reimplementation and saved
as JPEG with PIL. No published image or row is copied. The CSVs carry extra columns (``timestamp``,
``intervention``, ``aperture``, ``iso``, ``shutter_speed``, ``angle_1``) in an order unlike the published one,
to show that the reader picks its columns by name and ignores the rest.
"""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from crlbench.datasets.light_tunnel import BENCHMARK, FACTOR_NAMES, PERMUTATION, Standardisation, sample_raw
from crlbench.datasets.chamber_f3 import render_f3_uint8

ENVIRONMENTS = ("obs", "red", "green", "blue", "pol_1", "pol_2")
ROWS = {"obs": 40, "red": 30, "green": 30, "blue": 30, "pol_1": 25, "pol_2": 30}  # pol_1: a different count
COLUMNS = ("timestamp", "intervention", "pol_2", "red", "image_file", "green", "angle_1", "blue", "pol_1",
           "aperture", "iso", "shutter_speed")


def write_benchmark(root: Path, rows: dict[str, int] | None = None, seed: int = 0) -> dict[str, dict]:
    """Write the fixture under ``root``; per environment name, the rows written: ``factors`` [N, 5] in the
    published order (red, green, blue, pol_1, pol_2), ``image_files`` and ``folder``."""
    rows = {**ROWS, **(rows or {})}
    rng = np.random.default_rng(seed)
    standardisation = Standardisation.population()
    written = {}
    for env in ENVIRONMENTS:
        name = f"buchholz_1_{env}"
        folder = Path(root) / BENCHMARK / name
        (folder / "images_64").mkdir(parents=True, exist_ok=True)
        target = None if env == "obs" else FACTOR_NAMES.index(env)
        card = standardisation.to_actuators(sample_raw(rng, rows[env], target))
        published = card[:, np.argsort(PERMUTATION)]
        images = render_f3_uint8(published, 64)
        start = 1_700_000_000.0 + 1000 * ENVIRONMENTS.index(env)
        files = []
        with open(folder / f"{name}.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(COLUMNS)
            for i, (red, green, blue, pol_1, pol_2) in enumerate(published):
                timestamp = start + 0.731 * i
                file = f"{i}_{timestamp:.3f}.jpg"
                values = {"timestamp": f"{timestamp:.3f}", "intervention": int(i == 0), "red": int(red),
                          "green": int(green), "blue": int(blue), "pol_1": f"{pol_1:.1f}", "pol_2": f"{pol_2:.1f}",
                          "image_file": file, "angle_1": f"{pol_1 + rng.normal(0, 0.3):.2f}", "aperture": 1.8,
                          "iso": 500, "shutter_speed": 0.005}
                writer.writerow([values[column] for column in COLUMNS])
                Image.fromarray(images[i]).save(folder / "images_64" / file, format="JPEG", quality=95)
                files.append(file)
        written[env] = {"factors": published, "image_files": files, "folder": folder}
    return written
