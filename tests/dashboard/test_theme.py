"""The shared look: colours per system and status, and charts that always say what their axes hold."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go
import pytest

from dashboard import figures, theme

NOW = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


def at(minutes_ago: float) -> str:
    return (NOW - timedelta(minutes=minutes_ago)).isoformat().replace("+00:00", "Z")


def spec(fig: go.Figure) -> dict[str, Any]:
    return dict(json.loads(fig.to_json()))


def test_a_system_has_one_colour_whatever_names_it() -> None:
    assert theme.system_colour("pos/042") == theme.system_colour("pos/017") == theme.system_colour("POS")
    assert theme.system_colour("erp/sap") == theme.SYSTEM_COLOURS["ERP"]
    assert theme.system_colour("shop/web") != theme.system_colour("pos/042")


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
    figure = spec(figures.stock_history(SKU_EVENTS, location, NOW))
    assert theme.axis_titles(figure)["yaxis"] == "Stock on hand (units)"
    spread = next(trace for trace in figure["data"] if trace["name"].startswith("spread"))
    assert spread["y"] == [9, 10] and spread["name"] == "spread now: 1 units"


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
    assert curves["data"][0]["y"] == [0.0, 33.3, 33.3]  # held to now
    heatmap = spec(figures.lag_heatmap(PROMOTIONS))
    assert theme.axis_titles(heatmap) == {"xaxis": "Promotion", "yaxis": "Store or channel"}
    lag, waiting = heatmap["data"]
    assert lag["y"] == ["017", "023", "web"] and lag["x"] == ["SPRING-10", "PRICE-884"]
    assert lag["z"] == [[19.0, 2.0], [None, None], [None, None]]
    assert waiting["z"] == [[None, None], [1.0, None], [0.0, None]]
    assert waiting["text"][1][0] == "missing" and waiting["text"][2][0] == "pending"


def test_kpi_figures_have_units_and_whole_number_ticks_for_counts() -> None:
    days = ("2026-11-21", "2026-11-27")
    orders = spec(figures.kpi_trend(SERIES, "orders", "Orders (count)", days, bars=True))
    assert theme.axis_titles(orders) == {"xaxis": "Day (UTC)", "yaxis": "Orders (count)"}
    assert [trace["type"] for trace in orders["data"]] == ["bar", "bar"]
    assert orders["layout"]["yaxis"]["dtick"] == 3  # 12 orders at most: a tick every 3
    ready = spec(
        figures.kpi_trend(SERIES, "order_to_ready_p50_seconds", "Order to ready p50 (min)", days, 1 / 60)
    )
    assert [trace["name"] for trace in ready["data"]] == ["web"] and ready["data"][0]["y"] == [30.0]
    stores = spec(figures.top_stores([{"store_id": "023", "stalled": 1, "open": 2, "stalled_rate": 0.5}]))
    assert theme.axis_titles(stores) == {"xaxis": "Stalled rate (% of open orders)", "yaxis": "Store"}
    assert stores["data"][0]["x"] == [50.0] and stores["data"][0]["text"] == ["1 of 2 open"]
