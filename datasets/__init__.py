"""Datasets generated from their structural causal models: Pendulum, Flow and CausalCircuit.

Each module defines one registered dataset (SCM, sampler, renderer, card); ``raster`` and ``cache``
are shared. Modules here import numpy (and scipy's special functions), never torch.
"""
