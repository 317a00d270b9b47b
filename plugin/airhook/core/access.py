"""The other ways a sender proves itself: bearer tokens, basic auth and an IP allow-list.

eeV.ai offers "Bearer token or basic auth" and an "IP Whitelist" beside its optional secret; CCAI's
external session events use basic auth. Pure, standard library only, constant-time comparisons.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from airhook.core.errors import (
    AddressNotAllowedError,
    AuthenticationError,
    ConfigurationError,
)
from airhook.core.secrets import Secret

__all__ = ["BasicCredentials", "IpAllowList", "check_basic", "check_bearer"]

_MAX_AUTHORIZATION_LENGTH = 4096


@dataclass(frozen=True)
class BasicCredentials:
    """A user name and password a sender presents with HTTP basic auth."""

    username: str
    password: Secret


def _digest(value: str | bytes) -> bytes:
    # Hash before comparing, so that comparison time does not depend on the expected length.
    return hashlib.sha256(value.encode("utf-8") if isinstance(value, str) else value).digest()


def _authorization(headers: Mapping[str, str]) -> tuple[str, str]:
    value = headers.get("authorization")
    if value is None:
        value = next((v for k, v in headers.items() if k.lower() == "authorization"), None)
    if not value:
        raise AuthenticationError("missing_credentials", "no Authorization header")
    if len(value) > _MAX_AUTHORIZATION_LENGTH or not value.isascii():
        raise AuthenticationError("malformed_credentials", "Authorization header is malformed")
    scheme, _, credentials = value.strip().partition(" ")
    return scheme.lower(), credentials.strip()


def check_bearer(headers: Mapping[str, str], tokens: Sequence[Secret]) -> int:
    """Return the index of the matching token, or raise :class:`AuthenticationError`.

    Several tokens are accepted so that a token can be rotated like a signing secret.
    """
    if not tokens:
        raise AuthenticationError("no_credentials_configured", "no bearer token is configured")
    scheme, presented = _authorization(headers)
    if scheme != "bearer" or not presented:
        raise AuthenticationError("malformed_credentials", "expected a Bearer token")
    presented_digest = _digest(presented)
    for index, token in enumerate(tokens):
        if hmac.compare_digest(presented_digest, _digest(token.reveal())):
            return index
    raise AuthenticationError("wrong_credentials", "bearer token does not match")


def check_basic(headers: Mapping[str, str], accepted: Sequence[BasicCredentials]) -> int:
    """Return the index of the matching credentials, or raise :class:`AuthenticationError`."""
    if not accepted:
        raise AuthenticationError("no_credentials_configured", "no basic credentials configured")
    scheme, encoded = _authorization(headers)
    if scheme != "basic":
        raise AuthenticationError("malformed_credentials", "expected Basic credentials")
    try:
        decoded = base64.b64decode(encoded, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise AuthenticationError(
            "malformed_credentials", "Basic credentials are not base64"
        ) from exc
    username, sep, password = decoded.partition(b":")
    if not sep:
        raise AuthenticationError("malformed_credentials", "Basic credentials lack a ':'")
    user_digest, password_digest = _digest(username), _digest(password)
    for index, creds in enumerate(accepted):
        # Both comparisons always run: a short-circuit would tell which half was wrong.
        user_ok = hmac.compare_digest(user_digest, _digest(creds.username))
        password_ok = hmac.compare_digest(password_digest, _digest(creds.password.reveal()))
        if user_ok & password_ok:
            return index
    raise AuthenticationError("wrong_credentials", "basic credentials do not match")


class IpAllowList:
    """Client addresses a source accepts, as CIDR networks (IPv4 and IPv6).

    An empty list allows every address. IPv4-mapped IPv6 addresses (``::ffff:10.0.0.1``) are
    checked as the IPv4 address they carry, so a dual-stack listener cannot be used to slip past.
    """

    def __init__(self, networks: Iterable[str] = ()) -> None:
        parsed = []
        for network in networks:
            try:
                parsed.append(ipaddress.ip_network(network.strip(), strict=False))
            except ValueError as exc:
                raise ConfigurationError(f"not an IP network: {network!r}") from exc
        self.networks: tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...] = tuple(parsed)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def allows(self, address: str | None) -> bool:
        """Return whether ``address`` may deliver (always, when the list is empty)."""
        if not self.networks:
            return True
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.networks)

    def check(self, address: str | None) -> None:
        """Raise :class:`AddressNotAllowedError` unless ``address`` is allowed."""
        if not self.allows(address):
            raise AddressNotAllowedError("address_not_allowed", "client address is not allowed")
