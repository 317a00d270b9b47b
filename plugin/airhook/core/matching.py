"""Payload conditions for sensors: ``{"data.chat_id": "cht_8f2c1a"}``. Pure, no Airflow.

Keys are dotted paths into the payload (``data.topics.0.name`` indexes a list); every condition
must hold. Values compare equal, or, because templated values render as text, equal as text
(``{"data.chat_id": "48213"}`` matches the integer 48213; ``"true"`` or ``"True"`` matches
``true``, ``"null"`` or ``"None"`` matches ``null``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["MISSING", "payload_matches", "value_at"]

MISSING = object()


def value_at(payload: Any, path: str) -> Any:
    """Return the value at a dotted path, or :data:`MISSING`."""
    node = payload
    for part in path.split("."):
        if isinstance(node, Mapping):
            if part not in node:
                return MISSING
            node = node[part]
        elif isinstance(node, list) and part.isdigit() and int(part) < len(node):
            node = node[int(part)]
        else:
            return MISSING
    return node


def _as_texts(value: Any) -> tuple[str, ...]:
    """Return how a template may have written ``value``: as JSON spells it, or as Python does.

    ``{{ dag_run.conf['resolved'] }}`` renders a conf value ``True`` as ``"True"``, while a value
    copied from a payload reads ``"true"``; both mean the same condition.
    """
    if value is True:
        return ("true", "True")
    if value is False:
        return ("false", "False")
    if value is None:
        return ("null", "None")
    return (str(value),)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _equal(actual: Any, expected: Any) -> bool:
    if actual is MISSING:
        return False
    if type(actual) is type(expected) or (_is_number(actual) and _is_number(expected)):
        return bool(actual == expected)
    if isinstance(expected, str) and not isinstance(actual, Mapping | list):
        return expected in _as_texts(actual)
    return False


def payload_matches(payload: Any, conditions: Mapping[str, Any] | None) -> bool:
    """Return whether every condition holds for ``payload`` (no conditions: always)."""
    if not conditions:
        return True
    return all(_equal(value_at(payload, path), expected) for path, expected in conditions.items())
