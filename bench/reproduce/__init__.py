"""Suites behind `edgedet reproduce NAME`."""
