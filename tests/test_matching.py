"""airhook.core.matching: payload conditions as sensors write them, templated values included."""

from __future__ import annotations

from typing import Any

import pytest

from airhook.core.matching import MISSING, payload_matches, value_at

PAYLOAD: dict[str, Any] = {
    "event": "insight.summary",
    "data": {
        "chat_id": "cht_8f2c1a",
        "customer_id": 48213,
        "score": 0.75,
        "resolved": True,
        "escalated": False,
        "agent": None,
        "topics": [{"name": "billing"}, {"name": "refund"}],
        "meta": {"channel": "web"},
        "tags": ["a", "b"],
    },
}


def test_value_at_follows_a_dotted_path() -> None:
    assert value_at(PAYLOAD, "data.chat_id") == "cht_8f2c1a"
    assert value_at(PAYLOAD, "data.meta") == {"channel": "web"}
    assert value_at(PAYLOAD, "event") == "insight.summary"


def test_value_at_indexes_lists() -> None:
    assert value_at(PAYLOAD, "data.topics.1.name") == "refund"
    assert value_at(PAYLOAD, "data.tags.0") == "a"


@pytest.mark.parametrize(
    "path",
    [
        "nope",
        "data.nope",
        "data.chat_id.deeper",
        "data.topics.2.name",
        "data.topics.-1.name",
        "data.topics.first",
        "data.customer_id.0",
    ],
)
def test_value_at_of_a_missing_path_is_missing(path: str) -> None:
    assert value_at(PAYLOAD, path) is MISSING


def test_value_at_tells_null_from_missing() -> None:
    assert value_at(PAYLOAD, "data.agent") is None
    assert value_at(PAYLOAD, "data.nobody") is MISSING


def test_no_conditions_always_match() -> None:
    assert payload_matches(PAYLOAD, None)
    assert payload_matches(PAYLOAD, {})


def test_every_condition_must_hold() -> None:
    assert payload_matches(PAYLOAD, {"event": "insight.summary", "data.chat_id": "cht_8f2c1a"})
    assert not payload_matches(PAYLOAD, {"event": "insight.summary", "data.chat_id": "other"})


def test_missing_path_never_matches() -> None:
    assert not payload_matches(PAYLOAD, {"data.nobody": "null"})
    assert not payload_matches(PAYLOAD, {"data.nobody": None})


def test_integer_matches_its_text() -> None:
    assert payload_matches(PAYLOAD, {"data.customer_id": "48213"})
    assert not payload_matches(PAYLOAD, {"data.customer_id": "48214"})


def test_integer_matches_an_equal_number() -> None:
    assert payload_matches(PAYLOAD, {"data.customer_id": 48213})
    assert payload_matches(PAYLOAD, {"data.customer_id": 48213.0})
    assert not payload_matches(PAYLOAD, {"data.customer_id": 48214})


def test_float_matches_its_text() -> None:
    assert payload_matches(PAYLOAD, {"data.score": "0.75"})


def test_string_does_not_equal_a_number_written_differently() -> None:
    assert not payload_matches(PAYLOAD, {"data.customer_id": "048213"})


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("data.resolved", "true"),
        ("data.escalated", "false"),
        ("data.agent", "null"),
    ],
)
def test_booleans_and_null_match_their_json_text(path: str, text: str) -> None:
    assert payload_matches(PAYLOAD, {path: text})


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("data.resolved", "True"),
        ("data.escalated", "False"),
        ("data.agent", "None"),
    ],
)
def test_booleans_and_null_match_python_text_as_templates_render_it(path: str, text: str) -> None:
    assert payload_matches(PAYLOAD, {path: text})


def test_booleans_and_null_match_themselves() -> None:
    assert payload_matches(PAYLOAD, {"data.resolved": True, "data.agent": None})
    assert not payload_matches(PAYLOAD, {"data.resolved": False})


@pytest.mark.parametrize(
    ("path", "text"),
    [
        ("data.resolved", "1"),
        ("data.resolved", "false"),
        ("data.escalated", "0"),
        ("data.agent", ""),
    ],
)
def test_booleans_and_null_do_not_match_other_text(path: str, text: str) -> None:
    assert not payload_matches(PAYLOAD, {path: text})


def test_boolean_is_not_a_number() -> None:
    assert not payload_matches(PAYLOAD, {"data.resolved": 1})
    assert not payload_matches({"n": 1}, {"n": True})


def test_nested_dict_does_not_equal_a_string() -> None:
    assert not payload_matches(PAYLOAD, {"data.meta": "{'channel': 'web'}"})
    assert not payload_matches(PAYLOAD, {"data.meta": '{"channel": "web"}'})
    assert not payload_matches(PAYLOAD, {"data.tags": "['a', 'b']"})


def test_nested_values_equal_equal_values() -> None:
    assert payload_matches(PAYLOAD, {"data.meta": {"channel": "web"}})
    assert payload_matches(PAYLOAD, {"data.tags": ["a", "b"]})
    assert not payload_matches(PAYLOAD, {"data.tags": ["b", "a"]})


def test_a_top_level_list_payload_is_indexed() -> None:
    assert payload_matches([{"id": 7}], {"0.id": "7"})
