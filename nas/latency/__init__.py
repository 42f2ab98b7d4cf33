"""Latency prediction: kernel graphs, roofline and measured predictors."""
