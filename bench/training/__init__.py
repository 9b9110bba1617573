"""Training: the model contract every method implements (``model``: ``CausalModel``), the shared
convolutional and reference backbones (``nets``) and the one trainer with its budgets, seeded
streams and checkpoints (``train``), and the pixel-scale rule of summed reconstructions (``pixel_scale``).

May import: :mod:`crlbench.core` and torch; never suites, tracking or reports. The methods themselves
live in :mod:`crlbench.icmvae` and :mod:`crlbench.baselines` and are found through the registry.
"""
