"""airhook.core.payload: strict JSON objects within size and nesting limits."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from airhook.core.errors import PayloadParseError
from airhook.core.payload import DEFAULT_MAX_DEPTH, parse_body


def _reason(body: bytes, **limits: int) -> str:
    with pytest.raises(PayloadParseError) as info:
        parse_body(body, **limits)
    assert info.value.status_code == 400
    return info.value.reason


def test_object_is_parsed() -> None:
    assert parse_body(b'{"event":"chat","data":{"n":[1,2.5,"x",null,true]}}') == {
        "event": "chat",
        "data": {"n": [1, 2.5, "x", None, True]},
    }


@pytest.mark.parametrize(
    "body",
    [b"", b"{", b"not json", b'{"a":NaN}', b'{"a":Infinity}', b'{"a":"\\ud800"}', b"\xff\xfe"],
)
def test_invalid_json_is_refused(body: bytes) -> None:
    assert _reason(body) == "not_json"


@pytest.mark.parametrize("body", [b"[]", b'"x"', b"1", b"null", b"true"])
def test_non_objects_are_refused(body: bytes) -> None:
    assert _reason(body) == "not_an_object"


def test_size_limit_is_checked_before_parsing() -> None:
    assert _reason(b'{"a":"' + b"x" * 100 + b'"}', max_bytes=50) == "too_large"
    assert _reason(b"{" * 100, max_bytes=50) == "too_large"  # not even parsed


def test_nesting_at_the_limit_passes_and_beyond_fails() -> None:
    def nested(depth: int) -> bytes:
        return ("{" + '"a":{' * (depth - 1) + "}" * depth).encode()

    assert parse_body(nested(DEFAULT_MAX_DEPTH))
    assert _reason(nested(DEFAULT_MAX_DEPTH + 1)) == "too_deep"
    deep_list = b'{"a":' + b"[" * 40 + b"]" * 40 + b"}"
    assert _reason(deep_list) == "too_deep"


@pytest.mark.parametrize(
    "body",
    [
        # orjson refuses nesting beyond 1,024 levels with a decode error: still too deep.
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"a":' + b'{"a":' * 100_000 + b"1" + b"}" * 100_001,
        b"[" * 100_000 + b"]" * 100_000,
        b"{" * 100_000,  # deep and unfinished: too deep first
    ],
)
def test_nesting_beyond_the_parsers_own_limit_is_too_deep(body: bytes) -> None:
    assert _reason(body) == "too_deep"


@pytest.mark.parametrize(
    "body",
    [
        b'{"a":"' + b"[" * 100_000 + b'"',  # brackets in a string do not nest
        b'{"a":"\\"' + b"[" * 100 + b"x",  # nor after an escaped quote in an open string
        b'{"a":x,' + b"[]" * 100_000 + b"}",  # many brackets, shallow
    ],
)
def test_unparsable_bodies_with_brackets_but_no_depth_are_not_json(body: bytes) -> None:
    assert _reason(body) == "not_json"


def test_many_brackets_without_depth_pass() -> None:
    # Brackets inside strings and wide structures count toward the cheap pre-check, not depth.
    wide = json.dumps({"items": [{"i": i} for i in range(200)], "text": "[[[{{{" * 50}).encode()
    assert len(parse_body(wide)["items"]) == 200


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=256))
def test_arbitrary_bytes_parse_or_raise_parse_error(body: bytes) -> None:
    try:
        result: object = parse_body(body)
    except PayloadParseError as error:
        result = error.reason
    assert isinstance(result, dict) or result in {"not_json", "not_an_object", "too_deep"}
