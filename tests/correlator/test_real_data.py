"""Real data through the real HTTP endpoints: SAP document flows and UCI Online Retail invoice lines.

The events are built from ``../shared/data`` (read in place) by ``tests.correlator.realdata``;
what each order and SKU must show is computed from the same files with pandas, never with
Milepost code. Batches arrive shuffled, with repeats: neither may change a figure.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.correlator import realdata
from tests.correlator.realdata import DocumentFlow, SalesOrderFlow
from tests.support import InProcessNode, in_process_node

BATCHED = "application/cloudevents-batch+json"
BATCH = 500
LIFECYCLE = ("accepted", "paid", "reserved", "ready", "fulfilled", "returned", "refunded", "reconciled")

pytestmark = pytest.mark.skipif(
    not (realdata.VBFA_ZIP.exists() and realdata.ONLINE_RETAIL.exists()),
    reason="the shared real data sets are not there",
)


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InProcessNode]:
    with in_process_node(tmp_path_factory.mktemp("realdata") / "data") as running:
        yield running


def replay(live: InProcessNode, events: list[dict[str, Any]], seed: int) -> None:
    """Send ``events`` shuffled, in batches of at most ``BATCH``, one in ten of them twice.

    Most repeats land in another batch than the original; every other batch also carries a
    repeat of its own first event.
    """
    rng = random.Random(seed)
    repeats = rng.sample(events, len(events) // 10)
    sent = [*events, *repeats]
    rng.shuffle(sent)
    starts = range(0, len(sent), BATCH - 1)
    same_batch = set(rng.sample(starts, max(1, len(starts) // 2)))
    for start in starts:
        batch = sent[start : start + BATCH - 1]
        if start in same_batch:  # and a repeat next to its original
            batch.append(batch[0])
        answer = httpx.post(
            f"{live.url}/v1/events", headers={"content-type": BATCHED}, content=json.dumps(batch), timeout=60
        )
        assert answer.status_code == 200, answer.text
        assert answer.json() == {"accepted": len(batch), "rejected": [], "quarantined": 0}
    live.flush(120)


def order(client: httpx.Client, key: str) -> dict[str, Any]:
    answer = client.get(f"/api/v1/orders/{key}")
    assert answer.status_code == 200, f"{key}: {answer.text}"
    return dict(answer.json())


def expected_state(milestones: Counter[str]) -> str:
    return max(milestones, key=LIFECYCLE.index)


def check_flow(client: httpx.Client, flow: SalesOrderFlow, found: dict[str, Any]) -> None:
    assert found["order_id"] == flow.order
    aliases = {alias["value"]: alias["kind"] for alias in found["aliases"]}
    assert set(aliases) == set(flow.documents), flow.order
    for document, kind in aliases.items():
        assert kind in {realdata.alias_kind(c) for c in flow.categories[document]}, (flow.order, document)

    expected = {f"{realdata.SAP_SOURCE}/order-{flow.order}": "accepted"}
    expected |= {f"{realdata.SAP_SOURCE}/{m.event_id}": m.milestone for m in flow.milestones if m.milestone}
    shown = [(m["event_id"], m["milestone"]) for m in found["milestones"]]
    assert len(shown) == len(set(shown)), f"{flow.order}: a milestone is shown twice"
    assert dict(shown) == expected, flow.order
    assert [m["time"] for m in found["milestones"]] == sorted(m["time"] for m in found["milestones"])

    postings = {f"{realdata.SAP_SOURCE}/{m.event_id}" for m in flow.milestones if m.milestone is None}
    linked = {e["event_id"] for e in found["events"] if e["name"] == "retail.finance.posted"}
    assert linked == postings, flow.order

    assert found["state"] == expected_state(Counter(expected.values())), flow.order
    assert found["channel"] == "web" and found["fulfillment"] == "ship"
    assert [a for a in found["anomalies"] if a["kind"] == "identity"] == [], flow.order
    for document in sorted(flow.documents):
        assert order(client, document)["order_id"] == flow.order, f"{document} of {flow.order}"


@pytest.fixture(scope="module")
def vbfa() -> DocumentFlow:
    return DocumentFlow(realdata.load_vbfa())


@pytest.fixture(scope="module")
def sap_flows(live: InProcessNode, vbfa: DocumentFlow) -> list[SalesOrderFlow]:
    """150 sales orders' whole document flows, replayed to the node."""
    flows = realdata.sample_flows(vbfa, count=150, seed=20240611)
    replay(live, [event for flow in flows for event in flow.events()], seed=7)
    return flows


@pytest.fixture(scope="module")
def sap_orders(live: InProcessNode, sap_flows: list[SalesOrderFlow]) -> dict[str, dict[str, Any]]:
    """``GET /api/v1/orders/{sales order}`` of every sampled order."""
    with httpx.Client(base_url=live.url, timeout=30) as client:
        return {flow.order: order(client, flow.order) for flow in sap_flows}


def test_the_sap_sample_is_what_the_test_needs(sap_flows: list[SalesOrderFlow]) -> None:
    assert len(sap_flows) == 150
    # No document number is in two sampled flows: every alias group has exactly one sales order.
    numbers = [n for flow in sap_flows for n in (flow.order, *flow.documents)]
    assert len(numbers) == len(set(numbers))
    # Chains well past the invoice, follow-up orders, returns and credit memos are in it.
    assert max(flow.depth for flow in sap_flows) >= 5
    assert any("C" in flow.categories[d] for flow in sap_flows for d in flow.documents)
    milestones = Counter(m.milestone for flow in sap_flows for m in flow.milestones)
    assert milestones["returned"] > 0 and milestones["refunded"] > 0


def test_sap_document_flows_resolve_to_their_sales_orders(
    live: InProcessNode, sap_flows: list[SalesOrderFlow], sap_orders: dict[str, dict[str, Any]]
) -> None:
    with httpx.Client(base_url=live.url, timeout=30) as client:
        for flow in sap_flows:
            check_flow(client, flow, sap_orders[flow.order])
        # A number from no replayed flow is unknown.
        assert client.get("/api/v1/orders/0000000000").status_code == 404


def test_sap_states_follow_the_documents(
    sap_flows: list[SalesOrderFlow], sap_orders: dict[str, dict[str, Any]]
) -> None:
    """Per sales order: a goods issue means at least fulfilled, a credit memo means refunded."""
    checked = Counter[str]()
    for flow in sap_flows:
        reached = {m.milestone for m in flow.milestones} - {None}
        state = sap_orders[flow.order]["state"]
        if "fulfilled" in reached:
            assert LIFECYCLE.index(state) >= LIFECYCLE.index("fulfilled"), flow.order
            checked["fulfilled"] += 1
        if "refunded" in reached:
            assert state == "refunded", flow.order
            checked["refunded"] += 1
        if not reached:
            assert state == "accepted", flow.order
            checked["accepted only"] += 1
    assert checked["fulfilled"] > 100 and checked["refunded"] > 0


def unique(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Each event once (two flows sharing documents share those documents' events)."""
    return list({(event["source"], event["id"]): event for event in events}.values())


def test_documents_of_two_sales_orders_are_conflicts_not_merges(
    live: InProcessNode, vbfa: DocumentFlow, sap_flows: list[SalesOrderFlow]
) -> None:
    """Real pairs of sales orders whose flows share documents stay two orders.

    The pairs were entered a minute apart and share a transfer order (picking), sometimes a
    purchase order or a whole delivery with its goods issue and invoice.

    Each reports the shared documents as identity conflicts; a shared document is on neither
    timeline and resolves to neither order, whether both flows arrive mixed or one after the other.
    """
    numbers = {n for flow in sap_flows for n in (flow.order, *flow.documents)}
    pairs = realdata.conflicting_pairs(vbfa, count=4, exclude=numbers)
    assert len(pairs) == 4
    mixed, in_turn = pairs[:2], pairs[2:]
    replay(live, unique([event for pair in mixed for flow in pair for event in flow.events()]), seed=5)
    for first, second in in_turn:  # the first order's whole flow is stored before the second's arrives
        replay(live, first.events(), seed=6)
        replay(live, second.events(), seed=6)

    with httpx.Client(base_url=live.url, timeout=30) as client:
        for first, second in pairs:
            shared = first.documents & second.documents
            assert shared
            for own, other in ((first, second), (second, first)):
                found = order(client, own.order)
                assert found["order_id"] == own.order
                assert {alias["value"] for alias in found["aliases"]} == own.documents - shared
                conflicts = [a["detail"] for a in found["anomalies"] if a["kind"] == "identity"]
                assert len(conflicts) == len(shared), own.order
                for document in shared:
                    assert any(document in c and other.order in c for c in conflicts), (own.order, document)
                expected = {f"{realdata.SAP_SOURCE}/order-{own.order}": "accepted"}
                expected |= {
                    f"{realdata.SAP_SOURCE}/{m.event_id}": m.milestone
                    for m in own.milestones
                    if m.milestone and m.document not in shared
                }
                assert {m["event_id"]: m["milestone"] for m in found["milestones"]} == expected, own.order
                for document in own.documents - shared:
                    assert order(client, document)["order_id"] == own.order, (own.order, document)
            for document in sorted(shared):
                answer = client.get(f"/api/v1/orders/{document}")
                assert answer.status_code == 404, (
                    f"{document} of {first.order} and {second.order}: {answer.text}"
                )


def test_online_retail_sku_totals_match_the_data(live: InProcessNode) -> None:
    frame = realdata.load_online_retail()
    skus = realdata.pick_skus(frame, count=20)
    expected = realdata.retail_expectations(frame, skus)
    assert sorted(expected) == skus
    events = realdata.retail_events(frame, skus)
    # One invoice may hold a SKU twice: Milepost keeps both lines, and so does the expectation.
    assert any(
        len(skus_of) != len(set(skus_of))
        for skus_of in ([line["sku"] for line in event["data"]["lines"]] for event in events)
    )
    # SAP order lines (no store) sit at location "online": a material sharing a code with
    # one of these SKUs would show up there as an extra location, and fail the totals.
    replay(live, events, seed=11)

    with httpx.Client(base_url=live.url, timeout=30) as client:
        for sku in skus:
            answer = client.get(f"/api/v1/skus/{sku}")
            assert answer.status_code == 200, answer.text
            found = answer.json()
            totals = {t["location_id"]: (t["sold"], t["returned"]) for t in found["totals"]}
            assert totals == expected[sku]["totals"], sku
            assert len(found["events"]) == expected[sku]["lines"], sku
            assert Counter(e["order_id"] for e in found["events"]) == expected[sku]["invoices"], sku
            for country, (sold, returned) in expected[sku]["totals"].items():
                scoped = client.get(f"/api/v1/skus/{sku}", params={"location_id": country}).json()
                assert [(t["sold"], t["returned"]) for t in scoped["totals"]] == [(sold, returned)]
