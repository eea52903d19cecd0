"""The dashboard's API client and the small readers around it: outcomes as values, never raised."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from urllib.parse import parse_qsl, urlsplit

import httpx
import pytest
import streamlit as st

from dashboard import client, theme
from dashboard.app import VIEWS, landing
from dashboard.client import BAD_REQUEST, FAILED, NOT_FOUND, REFUSED, UNAVAILABLE, UNREACHABLE, Api, Problem
from dashboard.exposition import byte_text, ingest_health, parse, rates
from dashboard.silencing import MatcherError, alert_row, by_urgency, ends_at, parse_matchers, silence_row
from dashboard.views.kpis import Card, cards, delta_text, period_days, value_text, window
from dashboard.views.order import near_matches, trace_choices

Handler = Callable[[httpx.Request], httpx.Response]


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Handler], list[httpx.Request]]]:
    """Answers the client's requests with ``handler``; returns the requests seen."""

    def install(handler: Handler) -> list[httpx.Request]:
        st.cache_data.clear()
        seen: list[httpx.Request] = []

        def record(request: httpx.Request) -> httpx.Response:
            seen.append(request)
            return handler(request)

        monkeypatch.setattr(client, "_http", httpx.Client(transport=httpx.MockTransport(record)))
        return seen

    yield install
    st.cache_data.clear()


def answer(status: int, body: object) -> Handler:
    return lambda request: httpx.Response(status, json=body)


def test_settings_come_from_the_environment_with_a_local_default() -> None:
    assert Api.from_environment({}) == Api("http://127.0.0.1:4318", "")
    api = Api.from_environment({"MILEPOST_API_URL": " http://node:4318/ ", "MILEPOST_API_TOKEN": "s3cret\n"})
    assert api == Api("http://node:4318", "s3cret")
    assert "s3cret" not in repr(api) and "***" in repr(api)


def test_the_token_is_sent_as_a_bearer_and_ids_are_escaped(
    served: Callable[..., list[httpx.Request]],
) -> None:
    seen = served(answer(200, {"order_id": "W-1"}))
    assert Api("http://node", "t0k").order("W 1/#2") == {"order_id": "W-1"}
    assert seen[0].headers["authorization"] == "Bearer t0k"
    assert seen[0].url.raw_path == b"/api/v1/orders/W%201%2F%232"
    Api("http://node").orders(status="stalled", store_id="042", limit=5)
    assert dict(seen[1].url.params) == {"status": "stalled", "store_id": "042", "limit": "5"}
    assert "authorization" not in seen[1].headers


@pytest.mark.parametrize(
    ("status", "kind", "words"),
    [
        (401, REFUSED, "refused the dashboard's token (401): The bearer token is not valid."),
        (403, REFUSED, "did not allow the dashboard's token (403)"),
        (404, NOT_FOUND, "Order 'X' is not known."),
        (400, BAD_REQUEST, "The API did not accept the request: Order 'X' is not known."),
        (503, UNAVAILABLE, "busy or its storage is unavailable"),
        (500, FAILED, "answered 500"),
    ],
)
def test_error_answers_become_problems(
    served: Callable[..., list[httpx.Request]], status: int, kind: str, words: str
) -> None:
    message = "The bearer token is not valid." if status == 401 else "Order 'X' is not known."
    served(answer(status, {"error": message, "detail": None}))
    problem = Api("http://node").order("X")
    assert isinstance(problem, Problem) and problem.kind == kind and problem.status == status
    assert words in problem.message, problem.message


def test_a_plain_text_404_and_a_body_that_is_not_json(served: Callable[..., list[httpx.Request]]) -> None:
    served(lambda request: httpx.Response(404, text="Not Found"))
    assert Api("http://node").alerts() == Problem(NOT_FOUND, "Not Found.", 404)
    served(lambda request: httpx.Response(200, text="<html>"))
    problem = Api("http://node").promotions()
    assert isinstance(problem, Problem) and problem.kind == FAILED and "not JSON" in problem.message


def test_an_unreachable_node_is_a_problem_naming_the_url() -> None:
    api = Api("http://127.0.0.1:9")  # discard port: nothing listens there
    problem = api.kpis()
    assert isinstance(problem, Problem) and problem.kind == UNREACHABLE
    assert "http://127.0.0.1:9 cannot be reached" in problem.message
    text = api.metrics()
    assert isinstance(text, Problem) and text.kind == UNREACHABLE


def test_answers_are_cached_briefly_but_failures_never(served: Callable[..., list[httpx.Request]]) -> None:
    outcomes = iter(
        [httpx.Response(503, json={"error": "Storage is unavailable."}), httpx.Response(200, json={})]
    )
    seen = served(lambda request: next(outcomes))
    api = Api("http://node")
    assert isinstance(api.promotions(), Problem)
    assert api.promotions() == {} and api.promotions() == {}
    assert len(seen) == 2


def test_writes_are_never_cached_and_drop_cached_answers(served: Callable[..., list[httpx.Request]]) -> None:
    seen = served(answer(201, {"id": "s-1"}))
    api = Api("http://node", "admin")
    api.silences()
    assert api.create_silence({"store_id": "042"}, "2026-11-27T13:00:00Z", "fixing", "anna") == {"id": "s-1"}
    assert seen[-1].method == "POST"
    assert seen[-1].read() == (
        b'{"matchers":{"store_id":"042"},"ends_at":"2026-11-27T13:00:00Z","comment":"fixing","created_by":"anna"}'
    )
    api.silences()
    assert [r.method for r in seen] == ["GET", "POST", "GET"]
    api.expire_silence("s-1")
    assert (seen[-1].method, seen[-1].url.path) == ("DELETE", "/api/v1/silences/s-1")


def test_lists_are_read_bare_or_wrapped(served: Callable[..., list[httpx.Request]]) -> None:
    served(answer(200, [{"id": "s-1"}, "junk"]))
    assert Api("http://node").silences() == [{"id": "s-1"}]
    served(answer(200, {"total": 1, "items": [{"fingerprint": "f"}]}))
    assert Api("http://node").alerts() == [{"fingerprint": "f"}]
    served(answer(200, {"alerts": "nope"}))
    problem = Api("http://node").alerts()
    assert isinstance(problem, Problem) and problem.kind == FAILED


# -- /metrics ------------------------------------------------------------------------------------

METRICS = """# HELP milepost_accepted_total Items acknowledged (durable).
# TYPE milepost_accepted_total counter
milepost_accepted_total{signal="events"} 34
milepost_accepted_total{signal="spans"} 3
milepost_rejected_total{signal="events"} 2
milepost_quarantined_total{signal="events"} 1
milepost_duplicates_total{signal="events"} 5
milepost_requests_total{endpoint="events",status="200"} 4
milepost_requests_total{endpoint="traces",status="200"} 1
milepost_insert_errors_total{table="spans"} 1
milepost_insert_seconds_bucket{table="events",le="+Inf"} 1
milepost_wal_bytes 2048
milepost_storage_up 0
not a sample line
"""


def test_ingest_health_reads_the_prometheus_text() -> None:
    assert parse(METRICS)["milepost_insert_seconds_bucket"] == {(("le", "+Inf"), ("table", "events")): 1.0}
    health = ingest_health(METRICS)
    assert health.accepted == {"events": 34.0, "spans": 3.0}
    assert (health.rejected, health.quarantined, health.duplicates) == (
        {"events": 2},
        {"events": 1},
        {"events": 5},
    )
    assert health.answers == {"200": 5.0}
    assert (health.insert_errors, health.wal_bytes, health.storage_up) == (1.0, 2048.0, False)
    assert health.signals == ["events", "spans"]
    assert ingest_health("").storage_up is True


def test_rates_between_two_reads_and_byte_sizes() -> None:
    assert rates({"events": 10}, {"events": 40, "spans": 5}, 15) == {"events": 2.0, "spans": 5 / 15}
    assert rates({"events": 40}, {"events": 3}, 15) == {"events": 0.0}  # the node restarted
    assert rates({}, {"events": 1}, 0) == {}
    assert (byte_text(0), byte_text(2048), byte_text(5 * 1024**3)) == ("0 B", "2.0 KiB", "5.0 GiB")


# -- alerts and silences -------------------------------------------------------------------------


def test_an_alert_of_the_alerts_api_becomes_a_row_linking_to_its_view() -> None:
    alert = {
        "fingerprint": "f1",
        "rule": "stalled-orders",
        "severity": "warning",
        "state": "firing",
        "since": "2026-11-27T09:00:00Z",
        "labels": {"store_id": "042", "promo_id": "SPRING-10"},
        "annotations": {"summary": "12 orders stuck", "dashboard": "http://dash/?promotion=SPRING-10"},
    }
    row = alert_row(alert)
    assert (row.name, row.severity, row.state, row.summary) == (
        "stalled-orders",
        "warning",
        "firing",
        "12 orders stuck",
    )
    assert (row.link, row.since) == ("./?promotion=SPRING-10", "2026-11-27T09:00:00Z")
    assert (
        alert_row({"labels": {"store_id": "042"}, "annotations": {"dashboard": "http://d/"}}).link
        == "http://d/"
    )
    assert alert_row({}).name == "alert"


def test_alerts_are_listed_most_severe_first_then_longest_firing() -> None:
    alerts = [
        {"rule": "lag", "severity": "info", "since": "2026-11-27T08:00:00Z"},
        {"rule": "stalled-new", "severity": "warning", "since": "2026-11-27T10:00:00Z"},
        {"rule": "custom", "severity": "page-someone"},
        {"rule": "postings", "severity": "CRITICAL", "since": "2026-11-27T11:00:00Z"},
        {"rule": "stalled-old", "severity": "warning", "since": "2026-11-27T09:00:00Z"},
        {"rule": "stalled-unknown-start", "severity": "warning"},
    ]
    assert [row.name for row in by_urgency(alert_row(a) for a in alerts)] == [
        "postings",
        "stalled-old",
        "stalled-new",
        "stalled-unknown-start",
        "lag",
        "custom",
    ]


def test_silences_and_their_matchers() -> None:
    silence = silence_row({"id": "s-1", "matchers": {"store_id": "042"}, "ends_at": "x", "status": "active"})
    assert (silence.silence_id, silence.matchers, silence.state) == ("s-1", {"store_id": "042"}, "active")
    assert parse_matchers(" store_id=042 , severity = warning,") == {"store_id": "042", "severity": "warning"}
    with pytest.raises(MatcherError, match="'store_id' is not label=value"):
        parse_matchers("store_id")
    with pytest.raises(MatcherError, match="at least one matcher"):
        parse_matchers(" , ")
    assert ends_at(datetime(2026, 11, 27, 12, 0, tzinfo=UTC), 4) == "2026-11-27T16:00:00Z"


# -- page helpers --------------------------------------------------------------------------------


def test_near_matches_prefer_the_same_stem_then_similar_spelling() -> None:
    known = ["W-10023", "W-10024", "W-10031", "A-20031", "R-042-77812"]
    assert near_matches("W-10032", known)[:2] == ["W-10031", "W-10023"]
    assert near_matches("w-10023 ", known)[0] == "W-10024"  # itself is not a suggestion
    assert near_matches("R-042-7781", known) == ["R-042-77812"]
    assert near_matches("ZZ", known) == [] and near_matches("", known) == []


def test_trace_choices_put_the_failing_trace_first() -> None:
    order = {
        "milestones": [{"milestone": "accepted", "source": "pos/1", "trace_id": "a" * 32, "status": "ok"}],
        "events": [
            {
                "name": "inventory.reserve",
                "source": "inventory-service",
                "trace_id": "b" * 32,
                "status": "error",
            }
        ],
    }
    choices = trace_choices(order)
    assert list(choices) == ["b" * 32, "a" * 32]
    assert choices["b" * 32].startswith("inventory.reserve — Inventory service (error)")


def test_kpi_cards_take_the_apis_figures_and_their_change() -> None:
    kpis = {
        "orders": {"total": 6},
        "durations": {"order_to_ready": {"p50_seconds": 1800.0, "p95_seconds": None}},
        "stalled": {"rate": 0.6},
        "failed_postings": {"orders": 1},
        "promotions": {"completeness_avg": 87.5},
        "previous": {
            "orders": {"total": 2},
            "durations": {"order_to_ready": {"p50_seconds": 4320.0}},
            "stalled": {"rate": 0.0},
        },
    }
    by_label = {card.label: card for card in cards(kpis)}
    assert by_label["Orders"] == Card("Orders", 6, 2, "count", False, "Orders first seen in the period.")
    assert [delta_text(by_label[k]) for k in ("Orders", "Order to ready p50", "Stalled rate")] == [
        "+4",
        "-42 min",
        "+60.0 pp",
    ]
    assert delta_text(by_label["Order to ready p95"]) is None
    small = [Card("p50", seconds, 50.0, "seconds", True, "") for seconds in (38.0, 62.0, 110.0)]
    assert [delta_text(card) for card in small] == ["-12 s", "+12 s", "+1 min"]
    assert delta_text(by_label["Propagation completeness"]) is None  # the API gives no previous figure
    assert by_label["Failed postings"].previous is None
    assert [value_text(1800, "seconds"), value_text(60, "percent"), value_text(None, "count")] == [
        "30 min",
        "60.0%",
        "—",
    ]


def test_kpi_window_covers_whole_utc_days() -> None:
    since, until = window(datetime(2026, 11, 21).date(), datetime(2026, 11, 27).date())
    assert (since, until) == ("2026-11-21T00:00:00Z", "2026-11-28T00:00:00Z")
    assert period_days(since, until) == (datetime(2026, 11, 21).date(), datetime(2026, 11, 27).date())


def test_deep_links_open_their_page() -> None:
    assert theme.deep_link("order", "R-042/77 812") == "./?order=R-042%2F77%20812"
    for parameter, page, *_ in VIEWS:
        if parameter:
            assert landing(dict(parse_qsl(urlsplit(theme.deep_link(parameter, "X-1")).query))) == page
    assert landing({"order": "W-1"}) == "order.py"
    assert landing({"sku": "884-12"}) == "sku.py"
    assert landing({"promotion": "SPRING-10"}) == "operations.py"
    assert landing({}) == landing({"order": ""}) == "order.py"
