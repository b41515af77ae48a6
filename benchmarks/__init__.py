"""Scoring throughput benchmarks (outside the installed package)."""
