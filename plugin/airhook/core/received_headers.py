"""What of a delivery's headers is kept with its recorded event: enough to debug, no secret. Pure.

The management API and page show them with the event ("which platform build sent this, with
which delivery id?"). Credentials and signatures never are: a header is dropped when its name is
a credential's (``Authorization``, ``Cookie``), is the source's signing header, or contains a word
that secrets travel under (``sig``, ``hmac``, ``secret``, ``token``, ``auth``, ``key``, ``pass``,
``credential``, ``session``), or one that names the signed identity token a proxy in front of
the API server adds (``jwt``, ``assertion``, ``oidc``, ``dpop``: Cloudflare Access's
``Cf-Access-Jwt-Assertion``, Google IAP's, an AWS load balancer's ``X-Amzn-Oidc-Data``), which
is a credential for every app behind that proxy. Dropping a harmless header by mistake costs a
line in a debug view; keeping a secret would put it in a database many people read. Values are
cut to :data:`MAX_VALUE_CHARS`, and at most :data:`MAX_HEADERS` are kept, so a sender cannot
fill the inbox through its headers.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable

__all__ = ["MAX_HEADERS", "MAX_VALUE_CHARS", "kept_headers"]

MAX_HEADERS = 40
MAX_VALUE_CHARS = 256
_CREDENTIAL_NAMES = frozenset({"authorization", "proxy-authorization", "cookie", "set-cookie"})
_SECRET_WORDS = (
    "sig",
    "hmac",
    "secret",
    "token",
    "auth",
    "key",
    "pass",
    "credential",
    "session",
    "jwt",
    "assertion",
    "oidc",
    "dpop",
)
_SECRET_NAME = re.compile("|".join(_SECRET_WORDS))


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
        if lowered in dropped or _SECRET_NAME.search(lowered):
            continue
        if lowered not in kept and len(kept) >= MAX_HEADERS:
            break
        kept[lowered] = value[:MAX_VALUE_CHARS]
    return kept
