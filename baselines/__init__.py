"""Baseline methods, one module each (betavae, causalvae, dear), registered by name."""
