"""Blank the request's secrets in what a receiver answers. Pure.

Some receivers echo the request when they fail (headers, body, or both), and airhook keeps a
response excerpt in the delivery log and the operator's XCom. The secrets can come back in
another form than they were sent: JSON-escaped (``\\/`` for ``/``, ``\\u002B`` for ``+``, as PHP
and .NET write them), URL-encoded, or without the ``Bearer``/``Basic`` word of their header.
Exact occurrences are replaced, keeping the rest of the excerpt readable; should a secret still
be there in another form, the whole text is withheld.

:func:`excerpt` is the one way a response body becomes an excerpt, for the operator's hook (its
result and XCom) and for the fan-out engine (the delivery log, whose ``response_excerpt`` column
is ``String(512)``): the same length, the same :data:`REDACTED` mark.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from urllib.parse import unquote

__all__ = ["EXCERPT_CHARS", "REDACTED", "WITHHELD", "excerpt", "redact", "sensitive_forms"]

#: Characters of a response body kept as its excerpt (the delivery log's column holds 512).
EXCERPT_CHARS = 512
#: What replaces a secret found in a response. Bracketed like :data:`WITHHELD`, so that a reader
#: cannot take it for the receiver's own text (``***`` often is).
REDACTED = "[redacted]"

#: What replaces a text that repeats a secret in a form not replaced exactly.
WITHHELD = "[withheld: the answer repeated a secret of the request]"

#: Shorter values are not looked for: they would blank ordinary words.
_MIN_LENGTH = 4
#: An ``Authorization``-style value: an authentication scheme's word, then the credential.
_AUTH_VALUE = re.compile(r"^(?:bearer|basic|token|bot|digest)\s+(\S.*)$", re.IGNORECASE)
_UNICODE_ESCAPE = re.compile(r"\\u([0-9a-fA-F]{4})")


def sensitive_forms(values: Iterable[str]) -> tuple[str, ...]:
    """The values to look for: each value, and the credential of an ``Authorization``-style
    value (``Bearer …``, ``Basic …``, ``Token …``) on its own; longest first, so that a value
    containing another is replaced whole."""
    forms: set[str] = set()
    for value in values:
        forms.add(value)
        credential = _AUTH_VALUE.match(value)
        if credential:
            forms.add(credential.group(1))
    return tuple(sorted((f for f in forms if len(f) >= _MIN_LENGTH), key=lambda f: (-len(f), f)))


def _unescaped(text: str) -> str:
    text = _UNICODE_ESCAPE.sub(lambda match: chr(int(match.group(1), 16)), text)
    return unquote(text.replace("\\/", "/"))


def redact(text: str, secrets: Sequence[str], mark: str) -> str:
    """``text`` with each of ``secrets`` (as :func:`sensitive_forms` gives them) replaced by
    ``mark``, or :data:`WITHHELD` if one is still there once JSON and URL escapes are undone."""
    found = [secret for secret in secrets if secret in text]
    for secret in found:
        text = text.replace(secret, mark)
    if "\\" in text or "%" in text:
        plain = _unescaped(text)
        if any(secret in plain for secret in secrets):
            return WITHHELD
    return text


def excerpt(raw: bytes, secrets: Sequence[str]) -> str:
    """The first :data:`EXCERPT_CHARS` characters of a response body, each of ``secrets`` (as
    :func:`sensitive_forms` gives them) replaced by :data:`REDACTED`.

    NUL characters become U+FFFD: PostgreSQL's text refuses them, and one in a response must not
    fail the write of the outcomes it is recorded with.
    """
    # Only what can reach the excerpt is searched (a secret echoed escaped takes up to six times
    # its length): a secret further on neither withholds the excerpt nor costs time.
    window = EXCERPT_CHARS + 6 * max((len(s) for s in secrets), default=0)
    text = raw[: window * 4].decode("utf-8", errors="replace")[:window].replace("\x00", "\ufffd")
    return redact(text, secrets, REDACTED)[:EXCERPT_CHARS]
