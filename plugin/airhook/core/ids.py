"""Event ids: sortable by time, unguessable, short enough for URLs and log lines. Pure."""

from __future__ import annotations

import secrets
import time

__all__ = ["new_event_id"]


def new_event_id(now_ns: int | None = None) -> str:
    """Return ``evt_`` + 12 hex digits of milliseconds + 20 random hex digits (80 bits)."""
    millis = (time.time_ns() if now_ns is None else now_ns) // 1_000_000
    return f"evt_{millis:012x}{secrets.token_hex(10)}"
