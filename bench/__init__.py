"""Benchmarks. Never imported by production code; run with `make bench`."""
