"""Data contracts of the CloudEvents catalogue: shipped schemas, version resolution, user contracts."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator, FormatChecker

from collector.contracts import ContractError, ContractRegistry, contract_id, parse_rfc3339

# The CloudEvents table of SPEC.md, with one valid data example each (every catalogue field set).
VALID: dict[str, dict[str, Any]] = {
    "retail.order.accepted": {
        "order_id": "W-10023",
        "channel": "web",
        "store_id": "042",
        "fulfillment": "bopis",
        "lines": [{"sku": "884-12", "qty": 2, "unit_price": 19.99}],
        "total": 39.98,
        "currency": "EUR",
        "aliases": {"pos_receipt": "R-77", "pickup_code": "PK-1"},
    },
    "retail.payment.confirmed": {
        "order_id": "W-1",
        "amount": 39.98,
        "currency": "EUR",
        "payment_ref": "psp-9",
    },
    "retail.payment.failed": {"order_id": "W-1", "amount": 39.98, "currency": "USD", "payment_ref": "psp-9"},
    "retail.inventory.reserved": {"order_id": "W-1", "sku": "884-12", "qty": 2, "location_id": "DC-1"},
    "retail.order.ready": {"order_id": "W-1", "store_id": "042", "pickup_code": "PK-1"},
    "retail.order.fulfilled": {"order_id": "W-1"},
    "retail.order.cancelled": {"order_id": "W-1", "reason": "customer request"},
    "retail.order.returned": {
        "order_id": "R-77",
        "return_id": "RT-1",
        "store_id": "042",
        "lines": [{"sku": "884-12", "qty": 1}],
    },
    "retail.refund.issued": {"order_id": "W-1", "return_id": "RT-1", "amount": 19.99},
    "retail.finance.posted": {"order_id": "W-1", "erp_doc": "90001", "kind": "sale", "amount": 39.98},
    "retail.finance.posting_failed": {
        "order_id": "W-1",
        "erp_doc": "90001",
        "kind": "refund",
        "amount": 19.99,
        "error": "period closed",
    },
    "retail.finance.reconciled": {"order_id": "W-1", "erp_doc": "90001"},
    "retail.order.alias": {"order_id": "W-1", "kind": "pos_receipt", "value": "R-77"},
    "retail.promotion.published": {
        "promo_id": "SPRING-10",
        "kind": "promotion",
        "effective_at": "2025-03-20T08:00:00+01:00",
        "targets": ["042", "web"],
        "skus": ["884-12"],
    },
    "retail.promotion.activated": {"promo_id": "SPRING-10", "target": "042"},
    "retail.inventory.snapshot": {"sku": "884-12", "location_id": "042", "system": "pos", "on_hand": 7},
    "retail.inventory.adjusted": {
        "sku": "884-12",
        "location_id": "042",
        "system": "wms",
        "delta": -2,
        "reason": "damage",
    },
}

REGISTRY = ContractRegistry.builtin()


def _required_fields(kind: str | None = None) -> list[tuple[str, str]]:
    return [
        (t, f)
        for t in VALID
        for f in REGISTRY.schema(t, 1)["required"]
        if kind is None or REGISTRY.schema(t, 1)["properties"][f]["type"] == kind
    ]


def _enum_fields() -> list[tuple[str, str, list[str]]]:
    return [
        (t, name, prop["enum"])
        for t in VALID
        for name, prop in REGISTRY.schema(t, 1)["properties"].items()
        if "enum" in prop
    ]


def test_every_catalogue_type_has_a_documented_v1_contract() -> None:
    listed = {(info.type, info.version): info for info in REGISTRY.contracts()}
    assert set(listed) == {(t, 1) for t in VALID}
    for t in VALID:
        schema = REGISTRY.schema(t, 1)
        Draft202012Validator.check_schema(schema)
        assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert schema["$id"] == f"https://schemas.milepost.dev/{t}/v1.json" == listed[(t, 1)].schema_id
        assert schema["title"] and schema["description"]
        assert schema["additionalProperties"] is True
        assert all(prop.get("description") for prop in schema["properties"].values()), t
        assert set(schema["required"]) <= set(schema["properties"])
        assert listed[(t, 1)].builtin


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_valid_example_is_accepted(event_type: str) -> None:
    outcome = REGISTRY.apply(event_type, None, VALID[event_type])
    assert outcome.violation is None
    assert outcome.contract == contract_id(event_type, 1) == f"{event_type}/v1"


@pytest.mark.parametrize("event_type", sorted(VALID))
def test_producers_may_add_fields(event_type: str) -> None:
    assert REGISTRY.validate(event_type, None, {**VALID[event_type], "x_custom": {"a": 1}}) is None


@pytest.mark.parametrize(("event_type", "field"), _required_fields())
def test_each_missing_required_field_is_named(event_type: str, field: str) -> None:
    data = {k: v for k, v in VALID[event_type].items() if k != field}
    violation = REGISTRY.validate(event_type, None, data)
    assert violation is not None
    assert (violation.field, violation.value) == (f"data.{field}", "<missing>")
    assert f"data.{field}" in violation.reason and "<missing>" in violation.reason


@pytest.mark.parametrize(("event_type", "field"), _required_fields("string"))
def test_each_empty_required_string_is_refused(event_type: str, field: str) -> None:
    violation = REGISTRY.validate(event_type, None, {**VALID[event_type], field: ""})
    assert violation is not None
    assert (violation.field, violation.value) == (f"data.{field}", "")


@pytest.mark.parametrize(("event_type", "field", "allowed"), _enum_fields())
def test_each_enum_refuses_an_unknown_value(event_type: str, field: str, allowed: list[str]) -> None:
    violation = REGISTRY.validate(event_type, None, {**VALID[event_type], field: "fax"})
    assert violation is not None
    assert (violation.field, violation.value) == (f"data.{field}", "fax")
    assert violation.reason == f"data.{field} has value 'fax', which is not one of {', '.join(allowed)}."


def test_enums_follow_the_spec() -> None:
    enums = {(t, f): tuple(allowed) for t, f, allowed in _enum_fields()}
    assert enums[("retail.order.accepted", "channel")] == ("web", "app", "store", "marketplace")
    assert enums[("retail.order.accepted", "fulfillment")] == ("bopis", "ship", "ship_from_store", "in_store")
    assert enums[("retail.promotion.published", "kind")] == ("promotion", "price")
    assert enums[("retail.finance.posted", "kind")] == ("sale", "refund")
    assert enums[("retail.inventory.snapshot", "system")] == ("erp", "pos", "web", "wms")


@pytest.mark.parametrize(
    ("event_type", "change", "field", "value", "words"),
    [
        (
            "retail.order.accepted",
            {"lines": [{"sku": "A", "qty": 1}, {"sku": "B", "qty": 0}]},
            "data.lines[1].qty",
            "0",
            "minimum 1",
        ),
        (
            "retail.order.accepted",
            {"lines": [{"sku": "A", "qty": "2"}]},
            "data.lines[0].qty",
            "2",
            "not an integer",
        ),
        ("retail.order.accepted", {"lines": [{"qty": 1}]}, "data.lines[0].sku", "<missing>", "requires"),
        ("retail.order.accepted", {"currency": "euro"}, "data.currency", "euro", "pattern"),
        ("retail.order.accepted", {"total": "39.98"}, "data.total", "39.98", "not a number"),
        (
            "retail.order.accepted",
            {"aliases": {"pos_receipt": 77}},
            "data.aliases.pos_receipt",
            "77",
            "not a string",
        ),
        ("retail.order.accepted", {"order_id": 10023}, "data.order_id", "10023", "not a string"),
        ("retail.inventory.snapshot", {"on_hand": 1.5}, "data.on_hand", "1.5", "not an integer"),
        ("retail.inventory.adjusted", {"delta": None}, "data.delta", "null", "not an integer"),
        ("retail.promotion.published", {"targets": ["042", 7]}, "data.targets[1]", "7", "not a string"),
    ],
)
def test_nested_and_typed_violations_name_the_path(
    event_type: str, change: dict[str, Any], field: str, value: str, words: str
) -> None:
    violation = REGISTRY.validate(event_type, None, {**VALID[event_type], **change})
    assert violation is not None
    assert (violation.field, violation.value) == (field, value)
    assert field in violation.reason and words in violation.reason
    assert violation.reason.count(". ") == 0 and violation.reason.endswith(".")


def test_data_that_is_not_an_object_is_refused() -> None:
    violation = REGISTRY.validate("retail.order.ready", None, "W-1")
    assert violation is not None
    assert (violation.field, violation.value) == ("data", "W-1")
    assert "not an object" in violation.reason


def test_an_event_without_data_is_refused_when_its_type_has_a_contract() -> None:
    violation = REGISTRY.validate("retail.order.ready", None, None)
    assert violation is not None
    assert (violation.field, violation.value) == ("data", "<missing>")
    assert "retail.order.ready/v1" in violation.reason


def test_a_type_without_contract_is_accepted_as_it_is() -> None:
    assert REGISTRY.apply("com.acme.pos.sale", None, {"anything": [1, 2]}) == ("", None)
    assert REGISTRY.apply("com.acme.pos.sale", "https://acme.example/sale/v9", None) == ("", None)


@pytest.mark.parametrize(
    "dataschema",
    [
        "https://schemas.milepost.dev/retail.order.ready/v1.json",
        "https://schemas.example.com/contracts/retail.order.ready/v1",
        "https://schemas.example.com/contracts/retail.order.ready/v1.json",
        "retail.order.ready/v1",
        "v1",
    ],
)
def test_dataschema_naming_a_known_version_is_accepted(dataschema: str) -> None:
    assert REGISTRY.apply("retail.order.ready", dataschema, VALID["retail.order.ready"]) == (
        "retail.order.ready/v1",
        None,
    )


@pytest.mark.parametrize(
    "dataschema",
    [
        "v2",
        "https://schemas.milepost.dev/retail.order.ready/v2.json",
        "https://schemas.milepost.dev/retail.order.accepted/v1.json",
        "https://example.com/other.type/v1",
        "retail.order.ready",
        "v01",
    ],
)
def test_dataschema_naming_an_unknown_version_is_refused(dataschema: str) -> None:
    violation = REGISTRY.validate("retail.order.ready", dataschema, VALID["retail.order.ready"])
    assert violation is not None
    assert (violation.field, violation.value) == ("dataschema", dataschema)
    assert dataschema in violation.reason and "retail.order.ready" in violation.reason


SALE_V1 = {
    "type": "object",
    "required": ["receipt_no"],
    "properties": {"receipt_no": {"type": "string"}, "sold_at": {"type": "string", "format": "date-time"}},
}


def test_user_contract_from_config_validates() -> None:
    registry = REGISTRY.with_user_contracts([{"type": "com.acme.pos.sale", "schema": SALE_V1}])
    assert registry.apply("com.acme.pos.sale", None, {"receipt_no": "R-1"}) == ("com.acme.pos.sale/v1", None)
    violation = registry.validate("com.acme.pos.sale", None, {"receipt_no": 5})
    assert violation is not None and violation.field == "data.receipt_no"
    violation = registry.validate("com.acme.pos.sale", None, {"receipt_no": "R", "sold_at": "noon"})
    assert violation is not None and violation.field == "data.sold_at"
    assert not REGISTRY.has_contract("com.acme.pos.sale"), "the original registry is unchanged"
    assert [c.schema_id for c in registry.contracts() if not c.builtin] == [""]


def test_user_contract_files_and_new_versions(tmp_path: Path) -> None:
    (tmp_path / "sale.json").write_text(json.dumps(SALE_V1))
    (tmp_path / "ready.yaml").write_text(
        "$id: urn:acme:ready:2\ntype: object\nrequired: [order_id, pickup_code]\n"
    )
    registry = REGISTRY.with_user_contracts(
        [
            {"type": "com.acme.pos.sale", "schema_file": "sale.json"},
            {"type": "retail.order.ready", "version": 2, "schema_file": str(tmp_path / "ready.yaml")},
        ],
        base_dir=tmp_path,
    )
    assert registry.validate("com.acme.pos.sale", "v1", {"receipt_no": "R-1"}) is None
    without_code = {"order_id": "W-1"}
    latest = registry.apply("retail.order.ready", None, without_code)
    assert latest.contract == "retail.order.ready/v2" and latest.violation is not None
    assert latest.violation.field == "data.pickup_code"
    assert registry.apply("retail.order.ready", "v1", without_code) == ("retail.order.ready/v1", None)
    assert (
        registry.apply("retail.order.ready", "urn:acme:ready:2", without_code).contract
        == "retail.order.ready/v2"
    )


@pytest.mark.parametrize(
    ("entry", "words"),
    [
        ("retail.x", "entry 1 is 'retail.x'"),
        ({"schema": SALE_V1}, "missing key 'type'"),
        ({"type": None, "schema": SALE_V1}, "type null"),
        ({"type": " ", "schema": SALE_V1}, "type ' '"),
        ({"type": "a.b", "version": 0, "schema": SALE_V1}, "version 0"),
        ({"type": "a.b", "version": "2", "schema": SALE_V1}, "version '2'"),
        ({"type": "a.b", "version": True, "schema": SALE_V1}, "version true"),
        ({"type": "a.b"}, "schema and schema_file"),
        ({"type": "a.b", "schema": SALE_V1, "schema_file": "x.json"}, "schema and schema_file"),
        ({"type": "a.b", "schema": ["not", "a", "schema"]}, 'schema ["not"'),
        ({"type": "a.b", "schema": {"type": "nonsense"}}, "not a valid JSON Schema"),
        ({"type": "a.b", "schema": {"required": "order_id"}}, "not a valid JSON Schema"),
        ({"type": "a.b", "schema_file": "does-not-exist.json"}, "schema_file 'does-not-exist.json'"),
        ({"type": "a.b", "schema_file": 5}, "schema_file 5"),
        ({"type": "retail.order.ready", "schema": SALE_V1}, "already defined"),
    ],
)
def test_bad_user_contract_entries_are_named(entry: Any, words: str) -> None:
    with pytest.raises(ContractError) as raised:
        REGISTRY.with_user_contracts([{"type": "ok.type", "schema": SALE_V1}, entry])
    message = str(raised.value)
    assert message.startswith("Contract entry 1 ") and words in message


def test_unreadable_schema_file_is_named(tmp_path: Path) -> None:
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ContractError) as raised:
        REGISTRY.with_user_contracts([{"type": "a.b", "schema_file": "broken.json"}], base_dir=tmp_path)
    assert str(raised.value) == (
        "Contract entry 0 has schema_file 'broken.json', which does not hold valid JSON or YAML."
    )


def test_duplicate_user_entries_are_refused() -> None:
    entry = {"type": "a.b", "schema": SALE_V1}
    with pytest.raises(ContractError, match=re.escape("entry 1 has type 'a.b' and version 1")):
        REGISTRY.with_user_contracts([entry, entry])


@pytest.mark.parametrize(
    "value",
    [
        "yesterday",
        "2025-03-20",
        "2025-03-20T08:00:00",
        "2025-13-01T08:00:00Z",
        "2025-02-30T08:00:00Z",
        "2025-03-20 08:00:00Z",
        "20250320T080000Z",
        "2025-03-20T08:00:00+0100",
        "",
    ],
)
def test_date_time_is_really_checked(value: str) -> None:
    data = {**VALID["retail.promotion.published"], "effective_at": value}
    violation = REGISTRY.validate("retail.promotion.published", None, data)
    assert violation is not None
    assert (violation.field, violation.value) == ("data.effective_at", value)
    assert "RFC 3339" in violation.reason


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2025-03-20T08:00:00Z", "2025-03-20T08:00:00+00:00"),
        ("2025-03-20t08:00:00z", "2025-03-20T08:00:00+00:00"),
        ("2025-03-20T08:00:00.5+01:00", "2025-03-20T08:00:00.500000+01:00"),
        ("2025-03-20T08:00:00.123456789-05:30", "2025-03-20T08:00:00.123456-05:30"),
        ("2016-12-31T23:59:60Z", "2017-01-01T00:00:00+00:00"),
    ],
)
def test_rfc3339_parsing(text: str, iso: str) -> None:
    parsed = parse_rfc3339(text)
    assert parsed is not None and parsed.isoformat() == iso
    data = {**VALID["retail.promotion.published"], "effective_at": text}
    assert REGISTRY.validate("retail.promotion.published", None, data) is None


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-3, 3)
    | st.floats(allow_nan=False, allow_infinity=False, min_value=-3, max_value=3)
    | st.sampled_from(
        ["", "x", "web", "fax", "sale", "pos", "EUR", "eur", "2025-03-20T08:00:00Z", "2025-03-20"]
    ),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["sku", "qty", "a"]), inner),
    max_leaves=6,
)


def _reference(schema: dict[str, Any]) -> Draft202012Validator:
    checker = FormatChecker()
    checker.checks("date-time")(lambda v: not isinstance(v, str) or parse_rfc3339(v) is not None)
    return Draft202012Validator(schema, format_checker=checker)


@settings(max_examples=300, deadline=None)
@given(
    event_type=st.sampled_from(sorted(VALID)),
    changes=st.dictionaries(st.text(min_size=1, max_size=12), JSON_VALUES, max_size=3),
    field_changes=st.data(),
)
def test_verdicts_agree_with_jsonschema(event_type: str, changes: dict[str, Any], field_changes: Any) -> None:
    schema = REGISTRY.schema(event_type, 1)
    catalogue_field = field_changes.draw(st.sampled_from(sorted(schema["properties"])))
    data = {**VALID[event_type], **changes, catalogue_field: field_changes.draw(JSON_VALUES)}
    assert (REGISTRY.validate(event_type, None, data) is None) == _reference(schema).is_valid(data)


def test_user_contract_refs_stay_local() -> None:
    defs = {
        "$defs": {"id": {"type": "string", "minLength": 1}},
        "properties": {"sku": {"$ref": "#/$defs/id"}},
    }
    remote = {"properties": {"sku": {"$ref": "https://schemas.example.invalid/sku.json"}}}
    registry = REGISTRY.with_user_contracts(
        [{"type": "com.acme.local", "schema": defs}, {"type": "com.acme.remote", "schema": remote}]
    )
    assert registry.validate("com.acme.local", None, {"sku": "A"}) is None
    local = registry.validate("com.acme.local", None, {"sku": ""})
    assert local is not None and local.field == "data.sku"
    violation = registry.validate("com.acme.remote", None, {"sku": "A"})
    assert violation is not None and violation.field == "data" and "unresolvable $ref" in violation.reason
