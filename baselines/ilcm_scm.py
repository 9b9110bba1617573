"""ILCM's implicit latent causal model: noise encodings, solution functions and the intervention encoder.

Brehmer, de Haan, Lippe, Cohen, "Weakly supervised causal representation learning", NeurIPS 2022. Read against
Qualcomm-AI-research/weakly-supervised-causal-representation-learning @ c327d79 (``ws_crl/causal/implicit_scm.py``,
``ws_crl/transforms.py``, ``ws_crl/causal/interventions.py``, ``ws_crl/posthoc_graph_learning/implicit.py``);
written anew, no code copied.

Each causal variable z_i is one-dimensional and is given by its solution function from the noise encodings e:

    z_i = s_i(e_i; e_ctx(i)) = (e_i - m_i(c_i)) / sigma_i(c_i),   sigma_i = exp(l_i(c_i)) + min_std,

where (l_i, m_i) is an MLP of c_i = [masked e, mask] (the mask concatenated, as the reference). Before the
topological order is fixed the mask of s_i selects every e_j, j != i; afterwards the e_j earlier in the order.
Masked entries take ``mask_values``. Under an intervention on i the new noise is drawn as e'_i = s_i^-1(z~; e), with
z~ ~ N(0, 1): the intervention prior p(e'_i | e) = N(z~) |d z~ / d e'_i|.
"""

from __future__ import annotations

import math

import torch
from torch import nn

LOG_SQRT_2PI = 0.5 * math.log(2 * math.pi)


def standard_normal_log_prob(x: torch.Tensor) -> torch.Tensor:
    return -0.5 * x.pow(2) - LOG_SQRT_2PI


def clean_and_clamp(x: torch.Tensor, bound: float = 1e12) -> torch.Tensor:
    """NaN -> 0 and a clamp to +-1e12, as the reference applies to every prior term."""
    return torch.clamp(torch.nan_to_num(x), -bound, bound)


def mlp(sizes: list[int], final_activation: bool = False) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index, (a, b) in enumerate(zip(sizes[:-1], sizes[1:])):
        layers.append(nn.Linear(a, b))
        if index < len(sizes) - 2 or final_activation:
            layers.append(nn.ReLU())
    return nn.Sequential(*layers)


class SolutionFunction(nn.Module):
    """e_i = sigma(c) z_i + m(c) (``forward``) and its inverse z_i = (e_i - m(c)) / sigma(c) (``solve``), with the
    reference's "broad" initialisation: the log-scale head starts near 2.3 (sigma about 10), the shift near 0."""

    def __init__(self, variables: int, hidden_units: int, hidden_layers: int, min_std: float) -> None:
        super().__init__()
        self.net = mlp([2 * variables] + [hidden_units] * hidden_layers + [2])
        last = self.net[-1]
        with torch.no_grad():
            nn.init.normal_(last.bias[:1], mean=2.3, std=1e-6)
            nn.init.normal_(last.weight[:1], std=1e-3)
            nn.init.normal_(last.bias[1:], std=1e-3)
            nn.init.normal_(last.weight[1:], std=0.1)
        self.min_std = min_std

    def scale_shift(self, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        log_scale, shift = self.net(context).chunk(2, dim=1)
        return torch.exp(log_scale) + self.min_std, shift

    def forward(self, z: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Causal variable [N, 1] -> noise encoding [N, 1] and log |de/dz|."""
        scale, shift = self.scale_shift(context)
        return z * scale + shift, torch.log(scale)

    def solve(self, e: torch.Tensor, context: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Noise encoding [N, 1] -> causal variable [N, 1] and log |dz/de|."""
        scale, shift = self.scale_shift(context)
        return (e - shift) / scale, -torch.log(scale)


class ImplicitSCM(nn.Module):
    """K solution functions over one-dimensional noise encodings, with the reference's two causal structures:
    every other noise as context (before the order is fixed) and a fixed topological order (after)."""

    def __init__(self, variables: int, hidden_units: int, hidden_layers: int, min_std: float,
                 manifold_thickness: float) -> None:
        super().__init__()
        self.variables = variables
        self.solutions = nn.ModuleList(SolutionFunction(variables, hidden_units, hidden_layers, min_std)
                                       for _ in range(variables))
        self.manifold_thickness = manifold_thickness
        self.register_buffer("topological_order", torch.arange(variables))
        self.register_buffer("fixed_order", torch.zeros((), dtype=torch.bool))
        self.register_buffer("mask_values", torch.zeros(variables))

    def order(self) -> list[int]:
        return [int(i) for i in self.topological_order]

    def context_mask(self, i: int, device: torch.device) -> torch.Tensor:
        """[K] 1 where s_i reads e_j: every j != i, or the variables before i in a fixed order."""
        mask = torch.zeros(self.variables, device=device)
        if bool(self.fixed_order):
            order = self.order()
            mask[order[:order.index(i)]] = 1.0
        else:
            mask[:] = 1.0
            mask[i] = 0.0
        return mask

    def context(self, i: int, epsilon: torch.Tensor) -> torch.Tensor:
        mask = self.context_mask(i, epsilon.device)
        fill = self.mask_values.clone()
        fill[i] = 0.0
        masked = mask * epsilon + (1 - mask) * fill
        return torch.cat([masked, mask.expand_as(epsilon)], dim=1)

    def solve(self, epsilon: torch.Tensor, conditioning: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """z_i = s_i(epsilon_i; conditioning) for every i, and log |dz_i / d epsilon_i| [N, K]."""
        outputs = [self.solutions[i].solve(epsilon[:, i:i + 1], self.context(i, conditioning))
                   for i in range(self.variables)]
        return torch.cat([z for z, _ in outputs], 1), torch.cat([log_det for _, log_det in outputs], 1)

    def noise_to_causal(self, epsilon: torch.Tensor) -> torch.Tensor:
        return self.solve(epsilon, epsilon)[0]

    def log_prob_weakly_supervised(self, epsilon1: torch.Tensor, epsilon2: torch.Tensor, intervention: torch.Tensor,
                                   include_intervened: bool = True) -> torch.Tensor:
        """log p(e1, e2_I | I) [N, 1]: N(0, I) for e1, plus for each intervened i the intervention prior
        log N(s_i(e2_i; e1)) + log |ds_i/de2_i| (``include_intervened``: the reference's model_interventions).
        The non-intervened components are tied to e1 by the projection, so their term is left out (as the reference,
        ``include_nonintervened=False``)."""
        log_prob = clean_and_clamp(standard_normal_log_prob(epsilon1)).sum(1, keepdim=True)
        if include_intervened:
            z2, log_det = self.solve(epsilon2, epsilon1)
            intervened = clean_and_clamp(intervention * (standard_normal_log_prob(z2) + log_det))
            log_prob = log_prob + intervened.sum(1, keepdim=True)
        return log_prob


class HeuristicInterventionEncoder(nn.Module):
    """q(I | x1, x2) over {no intervention, z_1, ..., z_K} (the reference's "learnable_heuristic"):
    logits [0, alpha + beta |d_i| + gamma d_i^2] with d = E[e | x2] - E[e | x1]; softmax, then an offset eps added
    to every probability and renormalised (the schedule's ``intervention_encoder_offset``)."""

    def __init__(self) -> None:
        super().__init__()
        self.alpha = nn.Parameter(torch.tensor(-3.0))
        self.beta = nn.Parameter(torch.tensor(15.0))
        self.gamma = nn.Parameter(torch.tensor(15.0))

    def forward(self, mean1: torch.Tensor, mean2: torch.Tensor, offset: float = 1e-4) -> torch.Tensor:
        return heuristic_posterior(mean2 - mean1, self.alpha, self.beta, self.gamma, offset)


def heuristic_posterior(delta: torch.Tensor, alpha, beta, gamma, offset: float) -> torch.Tensor:
    logits = alpha + beta * delta.abs() + gamma * delta.pow(2)
    logits = torch.cat([torch.zeros_like(logits[:, :1]), logits], dim=1)
    probabilities = torch.softmax(logits, dim=1) + offset
    return probabilities / probabilities.sum(dim=1, keepdim=True)


def intervention_masks(variables: int, device=None) -> torch.Tensor:
    """[K + 1, K]: row 0 no intervention, row k an intervention on variable k - 1 (``atomic_or_none``)."""
    return torch.cat([torch.zeros(1, variables, device=device), torch.eye(variables, device=device)])


# -- graph inference after training (posthoc_graph_learning/implicit.py) -----------------------------------------


def dependence(function, shuffled_input: torch.Tensor, column: int, generator: torch.Generator | None = None) -> float:
    """How much ``function(input)`` changes when column ``column`` of its input is shuffled across the batch: the
    MSE between the two outputs after standardising by the unshuffled output (std clamped at 0.1)."""
    permutation = torch.randperm(len(shuffled_input), generator=generator)
    shuffled = shuffled_input.clone()
    shuffled[:, column] = shuffled_input[permutation, column]
    plain, changed = function(shuffled_input), function(shuffled)
    mean, std = plain.mean(), torch.clamp(plain.std(), min=0.1)
    return float(torch.mean(((plain - mean) / std - (changed - mean) / std) ** 2))


@torch.no_grad()
def find_topological_order(scm: ImplicitSCM, noise: torch.Tensor, generator: torch.Generator | None = None) -> list[int]:
    """Repeatedly take the variable whose solution function depends least on the remaining noise encodings
    (each s_i read with every other e_j unmasked, as the reference)."""
    variables = scm.variables

    def solution_of(i: int):
        mask = torch.ones(variables, device=noise.device)
        mask[i] = 0.0

        def function(epsilon: torch.Tensor) -> torch.Tensor:
            context = torch.cat([mask * epsilon, mask.expand_as(epsilon)], dim=1)
            return scm.solutions[i].solve(noise[:, i:i + 1], context)[0]

        return function

    scores = {(i, j): dependence(solution_of(i), noise, j, generator)
              for i in range(variables) for j in range(variables) if i != j}
    order, remaining = [], list(range(variables))
    while remaining:
        best = min(remaining, key=lambda i: sum(scores[i, j] for j in remaining if j != i))
        order.append(best)
        remaining.remove(best)
    return order


@torch.no_grad()
def implicit_causal_effects(scm: ImplicitSCM, noise: torch.Tensor, order: list[int],
                            generator: torch.Generator | None = None, forward_mechanism: bool = True) -> torch.Tensor:
    """[K, K] scores, [j, i] = how strongly z_j drives z_i through the mechanism extracted from s_i: z_i computed
    from its own noise and the noise its ancestors (earlier in ``order``) need to produce the given z; the other
    noise encodings are shuffled across the batch. Zero unless j precedes i in ``order``. ``forward_mechanism``: the
    reference's mechanism, which applies s_i's forward map (z -> e) to e_i (its ``MaskedSolutionTransform.inverse``
    calls the forward map); False solves z_i from e_i."""
    variables = scm.variables
    effects = torch.zeros(variables, variables)

    def mechanism(i: int):
        ancestors = order[:order.index(i)]

        def function(z: torch.Tensor) -> torch.Tensor:
            epsilon = noise.clone()
            for k in range(variables):  # non-ancestors: random noise
                epsilon[:, k] = noise[torch.randperm(len(noise), generator=generator), k]
            for a in ancestors:
                epsilon[:, a:a + 1] = scm.solutions[a](z[:, a:a + 1], scm.context(a, epsilon))[0]
            solution = scm.solutions[i]
            apply = solution.forward if forward_mechanism else solution.solve
            return apply(noise[:, i:i + 1], scm.context(i, epsilon))[0]

        return function

    z = scm.noise_to_causal(noise)
    for position, i in enumerate(order):
        for j in order[:position]:
            effects[j, i] = dependence(mechanism(i), z, j, generator)
    return effects
