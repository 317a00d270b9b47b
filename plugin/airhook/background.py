"""One way to run a round of work every few seconds in a thread of a long-running process.

The receiving processes (API server, standalone receiver) run several: the background sender,
the pruner, the backpressure backlog count. Each is a round (a callable) and an interval; this
runs it, logs a failed round and tries again at the next interval (the thread never ends on an
error), and stops promptly: between rounds at once, within one as soon as the round looks at
:attr:`Periodic.stopping`.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from airhook.store.errors import describe_error

__all__ = ["Periodic"]

log = logging.getLogger(__name__)


class Periodic:
    """Call ``work`` every ``seconds`` in a daemon thread.

    :param name: what runs, for the log (``airhook sender``); the thread is named after it.
    :param work: one round; returns True to run the next round at once (a full batch: there is
        more to do), False to wait ``seconds`` first.
    :param at_once: run the first round as the thread starts (otherwise one interval later).
    """

    def __init__(
        self, name: str, work: Callable[[], bool], seconds: float, *, at_once: bool
    ) -> None:
        if seconds <= 0:
            raise ValueError(f"{name}: the interval is positive")
        self._name = name
        self._work = work
        self._seconds = seconds
        self._at_once = at_once
        #: set when :meth:`stop` is called: a long round checks it (``stopping.wait(pause)``)
        self.stopping = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def thread(self) -> threading.Thread | None:
        """The thread, once started."""
        return self._thread

    def start(self) -> None:
        """Start the thread."""
        self._thread = threading.Thread(
            target=self._run, name=self._name.replace(" ", "-"), daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 10.0) -> None:
        """Stop the thread: at once between rounds, when the round in hand allows within one."""
        self.stopping.set()
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self) -> None:
        if not self._at_once and self.stopping.wait(self._seconds):
            return
        while not self.stopping.is_set():
            try:
                again = self._work()
            except Exception as exc:
                # describe_error: a database error's message quotes the rows it was writing.
                log.error("%s round failed (%s); retrying", self._name, describe_error(exc))
                again = False
            if not again and self.stopping.wait(self._seconds):
                return
