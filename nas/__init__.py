"""edgedet.nas: search space, supernet, latency look-up table and search loop (the latency
predictor it prices blocks with is `edgedet.profiles`)."""
