"""The test Redis server listens on 127.0.0.1 only and never outlives its owner.

Not after a stop, and not after its owner dies of SIGTERM or ``kill -9``: its port stops answering
and its directory goes.
"""

from __future__ import annotations

import os
import signal
import socket
from pathlib import Path

import pytest

from devstack.redis import RedisServer, ping, redis_binary
from tests.guarded import assert_the_server_goes_with_its_owner

if redis_binary() is None:
    if os.environ.get("CI"):
        pytest.fail("redis-server is missing (.ci/run installs it)", pytrace=False)
    pytest.skip("no redis-server on this machine", allow_module_level=True)


def _listening_addresses(port: int) -> set[str]:
    """The local addresses with a listening TCP socket on ``port`` (from /proc/net/tcp)."""
    found = set()
    for table, family in (("/proc/net/tcp", socket.AF_INET), ("/proc/net/tcp6", socket.AF_INET6)):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            local, state = line.split()[1], line.split()[3]
            address, hex_port = local.split(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                raw = bytes.fromhex(address)
                if family == socket.AF_INET:
                    raw = raw[::-1]
                else:  # four little-endian 32-bit words
                    raw = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(family, raw))
    return found


def test_the_server_answers_on_127_0_0_1_only_and_stop_removes_it() -> None:
    server = RedisServer.start()
    try:
        assert server.url == f"redis://127.0.0.1:{server.port}/0"
        assert ping(server.port)
        assert _listening_addresses(server.port) == {"127.0.0.1"}
    finally:
        server.stop()
    assert not ping(server.port)
    assert not server.root.exists()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL])
def test_the_server_goes_when_its_owner_is_killed(signum: int) -> None:
    assert_the_server_goes_with_its_owner(
        "devstack.redis.RedisServer", signum, lambda _root, port: ping(port)
    )
