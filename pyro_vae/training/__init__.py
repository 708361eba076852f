"""Training runs: configuration, the loop, checkpoints."""
