"""Contrastive CRL (Buchholz, Rajendran, Rosenfeld, Aragam, Schölkopf, Ravikumar, "Learning Linear Causal
Representations from Interventions under General Nonlinear Mixing", NeurIPS 2023), as CRLSanityCheck runs the
authors' code on the Causal Chamber (simonbing/CRLSanityCheck @2532cd4: ``crc/baselines/contrastive_crl/src/
models.py`` ``ContrastiveModel``, ``ParametricPart``, ``ImageEncoderChambers``; ``src/training.py`` ``train_model``;
``crc/contrastive_crl_experiment.py``). Written from the paper and that code; no code copied.

The method. An encoder gives z = f(x) in R^d, d = the number of interventional environments. The latents follow
a linear Gaussian SCM whose standardised noise is B z ~ N(0, I), B = diag(s) (I - A_off) (A_off: A without its
diagonal; A[j, i] != 0 makes z_i a parent of z_j). Environment t + 1 (t = 0..d-1) replaces latent t's mechanism
by a perfect intervention (a Gaussian of its own). The log density ratio of the observational distribution to
environment t + 1's is then, with its constants in c_t,

    logit(x, t) = c_t + b_t z_t + (l_t z_t)^2 - (B_t . z)^2,

and a classifier with scores [logit(x, t), 0] (class 0: observational) is trained to tell each environment
from the observations: parametric (c, b, l, s, A per the formula) on top of the nonparametric f.

The loss, per batch::

    CE_obs + CE_int + kappa sum_k (mean of z_k over the observational rows)^2
        + eta sum_ij |A_ij| + mu (tr expm(A * A) - d)

(the last the NOTEARS acyclicity term; * is element-wise). Defaults: Adam lr 5e-4 on both parameter groups,
weight decay 0, kappa 0.1, eta 1e-4, mu 1e-5, batch 512, 100 epochs; the encoder ``ImageEncoderChambers``
(``backbone="reference"``). The graph is A^T thresholded at 0.3 (:meth:`ContrastiveCRL.learned_graph`).

Assumptions (the paper's and the reference's): the latent SCM is linear (Gaussian, as the quadratic logit
assumes); each environment is one perfect intervention on one latent; every latent is intervened in exactly one
environment, so there are d environments, and environment e intervenes on latent e - 1: the model ties them by
construction (no permutation is learned), which crlbench's environment datasets satisfy (environment k + 1
intervenes on factor k, in card order), so the model is aligned (latent k goes with factor k). A batch whose
environment index exceeds d raises :class:`~crlbench.core.errors.ConfigError`.

Deviations (docs/models.md, "Contrastive CRL"):

* *Pooled rows.* The reference trains on items (x_obs, x_int, t): each observational image contrasted with one
  environment's image at a time, every observation with every environment once per epoch. crlbench's batches pool
  rows, ``batch["environment"]`` 0 for an observation and e in 1..d for environment e. The loss keeps the
  reference's in expectation: CE_obs is the mean over the batch's observational rows of the mean over t of
  CE([logit(x, t), 0], 0) (each observation contrasted with every environment), CE_int the mean over its
  interventional rows of CE([logit(x, e - 1), 0], 1); a term is 0 when the batch has no such rows, and the kappa
  term reads the observational rows only.
* *No model selection, no scheduler.* The reference keeps the weights of the lowest validation CE (validations
  at epochs 0, 10, 20, ... and the last) and steps ReduceLROnPlateau(factor 0.3, patience 3) at those
  validations. crlbench's trainer evaluates every method's last weights and gives the model no validation data,
  so neither is reproduced.
* *Image size.* ``ImageEncoderChambers`` hard-codes 64 px; its first linear layer here reads the
  (size / 2^conv_blocks)^2 x 64 feature map of any size.
* *NOTEARS constant.* The reference writes ``trace(expm(A * A) - d)`` = tr expm(A * A) - d^2; here the acyclicity
  term h(A) = tr expm(A * A) - d (0 for a DAG). Same gradients, the loss differs by a constant mu (d^2 - d).

No decoder: ``reconstruct`` and ``intervene`` raise :class:`~crlbench.core.errors.NotApplicable`, so the
reconstruction and interventional scores of its cells are recorded as not applicable.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crlbench.baselines.contrastive_crl_config import VERSION, ContrastiveCRLConfig
from crlbench.core.errors import ConfigError, NotApplicable
from crlbench.core.registry import register_model
from crlbench.training.model import CausalModel, adam
from crlbench.training.nets import ConvEncoder


class ChamberEncoder(nn.Module):
    """``ImageEncoderChambers`` (models.py) at any image size: ``blocks`` x [conv 3x3 stride 2, GroupNorm(8), SiLU,
    conv 3x3 stride 1, GroupNorm(8), SiLU] (convolutions without bias), then Flatten, Linear -> ``hidden``,
    LayerNorm, SiLU, Linear -> ``latent``. Image [N, C, S, S] in [0, 1] -> z [N, latent]."""

    def __init__(self, latent: int, in_channels: int, image_size: int, blocks: int, channels: int, hidden: int) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        previous, side = in_channels, image_size
        for _ in range(blocks):
            layers += [nn.Conv2d(previous, channels, 3, stride=2, padding=1, bias=False), nn.GroupNorm(8, channels),
                       nn.SiLU(),
                       nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False), nn.GroupNorm(8, channels),
                       nn.SiLU()]
            previous, side = channels, (side + 1) // 2  # a 3x3 stride-2 convolution with padding 1 halves, rounding up
        self.net = nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * side * side, hidden), nn.LayerNorm(hidden),
                                 nn.SiLU(), nn.Linear(hidden, latent))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(images)


def whitening_matrix(scales: torch.Tensor, A: torch.Tensor) -> torch.Tensor:
    """B = diag(s) (I - A with its diagonal zeroed) [d, d] (``ParametricPart.get_B``): row t maps z to latent t's
    scaled noise, s_t (z_t - sum_{i != t} A[t, i] z_i)."""
    d = A.shape[0]
    eye = torch.eye(d, dtype=A.dtype, device=A.device)
    return scales.reshape(d, 1) * (eye - A * (1 - eye))


def environment_logits(z: torch.Tensor, constants: torch.Tensor, linear: torch.Tensor, quadratic: torch.Tensor,
                       B: torch.Tensor) -> torch.Tensor:
    """logit(x, t) = c_t + b_t z_t + (l_t z_t)^2 - (B_t . z)^2 for every row and every environment t, [N, d]
    (``ParametricPart.forward`` evaluates the column of each row's own t): the log-odds of observational
    against environment t + 1."""
    return constants + linear * z + (quadratic * z) ** 2 - (z @ B.T) ** 2


def classifier_terms(logits: torch.Tensor, environment: torch.Tensor) -> dict[str, torch.Tensor]:
    """The two cross-entropies of pooled rows (``environment`` [N]: 0 observational, e >= 1 environment e), each
    a mean over its rows and 0 without such rows: ``observational_ce``, the mean over observational rows of the mean
    over t of CE([logit(x, t), 0], 0) = softplus(-logit); ``interventional_ce``, the mean over interventional rows
    of CE([logit(x, e - 1), 0], 1) = softplus(logit); and ``accuracy`` of the argmax classifier (detached)."""
    observational = (environment == 0).to(logits.dtype)
    interventional = 1 - observational
    own = logits.gather(1, (environment - 1).clamp(min=0).unsqueeze(1)).squeeze(1)  # an observation's is unused
    observational_ce = (F.softplus(-logits).mean(dim=1) * observational).sum() / observational.sum().clamp(min=1)
    interventional_ce = (F.softplus(own) * interventional).sum() / interventional.sum().clamp(min=1)
    with torch.no_grad():  # argmax of [logit, 0] is class 0 (observational) when logit >= 0
        observed_right = (logits >= 0).to(logits.dtype).mean(dim=1) * observational
        accuracy = (observed_right + (own < 0).to(logits.dtype) * interventional).mean()
    return {"observational_ce": observational_ce, "interventional_ce": interventional_ce, "accuracy": accuracy}


def observational_mean_penalty(z: torch.Tensor, environment: torch.Tensor) -> torch.Tensor:
    """sum_k (mean of z_k over the observational rows)^2, the reference's kappa term (0 without such rows)."""
    observational = (environment == 0).to(z.dtype).unsqueeze(1)
    mean = (z * observational).sum(dim=0) / observational.sum().clamp(min=1)
    return (mean ** 2).sum()


def notears(A: torch.Tensor) -> torch.Tensor:
    """h(A) = tr expm(A * A) - d (Zheng et al., NeurIPS 2018): 0 exactly when A's support is acyclic."""
    return torch.trace(torch.matrix_exp(A * A)) - A.shape[0]


@register_model("contrastive_crl")
class ContrastiveCRL(CausalModel):
    name = "contrastive_crl"
    Config = ContrastiveCRLConfig
    version = VERSION
    aligned = True  # latent t is trained as environment t + 1's target, which intervenes on factor t
    needs_environments = True
    assumptions = {"linear_scm": "a linear Gaussian latent SCM",
                   "one_intervention_per_latent": "one perfect intervention on each latent, one environment each"}

    def __init__(self, card, **hyperparameters) -> None:
        super().__init__(card, **hyperparameters)
        config = self.config
        self.latent = len(card.factors)  # one latent per environment, one environment per factor
        if config.backbone == "reference":
            self.encoder = ChamberEncoder(self.latent, self.channels, self.image_size, config.conv_blocks,
                                          config.conv_channels, config.hidden_units)
        else:
            self.encoder = ConvEncoder(self.latent, self.channels, self.image_size)
        d = self.latent
        # ParametricPart's parameters and initial values; the reference's names are swapped against their roles
        self.constants = nn.Parameter(torch.zeros(d))  # c: ``shifts`` (0)
        self.linear = nn.Parameter(torch.ones(d))  # b: ``intercepts`` (1)
        self.quadratic = nn.Parameter(torch.ones(d))  # l: ``lambdas`` (1)
        self.scales = nn.Parameter(torch.ones(1, d))  # s: ``scales`` (1)
        self.A = nn.Parameter(torch.eye(d))  # A (identity; its diagonal only meets the penalties)

    def supervision(self) -> list[str]:
        return ["environments"]  # which environment each training row comes from (not what it intervenes on)

    def latent_size(self) -> int:
        return self.latent

    def parametric_parameters(self) -> list[nn.Parameter]:
        return [self.constants, self.linear, self.quadratic, self.scales, self.A]

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        config = self.config
        parametric_lr = config.lr if config.lr_parametric is None else config.lr_parametric
        groups = [{"params": self.parametric_parameters(), "lr": parametric_lr},
                  {"params": list(self.encoder.parameters()), "lr": config.lr}]
        return {"adam": adam(groups, lr=config.lr, weight_decay=config.weight_decay)}

    def logits(self, z: torch.Tensor) -> torch.Tensor:
        """logit(x, t) [N, d] of codes ``z`` [N, d] (:func:`environment_logits`)."""
        return environment_logits(z, self.constants, self.linear, self.quadratic, whitening_matrix(self.scales, self.A))

    def checked_environment(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        environment = batch.get("environment")
        if environment is None:
            raise ConfigError(f"model {self.name!r} trains on interventional environments: each batch needs "
                              "'environment' (LongTensor [B]: 0 observational, e >= 1 the e-th environment), which the "
                              "trainer gives a model with needs_environments on a dataset with environments")
        environment = environment.long()
        if environment.shape != batch["images"].shape[:1]:
            raise ConfigError(f"model {self.name!r}: 'environment' must be [B] = [{len(batch['images'])}]; got shape "
                              f"{tuple(environment.shape)}")
        if bool(((environment < 0) | (environment > self.latent)).any()):
            raise ConfigError(f"model {self.name!r}: environment indices must be in 0..{self.latent} (0 observational, "
                              f"e the environment that intervenes on latent e - 1 of d = {self.latent}, the card's "
                              f"factors); got {sorted(set(environment.tolist()))}")
        return environment

    def training_step(self, batch: dict[str, torch.Tensor], step: int) -> dict[str, torch.Tensor]:
        environment = self.checked_environment(batch)
        z = self.encoder(batch["images"])
        terms = classifier_terms(self.logits(z), environment)
        classifier = terms["observational_ce"] + terms["interventional_ce"]
        mean_penalty = observational_mean_penalty(z, environment)
        l1, acyclicity = self.A.abs().sum(), notears(self.A)
        config = self.config
        loss = classifier + config.kappa * mean_penalty + config.eta * l1 + config.mu * acyclicity
        return {"loss": loss, "classifier": classifier, **terms, "mean_penalty": mean_penalty, "l1": l1,
                "notears": acyclicity}

    @torch.no_grad()
    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """z = f(x) as d blocks of one code [N, d, 1]: latent t is environment t + 1's target (factor t)."""
        return self.encoder(images).unsqueeze(2)

    def learned_graph(self) -> dict:
        """Edges i -> j where |A^T[i, j]| = |A[j, i]| > ``graph_threshold`` off the diagonal; scores |A^T|.

        Orientation: row j of B = diag(s) (I - A_off) reads s_j (z_j - sum_i A[j, i] z_i), latent j's noise, so
        A[j, i] != 0 makes z_i a parent of z_j. The reference's data are X = W^T X + eps with W[i, j] != 0 meaning
        i -> j (data_generation.py ``sample_lganm_copy``: inv(I - W^T) applied to the noise), whose true B is
        D^(-1/2) (I - W^T) (``get_dataset_for_linear_disentanglement``): A estimates W^T, and the wrapper scores
        ``A.t()`` against W (contrastive_crl_experiment.py), the orientation of crlbench's cards (A[i, j] = 1: i -> j).
        """
        scores = np.abs(self.A.detach().cpu().double().numpy().T)
        np.fill_diagonal(scores, 0.0)
        return {"adjacency": (scores > self.config.graph_threshold).astype(int), "scores": scores}

    def reconstruct(self, images: torch.Tensor) -> torch.Tensor:
        raise NotApplicable(f"model {self.name!r} has no decoder (Contrastive CRL learns an encoder and a contrastive "
                            "classifier, no generative model of images): it cannot reconstruct images")

    def intervene(self, images: torch.Tensor, target: int, value: float | torch.Tensor) -> torch.Tensor:
        raise NotApplicable(f"model {self.name!r} has no decoder (Contrastive CRL learns an encoder and a contrastive "
                            "classifier, no generative model of images): it cannot draw images after do()")
