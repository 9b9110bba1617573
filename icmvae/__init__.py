"""ICM-VAE (Komanduri et al., IJCAI 2024): causal flow (``flow``) and model, prior and loss (``model``).

Installed as ``crlbench.icmvae`` (the folder is ``icmvae/``). May import: :mod:`crlbench.core` and
:mod:`crlbench.training` (the model contract and backbones), and torch.
"""
