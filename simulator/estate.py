"""The retailer: stores with opening hours, warehouses, and a catalogue of SKUs, built from the seed."""

from __future__ import annotations

import random
from dataclasses import dataclass

HOUR_US = 3_600_000_000
DAY_US = 24 * HOUR_US

_CITIES = (
    "Lyon Part-Dieu", "Paris Rivoli", "Lille Centre", "Nantes Atlantis", "Bordeaux Lac", "Marseille Prado",
    "Toulouse Capitole", "Nice Etoile", "Rennes Colombier", "Strasbourg Halles", "Grenoble Victor Hugo",
    "Montpellier Odysseum", "Dijon Toison", "Reims Cernay", "Tours Nationale", "Metz Muse",
)  # fmt: skip
_PRODUCTS = (
    "trail shoe", "rain jacket", "merino tee", "daypack", "headlamp", "water bottle", "fleece",
    "running sock", "camp stove", "sleeping bag", "trekking pole", "beanie", "softshell", "gaiter",
)  # fmt: skip


@dataclass(frozen=True)
class Store:
    """A store; its clock is UTC (one time zone keeps opening hours and event times comparable)."""

    id: str
    name: str
    opens_hour: int
    closes_hour: int

    @property
    def service(self) -> str:
        """The OpenTelemetry ``service.name`` of the store's POS."""
        return f"pos-store-{self.id}"

    @property
    def source(self) -> str:
        """The CloudEvents ``source`` of the store's systems."""
        return f"pos/store-{self.id}"

    def is_open(self, time_us: int) -> bool:
        hour = (time_us % DAY_US) // HOUR_US
        return self.opens_hour <= hour < self.closes_hour

    def next_open(self, time_us: int) -> int:
        """``time_us`` when open, else the next opening time."""
        if self.is_open(time_us):
            return time_us
        day = time_us - time_us % DAY_US
        opening = day + self.opens_hour * HOUR_US
        return opening if opening > time_us else opening + DAY_US


@dataclass(frozen=True)
class Sku:
    id: str
    name: str
    price: float


@dataclass(frozen=True)
class Estate:
    stores: tuple[Store, ...]
    warehouses: tuple[str, ...]
    skus: tuple[Sku, ...]
    currency: str = "EUR"

    def store(self, store_id: str) -> Store:
        return next(store for store in self.stores if store.id == store_id)

    def open_stores(self, time_us: int) -> tuple[Store, ...]:
        return self.open_by_hour[(time_us % DAY_US) // HOUR_US]

    @property
    def open_by_hour(self) -> tuple[tuple[Store, ...], ...]:
        """The stores open in each hour of the day (computed once: every order asks)."""
        cached: tuple[tuple[Store, ...], ...] | None = self.__dict__.get("_open_by_hour")
        if cached is None:
            cached = tuple(
                tuple(store for store in self.stores if store.opens_hour <= hour < store.closes_hour)
                for hour in range(24)
            )
            object.__setattr__(self, "_open_by_hour", cached)
        return cached

    @property
    def locations(self) -> tuple[str, ...]:
        return (*(store.id for store in self.stores), *self.warehouses)


def build_estate(seed: int, stores: int, skus: int) -> Estate:
    """``stores`` stores (ids ``001``...), one warehouse per 25 stores (at least one) and ``skus`` SKUs."""
    rng = random.Random(seed ^ 0xE57A7E)
    built_stores = []
    for number in range(1, stores + 1):
        city = _CITIES[(number - 1) % len(_CITIES)]
        suffix = "" if number <= len(_CITIES) else f" {(number - 1) // len(_CITIES) + 1}"
        opens, closes = rng.choice((8, 9, 9, 10)), rng.choice((19, 20, 20, 21))
        built_stores.append(Store(f"{number:03d}", city + suffix, opens, closes))
    warehouses = tuple(f"DC-{n}" for n in range(1, max(1, stores // 25) + 1))
    ids: set[str] = set()
    catalogue: list[Sku] = []
    while len(catalogue) < skus:
        sku_id = f"{rng.randint(100, 999)}-{rng.randint(10, 99)}"
        if sku_id in ids:
            continue
        ids.add(sku_id)
        product = _PRODUCTS[len(catalogue) % len(_PRODUCTS)]
        catalogue.append(Sku(sku_id, product, rng.randint(4, 179) + rng.choice((0.99, 0.95, 0.5))))
    return Estate(tuple(built_stores), warehouses, tuple(catalogue))
