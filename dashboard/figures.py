"""Charts built from the API's JSON: pure functions, styled through ``theme``.

The order page's timeline and trace waterfall are Plotly figures (``theme.style``), drawn by
``theme.chart`` with plotly.js's basic bundle. Every other chart is a Vega-Lite spec (``theme.vega``)
with its data inline, which Streamlit draws as soon or sooner on a page's first load (compare
``bench.dashboard``'s floor pages for each library).

Nothing here computes a business figure; it only places the API's numbers on axes (the stock
lines replay the snapshots and adjustments the API lists, as the API itself does).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

import plotly.graph_objects as go

from dashboard import theme
from dashboard.sentences import detail_fields, duration_text, event_time, milestone_word, system_name
from dashboard.theme import VegaSpec

LIFECYCLE = (
    "accepted",
    "paid",
    "reserved",
    "ready",
    "fulfilled",
    "returned",
    "refunded",
    "reconciled",
    "cancelled",
)
LINKED_ROW = "linked spans & events"
TIME_AXIS = "Time (UTC)"
_LABEL_INSIDE = 70  # % stalled beyond which a bar's label is written inside its end
_LABELLED_COLUMNS = 6  # promotions up to which each lag cell carries its text (tooltips always do)


def _now_marker(fig: go.Figure, now: datetime) -> None:
    fig.add_shape(
        type="line", x0=now, x1=now, y0=0, y1=1, yref="paper", line={"color": theme.NOW_COLOUR, "dash": "dot"}
    )
    fig.add_annotation(
        x=now,
        y=1,
        yref="paper",
        text="now",
        showarrow=False,
        yanchor="bottom",
        font={"color": theme.NOW_COLOUR},
    )


def _hover(*lines: str) -> str:
    return "<br>".join(line for line in lines if line)


def order_timeline(order: Mapping[str, Any], now: datetime) -> go.Figure:
    """Milestones on a time axis coloured by source system, linked spans and events on their own row,
    and the expected-but-missing milestone at its due time."""
    fig = go.Figure()
    fulfillment = str(order.get("fulfillment") or "")
    milestones = list(order.get("milestones") or [])
    by_system: dict[str, list[Mapping[str, Any]]] = {}
    for milestone in milestones:
        by_system.setdefault(system_name(str(milestone.get("source", ""))), []).append(milestone)
    for system, group in sorted(by_system.items()):
        fig.add_trace(
            go.Scatter(
                name=system,
                x=[m["time"] for m in group],
                y=[m["milestone"] for m in group],
                mode="markers",
                marker={
                    "size": 15,
                    "color": theme.system_colour(system),
                    "line": {
                        "width": [3 if m.get("status") == "error" else 1 for m in group],
                        "color": [
                            theme.MISSING_COLOUR if m.get("status") == "error" else "white" for m in group
                        ],
                    },
                },
                hovertext=[
                    _hover(
                        f"<b>{milestone_word(str(m['milestone']), fulfillment)}</b> at {m['time']}",
                        f"source {m.get('source', '')}",
                        f"event {m.get('event_id', '')}",
                        f"key {m.get('key', '')}" if m.get("key") else "",
                    )
                    for m in group
                ],
                hoverinfo="text",
            )
        )
    linked = list(order.get("events") or [])
    if linked:
        fig.add_trace(
            go.Scatter(
                name="Linked spans & events",
                x=[e["time"] for e in linked],
                y=[LINKED_ROW] * len(linked),
                mode="markers",
                marker={
                    "size": 12,
                    "symbol": ["x" if e.get("status") == "error" else "diamond" for e in linked],
                    "color": [theme.status_colour(str(e.get("status", "ok"))) for e in linked],
                },
                hovertext=[
                    _hover(
                        f"<b>{e.get('name', '')}</b> ({e.get('kind', '')}) at {e['time']}",
                        f"source {e.get('source', '')}",
                        f"status {e.get('status', '')}",
                        str(detail_fields(e.get("detail")).get("error", "")),
                    )
                    for e in linked
                ],
                hoverinfo="text",
            )
        )
    rows = [m for m in LIFECYCLE if any(x["milestone"] == m for x in milestones)]
    stalled = order.get("stalled")
    if stalled:
        expected, due = str(stalled["expected"]), str(stalled["due"])
        if expected not in rows:
            rows.append(expected)
        fig.add_trace(
            go.Scatter(
                name=f"missing: {milestone_word(expected, fulfillment)} (due)",
                x=[due, now],
                y=[expected, expected],
                mode="lines+markers",
                line={"color": theme.MISSING_COLOUR, "dash": "dash", "width": 2},
                marker={
                    "size": [16, 1],
                    "symbol": "circle-open",
                    "color": theme.MISSING_COLOUR,
                    "line": {"width": 3},
                },
                hovertext=[
                    f"<b>{expected}</b> was due at {due} ({stalled.get('rule', '')})",
                    f"overdue by {duration_text(float(stalled.get('overdue_seconds', 0)))}",
                ],
                hoverinfo="text",
            )
        )
    rows.sort(key=LIFECYCLE.index)
    if linked:
        rows.append(LINKED_ROW)
    _now_marker(fig, now)
    fig.update_yaxes(categoryorder="array", categoryarray=rows, autorange="reversed", type="category")
    fig.update_xaxes(type="date")
    return theme.style(fig, TIME_AXIS, "Milestone", height=140 + 42 * len(rows), legend_title="Source system")


def _span_order(spans: Sequence[Mapping[str, Any]]) -> list[tuple[int, Mapping[str, Any]]]:
    """Spans depth-first from their roots, children by start time: the waterfall's rows."""
    ids = {str(s["span_id"]) for s in spans}
    children: dict[str, list[Mapping[str, Any]]] = {}
    for span in spans:
        parent = str(span.get("parent_span_id") or "")
        children.setdefault(parent if parent in ids else "", []).append(span)
    ordered: list[tuple[int, Mapping[str, Any]]] = []

    def visit(parent: str, depth: int) -> None:
        for span in sorted(children.get(parent, []), key=lambda s: int(s["start_unix_nano"])):
            ordered.append((depth, span))
            visit(str(span["span_id"]), depth + 1)

    visit("", 0)
    return ordered


def _status(span: Mapping[str, Any]) -> tuple[str, str]:
    status = span.get("status") or {}
    return str(status.get("code", "")), str(status.get("message", ""))


def trace_waterfall(spans: Sequence[Mapping[str, Any]]) -> go.Figure:
    """One bar per span from its start to its end, indented under its parent; failed spans in red."""
    rows = _span_order(spans)
    start = min(int(s["start_unix_nano"]) for s in spans) if spans else 0
    labels = [f"{'· ' * depth}{s['name']} [{s.get('service_name', '')}]" for depth, s in rows]
    failed = [_status(s)[0] == "error" for _, s in rows]
    fig = go.Figure(
        go.Bar(
            orientation="h",
            y=labels,
            base=[(int(s["start_unix_nano"]) - start) / 1e6 for _, s in rows],
            x=[max(int(s["duration_ns"]) / 1e6, 0.01) for _, s in rows],
            marker={
                "color": [theme.system_colour(str(s.get("service_name", ""))) for _, s in rows],
                "line": {"width": [3 if f else 0 for f in failed], "color": theme.MISSING_COLOUR},
            },
            text=[
                f"{int(s['duration_ns']) / 1e6:,.1f} ms" + (" — error" if f else "")
                for (_, s), f in zip(rows, failed, strict=True)
            ],
            textposition="outside",
            hovertext=[
                _hover(
                    f"<b>{s['name']}</b> ({s.get('service_name', '')})",
                    f"{int(s['duration_ns']) / 1e6:,.1f} ms, status {_status(s)[0]}",
                    _status(s)[1],
                )
                for _, s in rows
            ],
            hoverinfo="text",
            showlegend=False,
        )
    )
    end = (
        max((int(s["start_unix_nano"]) - start + int(s["duration_ns"])) / 1e6 for _, s in rows) if rows else 1
    )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(range=[0, end * 1.25])  # room for the duration labels after the longest bar
    return theme.style(fig, "Time since trace start (ms)", "Span [service]", height=120 + 36 * len(rows))


def stock_series(events: Sequence[Mapping[str, Any]], location_id: str) -> dict[str, list[tuple[str, int]]]:
    """Per system at one location, on_hand after each snapshot and adjustment, by event time.

    A snapshot sets the count; an adjustment moves it (adjustments before a system's first
    snapshot are not drawn: there is nothing to move yet).
    """
    series: dict[str, list[tuple[str, int]]] = {}
    ordered = sorted(events, key=event_time)
    for event in ordered:
        system = event.get("system")
        if event.get("location_id") != location_id or not system:
            continue
        points = series.setdefault(str(system), [])
        if event.get("kind") == "snapshot" and event.get("on_hand") is not None:
            points.append((str(event["time"]), int(event["on_hand"])))
        elif event.get("kind") in ("adjustment", "adjusted") and points:
            points.append((str(event["time"]), points[-1][1] + int(event.get("delta") or 0)))
    return {system: points for system, points in sorted(series.items()) if points}


def _held_to_now(points: Sequence[tuple[str, float]], now: datetime) -> list[tuple[str, float, bool]]:
    """``(time, value)`` points and the last value again at ``now`` (flagged held: no marker there)."""
    return [(t, v, False) for t, v in points] + [(now.isoformat(), points[-1][1], True)]


def _step_layers(rows: list[dict[str, Any]], y: dict[str, Any], colour: dict[str, Any]) -> list[VegaSpec]:
    """Step lines of ``rows`` (time, series, value, held) coloured by series, markers on the real points.

    Systems that agree draw the same line: each series is drawn thinner than the one before it, so
    lines on top of each other show as nested stripes of every colour instead of the last one.
    """
    x = theme.time_axis("time")
    domain = list(colour["scale"]["domain"])
    widths = {name: 3 + 3 * (len(domain) - 1 - index) for index, name in enumerate(domain)}
    ordered = sorted(rows, key=lambda row: domain.index(row["series"]) if row["series"] in domain else 0)
    line = {
        "data": {"values": [{**row, "width": widths.get(row["series"], 3)} for row in ordered]},
        "mark": {"type": "line", "interpolate": "step-after"},
        "encoding": {
            "x": x,
            "y": y,
            "color": colour,
            "strokeWidth": {"field": "width", "type": "quantitative", "scale": None, "legend": None},
        },
    }
    tooltip = [
        {"field": "series", "title": "series"},
        {"field": "value", "title": "value"},
        {"field": "time"},
    ]
    points = {
        "data": {"values": [row for row in rows if not row["held"]]},
        "mark": {"type": "point", "filled": True, "size": 70, "opacity": 1},
        "encoding": {"x": x, "y": y, "color": colour, "tooltip": tooltip},
    }
    return [line, points]


def stock_history(
    events: Sequence[Mapping[str, Any]], location: Mapping[str, Any], now: datetime
) -> VegaSpec:
    """Stock per system at one location over time, held to now; the current spread marked in red."""
    series = stock_series(events, str(location["location_id"]))
    rows = [
        {"series": system_name(system), "time": t, "value": v, "held": held}
        for system, points in series.items()
        for t, v, held in _held_to_now(points, now)
    ]
    domain = [system_name(system) for system in series]
    colours = [theme.system_colour(system) for system in series]
    current = [
        int(s["on_hand"]) for s in location.get("systems", {}).values() if s.get("on_hand") is not None
    ]
    spread = int(location.get("spread") or 0)
    layers = []
    if spread and current:
        label = f"spread now: {spread} units"
        domain.append(label)
        colours.append(theme.MISSING_COLOUR)
        layers.append(
            {
                "data": {
                    "values": [
                        {"series": label, "time": now.isoformat(), "low": min(current), "high": max(current)}
                    ]
                },
                "mark": {"type": "rule", "strokeWidth": 6},
                "encoding": {
                    "x": theme.time_axis("time"),
                    "y": {"field": "low", "type": "quantitative"},
                    "y2": {"field": "high"},
                    "color": {"field": "series", "type": "nominal"},
                },
            }
        )
    colour = theme.legend("series", "System", domain, colours)
    value = {"field": "value", "type": "quantitative", "scale": {"zero": False}, "axis": theme.WHOLE_NUMBERS}
    layers = [*_step_layers(rows, value, colour), *layers, *theme.now_marker(now)]
    return theme.vega(layers, TIME_AXIS, "Stock on hand (units)")


def completeness_curves(promotions: Sequence[Mapping[str, Any]], now: datetime) -> VegaSpec:
    """Each promotion's share of activated targets over time (step lines, held to now)."""
    rows: list[dict[str, Any]] = []
    names: list[str] = []
    for promotion in promotions:
        curve = [
            (str(p["time"]), float(p["completeness"])) for p in promotion.get("completeness_curve") or []
        ]
        if not curve:
            continue
        names.append(str(promotion["promo_id"]))
        rows += [
            {"series": names[-1], "time": t, "value": v, "held": held}
            for t, v, held in _held_to_now(curve, now)
        ]
    colours = [theme.PALETTE[index % len(theme.PALETTE)] for index in range(len(names))]
    colour = theme.legend("series", "Promotion", names, colours)
    share = {"field": "value", "type": "quantitative", "scale": {"domain": [0, 100]}}
    return theme.vega(
        [*_step_layers(rows, share, colour), *theme.now_marker(now)], TIME_AXIS, "Targets activated (%)"
    )


def lag_heatmap(promotions: Sequence[Mapping[str, Any]]) -> VegaSpec:
    """Store (or channel) by promotion: activation lag in minutes; cells of targets that have not
    activated are coloured by status (missing red, pending grey) instead of a lag."""
    promo_ids = [str(p["promo_id"]) for p in promotions]
    targets = sorted({str(t["target"]) for p in promotions for t in p.get("targets") or []})
    lagging: list[dict[str, Any]] = []
    waiting: list[dict[str, Any]] = []
    for target in targets:
        for promotion in promotions:
            found = next((t for t in promotion.get("targets") or [] if str(t["target"]) == target), None)
            status = str(found.get("status", "")) if found else ""
            cell = {
                "target": target,
                "promotion": str(promotion["promo_id"]),
                "status": status.replace("_", " "),
            }
            if found is not None and found.get("lag_seconds") is not None:
                seconds = float(found["lag_seconds"])
                text = duration_text(seconds)
                short = "<1 min" if seconds < 60 else text  # "under a minute" is wider than a cell
                lagging.append({**cell, "lag": round(seconds / 60, 1), "text": text, "label": short})
            elif status in ("missing", "pending"):
                waiting.append({**cell, "text": status, "label": status})
    # A couple of promotion ids fit level; up to six are slanted so that each is shown; with more,
    # Vega leaves out every other label rather than overlap them (the tooltips name every cell).
    axis: VegaSpec = {"labelAngle": 0 if len(promo_ids) <= 2 else -45, "labelLimit": 200}
    if len(promo_ids) <= 6:
        axis["labelOverlap"] = False
    x = {"field": "promotion", "type": "nominal", "sort": promo_ids, "axis": axis}
    y = {"field": "target", "type": "nominal", "sort": targets}
    tooltip = [
        {"field": "target"},
        {"field": "promotion"},
        {"field": "text", "title": "lag or state"},
        {"field": "status"},
    ]
    cells = {"type": "rect", "stroke": "white", "strokeWidth": 2}
    lag_colour = {
        "field": "lag",
        "type": "quantitative",
        "scale": {"range": ["#E8F5E9", "#FFE082", "#EF6C00"]},
        "legend": {"title": "Lag (min)"},
    }
    state_colour = theme.legend(
        "text",
        "Not activated",
        ["pending", "missing"],
        [theme.STATUS_COLOURS["pending"], theme.STATUS_COLOURS["missing"]],
    )
    layers: list[VegaSpec] = [
        {
            "data": {"values": lagging},
            "mark": cells,
            "encoding": {"x": x, "y": y, "color": lag_colour, "tooltip": tooltip},
        },
        {
            "data": {"values": waiting},
            "mark": cells,
            "encoding": {"x": x, "y": y, "color": state_colour, "tooltip": tooltip},
        },
    ]
    if len(promo_ids) <= _LABELLED_COLUMNS:
        layers.append(
            {
                "data": {"values": [*lagging, *waiting]},
                "mark": {"type": "text", "fontSize": 12},
                "encoding": {
                    "x": x,
                    "y": y,
                    "text": {"field": "label"},
                    "color": {
                        "condition": {"test": "datum.lag == null", "value": "white"},
                        "value": "#1F2430",
                    },
                },
            }
        )
    return theme.vega(
        layers,
        "Promotion",
        "Store or channel",
        height={"step": 34},
        resolve={"scale": {"color": "independent"}},
    )


def kpi_trend(
    series: Sequence[Mapping[str, Any]],
    field: str,
    y_title: str,
    days: tuple[str, str],
    scale: float = 1.0,
    bars: bool = False,
) -> VegaSpec:
    """A daily series field per channel over the period ``days`` (first day, last day): counts as
    grouped bars, durations as lines (``scale`` converts, e.g. seconds to minutes)."""
    first, last = (date.fromisoformat(day[:10]) for day in days)
    period = [(first + timedelta(days=n)).isoformat() for n in range((last - first).days + 1)]
    channels = sorted({str(row["channel"]) for row in series})
    rows = [
        {"day": str(row["day"])[:10], "channel": str(row["channel"]), "value": float(row[field]) * scale}
        for row in series
        if row.get(field) is not None
    ]
    colours = [theme.PALETTE[index % len(theme.PALETTE)] for index in range(len(channels))]
    colour = theme.legend("channel", "Channel", channels, colours)
    x = {
        "field": "day",
        "type": "ordinal",
        "scale": {"domain": period},
        "axis": {"labelExpr": "timeFormat(toDate(datum.value + 'T12:00:00'), '%d %b')", "labelAngle": 0},
    }
    y: dict[str, Any] = {"field": "value", "type": "quantitative", "scale": {"zero": True}}
    tooltip = [
        {"field": "day"},
        {"field": "channel"},
        {"field": "value", "title": y_title, "format": ",.4~f"},
    ]
    encoding: VegaSpec = {"x": x, "y": y, "color": colour, "tooltip": tooltip}
    if bars:
        y["axis"] = theme.WHOLE_NUMBERS
        encoding["xOffset"] = {"field": "channel", "sort": channels}
        mark: VegaSpec = {"type": "bar"}
    else:
        mark = {"type": "line", "point": True, "strokeWidth": 3}
    layer = {"data": {"values": rows}, "mark": mark, "encoding": encoding}
    return theme.vega([layer], "Day (UTC)", y_title, height=300)


def top_stores(stores: Sequence[Mapping[str, Any]]) -> VegaSpec:
    """Stores by stalled rate (the API's ranking), with the counts behind each rate."""
    rows: list[dict[str, Any]] = [
        {
            "store": str(s["store_id"]),
            "rate": round(float(s["stalled_rate"]) * 100, 1),
            "text": f"{s['stalled']} of {s['open']} open",
        }
        for s in stores
    ]
    x = {"field": "rate", "type": "quantitative", "scale": {"domain": [0, 100], "clamp": True}}
    y = {"field": "store", "type": "nominal", "sort": [row["store"] for row in rows]}
    layers: list[VegaSpec] = [
        {
            "data": {"values": rows},
            "mark": {"type": "bar", "color": theme.STATUS_COLOURS["stalled"]},
            "encoding": {
                "x": x,
                "y": y,
                "tooltip": [{"field": "store"}, {"field": "rate", "title": "stalled %"}, {"field": "text"}],
            },
        },
    ]
    # The counts beside each bar; inside the bar's end when a label after it would leave the chart.
    for inside in (False, True):
        place = {"align": "right", "dx": -6, "color": "white"} if inside else {"align": "left", "dx": 6}
        layers.append(
            {
                "data": {"values": [row for row in rows if (row["rate"] > _LABEL_INSIDE) == inside]},
                "mark": {"type": "text", "fontSize": 12, **place},
                "encoding": {"x": x, "y": y, "text": {"field": "text"}},
            }
        )
    return theme.vega(layers, "Stalled rate (% of open orders)", "Store", height={"step": 30})
