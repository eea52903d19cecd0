"""Bad input gets its status and a message naming the problem; the node stays healthy and keeps valid data."""

from __future__ import annotations

import gzip
import json
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support import NodeProcess

PROTOBUF = {"content-type": "application/x-protobuf"}
JSON = {"content-type": "application/json"}
BATCHED = {"content-type": "application/cloudevents-batch+json"}
STRUCTURED = {"content-type": "application/cloudevents+json"}


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    data_dir = tmp_path_factory.mktemp("bad") / "data"
    node = NodeProcess(data_dir, config={"server": {"max_body_bytes": 1024 * 1024}}).start()
    yield node
    node.stop()


def rss_kib(node: NodeProcess) -> int:
    assert node.process is not None
    status = Path(f"/proc/{node.process.pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))


def valid_event(source: str, event_id: str) -> dict[str, object]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": "retail.order.cancelled",
        "data": {"order_id": "W-9", "reason": "customer"},
    }


@pytest.mark.parametrize(
    ("path", "body", "headers", "status", "words"),
    [
        ("/v1/traces", b"\x0a\xff\xff\xff garbage", PROTOBUF, 400, ["protobuf"]),
        ("/v1/traces", b"{not json", JSON, 400, ["json"]),
        ("/v1/traces", b'{"resourceSpans": 7}', JSON, 400, ["resourcespans"]),
        ("/v1/traces", b"hello", {"content-type": "text/plain"}, 415, ["text/plain"]),
        ("/v1/traces", b"", {}, 415, ["content type"]),
        ("/v1/logs", b"\xff\xff", PROTOBUF, 400, ["protobuf"]),
        ("/v1/events", b"[{", BATCHED, 400, ["json"]),
        ("/v1/events", b'{"a": 1}', BATCHED, 400, ["array"]),
        ("/v1/events", b"<xml/>", {"content-type": "application/xml"}, 415, ["application/xml"]),
        (
            "/v1/events",
            json.dumps({"specversion": "1.0", "type": "t", "source": "s"}).encode(),
            STRUCTURED,
            400,
            ["'id'"],
        ),
        (
            "/v1/events",
            json.dumps({"specversion": "0.3", "type": "t", "source": "s", "id": "1"}).encode(),
            STRUCTURED,
            400,
            ["specversion", "0.3"],
        ),
        (
            "/v1/events",
            json.dumps({**valid_event("s", "x"), "data": {"order_id": ""}}).encode(),
            STRUCTURED,
            400,
            ["data.order_id"],
        ),
        (
            "/v1/events",
            json.dumps(
                {
                    **valid_event("s", "y"),
                    "dataschema": "https://schemas.milepost.dev/retail.order.cancelled/v9.json",
                }
            ).encode(),
            STRUCTURED,
            400,
            ["dataschema", "v9"],
        ),
    ],
)
def test_bad_bodies_are_answered_with_a_reason(
    served: NodeProcess, path: str, body: bytes, headers: dict[str, str], status: int, words: list[str]
) -> None:
    answer = httpx.post(f"{served.url}{path}", content=body, headers=headers)
    assert answer.status_code == status, answer.text
    text = answer.text.lower()
    for word in words:
        assert word.lower() in text, (word, answer.text)


def test_oversize_and_unknown_encoding(served: NodeProcess) -> None:
    big = httpx.post(f"{served.url}/v1/traces", content=b"\0" * (1024 * 1024 + 1), headers=PROTOBUF)
    assert big.status_code == 413 and "max_body_bytes" in big.text

    def chunked() -> Iterator[bytes]:  # no Content-Length: the limit holds while streaming
        for _ in range(40):
            yield b"\0" * 32768

    streamed = httpx.post(f"{served.url}/v1/traces", content=chunked(), headers=PROTOBUF)
    assert streamed.status_code == 413
    brotli = httpx.post(
        f"{served.url}/v1/traces", content=b"xx", headers={**PROTOBUF, "content-encoding": "br"}
    )
    assert brotli.status_code == 415 and "br" in brotli.text


def test_gzip_bomb_stops_at_the_limit_without_inflating(served: NodeProcess) -> None:
    before = rss_kib(served)
    bomb = gzip.compress(b"\0" * (512 * 1024 * 1024), compresslevel=9)  # 512 MiB of zeros in ~500 KiB
    assert len(bomb) < 1024 * 1024
    answer = httpx.post(
        f"{served.url}/v1/traces", content=bomb, headers={**PROTOBUF, "content-encoding": "gzip"}
    )
    assert answer.status_code == 413
    assert "decompressed" in answer.text
    assert rss_kib(served) - before < 100 * 1024, "the node inflated the bomb in memory"
    truncated = httpx.post(
        f"{served.url}/v1/traces",
        content=gzip.compress(b"abc")[:-6],
        headers={**PROTOBUF, "content-encoding": "gzip"},
    )
    assert truncated.status_code == 400


def test_node_stays_healthy_and_keeps_valid_data_after_bad_input(served: NodeProcess) -> None:
    source = f"pos/{uuid.uuid4().hex[:6]}"
    for _ in range(3):
        httpx.post(f"{served.url}/v1/traces", content=b"\xff" * 100, headers=PROTOBUF)
    mixed = [
        valid_event(source, "v1"),
        {"specversion": "1.0", "source": source, "type": "x"},
        "not an object",
    ]
    answer = httpx.post(f"{served.url}/v1/events", content=json.dumps(mixed), headers=BATCHED)
    assert answer.status_code == 200
    assert answer.json()["accepted"] == 1
    assert [r["index"] for r in answer.json()["rejected"]] == [1, 2]
    assert httpx.get(f"{served.url}/readyz").status_code == 200
    metrics = httpx.get(f"{served.url}/metrics").text
    assert 'milepost_requests_total{endpoint="traces",status="400"}' in metrics
    assert 'milepost_quarantined_total{signal="events"}' in metrics
