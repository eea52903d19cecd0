"""Every dashboard page run by Streamlit's AppTest against a real node filled with the estate."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit as st
from streamlit.testing.v1 import AppTest

from dashboard.settings import API_TOKEN_ENV, API_URL_ENV
from dashboard.theme import PLOTLY_BUNDLE, axis_titles
from dashboard.views.operations import ALERTS, INGEST, PROMOTIONS, STALLED_ORDERS, VIEW_KEY
from tests.dashboard.alerts_stub import AlertsApi
from tests.dashboard.charts import series
from tests.dashboard.estate import (
    CANCELLED,
    INGEST_ONLY_TOKEN,
    PICKUP_CODE,
    PROMOTION,
    PROMOTION_ON_TIME,
    READ_TOKEN,
    RETURNED,
    RETURNED_RECEIPT,
    SKU,
    STALLED,
    STALLED_RECEIPT,
    STALLED_TRACE,
)
from tests.support import REPO, NodeProcess, free_port

APP = REPO / "dashboard" / "app.py"
Open = Callable[..., AppTest]


@pytest.fixture
def open_page(estate_node: NodeProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Open]:
    """Runs the app as a browser would open it: a deep link's query, or a page from the sidebar."""

    def run(
        query: dict[str, str] | None = None,
        page: str | None = None,
        url: str | None = None,
        token: str = READ_TOKEN,
    ) -> AppTest:
        st.cache_data.clear()  # each test reads the API afresh, as a new session after the TTL would
        monkeypatch.setenv(API_URL_ENV, url or estate_node.url)
        monkeypatch.setenv(API_TOKEN_ENV, token)
        at = AppTest.from_file(str(APP), default_timeout=30)
        for name, value in (query or {}).items():
            at.query_params[name] = value
        at.run()
        if page is not None:
            at.switch_page(str(Path("views") / f"{page}.py"))
            at.run()
        assert not at.exception, at.exception
        return at

    yield run


def open_tab(at: AppTest, label: str) -> AppTest:
    """Clicks one of the Operations page's tabs (only the open tab's content runs)."""
    at.session_state[VIEW_KEY] = label
    at.run()
    assert not at.exception, at.exception
    return at


def texts(at: AppTest) -> str:
    """Everything a reader sees as text on the page, one element per line."""
    lines: list[str] = []
    for kind in (
        "title",
        "header",
        "subheader",
        "markdown",
        "caption",
        "error",
        "warning",
        "info",
        "success",
    ):
        lines += [str(element.value) for element in at.get(kind)]
    lines += [f"{m.label}: {m.value}" for m in at.metric]
    return "\n".join(lines)


def charts(at: AppTest) -> list[dict[str, Any]]:
    """The JSON of every chart (Plotly figures, then Vega-Lite specs), each checked for titled axes."""
    plotly = [json.loads(chart.proto.json) for chart in at.get("bidi_component")]
    assert all(chart["src"] == PLOTLY_BUNDLE for chart in plotly)
    specs = [chart["figure"] for chart in plotly]
    specs += [json.loads(chart.proto.spec) for chart in at.get("vega_lite_chart")]
    for spec in specs:
        titles = axis_titles(spec)
        assert {"xaxis", "yaxis"} <= set(titles), titles
        assert all(title.strip() for title in titles.values()), titles
    return specs


def table_columns(at: AppTest) -> list[list[str]]:
    return [list(frame.value.columns) for frame in at.dataframe]


# -- Order ---------------------------------------------------------------------------------------


def test_order_by_pos_receipt_says_what_is_late_and_why(open_page: Open) -> None:
    at = open_page({"order": STALLED_RECEIPT})
    assert at.text_input(key="order").value == STALLED_RECEIPT
    page = texts(at)
    assert f"Order {STALLED}" in page and f"found by {STALLED_RECEIPT}" in page
    sentence = at.error[0].value
    assert sentence.startswith("Paid ") and " min ago, not reserved: SLA 10 min." in sentence, sentence
    assert "Inventory service at DC-2 returned errors — see trace." in sentence
    assert "Waiting for: reserved" in page and "Store: 042" in page
    aliases = at.dataframe[0].value
    assert set(aliases["value"]) == {STALLED_RECEIPT, "PAY-5531"}
    milestones = at.dataframe[1].value
    assert list(milestones["milestone"]) == ["accepted", "paid"]
    assert {"source", "event", "status"} <= set(milestones.columns)
    timeline, waterfall = charts(at)
    assert axis_titles(timeline) == {"xaxis": "Time (UTC)", "yaxis": "Milestone"}
    names = [trace["name"] for trace in timeline["data"]]
    assert "missing: reserved (due)" in names and "Payments" in names and "Web shop" in names
    missing = next(t for t in timeline["data"] if t["name"].startswith("missing"))
    assert missing["y"][0] == "reserved"  # drawn on the reserved row, at its due time
    assert "reserved" in timeline["layout"]["yaxis"]["categoryarray"]
    assert at.selectbox(key="trace").value == STALLED_TRACE
    assert axis_titles(waterfall)["xaxis"] == "Time since trace start (ms)"
    assert len(waterfall["data"][0]["y"]) == 3
    assert "stock service timeout at DC-2" in page


def test_order_search_box_takes_a_pickup_code(open_page: Open) -> None:
    at = open_page()
    assert "Type or paste an id" in texts(at)
    at.text_input(key="order").input(PICKUP_CODE).run()
    page = texts(at)
    assert "Order W-10024" in page and f"found by {PICKUP_CODE}" in page
    assert at.success[0].value.startswith("Picked up ") and "Nothing is late." in at.success[0].value
    assert "No span carries this order's ids" in page
    assert len(charts(at)) == 1


def test_returned_order_found_by_receipt_shows_the_failed_refund_posting(open_page: Open) -> None:
    at = open_page({"order": RETURNED_RECEIPT})
    page = texts(at)
    assert f"Order {RETURNED}" in page
    sentence = at.error[0].value
    assert sentence.startswith("Refunded ") and "not reconciled: SLA 1 d" in sentence, sentence
    assert "Refund posting failed" in sentence and "cost centre 017 locked" in sentence
    assert "posting_failed" in page
    assert {"RT-881", RETURNED_RECEIPT, "9000412"} <= set(at.dataframe[0].value["value"])


def test_cancelled_order_expects_nothing_more(open_page: Open) -> None:
    at = open_page({"order": CANCELLED})
    assert "Cancelled " in at.info[0].value and "(customer)" in at.info[0].value
    assert "Nothing more is expected." in at.info[0].value


def test_unknown_order_is_not_known_and_near_ids_are_suggested(open_page: Open) -> None:
    at = open_page({"order": "W-10032"})
    assert "Order 'W-10032' is not known" in at.warning[0].value
    suggestions = [button.label for button in at.button]
    assert "W-10023" in suggestions and "W-10031" in suggestions
    assert not charts(at)
    next(b for b in at.button if b.label == "W-10023").click().run()
    assert f"Order {STALLED}" in texts(at)


def test_unrelated_unknown_id_gets_no_suggestion(open_page: Open) -> None:
    at = open_page({"order": "ZZ"})
    assert "not known" in at.warning[0].value
    assert "No known order id looks like it" in texts(at)


# -- SKU -----------------------------------------------------------------------------------------


def test_sku_shows_stock_per_system_the_variance_and_its_events(open_page: Open) -> None:
    at = open_page({"sku": SKU})
    sentence = at.error[0].value
    assert "At 042 the systems disagree by 4 units: ERP 12, POS 8." in sentence, sentence
    assert "POS -1" in sentence
    stock = at.dataframe[0].value
    assert list(stock["location"]) == ["042", "DC-2"]
    row = stock.set_index("location").loc["042"]
    assert (row["ERP"], row["POS"], row["spread (units)"]) == (12, 8, 4)
    assert at.selectbox(key="location").value == "042"
    page = texts(at)
    assert "ERP at 042: 12 units" in page and "POS at 042: 8 units" in page
    (chart,) = charts(at)
    assert axis_titles(chart) == {"xaxis": "Time (UTC)", "yaxis": "Stock on hand (units)"}
    lines = series(chart)
    assert lines["ERP"][-1] == 12 and lines["POS"][-1] == 8 and lines["POS"][:3] == [14, 11, 9]
    assert "spread now: 4 units" in chart["layer"][0]["encoding"]["color"]["scale"]["domain"]
    moved = at.dataframe[1].value
    assert list(moved.columns) == ["location", "sold (units)", "returned (units)", "reserved (units)"]
    assert "042" in set(moved["location"])
    events = at.dataframe[-1].value
    assert {"sale", "reservation", "return", "snapshot", "adjustment"} <= set(events["kind"])
    assert "damaged" in set(events["reason"])


def test_sku_location_choice_redraws_the_chart(open_page: Open) -> None:
    at = open_page({"sku": SKU})
    at.selectbox(key="location").select("DC-2").run()
    (chart,) = charts(at)
    assert set(series(chart)) == {"ERP", "WMS"}
    assert "WMS at DC-2: 240 units" in texts(at)


def test_unknown_sku_is_not_known(open_page: Open) -> None:
    at = open_page({"sku": "000-00"})
    assert "SKU '000-00' is not known" in at.warning[0].value
    assert not charts(at)


# -- Operations ----------------------------------------------------------------------------------


def test_promotion_deep_link_names_the_stores_still_at_the_old_price(open_page: Open) -> None:
    at = open_page({"promotion": PROMOTION})
    assert at.session_state[VIEW_KEY] == PROMOTIONS  # the deep link opens its tab; the others wait
    assert "stalled orders match" not in texts(at)
    sentence = at.error[0].value
    assert "active at 3 of 4 targets (75%)" in sentence and "Still at the old price: 023." in sentence
    assert "Activated late: 017" in sentence
    page = texts(at)
    assert "Completeness: 75%" in page and "Stragglers: 2" in page
    targets = at.dataframe[0].value
    assert dict(zip(targets["target"], targets["status"], strict=True)) == {
        "017": "late",
        "023": "missing",
        "042": "on time",
        "web": "on time",
    }
    curves, heatmap = charts(at)
    assert set(series(curves)) == {PROMOTION, PROMOTION_ON_TIME}
    assert axis_titles(curves)["yaxis"] == "Targets activated (%)"
    lag, waiting, _ = heatmap["layer"]
    assert lag["encoding"]["color"]["legend"]["title"] == "Lag (min)"
    assert {(cell["target"], cell["text"]) for cell in waiting["data"]["values"]} == {("023", "missing")}


def test_unknown_promotion_is_not_known(open_page: Open) -> None:
    at = open_page({"promotion": "WINTER-99"})
    assert any("Promotion 'WINTER-99' is not known" in w.value for w in at.warning)


def test_operations_lists_stalled_orders_with_filters_and_ingest_health(open_page: Open) -> None:
    at = open_page(page="operations")
    assert [tab.label for tab in at.tabs] == [STALLED_ORDERS, PROMOTIONS, ALERTS, INGEST]
    assert not charts(at)  # the promotion charts wait for their tab
    stalled = at.dataframe[0].value
    assert list(stalled["order"]) == [
        f"./?order={RETURNED}",
        f"./?order={STALLED}",
        "./?order=A-20040",
    ]
    assert "3 of 3 stalled orders match" in texts(at)
    at.selectbox(key="stalled-store").select("042").run()
    assert list(at.dataframe[0].value["waiting for"]) == ["reserved"]
    at.selectbox(key="stalled-store").select("All").run()
    at.number_input(key="stalled-age").set_value(60).run()
    assert list(at.dataframe[0].value["order"]) == [f"./?order={RETURNED}"]
    assert "No alert is firing." in texts(open_tab(at, ALERTS))  # the node has no alert rules
    page = texts(open_tab(at, INGEST))
    assert "Quarantined: 1" in page and "WAL backlog" in page and "Storage: up" in page
    quarantine = at.dataframe[-1].value
    assert list(quarantine["field"]) == ["data.channel"]
    signals = next(frame.value for frame in at.dataframe if "accepted/s" in frame.value.columns)
    assert signals["accepted/s"].isna().all()  # one read so far: no rate yet, not "0/s"


def test_alerts_are_listed_and_can_be_silenced_and_expired(open_page: Open, alerts_api: AlertsApi) -> None:
    at = open_tab(open_page(page="operations", url=alerts_api.url), ALERTS)
    alerts = next(frame.value for frame in at.dataframe if "alert" in frame.value.columns)
    assert list(alerts["alert"]) == ["stalled-orders"]
    assert list(alerts["open"]) == [f"./?order={STALLED}"]
    preset = f"expected=reserved, kind=stalled_orders, order_id={STALLED}, severity=warning, store_id=042"
    at.selectbox(key="silence-preset").select(preset).run()
    assert at.text_input(key="silence-matchers").value == preset
    at.text_input(key="silence-matchers").input("store_id=042")
    at.text_input(key="silence-comment").input("DC-2 inventory service being fixed")
    at.text_input(key="silence-author").input("ops-anna")
    next(b for b in at.button if b.label == "Silence").click().run()
    (body,) = [body for method, _, body in alerts_api.received if method == "POST"]
    assert body["matchers"] == {"store_id": "042"} and body["created_by"] == "ops-anna"
    assert body["comment"] == "DC-2 inventory service being fixed" and body["ends_at"].endswith("Z")
    assert "Silenced store_id=042 for 4 hours." in texts(at)
    at.run()
    assert "Silences** (1 active or pending)" in texts(at)
    next(b for b in at.button if b.label == "Expire").click().run()
    assert ("DELETE", "/api/v1/silences/s-1", None) in alerts_api.received
    assert "Silence s-1 expired." in texts(at)
    assert "Silences** (0 active or pending)" in texts(at)


# -- KPIs ----------------------------------------------------------------------------------------


def test_kpis_show_headline_cards_against_the_previous_week_and_trends(open_page: Open) -> None:
    at = open_page(page="kpis")
    cards = {m.label: (m.value, m.proto.delta) for m in at.metric}
    assert cards["Orders"] == ("6", "+4")  # 6 this week, 2 the week before
    assert cards["Order to ready p50"][0] == "30 min"
    assert cards["Stalled rate"][0] == "60.0%"
    assert cards["Propagation completeness"] == ("87.5%", "")
    assert cards["Return to refund p50"] == ("10 min", "")
    assert cards["Failed postings"] == ("1", "+1")
    titles = [axis_titles(spec)["yaxis"] for spec in charts(at)]
    assert titles == ["Orders (count)", "Order to ready p50 (min)", "Stalled orders (count)", "Store"]


def test_kpi_channel_filter_asks_the_api_again(open_page: Open) -> None:
    at = open_page(page="kpis")
    at.selectbox(key="kpi-channel").select("app").run()
    cards = {m.label: m.value for m in at.metric}
    assert cards["Orders"] == "2" and cards["Stalled rate"] == "100.0%"  # one cancelled, one stalled
    orders_chart = charts(at)[0]
    assert {row["channel"] for row in orders_chart["layer"][0]["data"]["values"]} == {"app"}


# -- failures ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "page"), [({"order": STALLED}, None), ({"sku": SKU}, None), ({}, "operations"), ({}, "kpis")]
)
def test_api_down_shows_a_banner_not_a_stack_trace(
    open_page: Open, query: dict[str, str], page: str | None
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"
    at = open_page(query, page, url=closed)
    banners = [e.value for e in at.error]
    assert banners and all(f"The Milepost API at {closed} cannot be reached" in b for b in banners), banners
    assert "milepost dashboard --api URL" in banners[0]


@pytest.mark.parametrize(
    ("token", "status", "words"),
    [
        ("not-a-token", 401, "The bearer token is not valid"),
        (INGEST_ONLY_TOKEN, 403, "lacks the 'read' scope"),
    ],
)
def test_refused_token_shows_its_banner(open_page: Open, token: str, status: int, words: str) -> None:
    at = open_page({"order": STALLED}, token=token)
    (banner,) = [e.value for e in at.error]
    assert f"({status})" in banner and words in banner and "--token" in banner, banner
    assert token not in banner


def test_a_node_without_the_alerts_api_gets_a_notice(open_page: Open, alerts_api: AlertsApi) -> None:
    alerts_api.missing = True
    try:
        at = open_tab(open_page(page="operations", url=alerts_api.url), ALERTS)
    finally:
        alerts_api.missing = False
    assert any("does not serve alerts yet" in i.value for i in at.info)
    assert not at.error
    assert open_tab(at, STALLED_ORDERS).dataframe[0].value.shape[0] == 3  # the rest of the page works


def test_silencing_with_a_read_token_says_admin_is_needed(open_page: Open) -> None:
    at = open_tab(open_page(page="operations"), ALERTS)
    at.text_input(key="silence-matchers").input("store_id=042")
    next(b for b in at.button if b.label == "Silence").click().run()
    (banner,) = [e.value for e in at.error]
    assert banner.startswith("Silences need a token with the admin scope") and "(403)" in banner
