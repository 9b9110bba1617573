"""Interventional environments drawn from a dataset's SCM: the observational one and one per factor.

The rule follows ``buchholz_1``, the generator of the Causal Chamber's ``lt_crl_benchmark_v1``
(Gamella, Bing, Runge, ICML 2025; ``juangamella/causal-chamber``, ``datasets/lt_crl_benchmark_v1/
generators/buchholz_1.py``): environment k + 1 sets factor k to a draw from N(mu_k, sigma_k^2) with
mu_k from U([-2, -1] u [1, 2]) and sigma_k^2 from U([1, 2]), in standardised units.

crlbench's factors are rarely Gaussian (grids, atoms, bounded ranges), so "standardised units" are
rank-Gaussian units here: a value x of factor k stands at z = Phi^-1(F_k(x)), with F_k the factor's
empirical distribution over the observational training split, so that every observational marginal is
N(0, 1) in z as ``buchholz_1``'s Gaussian factors are. A drawn z maps back through the empirical
quantile ``F_k^-1(Phi(z))`` (``numpy.quantile``, ``inverted_cdf``): every value is one the factor takes
in the observations, so it stays in its support and on its grid, with no clipping.

Each environment has as many rows as the observational split (``buchholz_1``: 10,000 each). A row's
exogenous noise is fresh: each noise column is taken from its own random row of the observational
split (the noise columns of Pendulum, Flow and CausalCircuit are mutually independent), and its
factors are solved from it, so environments share no sample with the observations (Contrastive CRL
assumes unpaired data). Then, for the environment's target:

* ``hard``: ``do(factor_k = v)``, v drawn as above; descendants recomputed from the row's noise.
* ``soft``: the target keeps its mechanism, its noise is redrawn from N(mu_k, sigma_k^2) in the
  rank-Gaussian units of its own observational noise; descendants follow. Applied to the factors whose
  mechanism reads its noise (:func:`noisy_factors`); a deterministic factor (Pendulum's shadow, Flow's
  water flow) gets the hard intervention, and the design says so.

The shifts (mu, sigma^2) are drawn once per dataset seed (the dataset parameter ``seed``) from the
seed's ``environments`` stream, as are the environments' rows: a suite whose cells share the dataset
seed trains every method on the same environments.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from crlbench.core.lazy import lazy_module

special = lazy_module("scipy.special")

MEAN_RANGE = (1.0, 2.0)      # |mu| ~ U(1, 2), sign uniform: buchholz_1's U([-2, -1] u [1, 2])
VARIANCE_RANGE = (1.0, 2.0)  # sigma^2 ~ U(1, 2)


def draw_shifts(rng: np.random.Generator, factors: int) -> tuple[np.ndarray, np.ndarray]:
    """Per factor, the mean and variance of its intervention distribution in standardised units."""
    signs = rng.choice((-1.0, 1.0), size=factors)
    means = signs * rng.uniform(*MEAN_RANGE, size=factors)
    variances = rng.uniform(*VARIANCE_RANGE, size=factors)
    return means, variances


def from_rank_gaussian(marginal: np.ndarray, z: np.ndarray) -> np.ndarray:
    """Values of an empirical marginal at rank-Gaussian positions ``z``: ``F^-1(Phi(z))``."""
    return np.quantile(np.asarray(marginal, dtype=np.float64), special.ndtr(z), method="inverted_cdf")


def noisy_factors(dataset: Any, factors: np.ndarray, noise: np.ndarray) -> list[bool]:
    """Per factor, whether its mechanism reads its own noise: recomputing it with the noise column
    reversed over the observational rows changes some value."""
    result = []
    for k in range(factors.shape[1]):
        reversed_noise = noise.copy()
        reversed_noise[:, k] = noise[::-1, k]
        result.append(not np.array_equal(dataset.mechanism(k, factors, reversed_noise), dataset.mechanism(k, factors, noise)))
    return result


def design(dataset: Any, observations: dict[str, np.ndarray], kind: str, rng: np.random.Generator) -> dict[str, Any]:
    """What the environments are: per factor (card order) the shift's mean and variance and the
    intervention it gets (``hard`` or ``soft``)."""
    factors, noise = observations["factors"], observations["noise"]
    means, variances = draw_shifts(rng, factors.shape[1])
    noisy = noisy_factors(dataset, factors, noise)
    kinds = ["soft" if kind == "soft" and noisy[k] else "hard" for k in range(factors.shape[1])]
    return {"means": means, "variances": variances, "kinds": kinds}


def sample(dataset: Any, observations: dict[str, np.ndarray], plan: dict[str, Any],
           rng: np.random.Generator) -> dict[str, np.ndarray]:
    """The interventional rows, environment after environment (no images): ``factors``, ``noise``,
    ``environment`` (k + 1 for factor k's) and ``environment_targets`` (k)."""
    factors, noise = observations["factors"], observations["noise"]
    n, count = factors.shape
    blocks: dict[str, list[np.ndarray]] = {"factors": [], "noise": [], "environment": [], "environment_targets": []}
    for k in range(count):
        fresh = np.stack([noise[rng.integers(0, n, size=n), j] for j in range(count)], axis=1)
        z = rng.normal(plan["means"][k], np.sqrt(plan["variances"][k]), size=n)
        if plan["kinds"][k] == "soft":
            fresh[:, k] = from_rank_gaussian(noise[:, k], z)
            after = dataset.solve(fresh)
        else:
            after = dataset._do(dataset.solve(fresh), fresh, k, from_rank_gaussian(factors[:, k], z))
        blocks["factors"].append(after)
        blocks["noise"].append(fresh)
        blocks["environment"].append(np.full(n, k + 1, dtype=np.int64))
        blocks["environment_targets"].append(np.full(n, k, dtype=np.int64))
    return {key: np.concatenate(value) for key, value in blocks.items()}


def describe(plan: dict[str, Any], names: tuple[str, ...]) -> str:
    """The design in one line for the card."""
    parts = [f"{name}: {kind} N({mean:+.2f}, {variance:.2f})"
             for name, mean, variance, kind in zip(names, plan["means"], plan["variances"], plan["kinds"])]
    return ("observational + one environment per factor, as many rows each as the observations, fresh noise; "
            "target ~ N(mu, sigma^2) in rank-Gaussian units of the observational marginal: " + "; ".join(parts))
