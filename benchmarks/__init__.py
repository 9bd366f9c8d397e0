"""Benchmarks and long runs: measured here, recorded in docs/, never timed in tests."""
