"""Versioned JSON Schema contracts for the ``data`` of CloudEvents types.

Built-in contracts ship as ``collector/contracts/<type>/v<N>.json``; users add
types and versions from config without code changes. An event's ``dataschema``
picks the version (absent: the latest); a type without any contract is accepted
as it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any, NamedTuple

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from jsonschema.exceptions import SchemaError, ValidationError, best_match
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry
from referencing.exceptions import Unresolvable

_VERSION_FILE = re.compile(r"v([1-9][0-9]*)\.json")
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:)(\d{2})(?:\.(\d{1,6})\d*)?([Zz]|[+-]\d{2}:\d{2})")
_MAX_VALUE_CHARS = 200
# Different dataschema spellings a producer fleet uses are few; the cap only bounds abuse.
_RESOLVE_CACHE_MAX = 4096


def parse_rfc3339(text: str) -> datetime | None:
    """The timezone-aware datetime ``text`` denotes, or None when it is not an RFC 3339 date-time.

    Digits beyond microseconds are truncated; a leap second (``:60``) is read as the next second.
    """
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    head, seconds, fraction, offset = match.groups()
    leap = seconds == "60"
    iso = f"{head}{'59' if leap else seconds}{'.' + fraction if fraction else ''}"
    iso += "+00:00" if offset in ("Z", "z") else offset
    try:
        parsed = datetime.fromisoformat(iso.replace("t", "T"))
    except ValueError:
        return None
    return parsed + timedelta(seconds=1) if leap else parsed


@dataclass(frozen=True)
class Violation:
    """Why an event's data breaks its contract.

    ``field`` is ``dataschema``, ``data`` or a data path such as ``data.lines[0].qty``;
    ``value`` the offending value as text (``<missing>`` when absent); ``reason`` one
    sentence naming both.
    """

    field: str
    value: str
    reason: str


@dataclass(frozen=True)
class ContractInfo:
    """One contract as listed for docs and tests; ``schema_id`` is its ``$id`` ('' when it has none)."""

    type: str
    version: int
    schema_id: str
    builtin: bool


class ContractOutcome(NamedTuple):
    """Result of checking one event: ``contract`` is ``<type>/v<N>`` of the contract applied, '' when none."""

    contract: str
    violation: Violation | None


class ContractError(ValueError):
    """A user contract entry in config is unusable (raised at start, never while ingesting)."""


@dataclass(frozen=True)
class _Contract:
    type: str
    version: int
    schema: dict[str, Any]
    validator: Validator
    builtin: bool
    # Plain-Python verdict for schemas using only simple keywords; None means always use jsonschema.
    conforms: Callable[[Any], bool] | None = None

    @property
    def schema_id(self) -> str:
        value = self.schema.get("$id", "")
        return value if isinstance(value, str) else ""


def contract_id(type: str, version: int) -> str:
    """The name stored in the ``contract`` column: ``<type>/v<version>``."""
    return f"{type}/v{version}"


def _is_date_time(value: object) -> bool:
    # Formats apply to strings only; a non-string is the "type" keyword's business.
    return not isinstance(value, str) or parse_rfc3339(value) is not None


def _format_checker() -> FormatChecker:
    checker = FormatChecker()
    # jsonschema checks date-time only when rfc3339-validator is installed: never rely on that.
    checker.checks("date-time")(_is_date_time)
    return checker


_FORMAT_CHECKER = _format_checker()


def _compile(type: str, version: int, schema: dict[str, Any], builtin: bool) -> _Contract:
    cls = validator_for(schema, default=Draft202012Validator)
    cls.check_schema(schema)
    # An empty registry: jsonschema would otherwise fetch remote $refs over the network mid-ingest.
    validator = cls(schema, registry=Registry(), format_checker=_FORMAT_CHECKER)
    conforms = _fast_check(schema) if cls is Draft202012Validator else None
    return _Contract(type, version, schema, validator, builtin, conforms)


# jsonschema spends ~200 µs on a small event, most of the ingest budget. Contracts made of the
# keywords below compile into plain predicates that agree with jsonschema's Draft 2020-12 verdict;
# jsonschema still explains every failure, so a predicate that is too strict only costs time.
_Check = Callable[[Any], bool]
_ANNOTATIONS = frozenset({"$schema", "$id", "$comment", "title", "description", "examples", "default"})
_TYPE_CHECKS: dict[str, _Check] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
}
_is_number = _TYPE_CHECKS["number"]


def _fast_check(schema: Any) -> _Check | None:
    """A predicate equal to ``Draft202012Validator(schema).is_valid``, or None for other keywords.

    Predicates are plain loops, not ``all``/``any`` over generators: a generator costs a frame per
    call, and a contract runs a few dozen predicates per event on the ingest path.
    """
    if not isinstance(schema, dict):
        return None
    checks = []
    for keyword, value in schema.items():
        if keyword not in _ANNOTATIONS:
            check = _keyword_check(keyword, value, schema)
            if check is None:
                return None
            checks.append(check)
    if len(checks) == 1:
        return checks[0]

    def conforms(instance: Any) -> bool:
        for check in checks:  # noqa: SIM110 (not all() over a generator: see above)
            if not check(instance):
                return False
        return True

    return conforms


def _type_check(names: list[str]) -> _Check:
    tests = [_TYPE_CHECKS[name] for name in names]
    if len(tests) == 1:
        return tests[0]

    def one_of_the_types(v: Any) -> bool:
        for test in tests:  # noqa: SIM110 (not any() over a generator: see _fast_check)
            if test(v):
                return True
        return False

    return one_of_the_types


def _properties_check(subs: list[tuple[str, _Check]]) -> _Check:
    def properties_conform(v: Any) -> bool:
        if isinstance(v, dict):
            for name, sub in subs:
                if name in v and not sub(v[name]):
                    return False
        return True

    return properties_conform


def _additional_check(known: frozenset[str], extra: _Check) -> _Check:
    def additional_conform(v: Any) -> bool:
        if isinstance(v, dict):
            for key, item in v.items():
                if key not in known and not extra(item):
                    return False
        return True

    return additional_conform


def _items_check(item: _Check) -> _Check:
    def items_conform(v: Any) -> bool:
        if isinstance(v, list):
            for x in v:
                if not item(x):
                    return False
        return True

    return items_conform


def _keyword_check(keyword: str, value: Any, schema: Mapping[str, Any]) -> _Check | None:
    if keyword == "type":
        names = value if isinstance(value, list) else [value]
        if not names or not all(name in _TYPE_CHECKS for name in names):
            return None
        return _type_check(names)
    if keyword == "required" and isinstance(value, list):
        required = frozenset(value)
        return lambda v: not isinstance(v, dict) or required <= v.keys()
    if keyword == "properties" and isinstance(value, dict):
        subs: list[tuple[str, _Check]] = []
        for name, sub_schema in value.items():
            sub = _fast_check(sub_schema)
            if sub is None:
                return None
            subs.append((name, sub))
        return _properties_check(subs)
    if keyword == "additionalProperties" and value is True:
        return lambda v: True
    if keyword == "additionalProperties" and "patternProperties" not in schema:
        extra = _fast_check(value)
        if extra is None:
            return None
        return _additional_check(frozenset(schema.get("properties", {})), extra)
    if keyword == "items":
        item = _fast_check(value)
        if item is None or "prefixItems" in schema:
            return None
        return _items_check(item)
    if keyword == "enum" and isinstance(value, list) and all(isinstance(e, str) for e in value):
        allowed = frozenset(value)
        return lambda v: isinstance(v, str) and v in allowed
    if keyword in ("minLength", "maxLength") and isinstance(value, int):
        if keyword == "minLength":
            return lambda v: not isinstance(v, str) or len(v) >= value
        return lambda v: not isinstance(v, str) or len(v) <= value
    if keyword in ("minimum", "maximum") and _is_number(value):
        if keyword == "minimum":
            return lambda v: not _is_number(v) or v >= value
        return lambda v: not _is_number(v) or v <= value
    if keyword == "pattern" and isinstance(value, str):
        regex = re.compile(value)
        return lambda v: not isinstance(v, str) or regex.search(v) is not None
    if keyword == "format" and value == "date-time":
        return _is_date_time
    return None


@cache
def _builtin_contracts() -> tuple[_Contract, ...]:
    loaded = []
    root = files("collector").joinpath("contracts")
    for type_dir in root.iterdir():
        if not type_dir.is_dir():
            continue
        for schema_file in type_dir.iterdir():
            match = _VERSION_FILE.fullmatch(schema_file.name)
            if match:
                schema = json.loads(schema_file.read_text(encoding="utf-8"))
                loaded.append(_compile(type_dir.name, int(match.group(1)), schema, builtin=True))
    return tuple(sorted(loaded, key=lambda c: (c.type, c.version)))


class ContractRegistry:
    """The contracts known to this node, by type and version; immutable once built."""

    def __init__(self, contracts: Iterable[_Contract] = ()) -> None:
        self._by_type: dict[str, dict[int, _Contract]] = {}
        for contract in contracts:
            self._by_type.setdefault(contract.type, {})[contract.version] = contract
        self._latest = {type: max(versions) for type, versions in self._by_type.items()}
        self._resolved: dict[tuple[str, str], int | None] = {}

    @classmethod
    def builtin(cls) -> ContractRegistry:
        """A registry of the contracts shipped with Milepost (files are read once per process)."""
        return cls(_builtin_contracts())

    def with_user_contracts(
        self, entries: Sequence[Mapping[str, Any]] | None, base_dir: Path | None = None
    ) -> ContractRegistry:
        """A new registry adding the contracts of config ``entries``.

        Each entry has ``type``, ``version`` (int >= 1, default 1) and either ``schema``
        (an inline JSON Schema) or ``schema_file`` (a JSON or YAML file; relative paths
        resolve against ``base_dir``, the config file's folder). A user entry may add
        versions to a built-in type but not replace one. Raises ContractError naming the
        entry index, key and value.
        """
        added = [_user_contract(index, entry, base_dir) for index, entry in enumerate(entries or ())]
        seen = {(c.type, c.version) for c in self._all()}
        for index, contract in enumerate(added):
            key = (contract.type, contract.version)
            if key in seen:
                raise ContractError(
                    f"Contract entry {index} has type '{contract.type}' and version {contract.version}, "
                    "which is already defined."
                )
            seen.add(key)
        return ContractRegistry([*self._all(), *added])

    def contracts(self) -> list[ContractInfo]:
        """Every contract, ordered by type then version."""
        return [ContractInfo(c.type, c.version, c.schema_id, c.builtin) for c in self._all()]

    def schema(self, type: str, version: int) -> dict[str, Any]:
        """The JSON Schema of one contract; KeyError when unknown."""
        return self._by_type[type][version].schema

    def has_contract(self, type: str) -> bool:
        """Whether events of ``type`` are checked against a contract (otherwise stored as they are)."""
        return type in self._by_type

    def apply(self, type: str, dataschema: str | None, data: Any) -> ContractOutcome:
        """Check ``data`` of an event of ``type`` against the contract ``dataschema`` names.

        No dataschema means the type's latest version. ``data`` None means the event
        carried no data. A type without contracts passes with contract ''.
        """
        versions = self._by_type.get(type)
        if versions is None:
            return ContractOutcome("", None)
        version = self._latest[type] if dataschema is None else self._resolve(type, dataschema)
        if version is None:
            known = ", ".join(f"v{v}" for v in sorted(versions))
            shown = show_value(dataschema)
            return ContractOutcome(
                "",
                Violation(
                    "dataschema",
                    shown,
                    f"dataschema has value '{shown}', which names no known version of {type} ({known}).",
                ),
            )
        name = contract_id(type, version)
        if data is None:
            return ContractOutcome(
                name, Violation("data", "<missing>", f"data is <missing>, but contract {name} requires it.")
            )
        contract = versions[version]
        if contract.conforms is not None and contract.conforms(data):
            return ContractOutcome(name, None)
        try:
            error = best_match(contract.validator.iter_errors(data))
        except Unresolvable as unresolvable:
            # The contract is broken, not the event: quarantine it to re-process once config is fixed.
            reason = (
                f"data is <unchecked>, because contract {name} has an unresolvable $ref ({unresolvable})."
            )
            return ContractOutcome(name, Violation("data", "<unchecked>", reason))
        return ContractOutcome(name, None if error is None else _violation(error))

    def validate(self, type: str, dataschema: str | None, data: Any) -> Violation | None:
        """The first contract violation of an event's data, or None when it conforms (see ``apply``)."""
        return self.apply(type, dataschema, data).violation

    def _all(self) -> list[_Contract]:
        return [self._by_type[t][v] for t in sorted(self._by_type) for v in sorted(self._by_type[t])]

    def _resolve(self, type: str, dataschema: str) -> int | None:
        key = (type, dataschema)
        if key in self._resolved:
            return self._resolved[key]
        version = self._match_version(type, dataschema)
        if len(self._resolved) >= _RESOLVE_CACHE_MAX:
            self._resolved.clear()
        self._resolved[key] = version
        return version

    def _match_version(self, type: str, dataschema: str) -> int | None:
        versions = self._by_type[type]
        for version, contract in versions.items():
            if contract.schema_id and contract.schema_id == dataschema:
                return version
        # ".../<type>/vN", ".../<type>/vN.json", "<type>/vN" or just "vN".
        match = re.fullmatch(rf"(?:(?:.*/)?{re.escape(type)}/)?v([1-9][0-9]*)(?:\.json)?", dataschema)
        if match is None:
            return None
        version = int(match.group(1))
        return version if version in versions else None


def _user_contract(index: int, entry: Any, base_dir: Path | None) -> _Contract:
    def fail(key: str, value: Any, problem: str) -> ContractError:
        return ContractError(f"Contract entry {index} has {key} {_quote(value)}, {problem}.")

    if not isinstance(entry, Mapping):
        raise ContractError(f"Contract entry {index} is {_quote(entry)}, which is not a mapping.")
    if "type" not in entry:
        raise ContractError(f"Contract entry {index} is missing key 'type'.")
    type = entry["type"]
    if not isinstance(type, str) or not type.strip():
        raise fail("type", type, "which is not a non-empty string")
    version = entry.get("version", 1)
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise fail("version", version, "which is not an integer of at least 1")
    if ("schema" in entry) == ("schema_file" in entry):
        raise ContractError(f"Contract entry {index} ('{type}') needs exactly one of schema and schema_file.")
    if "schema" in entry:
        schema = entry["schema"]
        key = "schema"
    else:
        key = "schema_file"
        schema = _read_schema_file(entry["schema_file"], base_dir, fail)
    if not isinstance(schema, dict):
        raise fail(key, schema if key == "schema" else entry[key], "which is not a JSON Schema object")
    try:
        return _compile(type, version, schema, builtin=False)
    except SchemaError as error:
        raise fail(key, entry[key], f"which is not a valid JSON Schema ({error.message})") from None


def _read_schema_file(value: Any, base_dir: Path | None, fail: Any) -> Any:
    if not isinstance(value, (str, Path)) or not str(value):
        raise fail("schema_file", value, "which is not a file path")
    path = Path(value)
    if base_dir is not None and not path.is_absolute():
        path = base_dir / path
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise fail("schema_file", value, f"which cannot be read ({error.__class__.__name__})") from None
    try:
        return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)
    except (ValueError, yaml.YAMLError):
        raise fail("schema_file", value, "which does not hold valid JSON or YAML") from None


def _quote(value: Any) -> str:
    return f"'{value}'" if isinstance(value, str) else show_value(value)


def show_value(value: Any) -> str:
    """A value as short text for rejections: strings as they are, other JSON values as compact JSON."""
    if isinstance(value, str):
        text = value
    else:
        try:
            text = json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)
        except (TypeError, ValueError, RecursionError):
            text = repr(value)
    return text if len(text) <= _MAX_VALUE_CHARS else text[: _MAX_VALUE_CHARS - 3] + "..."


def _data_path(parts: Iterable[str | int]) -> str:
    """A JSON path under ``data`` in the form ``data.lines[0].qty``."""
    path = "data"
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


_TYPE_NAMES = {
    "object": "an object",
    "array": "an array",
    "string": "a string",
    "integer": "an integer",
    "number": "a number",
    "boolean": "a boolean",
    "null": "null",
}


def _violation(error: ValidationError) -> Violation:
    field = _data_path(error.absolute_path)
    kind = error.validator
    expected: Any = error.validator_value
    instance: Any = error.instance
    if kind == "required":
        missing = next(name for name in expected if name not in instance)
        field = f"{field}.{missing}"
        return Violation(field, "<missing>", f"{field} is <missing>, which the contract requires.")
    value = show_value(instance)
    shown = f"'{value}'" if isinstance(instance, str) else value
    if kind == "enum":
        problem = "which is not one of " + ", ".join(show_value(option) for option in expected)
    elif kind == "type":
        names = expected if isinstance(expected, list) else [expected]
        problem = "which is not " + " or ".join(_TYPE_NAMES.get(name, str(name)) for name in names)
    elif kind == "minLength" and expected == 1:
        problem = "which is empty"
    elif kind == "minimum":
        problem = f"which is less than the minimum {expected}"
    elif kind == "maximum":
        problem = f"which is more than the maximum {expected}"
    elif kind == "format" and expected == "date-time":
        problem = "which is not an RFC 3339 date-time with a timezone"
    elif kind == "pattern":
        problem = f"which does not match the pattern {expected}"
    else:
        problem = f"which the contract refuses ({error.message.rstrip('.')})"
    return Violation(field, value, f"{field} has value {shown}, {problem}.")
