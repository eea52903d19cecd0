"""Tokens and scopes, store limits, loopback-only without tokens, secrets never logged."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator

import httpx
import pytest
from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from opentelemetry.proto.common.v1 import common_pb2

from tests.collector.test_durability import spans_request
from tests.support import NodeProcess, wait_until

INGEST = "ingest-secret-7f3a"
READ = "read-secret-19bc"
ADMIN = "admin-secret-5d0e"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    config = {
        "auth": {
            "tokens": [
                {
                    "name": "pos-fleet",
                    "token_sha256": hashlib.sha256(INGEST.encode()).hexdigest(),
                    "scopes": ["ingest"],
                },
                {"name": "store-042", "token": READ, "scopes": ["read"], "stores": ["042"]},
                {"name": "ops", "token": ADMIN, "scopes": ["admin"]},
            ]
        }
    }
    node = NodeProcess(tmp_path_factory.mktemp("auth") / "data", config=config).start()
    yield node
    node.stop()


def bearer(token: str) -> dict[str, str]:
    return {"authorization": f"Bearer {token}"}


EVENT = json.dumps(
    {
        "specversion": "1.0",
        "id": "s-1",
        "source": "pos/042",
        "type": "retail.order.fulfilled",
        "data": {"order_id": "W-1"},
    }
)
CE = {"content-type": "application/cloudevents+json"}


def test_ingest_needs_an_ingest_token(guarded: NodeProcess) -> None:
    url = f"{guarded.url}/v1/events"
    assert httpx.post(url, content=EVENT, headers=CE).status_code == 401
    assert httpx.post(url, content=EVENT, headers={**CE, **bearer("wrong")}).status_code == 401
    refused = httpx.post(url, content=EVENT, headers={**CE, **bearer(READ)})
    assert refused.status_code == 403 and "ingest" in refused.json()["error"]
    assert httpx.post(url, content=EVENT, headers={**CE, **bearer(INGEST)}).status_code == 200
    assert httpx.post(url, content=EVENT, headers={**CE, **bearer(ADMIN)}).status_code == 200
    traces = httpx.post(
        f"{guarded.url}/v1/traces", content=b"", headers={"content-type": "application/x-protobuf"}
    )
    assert traces.status_code == 401


def test_reads_need_a_read_token_and_health_stays_open(guarded: NodeProcess) -> None:
    trace = f"{guarded.url}/api/v1/traces/{'1' * 32}"
    assert httpx.get(trace).status_code == 401
    assert httpx.get(trace, headers=bearer(INGEST)).status_code == 403
    assert httpx.get(trace, headers=bearer(READ)).status_code == 404
    assert httpx.get(f"{guarded.url}/metrics").status_code == 401
    assert httpx.get(f"{guarded.url}/metrics", headers=bearer(READ)).status_code == 200
    assert httpx.get(f"{guarded.url}/healthz").status_code == 200
    assert httpx.get(f"{guarded.url}/readyz").status_code == 200


def test_secrets_never_reach_the_log(guarded: NodeProcess) -> None:
    for token in (INGEST, READ, ADMIN, "wrong"):
        httpx.post(f"{guarded.url}/v1/events", content=b"[{", headers={**CE, **bearer(token)})
    log = guarded.log()
    for secret in (INGEST, READ, ADMIN):
        assert secret not in log


def test_store_limited_read_token_sees_only_its_stores(guarded: NodeProcess) -> None:
    trace_ids: dict[str, str] = {}
    for store in ("042", "007"):
        request = trace_service_pb2.ExportTraceServiceRequest.FromString(spans_request(uuid.uuid4().bytes, 1))
        span = request.resource_spans[0].scope_spans[0].spans[0]
        span.attributes.append(
            common_pb2.KeyValue(key="retail.store.id", value=common_pb2.AnyValue(string_value=store))
        )
        answer = httpx.post(
            f"{guarded.url}/v1/traces",
            content=request.SerializeToString(),
            headers={"content-type": "application/x-protobuf", **bearer(INGEST)},
        )
        assert answer.status_code == 200
        trace_ids[store] = span.trace_id.hex()

    def stored(trace_id: str) -> bool:
        return httpx.get(f"{guarded.url}/api/v1/traces/{trace_id}", headers=bearer(ADMIN)).status_code == 200

    for trace_id in trace_ids.values():
        wait_until(lambda: stored(trace_id), 20, "trace stored")  # noqa: B023
    assert (
        httpx.get(f"{guarded.url}/api/v1/traces/{trace_ids['042']}", headers=bearer(READ)).status_code == 200
    )
    assert (
        httpx.get(f"{guarded.url}/api/v1/traces/{trace_ids['007']}", headers=bearer(READ)).status_code == 404
    )
