"""Benchmarks: run with `make bench`; each script prints a table."""
