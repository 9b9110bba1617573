"""ICM-VAE (Komanduri et al., IJCAI 2024): causal flow (``flow``) and model, prior and loss (``model``)."""
