"""Read recorded webhook events from the airhook store, from tasks, sensors and triggers.

Tasks and triggers may not use Airflow's metadata DB; the airhook store is theirs to read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

from airflow.sdk import BaseHook

from airhook.core.catalog import matches
from airhook.core.matching import payload_matches
from airhook.store import get_store
from airhook.store.inbox import InboxEvent, InboxRepository

__all__ = ["AirhookInboxHook"]


class AirhookInboxHook(BaseHook):
    """Look up events in the airhook inbox.

    :param database_url: the store's URL; default ``[airhook] database_url``.
    """

    conn_name_attr = "airhook_conn_id"
    hook_name = "airhook inbox"

    def __init__(self, database_url: str | None = None) -> None:
        super().__init__()
        self._inbox = InboxRepository(get_store(database_url))

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        """Return one event (with its payload) by the id found in an asset event's extra."""
        event = self._inbox.get(event_id)
        return event.as_dict() if event else None

    def find_event(
        self,
        source: str,
        events: str | Sequence[str] = "*",
        match: Mapping[str, Any] | None = None,
        *,
        received_after: datetime | None = None,
        after_seq: int = 0,
        page_size: int = 500,
    ) -> tuple[InboxEvent | None, int]:
        """Return the oldest matching event after ``after_seq`` and the last sequence scanned.

        Callers that poll pass the returned sequence back, so each event is read only once.
        """
        position = after_seq
        while True:
            page = self._inbox.find(
                source, after_seq=position, received_after=received_after, limit=page_size
            )
            for event in page:
                position = event.seq
                if matches(events, event.event) and payload_matches(event.payload(), match):
                    return event, position
            if len(page) < page_size:
                return None, position
