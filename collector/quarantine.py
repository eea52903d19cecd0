"""The quarantine: refused items with their reasons, listed for ops and re-processable later.

Reprocessing runs the stored events through the current contracts (a contract added or
fixed in config since) and sends the ones now valid through the normal durable path.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import datetime
from typing import Any

from clickhouse_connect.driver.client import Client

from collector.decoding import DecoderPool, decode_events_job
from collector.ingest import Ingest
from collector.writer import EVENTS

_BATCH = "application/cloudevents-batch+json"


class Quarantine:
    def __init__(self, client: Client, ingest: Ingest, decoder: DecoderPool) -> None:
        self.client = client
        self.ingest = ingest
        self.decoder = decoder

    def unresolved(self, signal: str | None, limit: int) -> dict[str, Any]:
        """The newest unresolved quarantined items, with a total count."""
        where = "q.signal = {signal:String}" if signal else "1"
        unresolved = (
            f"{where} AND (q.signal, q.source, q.id) NOT IN "
            "(SELECT signal, source, id FROM quarantine_resolved)"
        )
        total = self.client.query(
            f"SELECT count() FROM quarantine AS q WHERE {unresolved}", parameters={"signal": signal or ""}
        ).result_rows[0][0]
        rows = self.client.query(
            "SELECT received_at, signal, source, id, type, position, field, value, reason, payload "
            f"FROM quarantine AS q WHERE {unresolved} ORDER BY received_at DESC LIMIT {{limit:UInt32}}",
            parameters={"signal": signal or "", "limit": limit},
        ).named_results()
        return {"total": int(total), "items": [_item(row) for row in rows]}

    async def reprocess(self, limit: int) -> dict[str, int]:
        """Re-validate up to ``limit`` quarantined CloudEvents; store the now-valid ones."""
        rows = await asyncio.to_thread(self._candidates, limit)
        if not rows:
            return {"examined": 0, "accepted": 0, "still_invalid": 0}
        payloads = [json.loads(payload) for _, _, payload in rows]
        decoded = await self.decoder.run(
            decode_events_job, {"content-type": _BATCH}, json.dumps(payloads).encode(), time.time_ns()
        )
        if decoded.rows:
            # Only the valid ones go back in: the invalid ones are quarantined already.
            await asyncio.wrap_future(self.ingest.wal.append([(EVENTS, decoded.ipc)]))
        invalid = {rejection.position for rejection in decoded.rejected}
        resolved = [
            (source, event_id) for index, (source, event_id, _) in enumerate(rows) if index not in invalid
        ]
        if resolved:
            now = datetime.now().astimezone()
            await asyncio.to_thread(
                self.client.insert,
                "quarantine_resolved",
                [["events", source, event_id, now] for source, event_id in resolved],
                column_names=["signal", "source", "id", "resolved_at"],
            )
        return {"examined": len(rows), "accepted": decoded.rows, "still_invalid": len(invalid)}

    def _candidates(self, limit: int) -> list[tuple[str, str, str]]:
        result = self.client.query(
            "SELECT source, id, any(payload) FROM quarantine "
            "WHERE signal = 'events' AND id != '' AND payload != '' "
            "AND ('events', source, id) NOT IN (SELECT signal, source, id FROM quarantine_resolved) "
            "GROUP BY source, id ORDER BY min(received_at) LIMIT {limit:UInt32}",
            parameters={"limit": limit},
        )
        return [(str(r[0]), str(r[1]), str(r[2])) for r in result.result_rows]


def _item(row: dict[str, Any]) -> dict[str, Any]:
    item = dict(row)
    item["received_at"] = row["received_at"].isoformat().replace("+00:00", "Z")
    return item
