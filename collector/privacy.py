"""Customer personal data never reaches storage: named fields are replaced by a keyed hash.

A hash rather than a blank keeps the field useful for joining ("the same customer
returned twice") without storing who the customer is.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from typing import Any

# Matched against the last dotted segment of an attribute key or a JSON field name,
# lower-cased, so ``customer.email``, ``user.email`` and ``email`` all match.
DEFAULT_FIELDS = frozenset(
    {
        "email",
        "e_mail",
        "email_address",
        "phone",
        "phone_number",
        "mobile",
        "telephone",
        "customer_name",
        "first_name",
        "last_name",
        "full_name",
        "firstname",
        "lastname",
        "name_of_customer",
        "address",
        "street",
        "postcode",
        "zip",
    }
)


class PersonalData:
    """Hashes the values of personal-data fields in span attributes and event data."""

    def __init__(self, fields: Iterable[str] = DEFAULT_FIELDS, key: bytes = b"milepost") -> None:
        self.fields = frozenset(f.lower() for f in fields)
        self._key = key
        self._verdicts: dict[str, bool] = {}

    def is_personal(self, name: str) -> bool:
        """Whether field or attribute ``name`` holds personal data (decided by name alone, cached)."""
        verdict = self._verdicts.get(name)
        if verdict is None:
            verdict = self._decide(name)
            if len(self._verdicts) < 100_000:  # attribute names are few; never grow without bound
                self._verdicts[name] = verdict
        return verdict

    def _decide(self, name: str) -> bool:
        lowered = name.lower()
        if lowered in self.fields:
            return True
        last = lowered.rsplit(".", 1)[-1]
        if last in self.fields:
            return True
        # customer_email, contact_phone, billing.first_name: a personal field under a prefix.
        if any(last.endswith("_" + f) for f in self.fields):
            return True
        # "customer.name" and "customer_name" style keys: a name that belongs to a person.
        return last == "name" and ("customer" in lowered or "user" in lowered or "person" in lowered)

    def hash(self, value: str) -> str:
        digest = hmac.new(self._key, value.encode("utf-8"), hashlib.sha256).hexdigest()
        return "sha256:" + digest[:32]

    def scrub_attributes(self, attributes: dict[str, str]) -> dict[str, str]:
        """Return ``attributes`` with personal values hashed (the same dict when nothing matched)."""
        hits = [k for k in attributes if self.is_personal(k)]
        if not hits:
            return attributes
        scrubbed = dict(attributes)
        for key in hits:
            scrubbed[key] = self.hash(scrubbed[key])
        return scrubbed

    def scrub_data(self, data: Any) -> Any:
        """Return JSON ``data`` with personal values hashed at any depth.

        Copy on write: what holds nothing personal is returned as it is (the same objects), so
        the common event costs a walk, not a copy.
        """
        if isinstance(data, dict):
            out: dict[str, Any] | None = None
            for key, value in data.items():
                if isinstance(value, (dict, list)):
                    scrubbed = self.scrub_data(value)
                elif value is not None and self.is_personal(str(key)):
                    scrubbed = self.hash(str(value))
                else:
                    continue
                if scrubbed is not value:
                    out = out if out is not None else dict(data)
                    out[key] = scrubbed
            return data if out is None else out
        if isinstance(data, list):
            items = [self.scrub_data(item) for item in data]
            return data if all(new is old for new, old in zip(items, data, strict=True)) else items
        return data
