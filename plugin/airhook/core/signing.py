"""Sign and verify webhook deliveries: pure, standard library only.

One class per signing scheme, each with ``sign`` (for senders) and ``verify`` (for receivers):

============  =================================================================================
``standard``  Standard Webhooks / Svix: ``webhook-id``, ``webhook-timestamp`` and
              ``webhook-signature: v1,<base64> [v1,<base64> …]`` over ``id.timestamp.body``,
              keyed by the base64 after ``whsec_``.
``rkt``       RKT chatbots: ``X-RKT-Signature`` is the hex HMAC-SHA256 of the raw body, keyed by
              the secret string exactly as shown (``whsec_…`` included), as RKT's Node sample does.
``ccai``      CCAI Platform: ``X-Signature: primary=<b64> secondary=<b64>`` and
              ``X-Signature-Timestamp``; base64 HMAC-SHA256 of the timestamp value followed by the
              raw body, keyed by the secret string.
``token``     The secret itself in a header (Caleida: the secret "will be sent with the event
              call"), compared in constant time.
``hmac``      A configurable generic HMAC-SHA256: header, optional prefix (``sha256=``), hex or
              base64, optional timestamp header and a signed-content layout such as
              ``{timestamp}.{body}`` (GitHub, Slack and eeV.ai style senders).
============  =================================================================================

Every ``verify`` accepts several secrets (primary and secondary, so rotation never drops a
delivery), checks the timestamp against a tolerance before the signature (the clock is passed in
as ``now``), compares in constant time, and turns every malformed input into a
:class:`~airhook.core.errors.SignatureError`: a receiver must answer 401, never 500.

Why one module of ~500 lines: the five schemes share the timestamp check, the constant-time
comparison and the scheme registry; side by side, a reviewer sees that each verifies the same way.
"""

from __future__ import annotations

import base64
import binascii
import functools
import hashlib
import hmac
import re
import secrets as _random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from airhook.core.errors import ConfigurationError, SignatureError
from airhook.core.secrets import SECRET_PREFIX, Secret

__all__ = [
    "DEFAULT_TOLERANCE_SECONDS",
    "SCHEMES",
    "CcaiScheme",
    "HmacScheme",
    "RktScheme",
    "SecretLike",
    "SigningScheme",
    "StandardScheme",
    "TokenScheme",
    "Verified",
    "get_scheme",
]

SecretLike = Secret | str | bytes
Headers = Mapping[str, str]

#: How far a signed timestamp may be from the receiver's clock, either way (Standard Webhooks'
#: value; it bounds the window in which a captured delivery can be replayed).
DEFAULT_TOLERANCE_SECONDS = 300
#: Longer signature headers are refused unread: several signatures fit in a few hundred bytes.
MAX_HEADER_LENGTH = 4096
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_HEX_SHA256_RE = re.compile(r"[0-9a-fA-F]{64}")
_SHA256_BYTES = 32


@dataclass(frozen=True, slots=True)
class Verified:
    """What a successful verification proved.

    :param scheme: the scheme's name.
    :param secret_index: which of the given secrets matched (0 is the primary); a receiver can
        tell from it that a sender still signs with the old secret.
    :param message_id: the sender's delivery id where the scheme carries one (``webhook-id``).
    :param timestamp: the signed timestamp (Unix seconds) where the scheme carries one.
    :param signature: the signature header as received, for schemes with a timestamp (the
        receiver does not use it: a duplicate is a duplicate, re-signed or not).
    """

    scheme: str
    secret_index: int
    message_id: str | None = None
    timestamp: int | None = None
    signature: str | None = None


class SigningScheme(Protocol):
    """What the receiver and the operators need of a scheme."""

    @property
    def name(self) -> str:
        """The scheme's registry name (``standard``, ``rkt``, …)."""
        ...

    def sign(
        self,
        body: bytes,
        secrets: Sequence[SecretLike],
        *,
        now: float,
        message_id: str | None = None,
    ) -> dict[str, str]:
        """Return the headers that sign ``body``."""
        ...

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretLike], *, now: float
    ) -> Verified:
        """Return what was proven, or raise :class:`SignatureError`."""
        ...


# --- shared helpers -------------------------------------------------------------------------


def _text_key(secret: SecretLike) -> bytes:
    """Key bytes for schemes that key the HMAC with the secret string as written."""
    if isinstance(secret, Secret):
        secret = secret.reveal()
    if isinstance(secret, bytes):
        return secret
    return secret.encode("utf-8")


def _standard_key(secret: SecretLike) -> bytes:
    """Key bytes for Standard Webhooks: the base64 after ``whsec_`` (raw bytes pass through)."""
    if isinstance(secret, Secret):
        secret = secret.reveal()
    if isinstance(secret, bytes):
        return secret
    return _decode_standard_secret(secret)


@functools.lru_cache(maxsize=256)
def _decode_standard_secret(secret: str) -> bytes:
    # Cached: decoding on every delivery costs as much as a tenth of the whole verification.
    encoded = secret[len(SECRET_PREFIX) :] if secret.startswith(SECRET_PREFIX) else secret
    try:
        return base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        # A configuration error, not a delivery error: the message names no part of the secret.
        raise ConfigurationError(
            "a standard-webhooks secret must be base64 after 'whsec_'"
        ) from exc


def _require_secrets(secrets: Sequence[SecretLike]) -> None:
    if not secrets:
        raise SignatureError("no_secret", "no secret is configured for this source")


def _header(headers: Headers, name: str) -> str | None:
    """Return a header by lower-case name from any mapping, checked for length and ASCII."""
    value = headers.get(name)
    if value is None:
        for key, candidate in headers.items():
            if key.lower() == name:
                value = candidate
                break
        else:
            return None
    if not isinstance(value, str):
        raise SignatureError("malformed_header", f"{name} is not text")
    if len(value) > MAX_HEADER_LENGTH:
        raise SignatureError("malformed_header", f"{name} is longer than {MAX_HEADER_LENGTH}")
    if not value.isascii():
        raise SignatureError("malformed_header", f"{name} is not ASCII")
    return value


def _required_header(headers: Headers, name: str) -> str:
    value = _header(headers, name)
    if value is None or not value.strip():
        raise SignatureError("missing_header", f"{name} is missing")
    return value.strip()


def _listed_signatures(value: str, separator: str, labels: tuple[str, ...]) -> list[bytes]:
    """The SHA-256 digests in a space-separated list of ``<label><separator><base64>`` entries.

    Entries with another label, without the separator, or whose value is not the strict base64
    of 32 bytes are skipped: a sender may list signatures a receiver does not check.
    """
    found: list[bytes] = []
    for entry in value.split():
        label, sep, encoded = entry.partition(separator)
        if not sep or label not in labels:
            continue
        decoded = _b64decode(encoded)  # strict: a second separator is not base64 either
        if decoded is not None and len(decoded) == _SHA256_BYTES:
            found.append(decoded)
    return found


def _parse_timestamp(value: str, header: str) -> int:
    if not _TIMESTAMP_RE.fullmatch(value):
        raise SignatureError("malformed_header", f"{header} is not Unix seconds")
    return int(value)


def _check_timestamp(timestamp: int, now: float, tolerance: int) -> None:
    if timestamp < now - tolerance:
        raise SignatureError("timestamp_too_old", f"older than {tolerance} s")
    if timestamp > now + tolerance:
        raise SignatureError("timestamp_in_future", f"more than {tolerance} s ahead")


def _b64decode(value: str) -> bytes | None:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def _digest(key: bytes, message: bytes) -> bytes:
    # One call over a concatenated message: each extra update() costs more than copying 1 KB.
    return hmac.new(key, message, hashlib.sha256).digest()


def _match(candidates: Sequence[bytes], keys: Sequence[bytes], message: bytes) -> int | None:
    """Return the index of the first key whose HMAC of ``message`` is among ``candidates``."""
    for index, key in enumerate(keys):
        expected = _digest(key, message)
        for candidate in candidates:
            if hmac.compare_digest(expected, candidate):
                return index
    return None


def _new_message_id() -> str:
    return "msg_" + _random.token_urlsafe(18)


# --- schemes --------------------------------------------------------------------------------


@dataclass(frozen=True)
class StandardScheme:
    """Standard Webhooks (as Svix signs): see https://www.standardwebhooks.com/."""

    tolerance: int = DEFAULT_TOLERANCE_SECONDS
    name: str = "standard"

    def sign(
        self,
        body: bytes,
        secrets: Sequence[SecretLike],
        *,
        now: float,
        message_id: str | None = None,
    ) -> dict[str, str]:
        _require_secrets(secrets)
        message_id = message_id or _new_message_id()
        timestamp = str(int(now))
        message = f"{message_id}.{timestamp}.".encode() + body
        signatures = " ".join(
            "v1," + base64.b64encode(_digest(_standard_key(s), message)).decode("ascii")
            for s in secrets
        )
        return {
            "webhook-id": message_id,
            "webhook-timestamp": timestamp,
            "webhook-signature": signatures,
        }

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretLike], *, now: float
    ) -> Verified:
        _require_secrets(secrets)
        message_id = _required_header(headers, "webhook-id")
        raw_timestamp = _required_header(headers, "webhook-timestamp")
        signature_header = _required_header(headers, "webhook-signature")
        timestamp = _parse_timestamp(raw_timestamp, "webhook-timestamp")
        _check_timestamp(timestamp, now, self.tolerance)
        # Other versions (v1a: asymmetric) are not ours to check.
        candidates = _listed_signatures(signature_header, ",", ("v1",))
        if not candidates:
            raise SignatureError("malformed_header", "webhook-signature has no valid v1 entry")
        keys = [_standard_key(s) for s in secrets]
        index = _match(candidates, keys, f"{message_id}.{raw_timestamp}.".encode() + body)
        if index is None:
            raise SignatureError("no_matching_signature", "no v1 signature matches")
        return Verified(
            self.name, index, message_id=message_id, timestamp=timestamp, signature=signature_header
        )


@dataclass(frozen=True)
class RktScheme:
    """RKT chatbots: ``X-RKT-Signature`` = hex HMAC-SHA256 of the raw body; no timestamp."""

    header: str = "x-rkt-signature"
    name: str = "rkt"

    def sign(
        self,
        body: bytes,
        secrets: Sequence[SecretLike],
        *,
        now: float,
        message_id: str | None = None,
    ) -> dict[str, str]:
        _require_secrets(secrets)
        return {"X-RKT-Signature": _digest(_text_key(secrets[0]), body).hex()}

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretLike], *, now: float
    ) -> Verified:
        _require_secrets(secrets)
        value = _required_header(headers, self.header)
        if not _HEX_SHA256_RE.fullmatch(value):
            raise SignatureError("malformed_header", f"{self.header} is not 64 hex digits")
        index = _match([bytes.fromhex(value)], [_text_key(s) for s in secrets], body)
        if index is None:
            raise SignatureError("no_matching_signature", "signature does not match")
        return Verified(self.name, index)


@dataclass(frozen=True)
class CcaiScheme:
    """CCAI Platform: signatures for both secrets in one header, over timestamp + body.

    CCAI's documents do not say how the timestamp is written; airhook reads and writes Unix
    seconds.
    """

    tolerance: int = DEFAULT_TOLERANCE_SECONDS
    name: str = "ccai"

    def sign(
        self,
        body: bytes,
        secrets: Sequence[SecretLike],
        *,
        now: float,
        message_id: str | None = None,
    ) -> dict[str, str]:
        _require_secrets(secrets)
        if len(secrets) > 2:
            raise ConfigurationError("CCAI signs with a primary and at most one secondary secret")
        timestamp = str(int(now))
        message = timestamp.encode() + body
        parts = [
            f"{label}=" + base64.b64encode(_digest(_text_key(s), message)).decode()
            for label, s in zip(("primary", "secondary"), secrets, strict=False)
        ]
        return {"X-Signature-Timestamp": timestamp, "X-Signature": " ".join(parts)}

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretLike], *, now: float
    ) -> Verified:
        _require_secrets(secrets)
        raw_timestamp = _required_header(headers, "x-signature-timestamp")
        signature_header = _required_header(headers, "x-signature")
        timestamp = _parse_timestamp(raw_timestamp, "x-signature-timestamp")
        _check_timestamp(timestamp, now, self.tolerance)
        candidates = _listed_signatures(signature_header, "=", ("primary", "secondary"))
        if not candidates:
            raise SignatureError("malformed_header", "x-signature has no valid entry")
        keys = [_text_key(s) for s in secrets]
        index = _match(candidates, keys, raw_timestamp.encode() + body)
        if index is None:
            raise SignatureError("no_matching_signature", "no signature matches")
        return Verified(self.name, index, timestamp=timestamp, signature=signature_header)


@dataclass(frozen=True)
class TokenScheme:
    """The shared secret itself in a header; no timestamp, so pair it with HTTPS."""

    header: str = "x-webhook-secret"
    name: str = "token"

    def sign(
        self,
        body: bytes,
        secrets: Sequence[SecretLike],
        *,
        now: float,
        message_id: str | None = None,
    ) -> dict[str, str]:
        _require_secrets(secrets)
        return {self.header: _text_key(secrets[0]).decode("utf-8")}

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretLike], *, now: float
    ) -> Verified:
        _require_secrets(secrets)
        presented = hashlib.sha256(_required_header(headers, self.header.lower()).encode()).digest()
        # Both sides hashed first: equal lengths, so the comparison time says nothing of the
        # secret's length.
        keys = [hashlib.sha256(_text_key(s)).digest() for s in secrets]
        for index, key in enumerate(keys):
            if hmac.compare_digest(presented, key):
                return Verified(self.name, index)
        raise SignatureError("no_matching_signature", "token does not match")


@dataclass(frozen=True)
class HmacScheme:
    """A configurable HMAC-SHA256 for senders with their own layout.

    :param header: the signature header, for example ``X-Hub-Signature-256``.
    :param prefix: text before the digest in the header, for example ``sha256=``.
    :param encoding: ``hex`` or ``base64``.
    :param timestamp_header: the header carrying Unix seconds, if the sender signs one.
    :param content: the signed content; ``{body}`` stands for the raw body and ``{timestamp}``
        for the timestamp header's value, for example ``v0:{timestamp}:{body}`` (Slack).
    """

    header: str = "x-signature"
    prefix: str = ""
    encoding: Literal["hex", "base64"] = "hex"
    timestamp_header: str | None = None
    content: str = "{body}"
    tolerance: int = DEFAULT_TOLERANCE_SECONDS
    name: str = "hmac"

    def __post_init__(self) -> None:
        if self.encoding not in ("hex", "base64"):
            raise ConfigurationError("encoding is 'hex' or 'base64'")
        if self.content.count("{body}") != 1:
            raise ConfigurationError("content must contain {body} exactly once")
        uses_timestamp = "{timestamp}" in self.content
        if uses_timestamp != (self.timestamp_header is not None):
            raise ConfigurationError(
                "content uses {timestamp} exactly when timestamp_header is set"
            )

    def _message(self, body: bytes, timestamp: str | None) -> bytes:
        before, _, after = self.content.partition("{body}")
        if timestamp is not None:
            before = before.replace("{timestamp}", timestamp)
            after = after.replace("{timestamp}", timestamp)
        return before.encode() + body + after.encode()

    def _encode(self, digest: bytes) -> str:
        encoded = digest.hex() if self.encoding == "hex" else base64.b64encode(digest).decode()
        return self.prefix + encoded

    def sign(
        self,
        body: bytes,
        secrets: Sequence[SecretLike],
        *,
        now: float,
        message_id: str | None = None,
    ) -> dict[str, str]:
        _require_secrets(secrets)
        headers: dict[str, str] = {}
        timestamp = None
        if self.timestamp_header is not None:
            timestamp = str(int(now))
            headers[self.timestamp_header] = timestamp
        headers[self.header] = self._encode(
            _digest(_text_key(secrets[0]), self._message(body, timestamp))
        )
        return headers

    def verify(
        self, headers: Headers, body: bytes, secrets: Sequence[SecretLike], *, now: float
    ) -> Verified:
        _require_secrets(secrets)
        value = _required_header(headers, self.header.lower())
        timestamp: int | None = None
        raw_timestamp: str | None = None
        if self.timestamp_header is not None:
            raw_timestamp = _required_header(headers, self.timestamp_header.lower())
            timestamp = _parse_timestamp(raw_timestamp, self.timestamp_header)
            _check_timestamp(timestamp, now, self.tolerance)
        if not value.startswith(self.prefix):
            raise SignatureError("malformed_header", f"{self.header} lacks its prefix")
        encoded = value[len(self.prefix) :]
        if self.encoding == "hex":
            decoded = bytes.fromhex(encoded) if _HEX_SHA256_RE.fullmatch(encoded) else None
        else:
            decoded = _b64decode(encoded)
        if decoded is None or len(decoded) != _SHA256_BYTES:
            raise SignatureError("malformed_header", f"{self.header} is not a SHA-256 digest")
        keys = [_text_key(s) for s in secrets]
        index = _match([decoded], keys, self._message(body, raw_timestamp))
        if index is None:
            raise SignatureError("no_matching_signature", "signature does not match")
        signature = value if timestamp is not None else None
        return Verified(self.name, index, timestamp=timestamp, signature=signature)


SCHEMES: dict[str, type[StandardScheme | RktScheme | CcaiScheme | TokenScheme | HmacScheme]] = {
    "standard": StandardScheme,
    "rkt": RktScheme,
    "ccai": CcaiScheme,
    "token": TokenScheme,
    "hmac": HmacScheme,
}


def get_scheme(name: str, **options: object) -> SigningScheme:
    """Return the scheme called ``name``, configured with ``options`` (its dataclass fields)."""
    try:
        cls = SCHEMES[name]
    except KeyError:
        raise ConfigurationError(
            f"unknown signing scheme {name!r}; known: {sorted(SCHEMES)}"
        ) from None
    return cls(**options)  # type: ignore[arg-type]
