"""Refuse outbound calls to private, loopback and link-local addresses unless allowed. Pure.

A webhook URL comes from a user or a template, so it can point at the metadata service
(169.254.169.254), the Airflow host itself or the office network. Every destination is resolved
and each address it resolves to is checked; only networks named in ``allow`` (configuration:
``[airhook] outbound_allow_networks``) may be private.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Iterable, Sequence
from urllib.parse import urlsplit

from airhook.core.errors import DeliveryError

__all__ = ["DestinationNotAllowedError", "DestinationPolicy", "redact_url"]

Resolver = Callable[[str, int], Sequence[str]]
_Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class DestinationNotAllowedError(DeliveryError):
    """The URL's host is, or resolves to, an address outbound calls may not reach."""

    def __init__(self, url: str, reason: str) -> None:
        super().__init__(redact_url(url), None, reason, retryable=False)
        self.reason = reason


def redact_url(url: str) -> str:
    """The URL's origin, and ``/…`` for a path (safe for logs and errors).

    Credentials, query string and path are left out: for Slack's or Zapier's incoming webhooks
    the path is the credential.
    """
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    if ":" in (parts.hostname or ""):
        host = f"[{parts.hostname}]" + (f":{parts.port}" if parts.port else "")
    path = "/…" if parts.path not in ("", "/") else parts.path
    return f"{parts.scheme}://{host}{path}"


def _system_resolver(host: str, port: int) -> list[str]:
    infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    # getaddrinfo's order (RFC 6724) is the order to connect in; duplicates dropped.
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


#: NAT64's well-known prefix: the last 32 bits are the IPv4 address a translator reaches.
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address reaches through a relay: 6to4, Teredo's client, NAT64.

    (An IPv4-mapped address is the IPv4 address itself; its callers handle it first.)
    """
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    if ip in _NAT64:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def _forbidden(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return _forbidden(ip.ipv4_mapped)  # the IPv4 address itself
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            # Refused if the address itself is, or the IPv4 address it leads to.
            return _forbidden(embedded) or _forbidden_address(ip)
    return _forbidden_address(ip)


def _forbidden_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    if ip.is_loopback:
        return "loopback"
    if ip.is_link_local:
        return "link-local"
    if ip.is_unspecified:
        return "unspecified"
    if ip.is_multicast:
        return "multicast"
    if ip.is_private or ip.is_reserved or not ip.is_global:
        return "private"
    return None


class DestinationPolicy:
    """Which destinations outbound calls may reach.

    :param allow: networks (CIDR) or single addresses that may be reached even though they are
        private or loopback, e.g. ``["127.0.0.1/32", "10.20.0.0/16"]``.
    :param schemes: URL schemes allowed.
    :param resolver: host, port -> addresses; the system resolver by default (tests pass their own).
    """

    def __init__(
        self,
        allow: Iterable[str] = (),
        *,
        schemes: Sequence[str] = ("https", "http"),
        resolver: Resolver | None = None,
    ) -> None:
        self.allow: tuple[_Network, ...] = tuple(
            ipaddress.ip_network(item.strip(), strict=False) for item in allow if item.strip()
        )
        self.schemes = tuple(schemes)
        self._resolve = resolver or _system_resolver

    def _allowed(self, ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        # Only an IPv4-mapped address is the IPv4 address itself; 6to4, Teredo and NAT64
        # addresses reach it through a relay, so allowing 127.0.0.1 does not allow them.
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in network for network in self.allow)

    def check(self, url: str) -> list[str]:
        """Raise :class:`DestinationNotAllowedError` unless ``url`` may be called.

        Returns the addresses the host resolved to.
        """
        parts = urlsplit(url)
        if parts.scheme not in self.schemes:
            raise DestinationNotAllowedError(url, f"scheme {parts.scheme!r} is not allowed")
        host = parts.hostname
        if not host:
            raise DestinationNotAllowedError(url, "no host")
        try:
            port = parts.port or (443 if parts.scheme == "https" else 80)
        except ValueError as exc:
            raise DestinationNotAllowedError(url, "bad port") from exc
        return self._checked_addresses(url, host, port)

    def addresses(self, host: str, port: int, scheme: str = "http") -> list[str]:
        """Resolve ``host`` and return its addresses if every one may be reached, else raise.

        For the moment of connecting: a client that connects only to these addresses (rather
        than resolving the name again) cannot be sent elsewhere by a DNS answer that changed
        since :meth:`check` (rebinding). ``scheme`` only names the destination in errors.
        """
        literal = f"[{host}]" if ":" in host else host
        return self._checked_addresses(f"{scheme}://{literal}:{port}/", host, port)

    def _checked_addresses(self, url: str, host: str, port: int) -> list[str]:
        try:
            literal = ipaddress.ip_address(host)
            addresses = [str(literal)]
        except ValueError:
            try:
                addresses = list(self._resolve(host, port))
            except OSError as exc:
                raise DeliveryError(
                    redact_url(url), None, "host does not resolve", retryable=True
                ) from exc
        if not addresses:
            raise DeliveryError(redact_url(url), None, "host does not resolve", retryable=True)
        for address in addresses:
            ip = ipaddress.ip_address(address.split("%", 1)[0])
            reason = _forbidden(ip)
            if reason and not self._allowed(ip):
                raise DestinationNotAllowedError(
                    url,
                    f"{host} resolves to a {reason} address; allow it with "
                    "[airhook] outbound_allow_networks",
                )
        return addresses
