"""What every flow works with: the clock, the estate, ids, the systems' outputs, the faults and the truth."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from simulator.clock import Simulation
from simulator.delivery import Delivery
from simulator.estate import Estate
from simulator.faults import FaultPlan
from simulator.ids import Identifiers
from simulator.model import Stock
from simulator.telemetry import Telemetry
from simulator.truth import GroundTruth

# CloudEvents sources of the central systems; stores use ``pos/store-NNN``.
OMS = "oms/eu-west-1"
PAYMENTS = "payment-gateway/psp"
MARKETPLACE = "marketplace/partner-hub"
INVENTORY = "inventory-service/availability"
CARRIER = "middleware/carrier-hub"
ERP = "erp-finance/s4"
PRICING = "middleware/pricing"
CATALOG = "web-shop/catalog"
STOCK_SOURCES = {"erp": "erp-finance/stock", "web": "web-shop/stock"}

_EPOCH = datetime(1970, 1, 1)


def rfc3339(time_us: int) -> str:
    return (_EPOCH + timedelta(microseconds=time_us)).isoformat() + "Z"


def wms_source(warehouse: str) -> str:
    return f"wms/{warehouse.lower()}"


@dataclass
class World:
    sim: Simulation
    estate: Estate
    ids: Identifiers
    telemetry: Telemetry
    delivery: Delivery
    faults: FaultPlan
    truth: GroundTruth = field(default_factory=GroundTruth)
    stock: Stock = field(default_factory=Stock)
    counts: Counter[str] = field(default_factory=Counter)

    @property
    def now(self) -> int:
        return self.sim.now_us

    def event(
        self, source: str, type_: str, data: dict[str, Any], origin: str = "", time_us: int | None = None
    ) -> None:
        """Emit a CloudEvent at ``time_us`` (default: now); ``origin`` is the store whose outage holds it."""
        self.counts["events"] += 1
        self.delivery.event(
            {
                "specversion": "1.0",
                "id": self.ids.event_id(),
                "source": source,
                "type": type_,
                "time": rfc3339(self.now if time_us is None else time_us),
                "datacontenttype": "application/json",
                "data": data,
            },
            origin,
        )

    def ms(self, milliseconds: float) -> int:
        """A span offset: real service latency, not compressed by speed."""
        return round(milliseconds * 1000)
