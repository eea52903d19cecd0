"""What a run injected, in the words of the node's API, so a test can check recall and precision.

``stalled_orders`` are the orders the run leaves stuck for good: every other order ends at rest
(reconciled, or cancelled) before the run exits. ``after`` / ``expected`` are what the node reports
with the default SLA pairs (accepted→paid, paid→reserved, reserved→ready, fulfilled→reconciled,
refunded→reconciled), whatever their durations.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

LATE = "late"
MISSING = "missing"
FULFILLED_AFTER_CANCEL = "fulfilled_after_cancel"
MISSING_PREREQUISITE = "missing_prerequisite"


@dataclass(frozen=True)
class Stuck:
    after: str
    expected: str
    cause: str


@dataclass
class GroundTruth:
    stalled: dict[str, Stuck] = field(default_factory=dict)
    promotion_targets: dict[tuple[str, str], str] = field(default_factory=dict)
    mismatched: dict[str, tuple[str, str]] = field(default_factory=dict)
    failed_postings: dict[str, str] = field(default_factory=dict)
    drifted: dict[tuple[str, str], tuple[str, int]] = field(default_factory=dict)

    def stall(self, order_id: str, after: str, expected: str, cause: str) -> None:
        self.stalled[order_id] = Stuck(after, expected, cause)

    def straggler(self, promo_id: str, target: str, status: str) -> None:
        self.promotion_targets[(promo_id, target)] = status

    def mismatch(self, order_id: str, anomaly: str, cause: str) -> None:
        self.mismatched[order_id] = (anomaly, cause)

    def failed_posting(self, order_id: str, kind: str) -> None:
        self.failed_postings[order_id] = kind

    def drift(self, sku: str, location_id: str, system: str, delta: int) -> None:
        self.drifted[(sku, location_id)] = (system, delta)

    def to_json(self, meta: dict[str, Any]) -> dict[str, Any]:
        """The ground-truth document; every list sorted, so a seed always writes the same file."""
        return {
            **meta,
            "stalled_orders": [
                {"order_id": order_id, "after": s.after, "expected": s.expected, "cause": s.cause}
                for order_id, s in sorted(self.stalled.items())
            ],
            "promotion_targets": [
                {"promo_id": promo_id, "target": target, "status": status}
                for (promo_id, target), status in sorted(self.promotion_targets.items())
            ],
            "mismatched_orders": [
                {"order_id": order_id, "anomaly": anomaly, "cause": cause}
                for order_id, (anomaly, cause) in sorted(self.mismatched.items())
            ],
            "failed_postings": sorted(self.failed_postings),
            "drifted_skus": [
                {"sku": sku, "location_id": location, "system": system, "delta": delta}
                for (sku, location), (system, delta) in sorted(self.drifted.items())
            ],
        }

    def summary(self) -> str:
        late = sum(1 for status in self.promotion_targets.values() if status == LATE)
        return (
            f"{len(self.stalled)} stalled orders, {late} late and "
            f"{len(self.promotion_targets) - late} missing promotion targets, "
            f"{len(self.failed_postings)} failed postings, {len(self.mismatched)} mismatched orders, "
            f"{len(self.drifted)} drifted SKU/location pairs"
        )


def write_ground_truth(path: Path, document: dict[str, Any]) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(document, indent=2, sort_keys=False) + "\n", encoding="utf-8")
    temporary.replace(path)
