"""Datasets: procedural synthetic data and loaders for real data."""
