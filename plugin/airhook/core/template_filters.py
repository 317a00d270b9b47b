"""airhook's own Jinja filters for outbound bodies: JSON, dates, and payload shapes. Pure.

- ``tojson``: valid JSON (orjson; non-ASCII kept as UTF-8) for any string, quotes and newlines
  included; an undefined value fails instead of being written as ``null``.
- ``iso8601``: a date-time as RFC 3339 in UTC, a valid RFC 3339 string kept as it is.
- ``dig``: the first of several dotted paths present in a payload (platforms put the same field
  in different places).
- ``required``, ``compact``, ``merge``, ``flatten``: fail naming a missing value, drop ``None``
  values, merge mappings without ``dict.update`` (the sandbox forbids it), flatten nesting.

:data:`FILTERS` maps each name to its function; :class:`airhook.core.rendering.TemplateRenderer`
installs them. Jinja's built-in filters that can allocate without bound are guarded in
:mod:`airhook.core.template_sandbox` instead: a bound, not a feature. Errors raised here name
types, paths and limits, never a value (the renderer reports them by their text).
"""

from __future__ import annotations

import datetime as dt
import decimal
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import jinja2
import orjson
from jinja2 import Undefined, UndefinedError, pass_environment
from jinja2.exceptions import FilterArgumentError, TemplateRuntimeError

from airhook.core.template_variables import rfc3339

__all__ = [
    "FILTERS",
    "compact",
    "dig",
    "flatten",
    "iso8601",
    "merge",
    "required",
    "tojson",
]

_RFC3339 = re.compile(
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def _fail_if_undefined(value: Any) -> None:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()


def _json_default(value: Any) -> Any:
    """Serialise what orjson does not know; an undefined value raises its UndefinedError."""
    _fail_if_undefined(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)) or (
        isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    ):
        return list(value)
    raise TypeError(f"tojson cannot write a value of type {type(value).__name__}")


def tojson(value: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    """Write ``value`` as JSON: UTF-8 kept, NaN and infinities as ``null`` (orjson's rule)."""
    _fail_if_undefined(value)
    options = _JSON_OPTIONS
    if indent is not None:
        if indent != 2:
            raise FilterArgumentError("tojson supports indent=2 only")
        options |= orjson.OPT_INDENT_2
    if sort_keys:
        options |= orjson.OPT_SORT_KEYS
    try:
        return orjson.dumps(value, default=_json_default, option=options).decode("utf-8")
    except orjson.JSONEncodeError as exc:
        cause = exc.__cause__
        if isinstance(cause, UndefinedError):
            raise cause from None
        # orjson's messages name types and limits, not values.
        raise TemplateRuntimeError(f"tojson: {exc}") from None


def iso8601(value: Any) -> str | None:
    """Format a date-time as RFC 3339 in UTC (``2026-03-26T15:30:00Z``).

    Accepts a ``datetime`` (naive means UTC), a ``date``, epoch seconds, or a string: a valid
    RFC 3339 string is returned unchanged (a delivery's own timestamp is not reformatted), other
    ISO 8601 strings are normalised. ``None`` stays ``None`` so optional fields can pass through.
    """
    _fail_if_undefined(value)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return rfc3339(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return rfc3339(dt.datetime.fromtimestamp(value, tz=dt.timezone.utc))
    if isinstance(value, str):
        if _RFC3339.fullmatch(value):
            return value
        try:
            return rfc3339(dt.datetime.fromisoformat(value))
        except ValueError:
            raise FilterArgumentError("iso8601: the string is not an ISO 8601 date-time") from None
    raise FilterArgumentError(f"iso8601: cannot format a {type(value).__name__}")


_MISSING = object()


def _lookup(value: Any, path: str) -> Any:
    current = value
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif (
            isinstance(current, Sequence)
            and not isinstance(current, (str, bytes))
            and part.lstrip("-").isdigit()
        ):
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else _MISSING
        else:
            return _MISSING
        if current is _MISSING or current is None:
            return _MISSING
    return current


@pass_environment
def dig(environment: jinja2.Environment, value: Any, *paths: str) -> Any:
    """Return the first of several dotted paths present (and not null) in ``value``.

    Payload shapes differ across platforms (``email``, ``customer.email``, ``visitor.email``);
    attribute access would fail on the first missing level. Nothing found yields an undefined
    value: ``| default(...)`` makes it optional, printing it fails naming the paths.
    """
    _fail_if_undefined(value)
    if not paths:
        raise FilterArgumentError("dig needs at least one path")
    for path in paths:
        found = _lookup(value, path)
        if found is not _MISSING:
            return found
    return environment.undefined(hint=f"none of {', '.join(paths)} is present")


def required(value: Any, what: str = "a required value") -> Any:
    """Fail, naming ``what``, when ``value`` is undefined or ``None``."""
    if isinstance(value, Undefined) or value is None:
        raise UndefinedError(f"{what} is required but missing")
    return value


def compact(value: Any) -> dict[Any, Any]:
    """Return a mapping without its ``None`` values (optional fields left out, not ``null``)."""
    _fail_if_undefined(value)
    if not isinstance(value, Mapping):
        raise FilterArgumentError(f"compact needs a mapping, not a {type(value).__name__}")
    return {key: item for key, item in value.items() if item is not None}


def merge(value: Any, *others: Any) -> dict[Any, Any]:
    """Return a new mapping: ``value`` updated by each of ``others`` (the sandbox forbids
    ``dict.update``; this builds a copy instead)."""
    merged: dict[Any, Any] = {}
    for mapping in (value, *others):
        _fail_if_undefined(mapping)
        if not isinstance(mapping, Mapping):
            raise FilterArgumentError(f"merge needs mappings, not a {type(mapping).__name__}")
        merged.update(mapping)
    return merged


def flatten(value: Any, sep: str = "_") -> dict[str, Any]:
    """Flatten nested mappings into one level: ``{"a": {"b": 1}}`` -> ``{"a_b": 1}``.

    Lists are kept as they are (Zapier turns a list into line items).
    """
    _fail_if_undefined(value)
    if not isinstance(value, Mapping):
        raise FilterArgumentError(f"flatten needs a mapping, not a {type(value).__name__}")
    flat: dict[str, Any] = {}

    def visit(mapping: Mapping[Any, Any], prefix: str) -> None:
        for key, item in mapping.items():
            name = f"{prefix}{key}"
            if isinstance(item, Mapping) and item:
                visit(item, f"{name}{sep}")
            else:
                flat[name] = item

    visit(value, "")
    return flat


#: airhook's filters by the name templates use.
FILTERS: Mapping[str, Callable[..., Any]] = {
    "tojson": tojson,
    "iso8601": iso8601,
    "dig": dig,
    "required": required,
    "compact": compact,
    "merge": merge,
    "flatten": flatten,
}
