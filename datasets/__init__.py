"""Datasets: Pendulum, Flow and CausalCircuit generated from their structural causal models; the Causal
Chamber light tunnel read from its published files (``chamber``) and simulated by model F3 (``chamber_f3``).

Each module defines one registered dataset (SCM, sampler, renderer, card); ``raster``, ``cache`` and
``environments`` are shared, and ``chamber_f3`` shares the light tunnel's SCM with ``chamber``. Installed as
``crlbench.datasets`` (the folder is ``datasets/``).

May import: :mod:`crlbench.core`, numpy and scipy's special functions, and PIL lazily (inside the function
that decodes images); never torch.
"""
