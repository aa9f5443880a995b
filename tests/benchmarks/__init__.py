"""Tests of the benchmark harness in benchmarks/ (a package so that test_run.py cannot clash with tests/bench/)."""
