"""A simulated negative control for the light tunnel: buchholz_1's SCM drawn anew, rendered by model F3.

The factors, the SCM, its environments and the splits are those of the real data (:mod:`crlbench.datasets.light_tunnel`,
``juangamella/causal-chamber`` ``datasets/lt_crl_benchmark_v1/generators/buchholz_1.py``): per dataset seed, an
observational sample of ``n_per_environment`` rows and one of as many rows per interventional environment,
each standardised with the observational sample's own mean and sd, clipped, scaled and rounded to set-points
as the generator does. The images are drawn by a numpy reimplementation of the mechanistic image model F3 of
Gamella, Peters, Buehlmann (Nature Machine Intelligence 2025, Appendix IV.2.2), ``ModelF3`` in the
``causalchamber`` package (``causalchamber/simulators/lt/image/models_f.py``, version 0.2.8, MIT licence,
(c) 2025 Juan L. Gamella), with the calibrated parameters of its tutorial
(``causalchamber/simulators/tutorials/test_scripts/tutorial_ModelsF.py``):

    colour = exposure * diag(w_r, w_g, w_b) @ S @ (red, green, blue) / 255 * ((Tp - Tc) cos^2(pol_1 - pol_2) + Tc)

clipped to [0, 1] and painted on one hexagon (centre 0.5 / 0.5, radius 0.22 of the image side, no rotation;
the pixel grid as ``coord_grid``/``hexagon_mask`` build it) over black, then rounded to 8 bits.

Why a negative control: every image is one uniformly coloured hexagon, so at most three numbers (its colour)
carry the five factors, and the polarisers enter only through cos^2(pol_1 - pol_2): pol_1 and pol_2 are not
identifiable (``unidentifiable``), at most their difference up to sign. The synthetic twin of the ICML 2025 paper
(``*_synth_det``) was rendered by ``lt.DecoderSimple``, a learned decoder whose weights are downloaded, so this
control is F3, not the paper's twin.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

from crlbench.core.params import legacy_field, require_counts
from crlbench.core.registry import register_dataset
from crlbench.datasets.base import Factor, SCMDataset, random_stream
from crlbench.datasets.light_tunnel import (ADJACENCY, FACTOR_NAMES, PERMUTATION, PUBLISHED_ORDER, Standardisation, abduce,
                                       choices_shared, factor_definitions, mechanism, sample_raw, split_counts)

# The calibrated parameters of tutorial_ModelsF.py (model F3).
SENSOR_RESPONSE = np.array([
    [0.2995802, 0.06920322, 0.028159],
    [0.04017132, 0.9209918, 0.31265],
    [0.00217392, 0.2071558, 0.75763],
])
WHITE_BALANCE = (2.65625, 1.0, 1.77344)  # w_r, w_g, w_b
TRANSMISSION_ALIGNED = np.array([[0.29], [0.35], [0.33]])  # Tp, per colour channel
TRANSMISSION_CROSSED = np.array([[0.02], [0.08], [0.18]])  # Tc
EXPOSURE = 2.5
CENTRE_X, CENTRE_Y, RADIUS, OFFSET = 0.5, 0.5, 0.22, 0.0
for _constant in (SENSOR_RESPONSE, TRANSMISSION_ALIGNED, TRANSMISSION_CROSSED):
    _constant.setflags(write=False)


def f3_colours(red, green, blue, pol_1, pol_2) -> np.ndarray:
    """The hexagon's colour [N, 3] before clipping, for set-points in the published units (F3's formula,
    evaluated in the same order as ``ModelF3._simulate``)."""
    rgb = np.array([np.atleast_1d(np.asarray(red) / 255), np.atleast_1d(np.asarray(green) / 255),
                    np.atleast_1d(np.asarray(blue) / 255)])
    difference = np.deg2rad(pol_1) - np.deg2rad(pol_2)
    malus = (TRANSMISSION_ALIGNED - TRANSMISSION_CROSSED) * np.cos(difference) ** 2 + TRANSMISSION_CROSSED
    colour = EXPOSURE * np.diag(WHITE_BALANCE) @ SENSOR_RESPONSE @ rgb * malus
    return colour.T


@functools.lru_cache(maxsize=8)
def hexagon_mask(size: int) -> np.ndarray:
    """bool [size, size]: F3's hexagon. Pixel (row i, column j) is the point (j, size - 1 - i); it is inside when
    the cross products of (point - vertex) with every edge (vertex - next vertex) are all <= 0 or all > 0."""
    angles = np.arange(6) * (np.pi / 3) + OFFSET
    vertices = np.stack([CENTRE_X + RADIUS * np.cos(angles), CENTRE_Y + RADIUS * np.sin(angles)], axis=1) * size
    x = np.tile(np.arange(size), (size, 1))
    y = x.T[::-1, :]
    crosses = []
    for i, vertex in enumerate(vertices):
        edge = vertex - vertices[(i + 1) % len(vertices)]
        crosses.append((x - vertex[0]) * edge[1] - (y - vertex[1]) * edge[0])
    crosses = np.array(crosses)
    mask = (crosses <= 0).all(axis=0) | (crosses > 0).all(axis=0)
    mask.setflags(write=False)
    return mask


def render_f3(red, green, blue, pol_1, pol_2, size: int) -> np.ndarray:
    """F3's images, float64 [N, size, size, 3] in [0, 1] (what ``ModelF3.simulate_from_inputs`` returns)."""
    colours = np.clip(f3_colours(red, green, blue, pol_1, pol_2), 0.0, 1.0)
    return colours[:, None, None, :] * hexagon_mask(size)[None, :, :, None]


def render_f3_uint8(published: np.ndarray, size: int) -> np.ndarray:
    """uint8 [N, size, size, 3] images of set-points [N, 5] in the published order, F3's colours rounded to 8 bits."""
    colours = np.clip(f3_colours(*published.T), 0.0, 1.0)
    levels = np.rint(colours * 255.0).astype(np.uint8)
    return levels[:, None, None, :] * hexagon_mask(size)[None, :, :, None].astype(np.uint8)


@dataclass(frozen=True)
class ChamberF3Params:
    """Parameters of the F3 control; the defaults are the published sizes (10,000 rows per environment, 64 px)."""

    seed: int = 0  # draws the SCM sample and the environments
    n_per_environment: int = 10000  # rows of the observational sample and of each interventional environment
    size: int = 64  # image side in pixels
    # the environments mode: the training split pools the observations with the five interventional environments
    environments: bool = legacy_field(False, legacy=False)

    def __post_init__(self) -> None:
        require_counts(self, "dataset 'chamber_f3'", ("n_per_environment", "size"))


@register_dataset("chamber_f3")
class ChamberF3(SCMDataset):
    """buchholz_1's SCM and environments rendered by model F3 (module docstring); ``noise`` is the linear SCM's
    noise in raw units, abduced against the rounded parents (:func:`crlbench.datasets.light_tunnel.abduce`)."""

    name = "chamber_f3"
    version = "1.0"
    Params = ChamberF3Params
    split_names = ("train", "val", "test")
    original_order = PUBLISHED_ORDER
    permutation = PERMUTATION
    adjacency = ADJACENCY
    environment_source = "stored"  # drawn with the published intervention means and variances, not generated
    satisfies = frozenset({"linear_scm"})  # buchholz_1's linear Gaussian SCM (up to clipping and rounding)
    unidentifiable = {
        "pol_1": "F3 sees the polarisers only through cos^2(pol_1 - pol_2): only their difference reaches the "
                 "image, up to sign (and 180 degrees)",
        "pol_2": "as pol_1: only cos^2(pol_1 - pol_2) reaches the image",
    }

    standardisation: Standardisation  # of this seed's observational sample, set by sample_splits

    def factor_definitions(self) -> tuple[Factor, ...]:
        return factor_definitions()

    def mechanism(self, k: int, factors: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return mechanism(self.standardisation, k, factors, noise)

    def sample_splits(self) -> dict[str, dict[str, np.ndarray]]:
        raw = sample_raw(random_stream(self.params.seed, "scm_noise", 0), self.params.n_per_environment)
        self.standardisation = Standardisation.of_sample(raw)
        factors, noise = self._set_points(raw)
        bounds = np.cumsum((0, *split_counts(len(factors))))
        return {name: {"factors": factors[start:stop], "noise": noise[start:stop]}
                for name, start, stop in zip(self.split_names, bounds[:-1], bounds[1:])}

    def sample_environments(self) -> dict[str, np.ndarray]:
        """Per card factor k, ``n_per_environment`` rows under the published do(k ~ N(m, s^2)) from the seed's
        ``environments`` stream k, of which the training part (first ``int(0.8 n)``) is kept: environment k + 1."""
        n_train = split_counts(self.params.n_per_environment)[0]
        blocks: dict[str, list[np.ndarray]] = {"factors": [], "noise": [], "environment": [], "environment_targets": []}
        for k in range(len(FACTOR_NAMES)):
            rng = random_stream(self.params.seed, "environments", k)
            raw = sample_raw(rng, self.params.n_per_environment, target=k)
            factors, noise = self._set_points(raw[:n_train])
            blocks["factors"].append(factors)
            blocks["noise"].append(noise)
            blocks["environment"].append(np.full(n_train, k + 1, dtype=np.int64))
            blocks["environment_targets"].append(np.full(n_train, k, dtype=np.int64))
        return {key: np.concatenate(value) for key, value in blocks.items()}

    def _set_points(self, raw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The generator's set-points of raw draws, and the noise abduced against their rounded parents; the
        factors are solved from that noise, so ``solve(noise)`` gives them back exactly."""
        noise = abduce(self.standardisation, self.standardisation.to_actuators(raw), raw)
        return self.solve(noise), noise

    def render_batch(self, factors: np.ndarray, noise: np.ndarray, size: int) -> np.ndarray:
        return render_f3_uint8(factors[:, np.argsort(PERMUTATION)], size)

    def choices(self) -> dict[str, str]:
        return {
            **choices_shared(),
            "sample": f"drawn per dataset seed: {self.params.n_per_environment} observational rows standardise every "
                      "environment (their own mean and sd, as the generator's); sempler samples the joint normal, "
                      "crlbench the noise and solves: the same law, other draws",
            "environments": "stored: per card factor k one environment (k + 1) of n_per_environment rows under the "
                            "published do(k ~ N(m, s^2)), its training part (first int(0.8 n) rows) pooled",
            "noise": "the linear SCM's noise in raw units, abduced against the parents' rounded set-points",
            "renderer": "numpy reimplementation of model F3 (causalchamber 0.2.8 ModelF3, MIT) with the tutorial's "
                        "calibrated parameters (S, w_r, w_g, w_b, Tp, Tc, exposure 2.5, centre 0.5/0.5, radius 0.22, "
                        "offset 0); rounded to 8 bits; no JPEG, no camera noise",
            "information": "one uniformly coloured hexagon on black: at most three numbers (its colour) carry the five "
                           "factors; a negative control, not a benchmark of recovery",
            "twin": "the paper's synthetic twin (*_synth_det) was rendered by lt.DecoderSimple, a learned decoder "
                    "whose weights need a download: this control is F3, not the paper's twin",
        }
