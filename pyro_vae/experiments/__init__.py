"""Studies built on training runs: the variance study, the paper's figures, benchmarks."""
