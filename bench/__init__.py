"""Benchmarks (issue 5). Never imported by production code; run with `make bench`."""
