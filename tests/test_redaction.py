"""Blanking the request's secrets in what a receiver answers (airhook.core.redaction)."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest

from airhook.core.redaction import (
    EXCERPT_CHARS,
    REDACTED,
    WITHHELD,
    excerpt,
    redact,
    sensitive_forms,
)

SECRET = "whsec_ab+cd/ef=="
TOKEN = "tok-bearer-12345"
FORMS = sensitive_forms([SECRET, f"Bearer {TOKEN}", "abc"])


def test_forms_are_the_values_and_an_authorization_credential_longest_first() -> None:
    forms = sensitive_forms([SECRET, f"Bearer {TOKEN}", "abc"])
    assert forms == (f"Bearer {TOKEN}", TOKEN, SECRET)  # "abc" is too short to look for


def test_exact_occurrences_are_replaced_and_the_rest_kept() -> None:
    text = f'{{"error": "bad signature", "got": "{SECRET}", "auth": "Bearer {TOKEN}"}}'
    assert redact(text, FORMS, REDACTED) == (
        '{"error": "bad signature", "got": "[redacted]", "auth": "[redacted]"}'
    )


def test_a_credential_echoed_without_its_scheme_word_is_replaced() -> None:
    assert redact(f"token={TOKEN}", FORMS, REDACTED) == "token=[redacted]"


@pytest.mark.parametrize(
    "echoed",
    [
        SECRET.replace("/", "\\/"),  # PHP's json_encode
        SECRET.replace("+", "\\u002B"),  # .NET's System.Text.Json
        SECRET.replace("+", "\\u002b").replace("/", "\\/"),
        json.dumps(SECRET, ensure_ascii=True)[1:-1].replace("/", "\\/"),
        quote(SECRET, safe=""),  # URL-encoded, as in an echoed query string
    ],
)
def test_a_secret_echoed_in_another_form_withholds_the_whole_text(echoed: str) -> None:
    assert echoed != SECRET
    assert redact(f'{{"got": "{echoed}"}}', FORMS, REDACTED) == WITHHELD


def test_escapes_without_a_secret_leave_the_text_as_it_is() -> None:
    text = '{"path": "a\\/b", "plus": "\\u002B", "q": "x%20y"}'
    assert redact(text, FORMS, REDACTED) == text


def test_only_an_authentication_schemes_word_is_split_off() -> None:
    assert sensitive_forms(["Team acme-corp", "Token tok-team-42"]) == (
        "Token tok-team-42",
        "Team acme-corp",
        "tok-team-42",
    )


def test_an_excerpt_is_the_first_512_characters_with_secrets_replaced() -> None:
    raw = f"got {SECRET} ".encode() + b"x" * 2000
    assert EXCERPT_CHARS == 512  # the delivery log's response_excerpt column is String(512)
    assert excerpt(raw, FORMS) == (f"got {REDACTED} " + "x" * 512)[:512]


def test_an_excerpt_withholds_a_secret_echoed_in_another_form() -> None:
    assert excerpt(quote(SECRET, safe="").encode(), FORMS) == WITHHELD


def test_an_excerpt_blanks_nul_characters() -> None:
    assert excerpt(b"oops\x00binary", FORMS) == "oops\ufffdbinary"


def test_an_empty_body_has_an_empty_excerpt() -> None:
    assert excerpt(b"", FORMS) == ""
