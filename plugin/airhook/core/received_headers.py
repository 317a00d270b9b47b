"""What of a delivery's headers is kept with its recorded event: enough to debug, no secret. Pure.

The management API and page show them with the event ("which platform build sent this, with
which delivery id?"). Credentials and signatures never are: a header is dropped when its name is
a credential's (``Authorization``, ``Cookie``), is the source's signing header, or contains a word
that secrets travel under (``signature``, ``secret``, ``token``, ``auth``, ``key``, ``password``,
``session``). Dropping a harmless header by mistake costs a line in a debug view; keeping a secret
would put it in a database many people read. Values are cut to :data:`MAX_VALUE_CHARS`, and at
most :data:`MAX_HEADERS` are kept, so a sender cannot fill the inbox through its headers.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

__all__ = ["MAX_HEADERS", "MAX_VALUE_CHARS", "kept_headers"]

MAX_HEADERS = 40
MAX_VALUE_CHARS = 256
_CREDENTIAL_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_WORDS = ("signature", "secret", "token", "auth", "key", "password", "session")


def kept_headers(
    headers: Iterable[tuple[str, str]], signing_headers: Collection[str] = ()
) -> dict[str, str]:
    """The headers worth keeping, names lower-cased, in the order they came.

    :param signing_headers: the source's signing scheme's header names (any case), dropped
        whatever they are called (a generic HMAC scheme's header may be ``X-Sig``).
    """
    dropped = _CREDENTIAL_NAMES | {name.lower() for name in signing_headers}
    kept: dict[str, str] = {}
    for name, value in headers:
        lowered = name.lower()
        if lowered in dropped or any(word in lowered for word in _SECRET_WORDS):
            continue
        if lowered not in kept and len(kept) >= MAX_HEADERS:
            break
        kept[lowered] = value[:MAX_VALUE_CHARS]
    return kept
