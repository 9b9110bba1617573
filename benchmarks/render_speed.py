"""Rendering speed: images per second for each dataset, and the numpy renderer against matplotlib.

The matplotlib side draws the Pendulum primitives the way the reference generator does (a new 1 x 1
inch figure per image, four patches, axes off, saved as a 96 dpi PNG), on an evenly spread subset of
the grid, and is extrapolated to the full grid. Run: ``.venv/bin/python benchmarks/render_speed.py``.
"""

from __future__ import annotations

import argparse
import io
import platform
import time

import numpy as np

from crlbench.core import registry


def numpy_speed(name: str, size: int, **params) -> tuple[int, float]:
    """(images, seconds) to render every image of every split of a dataset."""
    dataset = registry.dataset(name, cache_dir="/nonexistent-not-used", size=size, **params)
    start = time.perf_counter()
    count = 0
    for design in dataset._designs.values():
        for factor_key, noise_key in dataset.image_views.values():
            count += len(dataset.render(design[factor_key], design[noise_key]))
    return count, time.perf_counter() - start


def matplotlib_pendulum_seconds(factors: np.ndarray) -> float:
    """Seconds to draw and save the given Pendulum images as the reference generator does."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    start = time.perf_counter()
    for angle_index, light_index, length, position in factors:
        theta, phi = angle_index * np.pi / 200, light_index * np.pi / 200
        plt.figure(figsize=(1, 1))
        axes = plt.gca()
        ball = (10 + 8 * np.sin(theta), 10.5 - 8 * np.cos(theta))
        axes.add_patch(plt.Polygon([[10, 10.5], ball], color="black", linewidth=3))
        axes.add_patch(plt.Circle(ball, 1.5, color="firebrick"))
        axes.add_patch(plt.Circle((10 + 10 / np.tan(phi), 20.5), 3, color="orange"))
        shadow = [[position - length / 2, -0.5], [position + length / 2, -0.5]]
        axes.add_patch(plt.Polygon(shadow, color="black", linewidth=3))
        plt.axis("off")
        plt.xlim((0, 20))
        plt.ylim((-1, 21))
        plt.savefig(io.BytesIO(), dpi=96, format="png")
        plt.close()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--matplotlib-images", type=int, default=300, help="Pendulum images drawn by matplotlib")
    args = parser.parse_args()
    print(f"host: {platform.processor() or platform.machine()}, python {platform.python_version()}, numpy {np.__version__}")

    print("\nnumpy renderer, every image of the default datasets at 64x64:")
    for name in ("pendulum", "flow", "causal_circuit"):
        count, seconds = numpy_speed(name, 64)
        print(f"  {name:<15} {count:6d} images in {seconds:6.2f} s = {count / seconds:8.0f} images/s")

    pendulum = registry.dataset("pendulum", cache_dir="/nonexistent-not-used")
    grid = np.concatenate([d["factors"] for d in pendulum._designs.values()])
    subset = grid[np.linspace(0, len(grid) - 1, args.matplotlib_images).astype(int)]
    per_image = matplotlib_pendulum_seconds(subset) / len(subset)
    matplotlib_full = per_image * len(grid)
    print(f"\nfull Pendulum grid ({len(grid)} images):")
    print(f"  matplotlib, 96x96 PNG:  {matplotlib_full:7.2f} s (measured on {len(subset)} images, {per_image * 1e3:.1f} ms each)")
    for size in (64, 96):
        count, seconds = numpy_speed("pendulum", size)
        print(f"  numpy renderer, {size}x{size}: {seconds:7.2f} s -> {matplotlib_full / seconds:5.0f}x faster than matplotlib")


if __name__ == "__main__":
    main()
