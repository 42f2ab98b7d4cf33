"""Training loops, checkpoints and metrics."""
