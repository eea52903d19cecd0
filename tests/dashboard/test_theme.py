"""The shared look: colours per system and status, and charts that always say what their axes hold."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import plotly.graph_objects as go
import pytest
from plotly.offline import get_plotlyjs_version

from dashboard import figures, theme
from tests.dashboard.charts import colours, series, spec

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def test_a_system_has_one_colour_whatever_names_it() -> None:
    assert theme.system_colour("pos/042") == theme.system_colour("pos/017") == theme.system_colour("POS")
    assert theme.system_colour("erp/sap") == theme.SYSTEM_COLOURS["ERP"]
    assert theme.system_colour("shop/web") != theme.system_colour("pos/042")
    # The demo's systems: ERP's finance module and the stores' POS read as ERP and POS, OMS has its own.
    assert theme.system_colour("erp-finance/s4") == theme.SYSTEM_COLOURS["ERP"]
    assert theme.system_colour("pos-store-008") == theme.system_colour("pos/store-008")
    assert len({theme.system_colour(s) for s in ("oms/eu-west-1", "pos/001", "erp/sap", "wms/dc-1")}) == 4


def test_unknown_systems_get_a_palette_colour_that_never_changes() -> None:
    colour = theme.system_colour("inventory-service")
    assert colour in theme.PALETTE
    assert theme.system_colour("inventory-service") == colour == theme.system_colour("Inventory-Service")


def test_status_colours_say_good_late_and_bad() -> None:
    assert theme.status_colour("ok") == theme.status_colour("on_time")
    assert theme.status_colour("error") == theme.status_colour("missing") == theme.MISSING_COLOUR
    assert theme.status_colour("late") != theme.status_colour("ok")
    assert theme.status_colour("something else") == theme.NOW_COLOUR
    assert theme.status_badge("on_time") == ":green-badge[on time]"
    assert theme.status_badge("missing") == ":red-badge[missing]"


def test_style_refuses_a_chart_without_both_axis_titles() -> None:
    for x, y in (("", "Orders (count)"), ("Day (UTC)", " ")):
        with pytest.raises(ValueError, match="axis titles"):
            theme.style(go.Figure(), x, y)


def test_style_sets_the_titles_and_the_shared_layout() -> None:
    figure = spec(theme.style(go.Figure(go.Bar(x=[1], y=[2])), "Day (UTC)", "Orders (count)", height=300))
    assert theme.axis_titles(figure) == {"xaxis": "Day (UTC)", "yaxis": "Orders (count)"}
    assert figure["layout"]["height"] == 300
    assert figure["layout"]["legend"]["orientation"] == "h"
    # The page's look, not plotly.py's default template (its blue-grey plot area).
    assert figure["layout"]["template"]["layout"]["plot_bgcolor"] == "rgba(0,0,0,0)"
    assert figure["layout"]["template"]["layout"]["yaxis"]["automargin"] is True


def test_the_served_plotly_bundle_draws_what_plotly_py_writes() -> None:
    """Figures are written by plotly.py and drawn by the bundle in dashboard/static: one major version,
    and every trace type the dashboard draws is in that (basic) bundle."""
    bundle = Path(theme.__file__).parent / "static" / theme.PLOTLY_BUNDLE.removeprefix("app/static/")
    header = re.search(r"plotly\.js \(basic - minified\) v(\d+)\.\d+\.\d+", bundle.read_text()[:200])
    assert header, "dashboard/static holds plotly.js's basic bundle"
    assert header[1] == get_plotlyjs_version().split(".")[0]
    drawn = {
        trace.type
        for fig in (figures.order_timeline(ORDER, NOW), figures.trace_waterfall(SPANS))
        for trace in fig.data
    }
    assert drawn <= {"scatter", "bar", "pie"}, drawn


def test_vega_refuses_a_chart_without_both_axis_titles_and_titles_every_layer() -> None:
    with pytest.raises(ValueError, match="axis titles"):
        theme.vega([], "Day (UTC)", "")
    x = {"field": "day", "type": "ordinal"}
    bars = {"mark": "bar", "encoding": {"x": dict(x), "y": {"field": "n", "type": "quantitative"}}}
    label = {"mark": "text", "encoding": {"x": dict(x), "y": {"value": 0}, "text": {"field": "n"}}}
    chart = spec(theme.vega([bars, label], "Day (UTC)", "Orders (count)", height=300))
    assert [layer["encoding"]["x"]["title"] for layer in chart["layer"]] == ["Day (UTC)", "Day (UTC)"]
    assert "title" not in chart["layer"][1]["encoding"]["y"]  # a fixed position, not an axis
    assert theme.axis_titles(chart) == {"xaxis": "Day (UTC)", "yaxis": "Orders (count)"}
    assert chart["height"] == 300 and chart["config"]["font"] == theme.FONT


def test_time_axes_are_read_in_utc() -> None:
    axis = theme.time_axis("time")
    assert axis["scale"]["type"] == "utc" and "utcFormat" in axis["axis"]["labelExpr"]
    rule, label = theme.now_marker(NOW)
    assert rule["data"]["values"] == [{"time": NOW.isoformat()}] and label["mark"]["text"] == "now"


def test_axis_titles_reads_every_axis_of_a_figure_json() -> None:
    assert theme.axis_titles({"layout": {"xaxis": {"title": {"text": "a"}}, "yaxis2": {"title": "b"}}}) == {
        "xaxis": "a",
        "yaxis2": "b",
    }
    assert theme.axis_titles({"layout": {"xaxis": {}}}) == {"xaxis": ""}


# -- every figure of the dashboard ---------------------------------------------------------------

ORDER = {
    "order_id": "W-10023",
    "fulfillment": "bopis",
    "milestones": [
        {"milestone": "accepted", "time": at(52), "source": "shop/web", "event_id": "e1", "status": "ok"},
        {"milestone": "paid", "time": at(47), "source": "payments/adyen", "event_id": "e2", "status": "ok"},
    ],
    "events": [
        {
            "kind": "span",
            "name": "inventory.reserve",
            "time": at(46),
            "source": "inventory-service",
            "status": "error",
        }
    ],
    "stalled": {"after": "paid", "expected": "reserved", "due": at(37), "overdue_seconds": 2220, "rule": "r"},
}
SPANS = [
    {
        "span_id": "c",
        "parent_span_id": "b",
        "name": "SELECT stock",
        "service_name": "inventory-db",
        "start_unix_nano": 1_075_000_000,
        "duration_ns": 700_000_000,
        "status": {"code": "error", "message": "deadline exceeded"},
    },
    {
        "span_id": "a",
        "parent_span_id": "",
        "name": "POST /reserve",
        "service_name": "checkout",
        "start_unix_nano": 1_000_000_000,
        "duration_ns": 900_000_000,
        "status": {"code": "ok", "message": ""},
    },
    {
        "span_id": "b",
        "parent_span_id": "a",
        "name": "inventory.reserve",
        "service_name": "inventory-service",
        "start_unix_nano": 1_040_000_000,
        "duration_ns": 780_000_000,
        "status": {"code": "error", "message": "timeout"},
    },
]
SKU_EVENTS = [
    {"time": at(600), "kind": "snapshot", "location_id": "042", "system": "pos", "on_hand": 11},
    {"time": at(600), "kind": "snapshot", "location_id": "042", "system": "erp", "on_hand": 12},
    {"time": at(300), "kind": "adjustment", "location_id": "042", "system": "erp", "delta": -2},
    {
        "time": at(200),
        "kind": "adjustment",
        "location_id": "042",
        "system": "wms",
        "delta": 5,
    },  # no count yet
    {"time": at(100), "kind": "snapshot", "location_id": "042", "system": "pos", "on_hand": 9},
    {"time": at(50), "kind": "sale", "location_id": "042", "system": None, "qty": 1},
    {"time": at(40), "kind": "snapshot", "location_id": "DC-2", "system": "wms", "on_hand": 240},
]
PROMOTIONS = [
    {
        "promo_id": "SPRING-10",
        "targets": [
            {"target": "017", "status": "late", "lag_seconds": 1140.0},
            {"target": "023", "status": "missing", "lag_seconds": None},
            {"target": "web", "status": "pending", "lag_seconds": None},
        ],
        "completeness_curve": [{"time": at(25), "completeness": 0.0}, {"time": at(6), "completeness": 33.3}],
    },
    {
        "promo_id": "PRICE-884",
        "targets": [{"target": "017", "status": "on_time", "lag_seconds": 120.0}],
        "completeness_curve": [{"time": at(90), "completeness": 100.0}],
    },
]
SERIES = [
    {"day": "2026-11-26", "channel": "app", "orders": 1, "stalled": 0, "order_to_ready_p50_seconds": None},
    {"day": "2026-11-27", "channel": "web", "orders": 12, "stalled": 3, "order_to_ready_p50_seconds": 1800.0},
]


def test_order_timeline_puts_the_missing_milestone_at_its_due_time() -> None:
    figure = spec(figures.order_timeline(ORDER, NOW))
    assert theme.axis_titles(figure) == {"xaxis": "Time (UTC)", "yaxis": "Milestone"}
    traces = {trace["name"]: trace for trace in figure["data"]}
    assert set(traces) == {"Web shop", "Payments", "Linked spans & events", "missing: reserved (due)"}
    missing = traces["missing: reserved (due)"]
    assert missing["x"][0] == at(37) and missing["y"] == ["reserved", "reserved"]
    assert traces["Payments"]["marker"]["color"] == theme.system_colour("payments/adyen")
    assert traces["Linked spans & events"]["marker"]["symbol"] == ["x"]
    assert figure["layout"]["yaxis"]["categoryarray"] == ["accepted", "paid", "reserved", figures.LINKED_ROW]


def test_trace_waterfall_nests_children_under_their_parents_from_the_trace_start() -> None:
    figure = spec(figures.trace_waterfall(SPANS))
    assert theme.axis_titles(figure) == {"xaxis": "Time since trace start (ms)", "yaxis": "Span [service]"}
    bars = figure["data"][0]
    assert bars["y"] == [
        "POST /reserve [checkout]",
        "· inventory.reserve [inventory-service]",
        "· · SELECT stock [inventory-db]",
    ]
    assert bars["base"] == [0, 40, 75] and bars["x"] == [900, 780, 700]
    assert bars["marker"]["line"]["width"] == [0, 3, 3]


def test_stock_series_replays_counts_and_later_adjustments_per_system() -> None:
    assert figures.stock_series(SKU_EVENTS, "042") == {
        "erp": [(at(600), 12), (at(300), 10)],
        "pos": [(at(600), 11), (at(100), 9)],
    }
    location = {"location_id": "042", "spread": 1, "systems": {"erp": {"on_hand": 10}, "pos": {"on_hand": 9}}}
    chart = spec(figures.stock_history(SKU_EVENTS, location, NOW))
    assert theme.axis_titles(chart) == {"xaxis": "Time (UTC)", "yaxis": "Stock on hand (units)"}
    assert series(chart) == {"ERP": [12, 10, 10], "POS": [11, 9, 9]}  # each held to now
    line, points = chart["layer"][:2]
    assert line["mark"]["interpolate"] == "step-after"
    assert len(points["data"]["values"]) == 4  # markers on the counts, not on the held ends
    (spread,) = [layer for layer in chart["layer"] if layer["mark"].get("strokeWidth") == 6]
    assert spread["data"]["values"][0] | {"time": None} == {
        "series": "spread now: 1 units",
        "time": None,
        "low": 9,
        "high": 10,
    }
    assert colours(line["encoding"]["color"]) == {
        "ERP": theme.SYSTEM_COLOURS["ERP"],
        "POS": theme.SYSTEM_COLOURS["POS"],
        "spread now: 1 units": theme.MISSING_COLOUR,
    }
    assert line["encoding"]["y"]["axis"] == theme.WHOLE_NUMBERS
    # Agreeing systems draw one line: each is thinner than the one under it, so every colour shows.
    assert {row["series"]: row["width"] for row in line["data"]["values"]} == {"ERP": 9, "POS": 6}
    assert line["encoding"]["strokeWidth"] == {
        "field": "width",
        "type": "quantitative",
        "scale": None,
        "legend": None,
    }


def test_stock_series_orders_events_by_time_not_by_their_text() -> None:
    """The API writes whole seconds without a fraction: an adjustment at 11:00:00 came before a
    count at 11:00:00.4, which already includes it (the API's on_hand is that count, 36)."""
    web = {"location_id": "001", "system": "web"}
    events = [
        {**web, "time": "2026-11-27T10:00:00Z", "kind": "snapshot", "on_hand": 38},
        {**web, "time": "2026-11-27T11:00:00.400000Z", "kind": "snapshot", "on_hand": 36},
        {**web, "time": "2026-11-27T11:00:00Z", "kind": "adjustment", "delta": -2},
    ]
    assert [value for _, value in figures.stock_series(events, "001")["web"]] == [38, 36, 36]


def test_promotion_figures_show_curves_to_now_and_missing_targets_in_red() -> None:
    curves = spec(figures.completeness_curves(PROMOTIONS, NOW))
    assert theme.axis_titles(curves) == {"xaxis": "Time (UTC)", "yaxis": "Targets activated (%)"}
    assert series(curves) == {"SPRING-10": [0.0, 33.3, 33.3], "PRICE-884": [100.0, 100.0]}  # held to now
    heatmap = spec(figures.lag_heatmap(PROMOTIONS))
    assert theme.axis_titles(heatmap) == {"xaxis": "Promotion", "yaxis": "Store or channel"}
    lag, waiting, labels = heatmap["layer"]
    assert {(c["target"], c["promotion"]): c["lag"] for c in lag["data"]["values"]} == {
        ("017", "SPRING-10"): 19.0,
        ("017", "PRICE-884"): 2.0,
    }
    assert lag["encoding"]["color"]["legend"]["title"] == "Lag (min)"
    assert {(c["target"], c["promotion"]): c["text"] for c in waiting["data"]["values"]} == {
        ("023", "SPRING-10"): "missing",
        ("web", "SPRING-10"): "pending",
    }
    assert colours(waiting["encoding"]["color"])["missing"] == theme.STATUS_COLOURS["missing"]
    assert heatmap["resolve"] == {"scale": {"color": "independent"}}  # two colour scales, two legends
    assert {c["label"] for c in labels["data"]["values"]} == {"19 min", "2 min", "missing", "pending"}
    quick = [{**PROMOTIONS[1], "targets": [{"target": "017", "status": "on_time", "lag_seconds": 20.0}]}]
    (cell,) = spec(figures.lag_heatmap(quick))["layer"][2]["data"]["values"]
    assert (cell["label"], cell["text"]) == (
        "<1 min",
        "under a minute",
    )  # short in the cell, whole in the tooltip
    assert lag["encoding"]["y"]["sort"] == ["017", "023", "web"]
    many = [{**PROMOTIONS[1], "promo_id": f"P-{n}"} for n in range(7)]
    crowded = spec(figures.lag_heatmap(many))
    assert len(crowded["layer"]) == 2  # seven columns: no room for the cell texts, tooltips only
    assert crowded["layer"][0]["encoding"]["tooltip"]


def test_kpi_figures_have_units_and_whole_number_ticks_for_counts() -> None:
    days = ("2026-11-21", "2026-11-27")
    orders = spec(figures.kpi_trend(SERIES, "orders", "Orders (count)", days, bars=True))
    assert theme.axis_titles(orders) == {"xaxis": "Day (UTC)", "yaxis": "Orders (count)"}
    (bars,) = orders["layer"]
    assert bars["mark"]["type"] == "bar" and bars["encoding"]["xOffset"]["field"] == "channel"
    assert bars["encoding"]["y"]["axis"] == theme.WHOLE_NUMBERS  # whole orders on the ticks
    assert bars["encoding"]["x"]["scale"]["domain"] == [f"2026-11-{day}" for day in range(21, 28)]
    assert [(row["day"], row["value"]) for row in bars["data"]["values"]] == [
        ("2026-11-26", 1),
        ("2026-11-27", 12),
    ]
    ready = spec(
        figures.kpi_trend(SERIES, "order_to_ready_p50_seconds", "Order to ready p50 (min)", days, 1 / 60)
    )
    (line,) = ready["layer"]
    assert [(row["channel"], row["value"]) for row in line["data"]["values"]] == [("web", 30.0)]
    assert line["mark"]["type"] == "line" and "axis" not in line["encoding"]["y"]
    ranked = [
        {"store_id": "017", "stalled": 1, "open": 1, "stalled_rate": 1.0},
        {"store_id": "023", "stalled": 1, "open": 2, "stalled_rate": 0.5},
    ]
    stores = spec(figures.top_stores(ranked))
    assert theme.axis_titles(stores) == {"xaxis": "Stalled rate (% of open orders)", "yaxis": "Store"}
    bars, after, inside = stores["layer"]
    assert bars["data"]["values"][1] == {"store": "023", "rate": 50.0, "text": "1 of 2 open"}
    assert bars["encoding"]["y"]["sort"] == ["017", "023"]  # the API's ranking, not the alphabet
    assert [row["text"] for row in after["data"]["values"]] == ["1 of 2 open"]
    assert [row["text"] for row in inside["data"]["values"]] == ["1 of 1 open"]  # 100%: no room after it
    assert inside["mark"]["align"] == "right"
    assert bars["encoding"]["x"]["scale"]["clamp"] is True  # a rate over 100% stays on the chart
