"""The masked affine causal flow of ICM-VAE (Komanduri et al., IJCAI 2024).

Reference: Akomand/ICM-VAE ``codebase/models/shared/causal_masked_flow.py`` (``MultivariateCausalFlow``,
the posterior flow; ``PriorMultivariateCausalFlow``, wrapped by ``DisentanglementPrior`` in
``models/prior.py``, the prior); ``docs/models.md`` lists what is reproduced and the options.

Concept block i of the latent is z_i = exp(s(z_pa(i))) * eps_i + t(z_pa(i)), where s and t are MLPs
fed the whole flattened latent masked to the parents' blocks (a root sees zeros, so its s and t are
constants). The flow is evaluated by topological levels: every node whose parents are done is
computed at once. ``log_det`` = sum of s is the exact log |det dz / d eps| of this block-triangular map.

Reference-code quirks, each an option of :class:`crlbench.icmvae.model.ICMVAEConfig`: one s/t pair shared by
all nodes (``shared_mechanism_nets``), s and t squashed by a sigmoid (``bounded_st``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from crlbench.core.graph import topological_levels

HIDDEN = 100


def mechanism_net(concepts: int, concept_dim: int, bounded: bool) -> nn.Sequential:
    layers = [nn.Linear(concepts * concept_dim, HIDDEN), nn.ReLU(), nn.Linear(HIDDEN, HIDDEN), nn.ReLU(),
              nn.Linear(HIDDEN, concept_dim)]
    return nn.Sequential(*layers, nn.Sigmoid()) if bounded else nn.Sequential(*layers)


class MaskedAffineFlow(nn.Module):
    """An affine map per concept block conditioned on its parents' blocks.

    ``forward(base)`` maps a base variable [B, K, k] to [B, K, k] in topological order. The same
    class serves the posterior flow (base = the encoder's noise) and the prior, whose mean is the
    map of the scaled labels conditioned on the posterior's parents (``conditioned``).
    """

    def __init__(self, graph: np.ndarray, concept_dim: int, shared: bool = True, bounded: bool = True) -> None:
        super().__init__()
        concepts = len(graph)
        self.concepts, self.concept_dim = concepts, concept_dim
        self.levels = topological_levels(np.asarray(graph))
        masks = np.repeat(np.asarray(graph, dtype=np.float32).T, concept_dim, axis=1)  # [K, K * k], parents' blocks
        self.register_buffer("masks", torch.from_numpy(masks))
        count = 1 if shared else concepts
        self.scale_nets = nn.ModuleList(mechanism_net(concepts, concept_dim, bounded) for _ in range(count))
        self.shift_nets = nn.ModuleList(mechanism_net(concepts, concept_dim, bounded) for _ in range(count))

    def scale_shift(self, context: torch.Tensor, nodes: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """s and t [B, len(nodes), k] of ``nodes`` given the flattened latent ``context`` [B, K * k]."""
        masked = context[:, None, :] * self.masks[nodes][None]  # [B, L, K * k]
        if len(self.scale_nets) == 1:
            return self.scale_nets[0](masked), self.shift_nets[0](masked)
        scales = [self.scale_nets[i](masked[:, j]) for j, i in enumerate(nodes)]
        shifts = [self.shift_nets[i](masked[:, j]) for j, i in enumerate(nodes)]
        return torch.stack(scales, dim=1), torch.stack(shifts, dim=1)

    def forward(
        self, base: torch.Tensor, target: int | None = None, value: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(z, log_det): z_i = exp(s_i) * base_i + t_i level by level; with ``target``, do(z_target = value)."""
        latent = base.new_zeros(base.shape)
        log_det = base.new_zeros(len(base))
        for nodes in self.levels:
            scale, shift = self.scale_shift(latent.flatten(1), nodes)
            latent = latent.clone()
            latent[:, nodes] = torch.exp(scale) * base[:, nodes] + shift
            log_det = log_det + scale.sum(dim=(1, 2))
            if target is not None and target in nodes:
                latent[:, target] = value
        return latent, log_det

    def conditioned(self, base: torch.Tensor, context: torch.Tensor) -> torch.Tensor:
        """exp(s(context_pa)) * base + t(context_pa) for every node at once (the prior mean)."""
        nodes = list(range(self.concepts))
        scale, shift = self.scale_shift(context.flatten(1), nodes)
        return torch.exp(scale) * base + shift
