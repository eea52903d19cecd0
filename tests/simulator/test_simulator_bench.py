"""The benchmark hook runs and reports figures (a tiny retailer, generation only, for speed)."""

from __future__ import annotations

import pytest

from simulator import bench


def test_the_benchmark_reports_generation_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(bench.RETAILER, "stores", 4)
    monkeypatch.setitem(bench.RETAILER, "skus", 5)
    monkeypatch.setattr(bench, "OPENING_COUNT", (4 + 1) * 5 * 3)
    figures = {f["name"]: f for f in bench.measure_generation(2.0, (1,))}
    assert figures["simulator.generate.items_per_s.1p"]["value"] > 0
    assert figures["simulator.week.items"]["value"] > 0
    assert "events/s" in figures["simulator.generate.items_per_s.1p"]["note"]
