"""The dashboard's shared look: page frame, colours per source system and status, banners, charts.

Every chart goes through ``style`` (Plotly) or ``vega`` (Vega-Lite), which refuse a chart without
axis titles: a number on a chart means nothing to an executive without its unit.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import plotly.graph_objects as go
import streamlit as st

from dashboard.client import NOT_FOUND, Problem
from dashboard.sentences import DONE, ERROR, LATE, Summary, system_name

# Okabe-Ito, readable by colour-blind viewers; the first ones go to the systems every estate has.
PALETTE = (
    "#0072B2",  # blue
    "#E69F00",  # orange
    "#009E73",  # green
    "#CC79A7",  # purple
    "#56B4E9",  # sky
    "#D55E00",  # vermillion
    "#8C6D31",  # brown
    "#332288",  # indigo
    "#117733",  # dark green
    "#882255",  # wine
)
SYSTEM_COLOURS = {
    "Web shop": "#0072B2",
    "App": "#56B4E9",
    "POS": "#E69F00",
    "ERP": "#882255",
    "WMS": "#009E73",
    "Payments": "#CC79A7",
    "Pricing": "#332288",
    "OMS": "#8C6D31",
}
STATUS_COLOURS = {
    "ok": "#2E8540",
    "on_time": "#2E8540",
    "late": "#E69F00",
    "pending": "#8A8F98",
    "missing": "#C62828",
    "error": "#C62828",
    "stalled": "#E69F00",
}
NOW_COLOUR = "#5B6170"
MISSING_COLOUR = STATUS_COLOURS["missing"]
FONT = '"Source Sans", "Source Sans Pro", "Segoe UI", Helvetica, Arial, sans-serif'  # Streamlit's own first
TEXT_COLOUR, LABEL_COLOUR, GRID_COLOUR = "#31333F", "#808495", "#E6E8EC"
LINK_TEXT = r"\?\w+=(.*)"  # a table's link column shows the id, not the URL

VegaSpec = dict[str, Any]
# Plotly figures are drawn by plotly.js's basic bundle, served by Streamlit from dashboard/static
# (``--server.enableStaticServing``; the path is relative so it works under any base URL).
PLOTLY_BUNDLE = "app/static/plotly-basic.min.js"
PLOTLY_CONFIG = {"displaylogo": False, "responsive": True}
_plotly_chart = st.components.v2.component(
    "milepost_plotly", js=(Path(__file__).parent / "plotly_chart.js").read_text(), isolate_styles=False
)
WHOLE_NUMBERS: VegaSpec = {"tickMinStep": 1, "format": "d"}  # units and orders: never "0.5 orders"
_VEGA_CONFIG: VegaSpec = {
    "font": FONT,
    "axis": {"labelFontSize": 12, "titleFontSize": 13, "titleFontWeight": "normal", "gridColor": GRID_COLOUR},
    # Two entries a row (charts are often half the page wide): twenty promotions would otherwise run
    # off the edge.
    "legend": {"orient": "top", "columns": 2, "labelFontSize": 12, "titleFontSize": 12, "labelLimit": 200},
    "view": {"stroke": None},
}


def deep_link(parameter: str, value: str) -> str:
    """A link to the view of ``value`` (``./?order=W-1``), relative so it works under any base URL.

    The dashboard's root, where the parameter picks the view (``app.main``): one form for every
    view, since the Order page is the app's default and Streamlit serves it at the root only
    (``/order?order=W-1`` would open under a "Page not found" dialog)."""
    return f"./?{parameter}={quote(value, safe='')}"


def system_colour(source_or_system: str) -> str:
    """One colour per source system, the same on every page and every run."""
    name = system_name(source_or_system) if source_or_system not in SYSTEM_COLOURS else source_or_system
    if name in SYSTEM_COLOURS:
        return SYSTEM_COLOURS[name]
    digest = hashlib.sha256(name.lower().encode()).digest()
    return PALETTE[digest[0] % len(PALETTE)]


def status_colour(status: str) -> str:
    return STATUS_COLOURS.get(status, NOW_COLOUR)


_AXIS = {
    "automargin": True,
    "gridcolor": GRID_COLOUR,
    "linecolor": GRID_COLOUR,
    "tickfont": {"color": LABEL_COLOUR, "size": 12},
    "title": {"font": {"color": LABEL_COLOUR, "size": 13}},
}
# The page's look for Plotly figures (Streamlit's own chart theme does not reach them: theme.chart
# draws them itself), in place of plotly.py's default template.
PLOTLY_TEMPLATE = go.layout.Template(
    layout={
        "font": {"family": FONT, "size": 13, "color": TEXT_COLOUR},
        "paper_bgcolor": "rgba(0,0,0,0)",
        "plot_bgcolor": "rgba(0,0,0,0)",
        "xaxis": _AXIS,
        "yaxis": _AXIS,
        "hoverlabel": {"font": {"family": FONT}},
        "legend": {
            "font": {"size": 12},
            "title": {"side": "top", "font": {"size": 12, "color": LABEL_COLOUR}},
        },
    }
)


def style(fig: go.Figure, x_title: str, y_title: str, height: int = 380, legend_title: str = "") -> go.Figure:
    """The shared Plotly layout; ``x_title`` and ``y_title`` say what an axis holds and in which unit."""
    _require_titles(x_title, y_title)
    fig.update_layout(
        template=PLOTLY_TEMPLATE,
        height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0, "title": {"text": legend_title}},
    )
    fig.update_xaxes(title_text=x_title, showgrid=True, zeroline=False)
    fig.update_yaxes(title_text=y_title, showgrid=True, zeroline=False)
    return fig


def _require_titles(x_title: str, y_title: str) -> None:
    if not x_title.strip() or not y_title.strip():
        raise ValueError("Every chart needs both axis titles, with their units.")


def vega(
    layers: list[VegaSpec], x_title: str, y_title: str, height: int | VegaSpec = 380, **top: Any
) -> VegaSpec:
    """A Vega-Lite chart of ``layers`` in the shared look; each layer's x and y get the axis titles
    (Vega-Lite shows a title shared by layers once). ``height`` in pixels, or ``{"step": n}`` pixels
    per row of a chart with a row per store. ``top``: more top-level keys (``resolve``)."""
    _require_titles(x_title, y_title)
    for layer in layers:
        encoding = layer.get("encoding", {})
        for channel, title in (("x", x_title), ("y", y_title)):
            if channel in encoding and "value" not in encoding[channel]:
                encoding[channel]["title"] = title
    return {"height": height, "layer": layers, "config": _VEGA_CONFIG, **top}


# Tick labels in UTC, 24-hour clock; the date at midnight.
_UTC_TICK = "utcFormat(datum.value, utchours(datum.value) + utcminutes(datum.value) == 0 ? '%d %b' : '%H:%M')"


def time_axis(field: str) -> VegaSpec:
    """An x encoding of ISO times, labelled in UTC whatever the browser's time zone."""
    return {"field": field, "type": "temporal", "scale": {"type": "utc"}, "axis": {"labelExpr": _UTC_TICK}}


def legend(field: str, title: str, domain: list[str], colours: list[str]) -> VegaSpec:
    """A colour encoding of ``field`` with one fixed colour per value, in ``domain`` order."""
    return {
        "field": field,
        "type": "nominal",
        "scale": {"domain": domain, "range": colours},
        "legend": {"title": title},
    }


def now_marker(now: datetime) -> list[VegaSpec]:
    """A dotted vertical line at ``now`` labelled "now" (layers of a time-axis chart)."""
    data = {"values": [{"time": now.isoformat()}]}
    x = time_axis("time")
    return [
        {
            "data": data,
            "mark": {"type": "rule", "strokeDash": [3, 3], "color": NOW_COLOUR},
            "encoding": {"x": x},
        },
        {
            "data": data,
            "mark": {"type": "text", "text": "now", "baseline": "bottom", "dy": -2, "color": NOW_COLOUR},
            "encoding": {"x": x, "y": {"value": 0}},
        },
    ]


def axis_titles(spec: dict[str, Any]) -> dict[str, str]:
    """Every axis title of a chart's JSON, for checks: a Plotly figure's axes (``xaxis``, ``yaxis``,
    ``xaxis2``...), or a Vega-Lite spec's x and y (named ``xaxis`` and ``yaxis`` alike)."""
    titles: dict[str, str] = {}
    for layer in spec.get("layer", []):
        for channel in ("x", "y"):
            encoding = layer.get("encoding", {}).get(channel) or {}
            if "field" in encoding or "datum" in encoding:
                titles.setdefault(f"{channel}axis", str(encoding.get("title", "")))
    for name, axis in spec.get("layout", {}).items():
        if (name.startswith("xaxis") or name.startswith("yaxis")) and isinstance(axis, dict):
            title = axis.get("title") or {}
            titles[name] = str(title.get("text", "") if isinstance(title, dict) else title)
    return titles


def chart(fig: go.Figure | VegaSpec, key: str | None = None) -> None:
    """Draw a Plotly figure (through the dashboard's own plotly.js bundle) or a Vega-Lite spec."""
    if isinstance(fig, go.Figure):
        figure = json.loads(fig.to_json())
        _plotly_chart(data={"src": PLOTLY_BUNDLE, "figure": figure, "config": PLOTLY_CONFIG}, key=key)
    else:
        st.vega_lite_chart(spec=fig, width="stretch", key=key)


def page_header(title: str, caption: str) -> None:
    st.title(title)
    st.caption(caption)


def show_problem(problem: Problem, what: str = "") -> None:
    """A banner, never a stack trace: unknown keys as a warning, everything else as an error."""
    prefix = f"{what}: " if what else ""
    if problem.kind == NOT_FOUND:
        st.warning(f"{prefix}{problem.message}", icon=":material/search_off:")
    else:
        st.error(f"{prefix}{problem.message}", icon=":material/cloud_off:")


def show_summary(summary: Summary) -> None:
    if summary.level == ERROR:
        st.error(summary.text, icon=":material/error:")
    elif summary.level == LATE:
        st.warning(summary.text, icon=":material/schedule:")
    elif summary.level == DONE:
        st.info(summary.text, icon=":material/task_alt:")
    else:
        st.success(summary.text, icon=":material/check_circle:")


def status_badge(status: str) -> str:
    """A coloured Markdown badge for a status (``ok``, ``late``, ``missing``...)."""
    colour = {"ok": "green", "on_time": "green", "late": "orange", "pending": "gray"}.get(status, "red")
    return f":{colour}-badge[{status.replace('_', ' ')}]"
