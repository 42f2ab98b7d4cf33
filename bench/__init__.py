"""edgedet.bench: the measurement harness; `suites/` reproduce paper tables."""
