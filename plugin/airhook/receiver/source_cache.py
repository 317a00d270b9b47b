"""The receiver's in-memory copy of the sources, refreshed in the background.

The request path never reads sources from the database: a thread checks the store's cheap
(count, newest change) fingerprint every ``refresh_seconds`` and reloads everything when it moved.
A new source or a rotated secret therefore takes effect within that time.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from airhook.core.catalog import Catalog
from airhook.receiver.pipeline import PreparedSource
from airhook.store.sources import SourceRepository

__all__ = ["SourceCache"]

log = logging.getLogger(__name__)


class SourceCache:
    """Prepared sources by name, kept fresh by a background thread."""

    def __init__(
        self,
        repository: SourceRepository,
        catalog: Catalog,
        *,
        tolerance: int,
        refresh_seconds: float,
        clock: Callable[[], float] | None = None,
    ) -> None:
        self._repository = repository
        self._catalog = catalog
        self._tolerance = tolerance
        self._refresh_seconds = refresh_seconds
        self._by_name: dict[str, PreparedSource] = {}
        self._unreadable: frozenset[str] = frozenset()
        self._fingerprint: object = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="airhook-sources", daemon=True)

    def get(self, name: str) -> PreparedSource | None:
        """Return the prepared source called ``name``, if it exists."""
        return self._by_name.get(name)

    def unreadable(self, name: str) -> bool:
        """Whether a source called ``name`` exists but its credentials do not decrypt."""
        return name in self._unreadable

    def refresh(self) -> None:
        """Reload the sources if anything changed since the last load."""
        fingerprint = self._repository.version()
        if fingerprint == self._fingerprint:
            return
        prepared: dict[str, PreparedSource] = {}
        found, unreadable = self._repository.readable()
        for name in unreadable:
            log.error(
                "airhook source %s: its credentials do not decrypt with [core] fernet_key; "
                "it answers 503 until they do (recreate it, or restore the key)",
                name,
            )
        for source in found:
            try:
                prepared[source.name] = PreparedSource.build(source, self._catalog, self._tolerance)
            except ValueError:
                log.exception("airhook source %s is misconfigured; it answers 404", source.name)
        self._by_name = prepared  # one assignment: readers see the old or the new dict
        self._unreadable = frozenset(unreadable)
        self._fingerprint = fingerprint
        log.info("airhook loaded %d sources", len(prepared))

    def start(self) -> None:
        """Load once now, then keep refreshing in the background."""
        self.refresh()
        self._thread.start()

    def stop(self) -> None:
        """Stop refreshing."""
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._refresh_seconds):
            try:
                self.refresh()
            except Exception:
                log.exception("airhook could not refresh sources; keeping the last ones")
