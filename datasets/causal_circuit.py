"""CausalCircuit (Brehmer et al., weakly supervised causal representation learning, NeurIPS 2022).

A robot arm moves along an arc of three buttons; pressing a button lights its light, and the red
light also lights when the green or the blue light is on. The original generator and SCM are not
public (the released files hold rendered pairs and their latents): the mechanisms below are
crlbench's reconstruction, with the causal graph ICM-VAE uses for this dataset (``C`` in
``Akomand/ICM-VAE experiments/train_circuit.py``) and the pair format of the released files, drawn
by a 2D numpy renderer instead of MuJoCo.

Factors in the canonical topological order of ICM-VAE (the Qualcomm file order is red, green,
blue, arm: ``permutation = (3, 2, 1, 0)``), all in (0, 1):

0. ``arm``: a = Phi(eps_arm), uniform along the arc.
1. ``blue``: l_B = Q(Phi(eps_B); 0.05 + 0.9 b_B(a)).
2. ``green``: l_G = Q(Phi(eps_G); 0.05 + 0.9 b_G(a)).
3. ``red``: l_R = Q(Phi(eps_R); 0.05 + 0.9 s_R), s_R = 1 - (1 - b_R(a))(1 - l_G)(1 - l_B).

with button presses b_k(a) = clip(1 - |a - c_k| / w, 0, 1) and Q(u; m) the quantile of
Beta(kappa m, kappa (1 - m)). The noise ``eps`` is standard normal.

Each split holds weakly supervised pairs in the ILCM convention: an observation, then the same
scene after an intervention drawn uniformly from {none, arm, blue, green, red}; the target is set
to a fresh U(0, 1) value, its descendants are recomputed from the same noise. ``split()`` returns
the observations as ``images/factors/noise``; extras hold the other half of each pair:
``images_after``, ``factors_after``, ``noise_after`` (the target's noise is the encoding of its new
value, Phi^-1(F(value | parents))), and, in the Qualcomm files' own conventions,
``intervention_labels`` (0 = none, 1..4 = red, green, blue, arm), ``intervention_masks`` [N, 4] (red,
green, blue, arm) and the button presses ``pressed`` / ``pressed_after`` [N, 3] (red, green, blue);
``intervention_targets`` gives the intervened canonical factor index (-1 = none).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from crlbench.core.lazy import lazy_module
from crlbench.core.params import legacy_field, require_counts
from crlbench.core.registry import register_dataset
from crlbench.datasets.base import Factor, SCMDataset, random_stream
from crlbench.datasets.raster import Canvas

KAPPA = 20.0  # concentration of the Beta light mechanisms
BUTTON_CENTRES = {"blue": 0.85, "green": 0.25, "red": 0.55}  # positions along the arc
BUTTON_WIDTH = 0.08
LIGHTS = ("blue", "green", "red")  # canonical factors 1, 2, 3
QUALCOMM_BUTTONS = ("red", "green", "blue")  # the order of the original ``pressed`` array
TINY_PROBABILITY = 1e-300  # keeps noise encodings finite at values of exactly 0 or 1
special = lazy_module("scipy.special")  # imported when images are rendered

# Renderer (crlbench's 2D stand-in for the MuJoCo scene), in unit-square coordinates with y pointing down.
BOARD, TABLE, TABLE_TOP = (0.35, 0.35, 0.38), (0.55, 0.55, 0.58), 0.45
HUES = {"red": (1.0, 0.1, 0.1), "green": (0.1, 0.9, 0.1), "blue": (0.15, 0.3, 1.0)}
LIGHT_X = {"red": 0.25, "green": 0.50, "blue": 0.75}
LIGHT_Y, LIGHT_RADIUS, GLOW_SIGMA, GLOW_GAIN = 0.18, 0.08, 0.12, 0.6
ARM_BASE, ARC_RADIUS, LINK_LENGTH = (0.5, 0.97), 0.42, 0.26
BUTTON_RADIUS, ARM_WIDTH, FINGERTIP_RADIUS = 0.045, 0.05, 0.03
ARM_GREY, FINGERTIP_GREY = (0.8, 0.8, 0.8), (0.15, 0.15, 0.15)


def button_press(arm: np.ndarray, light: str) -> np.ndarray:
    """How hard the arm presses a light's button: 1 on its centre, 0 beyond ``BUTTON_WIDTH``."""
    return np.clip(1.0 - np.abs(arm - BUTTON_CENTRES[light]) / BUTTON_WIDTH, 0.0, 1.0)


def light_mean(light: str, factors: np.ndarray) -> np.ndarray:
    """The mean m of a light's Beta mechanism given its parents (canonical factor columns)."""
    press = button_press(factors[:, 0], light)
    if light == "red":  # soft OR of its own button and the green and blue lights
        press = 1.0 - (1.0 - press) * (1.0 - factors[:, 2]) * (1.0 - factors[:, 1])
    return 0.05 + 0.9 * press


def light_from_noise(noise: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Q(Phi(noise); mean), the Beta quantile, computed from the nearer tail.

    For positive noise the upper tail is used (through the mirrored Beta(b, a)), so that values
    far in a tail, as interventions produce, keep their precision in both directions.
    """
    a, b = KAPPA * mean, KAPPA * (1.0 - mean)
    lower = special.betaincinv(a, b, special.ndtr(noise))
    upper = 1.0 - special.betaincinv(b, a, special.ndtr(-noise))
    return np.where(noise <= 0, lower, upper)


def noise_from_light(value: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Phi^-1(F(value; mean)), the inverse of :func:`light_from_noise`, from the nearer tail."""
    a, b = KAPPA * mean, KAPPA * (1.0 - mean)
    cdf = special.betainc(a, b, value)
    survival = special.betainc(b, a, 1.0 - value)
    return np.where(cdf <= 0.5, _probit(cdf), -_probit(survival))


def _probit(probability: np.ndarray) -> np.ndarray:
    return special.ndtri(np.clip(probability, TINY_PROBABILITY, 1.0))


def encode_noise(k: int, factors: np.ndarray) -> np.ndarray:
    """The noise that yields factor k given its parents: Phi^-1(F_k(value | parents))."""
    if k == 0:
        arm = factors[:, 0]
        return np.where(arm <= 0.5, _probit(arm), -_probit(1.0 - arm))
    return noise_from_light(factors[:, k], light_mean(LIGHTS[k - 1], factors))


@dataclass(frozen=True)
class CausalCircuitParams:
    """Parameters of CausalCircuit: numbers of pairs per split (reference: 100k / 10k / 10k)."""

    size: int = 64  # image side in pixels
    seed: int = 0
    n_train: int = 10000
    n_val: int = 1000
    n_test: int = 1000
    # the environments mode (crlbench.datasets.environments): the training split pools the observations with
    # one interventional environment per factor; "hard" do() or "soft" (the target's noise shifted)
    environments: bool = legacy_field(False, legacy=False)
    intervention: Literal["hard", "soft"] = legacy_field("hard", legacy="hard")

    def __post_init__(self) -> None:
        require_counts(self, "dataset 'causal_circuit'", ("size", "n_train", "n_val", "n_test"))


@register_dataset("causal_circuit")
class CausalCircuit(SCMDataset):
    name = "causal_circuit"
    version = "1.0"
    Params = CausalCircuitParams
    split_names = ("train", "val", "test")
    original_order = ("red", "green", "blue", "arm")
    permutation = (3, 2, 1, 0)
    adjacency = ((0, 1, 1, 1), (0, 0, 0, 1), (0, 0, 0, 1), (0, 0, 0, 0))
    image_views = {"images": ("factors", "noise"), "images_after": ("factors_after", "noise_after")}
    pair_source = "stored"  # drawn with the observations (``_sample_pairs``)
    environment_source = "generated"  # environments drawn from the SCM (crlbench.datasets.environments)

    def factor_definitions(self) -> tuple[Factor, ...]:
        units = ("position along the arc", "light intensity", "light intensity", "light intensity")
        return tuple(
            Factor(name, "continuous", 0.0, 1.0, unit=unit)
            for name, unit in zip(("arm", *LIGHTS), units)
        )

    def mechanism(self, k: int, factors: np.ndarray, noise: np.ndarray) -> np.ndarray:
        if k == 0:
            return special.ndtr(noise[:, 0])
        return light_from_noise(noise[:, k], light_mean(LIGHTS[k - 1], factors))

    def sample_splits(self) -> dict[str, dict[str, np.ndarray]]:
        sizes = {"train": self.params.n_train, "val": self.params.n_val, "test": self.params.n_test}
        return {name: self._sample_pairs(n, index) for index, (name, n) in enumerate(sizes.items())}

    def _sample_pairs(self, n: int, split_index: int) -> dict[str, np.ndarray]:
        """Observation / intervention pairs in the ILCM convention (the module docstring; ILCM's
        ``ws_crl/causal/interventions.py``, intervention set ``atomic_or_none``)."""
        rng = random_stream(self.params.seed, "scm_noise", split_index)
        noise = rng.standard_normal((n, 4))
        factors = self.solve(noise)
        labels = rng.integers(0, 5, size=n)  # Qualcomm's convention: 0 none; 1..4 red, green, blue, arm
        targets = np.where(labels > 0, np.asarray(self.permutation).argsort()[labels - 1], -1)
        values = rng.uniform(0.0, 1.0, size=n)
        factors_after, noise_after = factors.copy(), noise.copy()
        for target in range(4):
            rows = targets == target
            if rows.any():
                factors_after[rows] = self._do(factors[rows], noise[rows], target, values[rows])
                noise_after[rows, target] = encode_noise(target, factors_after[rows])
        return {
            "factors": factors,
            "noise": noise,
            "factors_after": factors_after,
            "noise_after": noise_after,
            "intervention_labels": labels,
            "intervention_masks": labels[:, None] == np.arange(1, 5)[None, :],
            "intervention_targets": targets,
            "pressed": np.stack([button_press(factors[:, 0], light) for light in QUALCOMM_BUTTONS], axis=1),
            "pressed_after": np.stack([button_press(factors_after[:, 0], light) for light in QUALCOMM_BUTTONS], axis=1),
        }

    def render_batch(self, factors: np.ndarray, noise: np.ndarray, size: int) -> np.ndarray:
        return draw_circuit(factors, size)

    def choices(self) -> dict[str, str]:
        return {
            "scm": "crlbench reconstruction (module docstring; kappa 20, buttons at 0.25 / 0.55 / 0.85, width 0.08)",
            "interventions": "label uniform over {none, arm, blue, green, red}; target set to U(0, 1)",
            "renderer": "2D numpy renderer (no MuJoCo, no JPEG compression)",
            "view": "models train on the observation of each pair; the pair is in the extras",
        }


def fingertip(arm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The point of the arc at arm position a: angle pi (0.85 - 0.7 a) around the base."""
    angle = np.pi * (0.85 - 0.7 * arm)
    return ARM_BASE[0] + ARC_RADIUS * np.cos(angle), ARM_BASE[1] - ARC_RADIUS * np.sin(angle)


def draw_circuit(factors: np.ndarray, size: int) -> np.ndarray:
    """Board, glowing lights, buttons and the two-link arm, drawn last so it occludes buttons."""
    n, arm = len(factors), factors[:, 0]
    canvas = Canvas(n, size, size, BOARD)
    canvas.fill_rect(0.0, TABLE_TOP * size, float(size), float(size), TABLE)

    centres = (np.arange(size) + 0.5) / size
    glow = np.zeros((n, size, size, 3), dtype=np.float32)
    for k, light in enumerate(LIGHTS, start=1):
        squared = (centres[None, :] - LIGHT_X[light]) ** 2 + (centres[:, None] - LIGHT_Y) ** 2
        falloff = np.exp(-squared / (2 * GLOW_SIGMA**2)).astype(np.float32)
        glow += (GLOW_GAIN * factors[:, k, None, None, None] * falloff[None, :, :, None]) * np.asarray(HUES[light])
    canvas.add_light(glow)

    for k, light in enumerate(LIGHTS, start=1):
        hue, level = np.asarray(HUES[light]), factors[:, k, None]
        fill = (1.0 - level) * (0.2 * hue + 0.1) + level * hue
        x, y = np.full(n, LIGHT_X[light] * size), np.full(n, LIGHT_Y * size)
        canvas.fill_ellipse(x, y, LIGHT_RADIUS * size, LIGHT_RADIUS * size, fill)

    for light in LIGHTS:
        press = button_press(arm, light)
        x, y = fingertip(np.full(n, BUTTON_CENTRES[light]))
        radius = BUTTON_RADIUS * (1.0 - 0.2 * press) * size
        color = 0.6 * np.asarray(HUES[light])[None, :] * (1.0 - 0.3 * press)[:, None]
        canvas.fill_ellipse(x * size, y * size, radius, radius, color)

    tip_x, tip_y = fingertip(arm)
    elbow_x, elbow_y = elbow(tip_x, tip_y)
    base_x, base_y = np.full(n, ARM_BASE[0]), np.full(n, ARM_BASE[1])
    for (x0, y0), (x1, y1) in (((base_x, base_y), (elbow_x, elbow_y)), ((elbow_x, elbow_y), (tip_x, tip_y))):
        canvas.stroke_segment(x0 * size, y0 * size, x1 * size, y1 * size, ARM_WIDTH * size, ARM_GREY, cap="round")
    radius = FINGERTIP_RADIUS * size
    canvas.fill_ellipse(tip_x * size, tip_y * size, radius, radius, FINGERTIP_GREY)
    return canvas.to_uint8()


def elbow(tip_x: np.ndarray, tip_y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Analytic inverse kinematics of two equal links from the base: the elbow, always on one side."""
    dx, dy = tip_x - ARM_BASE[0], ARM_BASE[1] - tip_y  # y up
    reach = np.hypot(dx, dy)
    bend = np.arccos(np.clip(reach / (2 * LINK_LENGTH), -1.0, 1.0))
    angle = np.arctan2(dy, dx) + bend
    return ARM_BASE[0] + LINK_LENGTH * np.cos(angle), ARM_BASE[1] - LINK_LENGTH * np.sin(angle)
