"""Flow (Yang et al., CausalVAE, CVPR 2021; generator ``causal_data/flow.py``).

A ball sits in a water tank with a hole in its wall; the water jets out of the hole. Factors, in
the reference label units, in the canonical topological order of SCM-VAE and ICM-VAE (the
CausalVAE file order is ball, height, flow, hole: ``permutation = (0, 3, 1, 2)``):

0. ``ball_size``: index r in {5..34}; the ball's radius is r / 30.
1. ``hole``: index in {6..14}; the hole is at height deep = hole / 3.
2. ``water_height``: h = (r / 30)^3 + h_raw / 10, with exogenous noise h_raw in {10..39}.
3. ``water_flow``: the jet's reach x = sqrt(2 * 0.98 * h * (deep - 0.5)).

The grid r x h_raw x hole holds 8100 samples. Noise columns: a root's noise is its value, height's
is h_raw, and flow's is the jet's rendering noise epsilon = 0.01 max(|N(0, 1)|, 1) (the drawn jet
uses g = 0.98 + epsilon; the reference draws it unseeded, here it is seeded per sample). Extras per
split: ``legacy_factors`` (the filename integers r, hole, int(h), int(10 x), canonical order) and
``grid_index`` (the generator's loop counter k).
Weakly supervised pairs (for ILCM-style methods) are drawn from the SCM on first use, as CausalCircuit's
are: one factor or none intervened, the same noise (:meth:`crlbench.datasets.base.SCMDataset.pairs`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from crlbench.core.params import legacy_field, require, require_counts
from crlbench.core.registry import register_dataset
from crlbench.datasets.base import Factor, SCMDataset, grid_split, random_stream, random_test_mask
from crlbench.datasets.raster import Canvas, axes_box, rgb, snap

BALL_INDICES = np.arange(5, 35)
HEIGHT_NOISE = np.arange(10, 40)
HOLE_INDICES = np.arange(6, 15)
GRAVITY = 0.98
JET_POINTS = 50  # the reference draws the jet as a polyline through 50 points
HOLE_GAP = 0.4
TANK_LEFT, TANK_RIGHT, WALL_TOP, WATER_BASE, BALL_X = 3.0, 8.0, 19.0, 5.0, 5.5
JET_END, GROUND = 0.5, 0.2

# The reference figure: 1 x 1 inch at 96 dpi, axes box (0.125, 0.11)-(0.9, 0.88), xlim (0, 20),
# ylim (0, 20), so col = 12 + 3.72 x and row = 85.44 - 3.696 y in 96-pixel units.
REFERENCE_SIZE = 96
LINE_WIDTH = 8.0 / 3.0  # 2 pt at 96 dpi; matplotlib snaps the walls and the ground to pixel centres
EDGE_GROWTH = 2.0 / 3.0  # patches drawn with color= get a 1 pt edge, half of it outside
BLACK, FIREBRICK, LIGHTSKYBLUE, WHITE = (0.0, 0.0, 0.0), rgb(178, 34, 34), rgb(135, 206, 250), (1.0, 1.0, 1.0)


def water_height(ball_index: np.ndarray, height_noise: np.ndarray) -> np.ndarray:
    """h = (r / 30)^3 + h_raw / 10: the ball displaces water."""
    return (np.asarray(ball_index, dtype=np.float64) / 30.0) ** 3 + np.asarray(height_noise) / 10.0


def water_flow(hole_index: np.ndarray, height: np.ndarray) -> np.ndarray:
    """x = sqrt(2 g h (deep - 0.5)) with g = 0.98 and deep = hole / 3 (the reference's label)."""
    return np.sqrt(2.0 * GRAVITY * height * (np.asarray(hole_index) / 3.0 - JET_END))


def jet_noise(rng: np.random.Generator, count: int) -> np.ndarray:
    """The reference's rendering noise epsilon = 0.01 max(|N(0, 1)|, 1), one per sample."""
    return 0.01 * np.maximum(np.abs(rng.standard_normal(count)), 1.0)


@dataclass(frozen=True)
class FlowParams:
    """Parameters of Flow; the defaults reproduce the reference generator (seeded)."""

    size: int = 64  # image side in pixels
    seed: int = 0  # seeds the jet's rendering noise and the random split
    # reference: test iff k % 5 == 4 (6480 / 1620); legacy: the reference's files, whose train
    # labels collide so that 5254 train files survive (last write wins); random: seeded.
    split_rule: Literal["reference", "legacy", "random"] = "reference"
    test_fraction: float = 0.2  # of the random split
    # the environments mode (crlbench.datasets.environments): the training split pools the observations with
    # one interventional environment per factor; "hard" do() or "soft" (the target's noise shifted)
    environments: bool = legacy_field(False, legacy=False)
    intervention: Literal["hard", "soft"] = legacy_field("hard", legacy="hard")

    def __post_init__(self) -> None:
        owner = "dataset 'flow'"
        require_counts(self, owner, ("size",))
        require(0.0 < self.test_fraction < 1.0, owner, "test_fraction", "in (0, 1)", self.test_fraction)


@register_dataset("flow")
class Flow(SCMDataset):
    name = "flow"
    version = "1.0"
    Params = FlowParams
    pair_source = "generated"  # weakly supervised pairs drawn from the SCM on first use (SCMDataset.pairs)
    environment_source = "generated"  # environments drawn from the SCM (crlbench.datasets.environments)
    original_order = ("ball_size", "water_height", "water_flow", "hole")
    permutation = (0, 3, 1, 2)
    adjacency = ((0, 0, 1, 0), (0, 0, 0, 1), (0, 0, 0, 1), (0, 0, 0, 0))

    def factor_definitions(self) -> tuple[Factor, ...]:
        ball, height_noise, hole = np.meshgrid(BALL_INDICES, HEIGHT_NOISE, HOLE_INDICES, indexing="ij")
        height = water_height(ball, height_noise)
        flow = water_flow(hole, height)
        return (
            Factor("ball_size", "discrete", 5, 34, tuple(map(float, BALL_INDICES)), "index r, radius r / 30"),
            Factor("hole", "discrete", 6, 14, tuple(map(float, HOLE_INDICES)), "index, height hole / 3"),
            Factor("water_height", "continuous", float(height.min()), float(height.max()), unit="h"),
            Factor("water_flow", "continuous", float(flow.min()), float(flow.max()), unit="jet reach x"),
        )

    def mechanism(self, k: int, factors: np.ndarray, noise: np.ndarray) -> np.ndarray:
        if k in (0, 1):
            return noise[:, k]
        if k == 2:
            return water_height(factors[:, 0], noise[:, 2])
        return water_flow(factors[:, 1], factors[:, 2])

    def sample_splits(self) -> dict[str, dict[str, np.ndarray]]:
        ball, height_noise, hole = np.meshgrid(BALL_INDICES, HEIGHT_NOISE, HOLE_INDICES, indexing="ij")
        noise = np.stack([ball.ravel(), hole.ravel(), height_noise.ravel(), np.zeros(ball.size)], axis=1)
        noise = noise.astype(np.float64)
        noise[:, 3] = jet_noise(random_stream(self.params.seed, "render_noise"), len(noise))
        factors = self.solve(noise)
        legacy = np.stack(
            [factors[:, 0], factors[:, 1], np.trunc(factors[:, 2]), np.trunc(10 * factors[:, 3])], axis=1
        )
        index = np.arange(len(factors))
        arrays = {"factors": factors, "noise": noise, "legacy_factors": legacy, "grid_index": index}
        if self.params.split_rule == "random":
            test = random_test_mask(len(factors), self.params.test_fraction, self.params.seed, f"dataset {self.name!r}")
            return grid_split(test, arrays)
        splits = grid_split(index % 5 == 4, arrays)
        if self.params.split_rule == "legacy":
            train = splits["train"]
            keep = last_occurrences(train["legacy_factors"])
            splits["train"] = {key: value[keep] for key, value in train.items()}
        return splits

    def render_batch(self, factors: np.ndarray, noise: np.ndarray, size: int) -> np.ndarray:
        return draw_flow(factors, noise[:, 3], size)

    def choices(self) -> dict[str, str]:
        return {
            "labels": "float factors in the reference units; the filename integers are extras['legacy_factors']",
            "order": "canonical (ball, hole, height, flow); CausalVAE's file order is (ball, height, flow, hole)",
            "split": {"reference": "reference: test iff k % 5 == 4 (6480 / 1620, no label collisions)",
                      "legacy": "legacy: the reference's files, colliding labels overwritten (5254 / 1620)",
                      "random": f"seeded random, test fraction {self.params.test_fraction}"}[self.params.split_rule],
            "jet_noise": "seeded per sample from the dataset seed; stored as noise[:, water_flow]",
            "rendering": "numpy rasteriser with analytic anti-aliasing, the reference geometry and colours, RGB",
            "do(water_flow)": "the drawn jet is scaled so that its reach at y = 0.5 is the intervened flow",
        }


def last_occurrences(labels: np.ndarray) -> np.ndarray:
    """Indices of the last row of each distinct label row, in order (files overwritten by name)."""
    reversed_rows = labels[::-1]
    _, first_in_reversed = np.unique(reversed_rows, axis=0, return_index=True)
    return np.sort(len(labels) - 1 - first_in_reversed)


def draw_flow(factors: np.ndarray, jet_epsilon: np.ndarray, size: int) -> np.ndarray:
    """Draw water, tank walls, ball, jet and ground as the reference generator's matplotlib figure does
    (huawei-noah/trustworthyAI ``research/CausalVAE/causal_data/flow.py``)."""
    scale = size / REFERENCE_SIZE
    col = lambda x: (12.0 + 3.72 * x) * scale  # noqa: E731 - the reference data-to-pixel map
    row = lambda y: (85.44 - 3.696 * y) * scale  # noqa: E731
    ball_radius, deep = factors[:, 0] / 30.0, factors[:, 1] / 3.0
    height, flow = factors[:, 2], factors[:, 3]
    canvas = Canvas(len(factors), size, size, WHITE, clip_box=axes_box(col(0), row(20), col(20), row(0)))
    width, grow = LINE_WIDTH * scale, EDGE_GROWTH * scale

    canvas.fill_rect(col(TANK_LEFT) - grow, row(WATER_BASE + height) - grow,
                     col(TANK_RIGHT) + grow, row(0) + grow, LIGHTSKYBLUE)
    left, right = snap(col(TANK_LEFT)), snap(col(TANK_RIGHT))
    canvas.stroke_segment(left, row(0), left, row(WALL_TOP), width, BLACK)
    canvas.stroke_segment(right, row(0), right, row(deep), width, BLACK)
    canvas.stroke_segment(right, row(deep + HOLE_GAP), right, row(WALL_TOP), width, BLACK)
    ball_y = JET_END + ball_radius
    canvas.fill_ellipse(col(BALL_X), row(ball_y), 3.72 * ball_radius * scale + grow,
                        3.696 * ball_radius * scale + grow, FIREBRICK)

    # x(y) = 8 + sqrt(2 (g + eps) h (deep - y)), written through the flow label so that do(flow)
    # moves the jet: the label is the reach at y = 0.5 with g = 0.98.
    fraction = np.linspace(0.0, 1.0, JET_POINTS)[None, :]
    jet_y = deep[:, None] + (JET_END - deep[:, None]) * fraction
    stretch = np.sqrt((GRAVITY + jet_epsilon) / GRAVITY)[:, None]
    jet_x = TANK_RIGHT + flow[:, None] * stretch * np.sqrt(fraction)
    canvas.stroke_polyline(col(jet_x), row(jet_y), width, LIGHTSKYBLUE)
    ground, zeros = snap(row(GROUND)), np.zeros(len(factors))
    canvas.stroke_segment(col(zeros), ground, col(zeros + 20), ground, width, BLACK, cap="projecting")
    return canvas.to_uint8()
