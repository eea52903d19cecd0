"""Plotly figures built from the API's JSON: pure functions, styled through ``theme.style``.

Nothing here computes a business figure; it only places the API's numbers on axes (the stock
lines replay the snapshots and adjustments the API lists, as the API itself does).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import plotly.graph_objects as go

from dashboard import theme
from dashboard.sentences import detail_fields, duration_text, event_time, milestone_word, system_name

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


def stock_history(
    events: Sequence[Mapping[str, Any]], location: Mapping[str, Any], now: datetime
) -> go.Figure:
    """Stock per system at one location over time, held to now; the current spread marked in red."""
    fig = go.Figure()
    series = stock_series(events, str(location["location_id"]))
    for system, points in series.items():
        fig.add_trace(
            go.Scatter(
                name=system_name(system),
                x=[t for t, _ in points] + [now],
                y=[v for _, v in points] + [points[-1][1]],
                mode="lines+markers",
                line={"shape": "hv", "width": 3, "color": theme.system_colour(system)},
                marker={"size": [8] * len(points) + [1]},
                hovertemplate="%{y} units at %{x}<extra>" + system_name(system) + "</extra>",
            )
        )
    current = [
        int(s["on_hand"]) for s in location.get("systems", {}).values() if s.get("on_hand") is not None
    ]
    spread = int(location.get("spread") or 0)
    if spread and current:
        fig.add_trace(
            go.Scatter(
                name=f"spread now: {spread} units",
                x=[now, now],
                y=[min(current), max(current)],
                mode="lines+markers",
                line={"color": theme.MISSING_COLOUR, "width": 6},
                marker={"symbol": "line-ew", "size": 18, "line": {"width": 3, "color": theme.MISSING_COLOUR}},
                hoverinfo="name",
            )
        )
    _now_marker(fig, now)
    return theme.style(fig, TIME_AXIS, "Stock on hand (units)", legend_title="System")


def completeness_curves(promotions: Sequence[Mapping[str, Any]], now: datetime) -> go.Figure:
    """Each promotion's share of activated targets over time (step lines, held to now)."""
    fig = go.Figure()
    for index, promotion in enumerate(promotions):
        curve = list(promotion.get("completeness_curve") or [])
        if not curve:
            continue
        fig.add_trace(
            go.Scatter(
                name=str(promotion["promo_id"]),
                x=[p["time"] for p in curve] + [now],
                y=[p["completeness"] for p in curve] + [curve[-1]["completeness"]],
                mode="lines+markers",
                line={"shape": "hv", "width": 3, "color": theme.PALETTE[index % len(theme.PALETTE)]},
                hovertemplate="%{y}% at %{x}<extra>" + str(promotion["promo_id"]) + "</extra>",
            )
        )
    _now_marker(fig, now)
    fig.update_yaxes(range=[0, 105])
    return theme.style(fig, TIME_AXIS, "Targets activated (%)", legend_title="Promotion")


def lag_heatmap(promotions: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Store (or channel) by promotion: activation lag in minutes; cells of targets that have not
    activated are coloured by status (missing red, pending grey) instead of a lag."""
    promo_ids = [str(p["promo_id"]) for p in promotions]
    targets = sorted({str(t["target"]) for p in promotions for t in p.get("targets") or []})
    lag: list[list[float | None]] = []
    waiting: list[list[float | None]] = []
    text: list[list[str]] = []
    for target in targets:
        lag_row: list[float | None] = []
        waiting_row: list[float | None] = []
        text_row: list[str] = []
        for promotion in promotions:
            found = next((t for t in promotion.get("targets") or [] if str(t["target"]) == target), None)
            status = str(found.get("status", "")) if found else ""
            if found is not None and found.get("lag_seconds") is not None:
                lag_row.append(round(float(found["lag_seconds"]) / 60, 1))
                waiting_row.append(None)
                text_row.append(f"{duration_text(float(found['lag_seconds']))} ({status.replace('_', ' ')})")
            else:
                lag_row.append(None)
                waiting_row.append({"missing": 1.0, "pending": 0.0}.get(status))
                text_row.append(status)
        lag.append(lag_row)
        waiting.append(waiting_row)
        text.append(text_row)
    common = {"x": promo_ids, "y": targets, "text": text, "xgap": 2, "ygap": 2}
    fig = go.Figure(
        [
            go.Heatmap(
                z=lag,
                texttemplate="%{text}",
                colorscale=[[0, "#E8F5E9"], [0.3, "#FFE082"], [1, "#EF6C00"]],
                colorbar={"title": {"text": "Lag (min)"}},
                hovertemplate="%{y} · %{x}: %{text}<extra></extra>",
                name="lag",
                **common,
            ),
            go.Heatmap(
                z=waiting,
                texttemplate="<b>%{text}</b>",
                textfont={"color": "white"},
                colorscale=[[0, theme.STATUS_COLOURS["pending"]], [1, theme.STATUS_COLOURS["missing"]]],
                zmin=0,
                zmax=1,
                showscale=False,
                hovertemplate="%{y} · %{x}: %{text}<extra></extra>",
                name="not activated",
                **common,
            ),
        ]
    )
    fig.update_xaxes(type="category", showgrid=False)
    fig.update_yaxes(type="category", autorange="reversed", showgrid=False)
    return theme.style(fig, "Promotion", "Store or channel", height=140 + 34 * max(len(targets), 1))


def kpi_trend(
    series: Sequence[Mapping[str, Any]],
    field: str,
    y_title: str,
    days: tuple[str, str],
    scale: float = 1.0,
    bars: bool = False,
) -> go.Figure:
    """A daily series field per channel over the period ``days`` (first day, last day): counts as
    grouped bars, durations as lines (``scale`` converts, e.g. seconds to minutes)."""
    fig = go.Figure()
    channels = sorted({str(row["channel"]) for row in series})
    for index, channel in enumerate(channels):
        rows = [row for row in series if row["channel"] == channel and row.get(field) is not None]
        if not rows:
            continue
        colour = theme.PALETTE[index % len(theme.PALETTE)]
        x = [row["day"] for row in rows]
        y = [float(row[field]) * scale for row in rows]
        if bars:
            fig.add_trace(go.Bar(name=channel, x=x, y=y, marker={"color": colour}))
        else:
            fig.add_trace(
                go.Scatter(name=channel, x=x, y=y, mode="lines+markers", line={"width": 3, "color": colour})
            )
    first, last = (datetime.fromisoformat(day) for day in days)
    fig.update_xaxes(
        type="date", tickformat="%d %b", range=[first - timedelta(hours=12), last + timedelta(hours=12)]
    )
    highest = max((max(trace.y) for trace in fig.data if trace.y), default=0)
    # Counts are whole numbers: a tick every unit (or every fifth of the range), never "0.5 orders".
    fig.update_yaxes(rangemode="tozero", dtick=max(1, math.ceil(highest / 5)) if bars else None)
    fig.update_layout(barmode="group")
    return theme.style(fig, "Day (UTC)", y_title, height=320, legend_title="Channel")


def top_stores(stores: Sequence[Mapping[str, Any]]) -> go.Figure:
    """Stores by stalled rate (the API's ranking), with the counts behind each rate."""
    fig = go.Figure(
        go.Bar(
            orientation="h",
            y=[str(s["store_id"]) for s in stores],
            x=[float(s["stalled_rate"]) * 100 for s in stores],
            text=[f"{s['stalled']} of {s['open']} open" for s in stores],
            textposition="auto",
            marker={"color": theme.STATUS_COLOURS["stalled"]},
            showlegend=False,
        )
    )
    fig.update_yaxes(type="category", autorange="reversed")
    fig.update_xaxes(range=[0, 100])
    return theme.style(fig, "Stalled rate (% of open orders)", "Store", height=140 + 32 * max(len(stores), 1))
