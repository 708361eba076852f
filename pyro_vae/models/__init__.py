"""Probabilistic programs: networks, likelihoods, the VAE and its relatives."""
