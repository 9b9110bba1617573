"""Baseline methods, one module each (betavae, causalvae, dear, scmvae, ivae, ilcm, contrastive_crl), registered by
name.

Installed as ``crlbench.baselines`` (the folder is ``baselines/``). May import: :mod:`crlbench.core`
and :mod:`crlbench.training` (the model contract and backbones), and torch.
"""
