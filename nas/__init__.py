"""edgedet.nas: search space, supernet, search loop and latency predictors."""
