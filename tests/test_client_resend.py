"""One call, one request: airhook's client never resends a request on a broken connection.

aiohttp sends an idempotent request (PUT, DELETE) a second time by itself when the connection
breaks before the answer; a subscription or a hook call with ``PUT`` would then reach the
receiver twice per attempt, the second time with no delay and unlogged.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from airhook.core.errors import DeliveryError
from airhook.core.ssrf import DestinationPolicy
from airhook.delivery.client import BlockingClient, exchange, open_session
from tests.test_fanout import Receiver

LOCAL = DestinationPolicy(allow=["127.0.0.1/32"])


@pytest.fixture
def resetting() -> Iterator[Receiver]:
    server = Receiver()
    server.on("/reset", lambda _request: "reset")
    yield server
    server.close()


async def _call(method: str, url: str) -> None:
    async with open_session(LOCAL) as session:
        await exchange(
            session,
            method,
            url,
            headers={"Content-Type": "application/json"},
            body=b"{}",
            timeout=5.0,
            shown=url,
            read_limit=1024,
        )


@pytest.mark.parametrize("method", ["PUT", "PATCH", "POST"])
def test_a_reset_connection_is_not_resent_by_the_session(resetting: Receiver, method: str) -> None:
    with pytest.raises(DeliveryError) as failure:
        asyncio.run(_call(method, resetting.url("/reset")))
    assert failure.value.retryable
    assert [r.method for r in resetting.requests] == [method]


def test_a_reset_connection_is_not_resent_by_the_blocking_client(resetting: Receiver) -> None:
    client = BlockingClient(LOCAL)
    try:
        with pytest.raises(DeliveryError):
            client.request(
                "PUT",
                resetting.url("/reset"),
                headers={},
                body=b"{}",
                timeout=5.0,
                shown="(hidden)",
                read_limit=1024,
            )
    finally:
        client.close()
    assert len(resetting.requests) == 1
