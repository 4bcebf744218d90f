"""Benchmarks of the service (`python -m bench.webhook`); not part of the installed package."""
