"""Benchmarks behind ``make bench``: each module measures one path and records its figures with ``report``."""
