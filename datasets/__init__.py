"""Datasets generated from their structural causal models: Pendulum, Flow and CausalCircuit.

Each module defines one registered dataset (SCM, sampler, renderer, card); ``raster`` and ``cache``
are shared. Installed as ``crlbench.datasets`` (the folder is ``datasets/``).

May import: :mod:`crlbench.core`, numpy and scipy's special functions; never torch.
"""
