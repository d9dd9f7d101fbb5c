"""Benchmark scripts: each prints its figures; run them all with `make bench`."""
