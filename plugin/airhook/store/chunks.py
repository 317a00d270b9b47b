"""Long lists of ids cut into ``IN (...)`` lists every database takes."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TypeVar

__all__ = ["IDS_PER_LIST", "chunks"]

T = TypeVar("T")

#: Ids per ``IN (...)`` list: far below every database's parameter limit.
IDS_PER_LIST = 500


def chunks(items: Sequence[T], size: int = IDS_PER_LIST) -> Iterator[Sequence[T]]:
    """``items`` in consecutive slices of at most ``size``."""
    for start in range(0, len(items), size):
        yield items[start : start + size]
