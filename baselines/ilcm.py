"""ILCM (Brehmer, de Haan, Lippe, Cohen, "Weakly supervised causal representation learning", NeurIPS 2022).

Trained on pairs (x, x~): the same scene before and after an intervention on one unknown causal variable, or none.
Read against Qualcomm-AI-research/weakly-supervised-causal-representation-learning @ c327d79 (``ws_crl/lcm/ilcm.py``,
``ws_crl/training.py``, ``experiments/causalcircuit*.py``, ``config/``); written anew. As the reference's CausalCircuit
run, two stages inside one training budget (``on_train_start``):

1. **Reducer** (``causalcircuit_reduce_dim``): the images go to ``reduced_dim`` = 8 features through the shared conv
   backbone. The reference's reducer is a conv ILCM whose pretraining (60 epochs) outlasts its run (50 epochs), so
   it only ever trains the pair beta-VAE loss
   ``-log p(x|e) - log p(x~|e~) + b (log q(e|x) + log q(e~|x~) - log N(e) - log N(e~))`` (Gaussian decoder, std 1),
   plus 0.1 |e|^2 and 0.05 consistency MSE: that is stage 1 (``reducer="autoencoder"``: a plain MSE autoencoder).
2. **ILCM** on the 8-d features of both images (``causalcircuit_ilcm``), the reducer frozen. Noise encoder
   q(e | f) (MLP, Gaussian), decoder p(f | e) (MLP, std log(e - 1) = 0.5413, the reference's fixed-std head),
   intervention encoder q(I | e1, e2) over {none, 1..K}, and the implicit causal model
   (:mod:`crlbench.baselines.ilcm_scm`). The loss per pair is ::

       E_q(I) E_q(e1, e2 | I) [ -log p(f1 | e1) - log p(f2 | e2) ]
         + beta (log q(e1, e2_I | I) - log p(e1, e2_I | I)) + beta_I (log q(I) - log pi(I)),

   with e2 tied to e1 outside I (the projection onto the counterfactual manifold, stochastic averaging of the two
   posteriors), pi(I) = 1 / (K + 1), plus z-regularisation |e|^2, consistency MSE and minus the entropy of the
   batch's mean q(I). Schedules in reference epochs of this stage: beta-VAE pretraining until 20; beta 0 -> 3e-5 and
   z-regularisation 0.01 -> 0 over 20-40; intervention-encoder offset 0.025 -> 1e-4 (exponential) over 20-40; the
   intervention prior from 40; the deterministic (straight-through argmax) intervention encoder and a fixed
   topological order from 80; lr 8e-4 cosine with restarts every 40 epochs and Adam state reset.

The causal variables z = s(e) are one-dimensional, one per card factor; ``encode`` returns them as one unaligned
block [N, 1, K]. ``intervene`` is a do() in the learned model: abduct e, set z_k = v (k = the code matched to the
factor), recompute its descendants in the inferred graph from their own noise and the new noise of their ancestors,
keep every other z_j, map back to noise and decode through the ILCM decoder and then the reducer's decoder.
The graph is inferred once, when training ends (``on_train_end``), with the reference's implicit heuristic on the
trainer's seeded training rows; ``intervene`` follows it and ``learned_graph`` reports it.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crlbench.baselines.ilcm_config import VERSION, ILCMConfig
from crlbench.baselines.ilcm_scm import (LOG_SQRT_2PI, HeuristicInterventionEncoder, ImplicitSCM, find_topological_order,
                                         implicit_causal_effects, intervention_masks, mlp, standard_normal_log_prob)
from crlbench.core.graph import descendants
from crlbench.core.registry import register_model
from crlbench.training.model import CausalModel, adam
from crlbench.training.nets import ConvDecoder, ConvEncoder

GRAPH_SEED = 0  # the shuffles of the graph heuristic


def gaussian_log_prob(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return -0.5 * ((x - mean) / std).pow(2) - torch.log(std) - LOG_SQRT_2PI


def fixed_std_log_likelihood(x: torch.Tensor, mean: torch.Tensor, std: float) -> torch.Tensor:
    """sum over features of log N(x; mean, std^2) without the 2 pi constant (the reference's ``full=False``), [N, 1]."""
    return (-0.5 * ((x - mean) / std).pow(2) - math.log(std)).flatten(1).sum(1, keepdim=True)


def inverse_softplus(value: float) -> float:
    return math.log(math.expm1(value))


def ramp(epoch: float, start: int, length: int, initial: float, final: float, geometric: bool = False) -> float:
    """The reference's ``constant_linear_constant`` schedule (``linear_scheduler(epoch - start, length, ...)``),
    or with ``geometric`` its ``constant_exponential_constant`` (the interpolation in log space)."""
    step = epoch - start
    if step >= length or length <= 1:
        return final
    if step <= 0:
        return initial
    t = step / (length - 1)
    if geometric:
        return math.exp((1 - t) * math.log(initial) + t * math.log(final))
    return (1 - t) * initial + t * final


def cosine(epoch: int, period: int, initial: float, minimum: float) -> float:
    """torch's CosineAnnealingLR value in epoch ``epoch`` (stepped once per epoch, as the reference)."""
    return minimum + (initial - minimum) * (1 + math.cos(math.pi * epoch / period)) / 2


class GaussianMLPEncoder(nn.Module):
    """The reference's ``GaussianEncoder``: MLP with ReLU after every hidden layer, a mean head and a softplus std
    head (weights N(0, 1e-3), bias so the initial std is ``init_std``) plus ``min_std``."""

    def __init__(self, inputs: int, outputs: int, hidden_units: int, hidden_layers: int, init_std: float,
                 min_std: float) -> None:
        super().__init__()
        self.net = mlp([inputs] + [hidden_units] * hidden_layers, final_activation=True)
        self.mean = nn.Linear(hidden_units, outputs)
        self.std = nn.Linear(hidden_units, outputs)
        nn.init.normal_(self.std.weight, std=1e-3)
        nn.init.constant_(self.std.bias, inverse_softplus(init_std - min_std))
        self.min_std = min_std

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        hidden = self.net(x)
        return self.mean(hidden), self.min_std + F.softplus(self.std(hidden))


class Reducer(nn.Module):
    """Stage 1: image -> ``reduced_dim`` features (Gaussian encoder on the shared conv backbone) and back."""

    def __init__(self, features: int, channels: int, image_size: int, min_std: float) -> None:
        super().__init__()
        self.encoder = ConvEncoder(2 * features, channels, image_size)
        self.decoder = ConvDecoder(features, channels, image_size)
        self.min_std = min_std

    def posterior(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, raw = self.encoder(images).chunk(2, dim=1)
        return mean, self.min_std + F.softplus(raw)


@register_model("ilcm")
class ILCM(CausalModel):
    name = "ilcm"
    Config = ILCMConfig
    version = VERSION
    aligned = False
    needs_pairs = True
    manual_optimization = True  # two stages, two optimisers, gradient clipping and Adam resets as the reference

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        config = self.config
        self.variables = len(card.factors)
        self.reducer = Reducer(config.reduced_dim, self.channels, self.image_size, config.reducer_encoder_min_std)
        self.encoder = GaussianMLPEncoder(config.reduced_dim, self.variables, config.hidden_units, config.hidden_layers,
                                          config.encoder_std, config.encoder_min_std)
        self.decoder = mlp([self.variables] + [config.hidden_units] * config.hidden_layers, final_activation=True)
        self.decoder.append(nn.Linear(config.hidden_units, config.reduced_dim))
        self.intervention_encoder = HeuristicInterventionEncoder()
        self.scm = ImplicitSCM(self.variables, config.scm_hidden_units, config.scm_hidden_layers, config.scm_min_std,
                               config.manifold_thickness)
        self.register_buffer("masks", intervention_masks(self.variables), persistent=False)
        # the graph do() follows and graph@card scores, inferred when training ends (on_train_end) and saved with
        # the weights: -1 = not inferred yet (do() then follows the complete DAG of the topological order)
        self.register_buffer("graph", torch.full((self.variables, self.variables), -1.0))
        self.register_buffer("graph_scores", torch.zeros(self.variables, self.variables))
        self.register_buffer("factor_codes", torch.full((self.variables,), -1, dtype=torch.long))
        self._optimizers: dict[str, torch.optim.Optimizer] | None = None
        # until on_train_start tells the run's length: the start of a long run (stage 1)
        self.total_steps, self.steps_per_epoch = 10**9, 1

    # -- contract ---------------------------------------------------------------------------------------------------

    def supervision(self) -> list[str]:
        return ["pairs"]

    def latent_size(self) -> int:
        return self.variables

    def ilcm_parameters(self) -> list[nn.Parameter]:
        return [*self.encoder.parameters(), *self.decoder.parameters(), *self.intervention_encoder.parameters(),
                *self.scm.parameters()]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        if self._optimizers is None:
            self._optimizers = {"reducer": adam(self.reducer.parameters(), lr=self.config.reducer_lr),
                                "ilcm": adam(self.ilcm_parameters(), lr=self.config.lr)}
        return self._optimizers

    # -- the budget split and the schedules -------------------------------------------------------------------------

    def reducer_steps(self) -> int:
        """Steps of stage 1: ``reducer_share`` of the run, at least one step for each stage."""
        total = int(self.total_steps)
        if total < 2:
            return total
        return min(max(1, round(self.config.reducer_share * total)), total - 1)

    def reducer_epoch(self, step: int) -> int:
        return step * self.config.reducer_epochs // max(self.reducer_steps(), 1)

    def ilcm_epoch(self, step: int) -> float:
        """The (fractional) reference epoch of stage 2 that step ``step`` stands for."""
        first = self.reducer_steps()
        return (step - first) * self.config.epochs / max(self.total_steps - first, 1)

    def first_step_at(self, epoch: float) -> int:
        """The first step of stage 2 whose reference epoch reaches ``epoch``."""
        first = self.reducer_steps()
        return first + math.ceil(epoch * max(self.total_steps - first, 1) / self.config.epochs)

    def stage_probe_steps(self) -> list[int]:
        """One step in each stage with every parameter of that stage in the loss (for tests and benchmarks): the
        reducer's first step, and stage 2's first step with the intervention prior, where q(I) still weighs every
        intervention (the later argmax may pick "none" for a whole batch, leaving the solution functions idle)."""
        return [0, max(self.first_step_at(self.config.model_interventions_after_epoch), self.reducer_steps())]

    def schedule(self) -> dict:
        config, total, first = self.config, int(self.total_steps), self.reducer_steps()
        milestones = {
            "pretraining_end_step": self.first_step_at(config.pretrain_epochs),
            "full_beta_step": self.first_step_at(config.beta_start_epoch + config.beta_ramp_epochs),
            "intervention_prior_step": self.first_step_at(config.model_interventions_after_epoch),
            "deterministic_intervention_encoder_step":
                self.first_step_at(config.deterministic_intervention_encoder_after_epoch),
            "topological_order_step": self.first_step_at(config.fix_topological_order_epoch),
        }
        ilcm_finished = first < total and all(step < total for step in milestones.values())
        return {"kind": "two_stage", "total_steps": total,
                "stages": {"reducer": {"steps": first, "finished": first < total},
                           "ilcm": {"steps": total - first, **milestones, "finished": ilcm_finished}},
                "finished": ilcm_finished}

    # -- training -----------------------------------------------------------------------------------------------------

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        if step < self.reducer_steps():
            return self._reducer_step(batch, step)
        return self._ilcm_step(batch, step)

    def _update(self, name: str, loss: torch.Tensor, lr: float, clip: float) -> None:
        """One step of optimiser ``name`` at ``lr``, its gradients clipped to norm ``clip``."""
        optimizer = self.optimizers()[name]
        for group in optimizer.param_groups:
            group["lr"] = lr
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_([p for group in optimizer.param_groups for p in group["params"]], clip)
        if torch.isfinite(norm):  # the reference skips a step whose gradients are not finite (optimizer_step)
            optimizer.step()

    def reducer_loss(self, images: torch.Tensor, images_after: torch.Tensor) -> dict[str, torch.Tensor]:
        config = self.config
        pair = torch.cat([images, images_after])
        mean, std = self.reducer.posterior(pair)
        if config.reducer == "autoencoder":
            error = (self.reducer.decoder(mean) - pair).pow(2).flatten(1).sum(1)
            reconstruction = 0.5 * error.view(2, -1).sum(0).mean()
            return {"loss": reconstruction, "reducer_reconstruction": reconstruction}
        sample = mean + std * torch.randn_like(mean)
        decoded = self.reducer.decoder(sample)
        log_likelihood = fixed_std_log_likelihood(pair, decoded, config.reducer_decoder_std).view(2, -1).sum(0)
        kl = (gaussian_log_prob(sample, mean, std) - standard_normal_log_prob(sample)).sum(1).view(2, -1).sum(0)
        norm = sample.pow(2).sum(1).view(2, -1).sum(0)
        consistency = (decoded - pair).pow(2).flatten(1).sum(1).view(2, -1).sum(0)
        elbo_loss = (-log_likelihood + config.reducer_beta * kl).mean()
        loss = (elbo_loss + config.reducer_z_regularization * norm.mean()
                + config.reducer_consistency_regularization * consistency.mean())
        return {"loss": loss, "reducer_nll": -log_likelihood.mean(), "reducer_kl": kl.mean(),
                "reducer_consistency_mse": consistency.mean()}

    def _reducer_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        config = self.config
        losses = self.reducer_loss(batch["images"], batch["images_after"])
        lr = cosine(self.reducer_epoch(step), config.reducer_epochs, config.reducer_lr, config.reducer_min_lr)
        self._update("reducer", losses["loss"], lr, config.reducer_clip_grad_norm)
        return {key: value.detach() for key, value in losses.items()}

    @torch.no_grad()
    def reduce(self, images: torch.Tensor) -> torch.Tensor:
        """The reducer's feature means [N, reduced_dim]."""
        return self.reducer.posterior(images)[0]

    @torch.no_grad()
    def reduce_pair(self, images: torch.Tensor, images_after: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Stage 2's inputs: each image's reducer mean, as the reference stored them (``save_representations`` keeps
        the ``e1_mean, e2_mean`` of the reducer's ``encode_decode_pair``)."""
        return self.reduce(images), self.reduce(images_after)

    def ilcm_loss(self, features1: torch.Tensor, features2: torch.Tensor, epoch: float) -> dict[str, torch.Tensor]:
        """Stage 2's loss in (fractional) reference epoch ``epoch``: the pretraining beta-VAE loss before
        ``pretrain_epochs``, the weakly supervised ELBO afterwards, each with the regularisers."""
        config = self.config
        whole = int(math.floor(epoch))
        mean1, std1 = self.encoder(features1)
        mean2, std2 = self.encoder(features2)
        z_weight = ramp(epoch, config.beta_start_epoch, config.beta_ramp_epochs, config.z_regularization, 0.0)
        sample1 = mean1 + std1 * torch.randn_like(mean1)
        sample2 = mean2 + std2 * torch.randn_like(mean2)
        norm = sample1.pow(2).sum(1, keepdim=True) + sample2.pow(2).sum(1, keepdim=True)
        decoded1, decoded2 = self.decoder(sample1), self.decoder(sample2)
        consistency = (decoded1 - features1).pow(2).sum(1, keepdim=True) + (decoded2 - features2).pow(2).sum(1, keepdim=True)
        regularisers = z_weight * norm.mean() + config.consistency_regularization * consistency.mean()
        if whole < config.pretrain_epochs:
            log_likelihood = (fixed_std_log_likelihood(features1, decoded1, config.decoder_std)
                              + fixed_std_log_likelihood(features2, decoded2, config.decoder_std))
            kl = (gaussian_log_prob(sample1, mean1, std1) + gaussian_log_prob(sample2, mean2, std2)
                  - standard_normal_log_prob(sample1) - standard_normal_log_prob(sample2)).sum(1, keepdim=True)
            elbo_loss = (-log_likelihood + config.pretrain_beta * kl).mean()
            return {"loss": elbo_loss + regularisers, "nll": -log_likelihood.mean(), "kl": kl.mean(),
                    "consistency_mse": consistency.mean(), "z_regularization": norm.mean()}

        deterministic = whole >= config.deterministic_intervention_encoder_after_epoch
        offset = ramp(epoch, config.beta_start_epoch, config.beta_ramp_epochs, config.offset_initial, config.offset_final,
                      geometric=True)
        posterior = self.intervention_encoder(mean1, mean2, offset)
        if deterministic:  # one-hot argmax forward, the soft posterior's gradient (straight-through)
            hard = F.one_hot(posterior.argmax(1), posterior.shape[1]).to(posterior.dtype)
            posterior = hard + posterior - posterior.detach()
        model_interventions = whole >= config.model_interventions_after_epoch
        totals = {key: 0.0 for key in ("log_likelihood", "log_posterior_eps", "log_prior_eps", "log_posterior_int",
                                       "log_prior_int", "mse")}
        for intervention, weight in self._interventions(posterior, deterministic):
            terms = self._elbo_terms(features1, features2, mean1, std1, mean2, std2, intervention, weight,
                                     model_interventions)
            for key, value in terms.items():
                totals[key] = totals[key] + weight * value
        kl_eps = totals["log_posterior_eps"] - totals["log_prior_eps"]
        kl_int = totals["log_posterior_int"] - totals["log_prior_int"]
        beta = ramp(epoch, config.beta_start_epoch, config.beta_ramp_epochs, 0.0, config.beta)
        elbo_loss = (-totals["log_likelihood"] + beta * kl_eps + config.intervention_beta_factor * beta * kl_int).mean()
        aggregate = posterior.mean(0)
        entropy = -(aggregate * torch.log(aggregate + 1e-9)).sum()
        loss = elbo_loss + regularisers - config.intervention_entropy_regularization * entropy
        return {"loss": loss, "nll": -totals["log_likelihood"].mean(), "kl_e": kl_eps.mean(),
                "kl_intervention": kl_int.mean(), "mse": totals["mse"].mean(), "consistency_mse": consistency.mean(),
                "z_regularization": norm.mean(), "intervention_entropy": entropy}

    def _interventions(self, posterior: torch.Tensor, deterministic: bool):
        """(mask [N, K], weight [N, 1]) pairs: every intervention weighted by q(I), or the most likely one."""
        if deterministic:
            yield self.masks[posterior.argmax(1)], torch.ones_like(posterior[:, :1])
            return
        for index in range(len(self.masks)):
            yield self.masks[index].expand(len(posterior), -1), posterior[:, index:index + 1]

    def _elbo_terms(self, features1, features2, mean1, std1, mean2, std2, intervention, weight,
                    model_interventions: bool) -> dict[str, torch.Tensor]:
        config, keep = self.config, 1 - intervention
        projected_mean, projected_std = self._average_pair(mean1, mean2, std1, std2)
        mean1 = intervention * mean1 + keep * projected_mean
        std1 = intervention * std1 + keep * projected_std
        mean2 = intervention * mean2 + keep * projected_mean
        std2 = intervention * std2 + keep * projected_std
        epsilon1 = mean1 + std1 * torch.randn_like(mean1)
        epsilon2 = mean2 + std2 * torch.randn_like(mean2)
        log_posterior = (gaussian_log_prob(epsilon1, mean1, std1).sum(1, keepdim=True)
                         + (intervention * gaussian_log_prob(epsilon2, mean2, std2)).sum(1, keepdim=True))
        epsilon2 = intervention * epsilon2 + keep * epsilon1  # counterfactual consistency
        decoded1, decoded2 = self.decoder(epsilon1), self.decoder(epsilon2)
        log_likelihood = (fixed_std_log_likelihood(features1, decoded1, config.decoder_std)
                          + fixed_std_log_likelihood(features2, decoded2, config.decoder_std))
        log_prior = self.scm.log_prob_weakly_supervised(epsilon1, epsilon2, intervention, model_interventions)
        log_q_intervention = weight * torch.log(weight)
        if config.intervention_kl == "exact":  # the sum over I multiplies by q(I) once more: undo it here
            log_q_intervention = torch.log(weight)
        mse = (decoded1 - features1).pow(2).sum(1, keepdim=True) + (decoded2 - features2).pow(2).sum(1, keepdim=True)
        return {"log_likelihood": log_likelihood, "log_posterior_eps": log_posterior, "log_prior_eps": log_prior,
                "log_posterior_int": log_q_intervention,
                "log_prior_int": torch.full_like(log_prior, -math.log(len(self.masks))), "mse": mse}

    def _average_pair(self, mean1, mean2, std1, std2):
        if self.config.averaging == "stochastic":
            weight = torch.rand_like(mean1)
        else:
            weight = torch.full_like(mean1, 0.5 if self.config.averaging == "mean" else 1.0)
        return weight * mean1 + (1 - weight) * mean2, weight * std1 + (1 - weight) * std2

    def _ilcm_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        config = self.config
        epoch = self.ilcm_epoch(step)
        restart = config.restart_every_epochs
        if step > self.reducer_steps() and int(epoch) // restart > int(self.ilcm_epoch(step - 1)) // restart:
            self.optimizers()["ilcm"].state.clear()  # cosine_restarts_reset: Adam's moments start afresh
        features1, features2 = self.reduce_pair(batch["images"], batch["images_after"])
        if int(epoch) >= config.fix_topological_order_epoch and not bool(self.scm.fixed_order):
            self.fix_topological_order(features1)
        losses = self.ilcm_loss(features1, features2, epoch)
        lr = cosine(int(epoch) % restart, restart, config.lr, config.min_lr)
        self._update("ilcm", losses["loss"], lr, config.clip_grad_norm)
        return {key: value.detach() for key, value in losses.items()}

    @torch.no_grad()
    def fix_topological_order(self, features: torch.Tensor) -> list[int]:
        """The reference's switch at epoch 80: the order from the implicit heuristic on these features' noise
        encodings, the solution functions then reading only the noise of earlier variables."""
        noise = self.encoder(features)[0]
        order = find_topological_order(self.scm, noise, torch.Generator().manual_seed(GRAPH_SEED))
        self.scm.topological_order.copy_(torch.as_tensor(order))
        self.scm.fixed_order.fill_(True)
        if self.config.mask_values == "median":
            self.scm.mask_values.copy_(noise.median(dim=0).values)
        return order

    # -- representation and interventions ------------------------------------------------------------------------------

    @torch.no_grad()
    def noise(self, images: torch.Tensor) -> torch.Tensor:
        """The noise encodings' means [N, K]."""
        return self.encoder(self.reduce(images))[0]

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """The causal variables z = s(e) as one unaligned block [N, 1, K]."""
        return self.scm.noise_to_causal(self.noise(images)).unsqueeze(1)

    @torch.no_grad()
    def decode_noise(self, epsilon: torch.Tensor) -> torch.Tensor:
        return self.reducer.decoder(self.decoder(epsilon)).clamp(0.0, 1.0)

    @torch.no_grad()
    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        return self.decode_noise(self.noise(images))

    @torch.no_grad()
    def intervention_posterior(self, images: torch.Tensor, images_after: torch.Tensor) -> torch.Tensor:
        """q(I | x, x~) [N, K + 1] over {no intervention, z_1, ..., z_K} (offset at its final value)."""
        features1, features2 = self.reduce_pair(images, images_after)
        return self.intervention_encoder(self.encoder(features1)[0], self.encoder(features2)[0], self.config.offset_final)

    def intervention_graph(self) -> np.ndarray:
        """The inferred graph, or before any inference the complete DAG of the topological order."""
        if self.graph_inferred():
            return self.graph.cpu().numpy()
        order, complete = self.scm.order(), np.zeros((self.variables, self.variables))
        for position, i in enumerate(order):
            complete[i, order[position + 1:]] = 1
        return complete

    @torch.no_grad()
    def do(self, epsilon: torch.Tensor, code: int, value) -> tuple[torch.Tensor, torch.Tensor]:
        """do(z_code = value) on noise encodings [N, K]: returns (z after, noise after). Descendants of ``code`` in
        ``intervention_graph`` keep their noise and are recomputed; every other z_j keeps its value exactly.
        Variables are visited in the SCM's topological order from ``code`` on: a descendant placed before ``code``
        in that order (a graph that disagrees with the order) is not recomputed, since its solution function does
        not read ``code``'s noise."""
        z = self.scm.noise_to_causal(epsilon)
        changed = descendants(self.intervention_graph(), code)
        order = self.scm.order()
        after_z, after_epsilon = z.clone(), epsilon.clone()
        after_z[:, code] = torch.as_tensor(value, dtype=z.dtype, device=z.device)
        for i in order[order.index(code):]:
            context = self.scm.context(i, after_epsilon)
            if i in changed:
                after_z[:, i:i + 1] = self.scm.solutions[i].solve(epsilon[:, i:i + 1], context)[0]
            else:  # the intervened variable, or a non-descendant after it in the order: its noise follows its z
                after_epsilon[:, i:i + 1] = self.scm.solutions[i](after_z[:, i:i + 1], context)[0]
        return after_z, after_epsilon

    @torch.no_grad()
    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        """Images after do(z_k = value), k the code matched to factor ``target``."""
        code = self.matched_code(target)
        return self.decode_noise(self.do(self.noise(images), code, value)[1])

    # -- graph inference ------------------------------------------------------------------------------------------------

    @torch.no_grad()
    def _infer_graph(self, images: torch.Tensor) -> dict:
        """The reference's post-hoc implicit graph (``compute_implicit_causal_effects``): a topological order from
        the solution functions' dependence on each noise, then the causal-effect score of z_j on z_i through the
        extracted mechanisms (``graph_mechanism``); an edge where the score exceeds ``graph_threshold``."""
        was_training = self.training
        self.eval()
        noise = self.noise(images[:self.config.graph_samples])
        generator = torch.Generator().manual_seed(GRAPH_SEED)
        order = find_topological_order(self.scm, noise, generator)
        scores = implicit_causal_effects(self.scm, noise, order, generator,
                                         forward_mechanism=self.config.graph_mechanism == "reference").numpy()
        self.train(was_training)
        return {"adjacency": (scores > self.config.graph_threshold).astype(int), "scores": scores, "order": order}

    def graph_inferred(self) -> bool:
        """Whether the graph has been inferred (``graph`` holds -1 until then)."""
        return bool((self.graph >= 0).all())

    def on_train_end(self, data: dict[str, torch.Tensor]) -> None:
        """Infer the graph once, when training ends, from the trainer's seeded training rows: do() follows it and
        ``learned_graph`` reports it (both saved with the weights)."""
        inferred = self._infer_graph(data["images"])
        self.graph.copy_(torch.as_tensor(inferred["adjacency"], dtype=torch.float))
        self.graph_scores.copy_(torch.as_tensor(inferred["scores"], dtype=torch.float))

    def learned_graph(self) -> dict | None:
        """The graph inferred when training ended (the one do() follows) with its effect scores; None for a model
        whose training never ended here."""
        if not self.graph_inferred():
            return None
        return {"adjacency": self.graph.cpu().numpy().astype(int), "scores": self.graph_scores.cpu().numpy()}
