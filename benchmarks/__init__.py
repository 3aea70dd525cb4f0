"""Benchmarks: throughput and model-cost tables, written to BENCHMARKS.md / README.md."""
