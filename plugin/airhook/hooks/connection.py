"""What an ``airhook_webhook`` connection says: its URL, signing, auth, TLS and headers.

Read once per hook (:func:`read_connection`), with every value that is or may be a secret listed
beside the settings, so that the hook can hand them to Airflow's log masker and blank them in
anything a receiver echoes back. Parsing only: no calls, no Airflow imports.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airhook.core.redaction import sensitive_forms
from airhook.core.secrets import Secret
from airhook.core.signing import get_scheme

if TYPE_CHECKING:
    from airhook.core.signing import SigningScheme

__all__ = ["EXTRA_KEYS", "ConnectionSettings", "Sensitive", "read_connection"]

#: (where it came from, the value, whether it is surely a secret)
Sensitive = tuple[str, str, bool]

#: Request headers of a connection's extra whose values are not secret (the rest are scrubbed
#: from answers, as API keys usually travel in them).
_PUBLIC_HEADERS = frozenset(
    {"accept", "accept-encoding", "accept-language", "cache-control", "content-type", "user-agent"}
)
#: A connection URL path at least this long is treated as a credential in answers (Slack's
#: "/services/T…/B…/…" and Zapier's "/hooks/catch/…/…/" are), a shorter one as an API path.
_CREDENTIAL_PATH_CHARS = 20
_EXTRA_PREFIX = "extra__airhook_webhook__"
EXTRA_KEYS = frozenset(
    {
        "signing",
        "signing_options",
        "secondary_secret",
        "auth",
        "token",
        "headers",
        "timeout",
        "verify_tls",
        "ca_bundle",
        "path",
    }
)


@dataclass(frozen=True)
class ConnectionSettings:
    """A connection, parsed once: secrets wrapped, defaults applied."""

    base_url: str | None = None
    scheme: SigningScheme | None = None
    secrets: tuple[Secret, ...] = ()
    authorization: Secret | None = None
    headers: dict[str, str] = field(default_factory=dict)
    timeout: float | None = None
    verify: bool | str = True
    redact: tuple[str, ...] = ()


def _extra_of(text: str | None, where: str) -> dict[str, Any]:
    """Parse a connection's extra.

    Not ``conn.extra_dejson``: that hands the whole dict to Airflow's log masker, which warns
    "Skipping masking for a secret as it's too short" for any short value (a scheme name such as
    ``rkt``, ``auth`` ``none``) before it looks at the key; the hook masks the extra's secrets
    itself, field by field. And an extra that is not JSON is refused here, where
    ``extra_dejson`` would log it and carry on with none (unsigned calls).
    """
    if not text:
        return {}
    try:
        extra = json.loads(text)
    except ValueError:
        raise ValueError(f"{where}: extra is not JSON") from None
    if not isinstance(extra, dict):
        raise ValueError(f"{where}: extra is a JSON object")
    return extra


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes", "on"):
        return True
    if text in ("false", "0", "no", "off"):
        return False
    raise ValueError(f"extra {name!r} is true or false")


def read_connection(conn: Any, where: str) -> tuple[ConnectionSettings, list[Sensitive]]:
    """Parse an ``airhook_webhook`` connection: its settings, and every value in it that is or
    may be a secret (for the log masker and the scrubbing of answers).

    :param conn: an Airflow ``Connection`` (host, schema, port, login, password, extra).
    :param where: how errors name it: ``connection 'crm'``.
    :raises ValueError: an unknown extra, a setting that does not fit the others.
    """
    extra: dict[str, Any] = {}
    for key, value in _extra_of(conn.extra, where).items():
        name = key.removeprefix(_EXTRA_PREFIX)
        if name not in EXTRA_KEYS:
            raise ValueError(f"{where}: unknown extra {name!r}; known: {sorted(EXTRA_KEYS)}")
        if value is not None and value != "":
            extra[name] = value

    base_url: str | None = None
    host = (conn.host or "").strip()
    if "://" in host:
        base_url = host
    elif host:
        scheme = (conn.schema or "https").strip().lower()
        if scheme not in ("http", "https"):
            raise ValueError(
                f"{where}: schema is the URL scheme (http or https); put a path in extra "
                "'path' or the full URL in host"
            )
        port = f":{conn.port}" if conn.port else ""
        path = str(extra.get("path", ""))
        base_url = f"{scheme}://{host}{port}" + ("/" + path.lstrip("/") if path else "")

    password = Secret(conn.password) if conn.password else None
    login = conn.login or None
    signing_name = str(extra.get("signing", "none")).strip().lower()
    scheme_obj: SigningScheme | None = None
    secrets: tuple[Secret, ...] = ()
    if signing_name not in ("", "none"):
        options = extra.get("signing_options", {})
        if not isinstance(options, Mapping):
            raise ValueError(f"{where}: extra 'signing_options' is an object")
        scheme_obj = get_scheme(signing_name, **dict(options))
        if password is None:
            raise ValueError(f"{where}: signing {signing_name!r} needs the secret in password")
        secondary = extra.get("secondary_secret")
        secrets = (password,) + ((Secret(str(secondary)),) if secondary else ())

    token = Secret(str(extra["token"])) if "token" in extra else None
    auth = str(extra.get("auth", "")).strip().lower()
    if not auth:
        if token is not None:
            auth = "bearer"
        elif login and scheme_obj is None:
            auth = "basic"
        elif password is not None and scheme_obj is None:
            auth = "bearer"
        else:
            auth = "none"
    authorization: Secret | None = None
    basic: str | None = None
    if auth == "bearer":
        bearer = token or (password if scheme_obj is None else None)
        if bearer is None:
            raise ValueError(f"{where}: bearer auth needs extra 'token' (or the password)")
        authorization = Secret("Bearer " + bearer.reveal())
    elif auth == "basic":
        if scheme_obj is not None or not login or password is None:
            raise ValueError(
                f"{where}: basic auth needs login and password, and then the password is "
                "not free for a signing secret"
            )
        basic = base64.b64encode(f"{login}:{password.reveal()}".encode()).decode("ascii")
        authorization = Secret("Basic " + basic)
    elif auth != "none":
        raise ValueError(f"{where}: extra 'auth' is none, bearer or basic")

    headers = extra.get("headers", {})
    if not isinstance(headers, Mapping):
        raise ValueError(f"{where}: extra 'headers' is an object")
    verify: bool | str = _flag(extra.get("verify_tls", True), "verify_tls")
    if verify and "ca_bundle" in extra:
        verify = str(extra["ca_bundle"])
    timeout = float(extra["timeout"]) if "timeout" in extra else None

    # (where it came from, the value, whether it is surely a secret)
    sensitive: list[Sensitive] = []
    if password is not None:
        sensitive.append(("the password", password.reveal(), True))
    if "secondary_secret" in extra:  # a secret even when no scheme signs with it
        sensitive.append(("extra 'secondary_secret'", str(extra["secondary_secret"]), True))
    if token is not None:
        sensitive.append(("extra 'token'", token.reveal(), True))
    if basic is not None:
        sensitive.append(("the basic credentials", basic, True))
    # Extra headers are where API keys go; only well-known ones are not secret.
    sensitive += [
        (f"extra header {k!r}", str(v), False)
        for k, v in headers.items()
        if str(k).lower() not in _PUBLIC_HEADERS
    ]
    path = urlsplit(base_url).path if base_url else ""
    if base_url and len(path) >= _CREDENTIAL_PATH_CHARS:
        # For Slack's or Zapier's incoming webhooks the URL's path is the credential, and
        # such paths are long; a bare origin or a short API path would only blank ordinary
        # text in answers (links, "self" URLs).
        sensitive += [("the URL", base_url, True), ("the URL's path", path, True)]
    redact = [value for _, value, _ in sensitive]
    settings = ConnectionSettings(
        base_url=base_url,
        scheme=scheme_obj,
        secrets=secrets,
        authorization=authorization,
        headers={str(k): str(v) for k, v in headers.items()},
        timeout=timeout,
        verify=verify,
        redact=sensitive_forms(redact),
    )
    return settings, sensitive
