"""Benchmarks that print figures (run with `.venv/bin/python -m benchmarks.<name>`)."""
