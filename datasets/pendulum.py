"""Pendulum (Yang et al., CausalVAE, CVPR 2021; generator ``causal_data/pendulum.py``).

A pendulum and a light source cast a shadow on the ground. Factors, in the reference label units
and in topological order (the publication's own order):

0. ``pendulum_angle``: index i in {-40..43}; the angle from the vertical is theta = i * pi / 200.
1. ``light_angle``: index j in {60..147} without 100; the light's angle is phi = j * pi / 200.
2. ``shadow_length`` = max(3, 9.5 |cos(theta - phi)| / sin(phi)), the floor active for 39.6 % of
   the grid.
3. ``shadow_position`` = 10 + 4.75 sin(theta) - (11 - 4.75 cos(theta)) cot(phi).

Both causes are a full factorial grid (84 x 87 = 7308 images) and both effects are deterministic,
so the exogenous noise of a root is its own value and that of an effect is zero. Extras per split:
``legacy_factors`` (the integer labels of the reference filenames: i, j, int(length),
int(position)) and ``grid_index`` (the generator's loop counter k).
Weakly supervised pairs (for ILCM-style methods) are drawn from the SCM on first use, as CausalCircuit's
are: one factor or none intervened, the same noise (:meth:`crlbench.datasets.base.SCMDataset.pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from crlbench.core.params import legacy_field, require, require_counts
from crlbench.core.registry import register_dataset
from crlbench.datasets.base import Factor, SCMDataset, grid_split, random_test_mask
from crlbench.datasets.raster import Canvas, axes_box, rgb

ANGLE_INDICES = np.arange(-40, 44)
LIGHT_INDICES = np.array([j for j in range(60, 148) if j != 100])  # tan(phi) is infinite at j = 100
SHADOW_FLOOR = 3.0
PIVOT = (10.0, 10.5)
ROD_LENGTH, BALL_RADIUS, TIP_DISTANCE = 8.0, 1.5, 9.5
SUN_HEIGHT, SUN_RADIUS, SUN_DISTANCE = 20.5, 3.0, 10.0
GROUND = -0.5

# The reference figure: 1 x 1 inch at 96 dpi, axes box (0.125, 0.11)-(0.9, 0.88), xlim (0, 20),
# ylim (-1, 21), so col = 12 + 3.72 x and row = 85.44 - 3.36 (y + 1) in 96-pixel units.
REFERENCE_SIZE = 96
LINE_WIDTH = 4.0  # 3 pt at 96 dpi
# The circles are patches drawn with ``color=``, which strokes their edge too (1 pt, 4/3 px):
# half of that stroke lies outside the radius. Measured: it lowers the error against the
# reference renders from 1.22 to 0.58 grey levels per pixel (0.26 with the snapped axes box).
EDGE_GROWTH = 2.0 / 3.0
BLACK, FIREBRICK, ORANGE, WHITE = (0.0, 0.0, 0.0), rgb(178, 34, 34), rgb(255, 165, 0), (1.0, 1.0, 1.0)


def to_radians(index: np.ndarray) -> np.ndarray:
    """The generator's angle index to radians (index * pi / 200)."""
    return np.asarray(index, dtype=np.float64) * np.pi / 200.0


def shadow_length(angle_index: np.ndarray, light_index: np.ndarray) -> np.ndarray:
    """Length of the shadow of pivot-to-tip on the ground, floored at 3 (closed form)."""
    theta, phi = to_radians(angle_index), to_radians(light_index)
    return np.maximum(SHADOW_FLOOR, TIP_DISTANCE * np.abs(np.cos(theta - phi)) / np.sin(phi))


def shadow_position(angle_index: np.ndarray, light_index: np.ndarray) -> np.ndarray:
    """Midpoint of the projections of pivot and tip onto the ground along the light (closed form)."""
    theta, phi = to_radians(angle_index), to_radians(light_index)
    return 10.0 + 4.75 * np.sin(theta) - (11.0 - 4.75 * np.cos(theta)) / np.tan(phi)


@dataclass(frozen=True)
class PendulumParams:
    """Parameters of Pendulum; the defaults reproduce the reference generator."""

    size: int = 64  # image side in pixels
    seed: int = 0  # only used by the random split
    split_rule: Literal["reference", "random"] = "reference"  # reference: test iff k >= 4, k % 4 == 0
    test_fraction: float = 0.25  # of the random split
    # the environments mode (crlbench.datasets.environments): the training split pools the observations with
    # one interventional environment per factor; "hard" do() or "soft" (the target's noise shifted)
    environments: bool = legacy_field(False, legacy=False)
    intervention: Literal["hard", "soft"] = legacy_field("hard", legacy="hard")

    def __post_init__(self) -> None:
        owner = "dataset 'pendulum'"
        require_counts(self, owner, ("size",))
        require(0.0 < self.test_fraction < 1.0, owner, "test_fraction", "in (0, 1)", self.test_fraction)


@register_dataset("pendulum")
class Pendulum(SCMDataset):
    name = "pendulum"
    version = "1.0"
    Params = PendulumParams
    pair_source = "generated"  # weakly supervised pairs drawn from the SCM on first use (SCMDataset.pairs)
    environment_source = "generated"  # environments drawn from the SCM (crlbench.datasets.environments)
    original_order = ("pendulum_angle", "light_angle", "shadow_length", "shadow_position")
    permutation = (0, 1, 2, 3)
    adjacency = ((0, 0, 1, 1), (0, 0, 1, 1), (0, 0, 0, 0), (0, 0, 0, 0))

    def factor_definitions(self) -> tuple[Factor, ...]:
        angle, light = np.meshgrid(ANGLE_INDICES, LIGHT_INDICES, indexing="ij")
        length, position = shadow_length(angle, light), shadow_position(angle, light)
        return (
            Factor("pendulum_angle", "discrete", -40, 43, tuple(map(float, ANGLE_INDICES)),
                   "index i, theta = i pi / 200 rad"),
            Factor("light_angle", "discrete", 60, 147, tuple(map(float, LIGHT_INDICES)),
                   "index j, phi = j pi / 200 rad"),
            Factor("shadow_length", "continuous", float(length.min()), float(length.max()),
                   unit="generator data units"),
            Factor("shadow_position", "continuous", float(position.min()), float(position.max()),
                   unit="generator data units"),
        )

    def mechanism(self, k: int, factors: np.ndarray, noise: np.ndarray) -> np.ndarray:
        if k in (0, 1):
            return noise[:, k]
        if k == 2:
            return shadow_length(factors[:, 0], factors[:, 1])
        return shadow_position(factors[:, 0], factors[:, 1])

    def sample_splits(self) -> dict[str, dict[str, np.ndarray]]:
        angle, light = np.meshgrid(ANGLE_INDICES, LIGHT_INDICES, indexing="ij")  # i outer, j inner
        noise = np.zeros((angle.size, 4))
        noise[:, 0], noise[:, 1] = angle.ravel(), light.ravel()
        factors = self.solve(noise)
        legacy = factors.copy()
        legacy[:, 2:] = np.trunc(legacy[:, 2:])  # the reference filename stores int()
        index = np.arange(len(factors))
        if self.params.split_rule == "reference":
            test = (index >= 4) & (index % 4 == 0)
        else:
            test = random_test_mask(len(factors), self.params.test_fraction, self.params.seed, f"dataset {self.name!r}")
        arrays = {"factors": factors, "noise": noise, "legacy_factors": legacy, "grid_index": index}
        return grid_split(test, arrays)

    def render_batch(self, factors: np.ndarray, noise: np.ndarray, size: int) -> np.ndarray:
        return draw_pendulum(factors, size)

    def choices(self) -> dict[str, str]:
        return {
            "labels": "float factors in the reference units; the filename integers are extras['legacy_factors']",
            "split": {"reference": "reference: test iff k >= 4 and k % 4 == 0 (5482 / 1826)",
                      "random": f"seeded random, test fraction {self.params.test_fraction}"}[self.params.split_rule],
            "rendering": "numpy rasteriser with analytic anti-aliasing, the reference geometry and colours, RGB",
            "noise": "none: roots are a grid (their noise is their value), effects are deterministic",
        }


def draw_pendulum(factors: np.ndarray, size: int) -> np.ndarray:
    """Draw rod, ball, sun and shadow as the reference generator's matplotlib figure does
    (huawei-noah/trustworthyAI ``research/CausalVAE/causal_data/pendulum.py``)."""
    scale = size / REFERENCE_SIZE
    col = lambda x: (12.0 + 3.72 * x) * scale  # noqa: E731 - the reference data-to-pixel map
    row = lambda y: (85.44 - 3.36 * (y + 1.0)) * scale  # noqa: E731
    theta, phi = to_radians(factors[:, 0]), to_radians(factors[:, 1])
    length, position = factors[:, 2], factors[:, 3]
    ball_x = PIVOT[0] + ROD_LENGTH * np.sin(theta)
    ball_y = PIVOT[1] - ROD_LENGTH * np.cos(theta)
    sun_x = PIVOT[0] + SUN_DISTANCE / np.tan(phi)
    canvas = Canvas(len(factors), size, size, WHITE, clip_box=axes_box(col(0), row(21), col(20), row(-1)))
    width = LINE_WIDTH * scale
    canvas.stroke_segment(col(PIVOT[0]), row(PIVOT[1]), col(ball_x), row(ball_y), width, BLACK)
    for x, y, radius, color in ((ball_x, ball_y, BALL_RADIUS, FIREBRICK), (sun_x, SUN_HEIGHT, SUN_RADIUS, ORANGE)):
        rx, ry = (3.72 * radius + EDGE_GROWTH) * scale, (3.36 * radius + EDGE_GROWTH) * scale
        canvas.fill_ellipse(col(x), row(y), rx, ry, color)
    ground = row(GROUND)
    canvas.stroke_segment(col(position - length / 2), ground, col(position + length / 2), ground, width, BLACK)
    return canvas.to_uint8()
