"""Identifiers as each system writes them, all drawn from the seed so a run is reproducible.

Every id that becomes an order alias (web order number, POS receipt, pickup code, payment
reference, ERP document, delivery, invoice, return) comes from a counter, so two orders never
share an alias: a shared alias would merge them in the correlator.
"""

from __future__ import annotations

import random

from opentelemetry.sdk.trace.id_generator import IdGenerator

# Pickup codes are short and read aloud at the counter: no 0/O or 1/I.
_CODE_ALPHABET = "23456789ABCDEFGHJKLMNPQRSTUVWXYZ"


class SeededIdGenerator(IdGenerator):
    """Trace and span ids from a seeded generator, so the same seed sends the same spans."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def generate_span_id(self) -> int:
        return self._random.getrandbits(64) or 1

    def generate_trace_id(self) -> int:
        return self._random.getrandbits(128) or 1


def run_key(seed: int, begin_us: int) -> int:
    """What a run's ids derive from: its seed and where its simulated time begins.

    Two runs against one node must not share an id (the node would merge their orders or drop
    their events as repeats), yet a seed and a start must give the same ids every time.
    """
    return seed * 1_000_003 + begin_us // 1_000_000


class Identifiers:
    def __init__(self, run: int) -> None:
        self._random = random.Random(run ^ 0x5EED)
        self._counters: dict[str, int] = {}
        # Runs start their number ranges far apart, like two years of a real shop.
        self._base = 100_000 + (run % 900) * 1_000_000

    def _next(self, kind: str) -> int:
        value = self._counters.get(kind, 0) + 1
        self._counters[kind] = value
        return self._base + value

    def event_id(self) -> str:
        return f"{self._random.getrandbits(128):032x}"

    def web_order(self) -> str:
        return f"W{self._next('web')}"

    def marketplace_order(self) -> str:
        return f"MKT-{self._next('marketplace')}"

    def receipt(self, store_id: str) -> str:
        return f"R-{store_id}-{self._next('receipt')}"

    def pickup_code(self) -> str:
        number = self._next("pickup")
        # A bijective shuffle of the counter: unique, but not guessable from the previous code.
        mixed = (number * 2_654_435_761) % 2**35
        chars = []
        for _ in range(7):
            mixed, digit = divmod(mixed, len(_CODE_ALPHABET))
            chars.append(_CODE_ALPHABET[digit])
        return "PU-" + "".join(chars)

    def payment_ref(self) -> str:
        return f"PAY-{self._next('payment'):x}".upper()

    def delivery(self) -> str:
        return f"DLV-{self._next('delivery')}"

    def invoice(self) -> str:
        return f"INV-{self._next('invoice')}"

    def erp_doc(self) -> str:
        return f"49{self._next('erp'):08d}"

    def return_id(self) -> str:
        return f"RET-{self._next('return')}"

    def promotion(self) -> int:
        return self._next("promotion")
