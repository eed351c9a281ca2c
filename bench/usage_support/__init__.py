"""Helpers for bench/usage_*.py (a package, so `make bench` does not run these files as benchmarks)."""
