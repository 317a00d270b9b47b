"""A requests adapter whose connections go only to addresses the destination policy passed.

``DestinationPolicy.check`` resolves a URL's host before a call; requests would then resolve it
again to connect, and a DNS server may answer differently the second time (rebinding: a public
address for the check, ``127.0.0.1`` or ``169.254.169.254`` for the connection). Here each new
connection resolves through the policy itself and connects to one of the addresses it has just
passed, so whatever the check saw, nothing else is reached. TLS still sends and verifies the
URL's host name (SNI, certificate): only the socket's address is pinned.

Calls through a proxy (``HTTPS_PROXY`` and friends) connect to the proxy, which is
configuration, not a URL's host; these connections are the proxy manager's own and are not
pinned.
"""

from __future__ import annotations

import socket
from typing import Any

from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ConnectTimeoutError, NewConnectionError
from urllib3.util import connection

from airhook.core.ssrf import DestinationPolicy

__all__ = ["PinnedAdapter"]


def _connect(conn: HTTPConnection, policy: DestinationPolicy, scheme: str) -> socket.socket:
    """What urllib3's ``_new_conn`` does, with the addresses coming from ``policy``."""
    # Raises DestinationNotAllowedError (not an OSError: urllib3 and requests let it through
    # unchanged, so the caller sees the policy's reason) or DeliveryError when nothing resolves.
    addresses = policy.addresses(conn._dns_host, conn.port, scheme)
    error: OSError | None = None
    for address in addresses:  # in the resolver's order; each one tried, as urllib3 does
        try:
            return connection.create_connection(
                (address, conn.port),
                conn.timeout,
                source_address=conn.source_address,
                socket_options=conn.socket_options,
            )
        except OSError as exc:  # refused, unreachable or timed out: the next one may answer
            error = exc
    if isinstance(error, TimeoutError):
        raise ConnectTimeoutError(
            conn, f"Connection to {conn.host} timed out. (connect timeout={conn.timeout})"
        ) from error
    raise NewConnectionError(conn, f"Failed to establish a new connection: {error}")


def _pools(policy: DestinationPolicy) -> dict[str, type[HTTPConnectionPool]]:
    """Connection pool classes for ``http`` and ``https`` whose connections are pinned."""

    class PinnedHTTPConnection(HTTPConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, policy, "http")

    class PinnedHTTPSConnection(HTTPSConnection):
        def _new_conn(self) -> socket.socket:
            return _connect(self, policy, "https")

    class PinnedHTTPConnectionPool(HTTPConnectionPool):
        ConnectionCls = PinnedHTTPConnection

    class PinnedHTTPSConnectionPool(HTTPSConnectionPool):
        ConnectionCls = PinnedHTTPSConnection

    return {"http": PinnedHTTPConnectionPool, "https": PinnedHTTPSConnectionPool}


class PinnedAdapter(HTTPAdapter):
    """Mount on a ``requests.Session`` for ``http://`` and ``https://``: every direct
    connection is made to an address ``policy`` allowed at that moment."""

    # HTTPAdapter pickles (and restores before building its pools) only the attributes listed.
    __attrs__ = [*HTTPAdapter.__attrs__, "policy"]  # noqa: RUF012 (typed by requests as an instance list)

    def __init__(self, policy: DestinationPolicy, **kwargs: Any) -> None:
        self.policy = policy
        super().__init__(**kwargs)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = _pools(self.policy)
