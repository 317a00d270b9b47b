"""Times in the airhook store: always written and read as UTC.

SQLite keeps a time as text without its offset, so a time in another zone would be stored and
compared as its wall-clock reading, hours off; and it hands times back naive. Every repository
writes through :func:`to_utc` and reads through :func:`aware`.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import overload

__all__ = ["aware", "to_utc", "utc_now"]


def utc_now() -> datetime:
    """The current time, in UTC."""
    return datetime.now(timezone.utc)


def aware(value: datetime | None) -> datetime | None:
    """A time read back from the store, made timezone-aware (naive means UTC)."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value


@overload
def to_utc(value: datetime) -> datetime: ...


@overload
def to_utc(value: None) -> None: ...


def to_utc(value: datetime | None) -> datetime | None:
    """A time about to be written, in UTC (naive means UTC already)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc)
