"""Reusable callers for tests and benchmarks (see caller_bot's docstring)."""
