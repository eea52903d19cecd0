"""Reading SKUs and promotions: the rows the correlator stored, turned into the API's answers."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from clickhouse_connect.driver.client import Client

from correlator.inventory import sku_totals, unique, variance
from correlator.model import CHANNELS, PromotionEntry, SkuEntry
from correlator.propagation import PromotionSettings, promotion_summary, propagation, rfc3339


class SkuReader:
    def __init__(self, client: Client) -> None:
        self.client = client

    def entries(self, sku: str, location_id: str | None = None) -> list[SkuEntry]:
        condition = "sku = {sku:String}" + (" AND location_id = {loc:String}" if location_id else "")
        rows = self.client.query(
            "SELECT sku, location_id, kind, toUnixTimestamp64Micro(time), event_key, system, qty, on_hand, "
            f"delta, order_key, reason FROM sku_events WHERE {condition} "
            "LIMIT 1 BY sku, location_id, event_key, kind",
            parameters={"sku": sku, "loc": location_id or ""},
        ).result_rows
        return [
            SkuEntry(
                sku=r[0],
                location_id=r[1],
                kind=r[2],
                time_us=int(r[3]),
                event_key=r[4],
                system=r[5],
                qty=int(r[6]),
                on_hand=None if r[7] is None else int(r[7]),
                delta=int(r[8]),
                order_key=r[9],
                reason=r[10],
            )
            for r in rows
        ]

    def sku(
        self, sku: str, location_id: str | None, now_us: int, stores: tuple[str, ...] = ()
    ) -> dict[str, Any] | None:
        """The SKU's events by time, each system's stock per location and the variance; None if unknown."""
        entries = self.entries(sku, location_id)
        if stores:
            entries = [e for e in entries if e.location_id in stores]
        if not entries:
            return None
        return {
            "sku": sku,
            "events": [_sku_event(e) for e in unique(entries)],
            "stock": variance(entries, now_us),
            "totals": sku_totals(entries),
        }


def _sku_event(entry: SkuEntry) -> dict[str, Any]:
    return {
        "time": rfc3339(entry.time_us),
        "kind": entry.kind,
        "location_id": entry.location_id,
        "system": entry.system or None,
        "qty": entry.qty,
        "on_hand": entry.on_hand,
        "delta": entry.delta,
        "order_id": entry.order_key or None,
        "reason": entry.reason or None,
        "event_id": entry.event_key,
    }


class PromotionReader:
    def __init__(self, client: Client, settings: PromotionSettings) -> None:
        self.client = client
        self.settings = settings

    def known_stores(self) -> list[str]:
        rows = self.client.query("SELECT DISTINCT store_id FROM stores ORDER BY store_id").result_rows
        return [str(r[0]) for r in rows if r[0] and r[0] not in CHANNELS]

    def _entries(self, promo_id: str | None) -> dict[str, list[PromotionEntry]]:
        condition = "WHERE promo_id = {p:String}" if promo_id is not None else ""
        rows = self.client.query(
            "SELECT promo_id, kind, target, toUnixTimestamp64Micro(time), "
            "if(effective IS NULL, NULL, toUnixTimestamp64Micro(assumeNotNull(effective))), "
            f"targets, skus, promo_kind, event_key FROM promotions {condition} "
            "LIMIT 1 BY promo_id, kind, target, event_key",
            parameters={"p": promo_id or ""},
        ).result_rows
        grouped: dict[str, list[PromotionEntry]] = defaultdict(list)
        for r in rows:
            grouped[str(r[0])].append(
                PromotionEntry(
                    promo_id=r[0],
                    kind=r[1],
                    target=r[2],
                    time_us=int(r[3]),
                    effective_us=None if r[4] is None else int(r[4]),
                    targets=tuple(r[5]),
                    skus=tuple(r[6]),
                    promo_kind=r[7],
                    event_key=r[8],
                )
            )
        return grouped

    def promotion(self, promo_id: str, now_us: int) -> dict[str, Any] | None:
        entries = self._entries(promo_id).get(promo_id)
        if not entries:
            return None
        published, activations = _split(entries)
        return propagation(published, activations, self.known_stores(), now_us, self.settings)

    def promotions(self, now_us: int) -> list[dict[str, Any]]:
        known = self.known_stores()
        summaries = []
        for entries in self._entries(None).values():
            published, activations = _split(entries)
            summaries.append(promotion_summary(published, activations, known, now_us, self.settings))
        return sorted(summaries, key=lambda s: (s["published_at"] or "", s["promo_id"]), reverse=True)


def _split(entries: list[PromotionEntry]) -> tuple[PromotionEntry | None, list[PromotionEntry]]:
    # A promotion republished keeps its first publication (the earliest event time).
    published = sorted((e for e in entries if e.kind == "published"), key=lambda e: (e.time_us, e.event_key))
    activations = [e for e in entries if e.kind == "activated"]
    return (published[0] if published else None), activations
