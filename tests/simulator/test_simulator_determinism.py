"""Same seed and start, same traffic and ground truth; every event honours its contract; bad flags exit 2."""

from __future__ import annotations

import json
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from collector.contracts import ContractRegistry
from simulator.outbox import MemoryOutbox
from simulator.runner import run
from simulator.scenario import Scenario
from tests.support import MILEPOST, REPO

START = "2026-11-20T06:00:00Z"
SMALL = [
    "--stores", "3", "--skus", "6", "--orders-per-minute", "40", "--duration", "20",
    "--backfill-days", "0.25", "--backfill-orders-per-minute", "2", "--speed", "300", "--start", START,
]  # fmt: skip


def simulate(tmp_path: Path, name: str, seed: int) -> tuple[Path, dict[str, Any]]:
    output, truth = tmp_path / name, tmp_path / f"{name}.json"
    args = ["simulate", "--output", str(output), "--seed", str(seed), "--ground-truth", str(truth), *SMALL]
    result = subprocess.run([*MILEPOST, *args], capture_output=True, text=True, cwd=REPO, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return output, json.loads(truth.read_text())


def test_same_seed_and_start_give_the_same_traffic_and_ground_truth(tmp_path: Path) -> None:
    first_dir, first = simulate(tmp_path, "first", 7)
    second_dir, second = simulate(tmp_path, "second", 7)
    assert first == second
    assert first["stalled_orders"] and first["promotion_targets"] and first["drifted_skus"]
    for name in ("events.jsonl", "spans.otlp.jsonl"):
        assert (first_dir / name).read_bytes() == (second_dir / name).read_bytes(), name
    _, other = simulate(tmp_path, "other", 8)
    assert other["stalled_orders"] != first["stalled_orders"]


def test_the_same_seed_at_another_start_uses_other_ids() -> None:
    """Two runs against one node must never share an id: they would merge orders or drop events."""

    def ids(start_us: int) -> set[str]:
        outbox = MemoryOutbox()
        scenario = Scenario(
            seed=3, stores=2, skus=4, duration_s=5, backfill_days=0.05, speed=300, start_us=start_us
        )
        run(scenario, outbox, threading.Event(), narrate=lambda _line: None, progress=False)
        return {e["id"] for e in outbox.events} | {e["data"].get("order_id", "") for e in outbox.events}

    first, second = ids(1_795_000_000_000_000), ids(1_795_000_060_000_000)
    assert len(first) > 100 and not (first & second) - {""}


def test_every_event_satisfies_its_contract_and_every_span_is_otlp_json(tmp_path: Path) -> None:
    output, _ = simulate(tmp_path, "contracts", 9)
    contracts = ContractRegistry.builtin()
    types = set()
    for line in (output / "events.jsonl").read_text().splitlines():
        event = json.loads(line)
        assert event["specversion"] == "1.0" and event["time"].endswith("Z")
        assert contracts.validate(event["type"], None, event["data"]) is None, event
        types.add(event["type"])
    assert types == {c.type for c in contracts.contracts()}
    services = set()
    for line in (output / "spans.otlp.jsonl").read_text().splitlines():
        for resource in json.loads(line)["resourceSpans"]:
            attributes = {a["key"]: a["value"] for a in resource["resource"]["attributes"]}
            services.add(attributes["service.name"]["stringValue"])
            for scope in resource["scopeSpans"]:
                for span in scope["spans"]:
                    assert len(span["traceId"]) == 32 and len(span["spanId"]) == 16
    expected = {"web-shop", "payment-gateway", "oms", "inventory-service", "wms", "erp-finance", "middleware"}
    assert expected <= services and any(s.startswith("pos-store-") for s in services)


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--faults", "payment-outage,meteor"], "'--faults' has value 'meteor'"),
        (["--stores", "0"], "'--stores' has value '0'"),
        (["--speed", "-2"], "'--speed' has value '-2.0'"),
        (["--start", "yesterday"], "'--start' has value 'yesterday'"),
    ],
)
def test_bad_flags_give_one_sentence_and_exit_2(flags: list[str], named: str) -> None:
    result = subprocess.run(
        [*MILEPOST, "simulate", *flags], capture_output=True, text=True, cwd=REPO, timeout=60
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and named in result.stderr, result.stderr
