"""edgedet.bench: the measurement harness; `reproduce/` reproduces paper tables and performance claims."""
