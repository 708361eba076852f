"""Inference: gradient estimators, training algorithms, evaluation and variance measurement."""
