"""The light tunnel of the Causal Chamber as ``lt_crl_benchmark_v1``'s ``buchholz_1`` experiments define it: factors,
SCM, environments and set-points, shared by the real data (:mod:`crlbench.datasets.chamber`) and its simulated
negative control (:mod:`crlbench.datasets.chamber_f3`). Not a dataset itself.

Sources: Gamella, Peters, Buehlmann, "Causal chambers as a real-world physical testbed for AI methodology",
Nature Machine Intelligence 2025; Gamella, Bing, Runge, "Sanity Checking Causal Representation Learning on a
Simple Real-World System", ICML 2025. Data and generator: ``juangamella/causal-chamber``, folder
``datasets/lt_crl_benchmark_v1`` (README, ``variables.csv``, ``params_buchholz_1.py``,
``generators/buchholz_1.py``; data CC BY 4.0, code MIT).

**Factors.** The light source's LED brightness ``red``, ``green``, ``blue`` (integers 0..255) and the
polariser angles ``pol_1``, ``pol_2`` (degrees, -90..90 in steps of 0.1): the actuator set-points written in
each experiment's CSV (not the measured angles ``angle_1`` / ``angle_2``). The published order red, green,
blue, pol_1, pol_2 is not topological (blue -> green), so the card lists them in the topological order
closest to it (Kahn's algorithm, lowest published index first): blue, green, pol_1, red, pol_2
(``permutation = (2, 1, 3, 0, 4)``).

**SCM** (``params_buchholz_1.py``, ``generators/buchholz_1.py``). A linear Gaussian SCM in raw units,
``x_j = sum_i W[i, j] x_i + eps_j``, ``eps_j ~ N(0, v_j)`` (sempler's LGANM; ``W[i, j] != 0`` means i -> j):
green -> red (0.719), pol_1 -> red (0.849), blue -> green (0.893), green -> pol_2 (0.677), blue -> pol_2
(0.985). Environment ``buchholz_1_<factor>`` replaces the factor's mechanism by ``N(m, s^2)`` (raw units;
sempler's tuple is (mean, variance)). 10,000 rows per experiment. Each sample, observational or not, is
standardised with the *observational sample's* mean and standard deviation (``ddof = 0``), clipped to
+-5 sd, mapped to the actuators by ``25.5 z + 127.5`` (LEDs) and ``18 z`` (polarisers) and written as
``int()`` (LEDs: truncation) and with one decimal (polarisers: rounding to 0.1 degree).

**Mechanisms on set-points.** crlbench's mechanisms act on the factor values the data holds, the rounded
set-points: a parent's set-point is mapped back to raw units at the centre of its rounding cell (``a + 0.5``
for an LED, which ``int()`` truncated from ``[a, a + 1)``; ``a`` for an angle), the linear combination and
the noise are added in raw units, and the result is mapped to a set-point with the clip and the rounding
above. The generator computes a child from its parents' unrounded values; crlbench's noise is *abduced*
against the rounded parents (``eps_j = x_j - sum_i W[i, j] x_i(rounded)``), so sampled rows are exactly the
generator's while ``intervene()`` recomputes children from rounded parents (one LED step is 0.04 sd, one
angle step 0.006 sd). The noise differs from the generator's Gaussian noise by at most the weights times half
a rounding step of the parents.

**Identifiability.** By Malus's law the light that reaches the camera through both polarisers depends on
their angles only through cos^2(pol_1 - pol_2) (NMI paper, Appendix IV.2.2, models F1-F3): at most the
difference of the angles, up to its sign and to 180 degrees, is in the images; the card says so
(``unidentifiable``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from crlbench.datasets.base import Factor

BENCHMARK = "lt_crl_benchmark_v1"
PUBLISHED_ORDER = ("red", "green", "blue", "pol_1", "pol_2")
FACTOR_NAMES = ("blue", "green", "pol_1", "red", "pol_2")  # card order: topological
PERMUTATION = tuple(PUBLISHED_ORDER.index(name) for name in FACTOR_NAMES)  # (2, 1, 3, 0, 4)
LEDS = ("red", "green", "blue")
IMAGE_COLUMN = "image_file"
PUBLISHED_SIZE = 64  # the only image size of lt_crl_benchmark_v1 (folder images_64)


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array


# params_buchholz_1.py, in the published order red, green, blue, pol_1, pol_2.
PUBLISHED_WEIGHTS = _read_only(np.array([
    [0.0, 0.0, 0.0, 0.0, 0.0],
    [0.71943922, 0.0, 0.0, 0.0, 0.67726298],
    [0.0, 0.89303215, 0.0, 0.0, 0.98534901],
    [0.84868401, 0.0, 0.0, 0.0, 0.0],
    [0.0, 0.0, 0.0, 0.0, 0.0],
]))
PUBLISHED_OBS_VARIANCES = _read_only(np.array([1.3855493, 1.16426732, 1.00502177, 1.95646855, 1.27482347]))
PUBLISHED_INT_MEANS = _read_only(np.array([1.16920556, 1.47496736, -1.60596209, -1.96578519, 1.0117071]))
PUBLISHED_INT_VARIANCES = _read_only(np.array([1.94878138, 1.35886756, 1.57343313, 1.1021785, 1.30511067]))

# The same in card order.
WEIGHTS = _read_only(PUBLISHED_WEIGHTS[np.ix_(PERMUTATION, PERMUTATION)])
OBS_VARIANCES = _read_only(PUBLISHED_OBS_VARIANCES[list(PERMUTATION)])
INT_MEANS = _read_only(PUBLISHED_INT_MEANS[list(PERMUTATION)])
INT_VARIANCES = _read_only(PUBLISHED_INT_VARIANCES[list(PERMUTATION)])
ADJACENCY = tuple(tuple(int(weight != 0.0) for weight in row) for row in WEIGHTS)

# From standardised units to the actuators (generators/buchholz_1.py), per card factor.
CLIP_SD = 5.0
IS_LED = _read_only(np.array([name in LEDS for name in FACTOR_NAMES]))
ACTUATOR_SCALE = _read_only(np.where(IS_LED, 255.0 / (2 * CLIP_SD), 90.0 / CLIP_SD))
ACTUATOR_SHIFT = _read_only(np.where(IS_LED, 127.5, 0.0))
ACTUATOR_LOW = _read_only(np.where(IS_LED, 0.0, -90.0))
ACTUATOR_HIGH = _read_only(np.where(IS_LED, 255.0, 90.0))
# Where a set-point's unrounded value lies on average: int() truncates [a, a + 1) to a; one decimal rounds
# [a - 0.05, a + 0.05) to a.
CELL_CENTRE = _read_only(np.where(IS_LED, 0.5, 0.0))


def experiment_names(experiment: str = "buchholz_1") -> dict[int | None, str]:
    """The experiments of a family: None -> the observational one, card factor k -> the one intervening on it."""
    return {None: f"{experiment}_obs", **{k: f"{experiment}_{name}" for k, name in enumerate(FACTOR_NAMES)}}


def factor_definitions() -> tuple[Factor, ...]:
    """The five factors in card order, with their grids of set-points."""
    led_grid = tuple(float(value) for value in range(256))
    angle_grid = tuple(value / 10.0 for value in range(-900, 901))
    factors = []
    for name in FACTOR_NAMES:
        if name in LEDS:
            factors.append(Factor(name, "discrete", 0.0, 255.0, led_grid, "LED brightness set-point"))
        else:
            factors.append(Factor(name, "discrete", -90.0, 90.0, angle_grid, "polariser angle set-point, degrees"))
    return tuple(factors)


def population_std() -> np.ndarray:
    """The observational standard deviations of the raw SCM (card order): sqrt diag of A diag(v) A^T,
    A = (I - W^T)^-1."""
    mixing = np.linalg.inv(np.eye(len(FACTOR_NAMES)) - WEIGHTS.T)
    return np.sqrt(np.diag(mixing @ np.diag(OBS_VARIANCES) @ mixing.T))


def quantise(actuators: np.ndarray, columns: Any = slice(None)) -> np.ndarray:
    """Set-points as the generator writes them: ``int()`` for an LED, one decimal for an angle (-0.0 -> 0.0)."""
    return np.where(IS_LED[columns], np.trunc(actuators), np.round(actuators * 10.0) / 10.0 + 0.0)


@dataclass(frozen=True)
class Standardisation:
    """The map between raw SCM units and set-points: the mean and sd of an observational sample (card order)."""

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def of_sample(cls, raw: np.ndarray) -> Standardisation:
        """The generator's: the observational sample's own mean and sd (``np.std``, ddof 0)."""
        return cls(raw.mean(axis=0), raw.std(axis=0))

    @classmethod
    def population(cls) -> Standardisation:
        """Mean 0 and the SCM's observational sd: the published sample's own values are not published."""
        return cls(np.zeros(len(FACTOR_NAMES)), population_std())

    def to_actuators(self, raw: np.ndarray, columns: Any = slice(None)) -> np.ndarray:
        """Raw values -> standardised, clipped at +-5 sd, scaled to the actuators, rounded."""
        z = np.clip((raw - self.mean[columns]) / self.std[columns], -CLIP_SD, CLIP_SD)
        return quantise(z * ACTUATOR_SCALE[columns] + ACTUATOR_SHIFT[columns], columns)

    def to_raw(self, actuators: np.ndarray, columns: Any = slice(None)) -> np.ndarray:
        """Set-points -> raw values at the centre of their rounding cell."""
        z = (actuators + CELL_CENTRE[columns] - ACTUATOR_SHIFT[columns]) / ACTUATOR_SCALE[columns]
        return z * self.std[columns] + self.mean[columns]


def sample_raw(rng: np.random.Generator, n: int, target: int | None = None) -> np.ndarray:
    """``n`` draws [n, 5] of the SCM in raw units (card order): observational, or under the published
    ``do(target ~ N(m, s^2))``. The same law as sempler's joint-normal sampling, other draws."""
    weights, means, variances = WEIGHTS.copy(), np.zeros(len(FACTOR_NAMES)), OBS_VARIANCES.copy()
    if target is not None:
        weights[:, target] = 0.0
        means[target], variances[target] = INT_MEANS[target], INT_VARIANCES[target]
    raw = means + rng.standard_normal((n, len(FACTOR_NAMES))) * np.sqrt(variances)
    for k in range(len(FACTOR_NAMES)):  # card order is topological
        raw[:, k] += raw @ weights[:, k]
    return raw


def mechanism(standardisation: Standardisation, k: int, factors: np.ndarray, noise: np.ndarray) -> np.ndarray:
    """Set-point of factor k from its parents' set-points and its raw noise (module docstring)."""
    raw = noise[:, k].copy()
    for parent in np.flatnonzero(WEIGHTS[:, k]):
        raw += WEIGHTS[parent, k] * standardisation.to_raw(factors[:, parent], parent)
    return standardisation.to_actuators(raw, k)


def abduce(standardisation: Standardisation, factors: np.ndarray, raw: np.ndarray | None = None) -> np.ndarray:
    """The noise [N, 5] under which :func:`mechanism` gives ``factors``: ``raw - to_raw(parents) @ W``, with
    ``raw`` the unrounded values when known, else the centres of the set-points' rounding cells. For an
    intervened factor it is the noise its observational mechanism would need (CausalCircuit's convention)."""
    rounded = standardisation.to_raw(factors)
    return (rounded if raw is None else raw) - rounded @ WEIGHTS


def split_counts(n: int) -> tuple[int, int, int]:
    """Rows of train / val / test by file order: CRLSanityCheck's ``int(0.8 n)``, ``int(0.1 n)``, the rest."""
    n_train, n_val = n * 8 // 10, n // 10
    return n_train, n_val, n - n_train - n_val


def choices_shared() -> dict[str, str]:
    """What both chamber datasets say on their cards."""
    sd = population_std()
    standardised = "; ".join(f"{name}: mean {mean / s:+.2f} sd, sd {np.sqrt(var) / s:.2f} sd"
                             for name, mean, var, s in zip(FACTOR_NAMES, INT_MEANS, INT_VARIANCES, sd))
    return {
        "factors": "actuator set-points (LED brightness 0..255, polariser angles in degrees, 0.1 steps), in the "
                   "topological order blue, green, pol_1, red, pol_2 (published: red, green, blue, pol_1, pol_2)",
        "scm": "buchholz_1's linear Gaussian SCM (params_buchholz_1.py) in raw units; set-points = raw standardised "
               "with the observational sample's mean/sd, clipped at +-5 sd, scaled (25.5 z + 127.5 LEDs, 18 z angles), "
               "int() for LEDs, rounded to 0.1 degree for angles",
        "mechanisms": "children computed from their parents' rounded set-points (mapped back to raw units at the "
                      "centre of the rounding cell); the generator uses unrounded values; sampled rows are exact "
                      "because the noise is abduced against the rounded parents",
        "interventions": "do(target ~ N(m, s^2)) in raw SCM units (params_buchholz_1.py int_means/int_vars), i.e. in "
                         "observational sd units: " + standardised,
        "split": "by row order per experiment (CRLSanityCheck): first int(0.8 n) train, next int(0.1 n) val, the rest "
                 "test; val and test are observational",
    }
