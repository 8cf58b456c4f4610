"""Benchmarks, run on demand: `python -m tests.bench` (see __main__.py). Not part of the test suite."""
