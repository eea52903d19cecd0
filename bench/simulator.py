"""Simulator benchmark for ``make bench``: generation and backfill rates, recorded with the others.

The measuring lives with the simulator (``simulator/bench.py``); this records its figures in
``bench/results.json`` and ``bench/RESULTS.md`` beside the node's.
"""

from __future__ import annotations

import argparse

from bench.report import Figure, record
from simulator.bench import measure


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--size", choices=["quick", "full"], default="quick")
    args = parser.parse_args()
    figures = [
        Figure(f["name"], f["value"], f["unit"], f["target"], f.get("note", "")) for f in measure(args.size)
    ]
    record(figures, args.size)


if __name__ == "__main__":
    main()
