"""ICM-VAE (Komanduri et al., IJCAI 2024): causal flow, disentanglement prior and loss."""
