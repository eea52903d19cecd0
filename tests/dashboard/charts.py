"""Reading the dashboard's charts in tests: Plotly figures and Vega-Lite specs as JSON."""

from __future__ import annotations

import json
from typing import Any

import plotly.graph_objects as go

from dashboard import theme


def spec(fig: go.Figure | theme.VegaSpec) -> dict[str, Any]:
    """A chart's JSON as the browser gets it (a Vega-Lite spec must survive JSON as it is)."""
    return dict(json.loads(fig.to_json() if isinstance(fig, go.Figure) else json.dumps(fig)))


def series(chart: dict[str, Any]) -> dict[str, list[float]]:
    """A Vega-Lite chart's lines: the first layer's values per ``series``, in time order."""
    lines: dict[str, list[float]] = {}
    for row in chart["layer"][0]["data"]["values"]:
        lines.setdefault(row["series"], []).append(row["value"])
    return lines


def colours(encoding: dict[str, Any]) -> dict[str, str]:
    """The fixed colour of each value of a colour encoding."""
    scale = encoding["scale"]
    return dict(zip(scale["domain"], scale["range"], strict=True))
