"""What every route may ask for besides its body: the services, a page window, a time window,
the receiver's base URL.

The services are built once per app, on first use (:class:`ServicesHolder`), not at import: the
API server imports the plugin before its configuration is complete, and a missing Fernet key
must answer 503 on the routes that need it, not keep the API server from starting.
"""

# No ``from __future__ import annotations``: the parameters of :func:`_period`'s dependency are
# annotated with values of its closure, which FastAPI could not find by evaluating a string.

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Query, Request

from airhook.manage.container import Services

__all__ = [
    "MAX_LIMIT",
    "MAX_OFFSET",
    "CreatedDep",
    "Period",
    "ReceivedDep",
    "ServicesDep",
    "ServicesHolder",
    "Window",
    "WindowDep",
    "base_url",
]

#: The largest page.
MAX_LIMIT = 500
#: The furthest offset (beyond it no list of airhook's has rows, and the database's integers end).
MAX_OFFSET = 1_000_000_000


class ServicesHolder:
    """Builds the app's services on first use, once, and hands the same ones to every request."""

    def __init__(self, factory: Callable[[], Services]) -> None:
        self._factory = factory
        self._services: Services | None = None
        self._lock = threading.Lock()

    def get(self) -> Services:
        """The services (built now if this is the first call)."""
        if self._services is None:
            with self._lock:
                if self._services is None:
                    self._services = self._factory()
        return self._services


def _services(request: Request) -> Services:
    holder: ServicesHolder = request.app.state.services
    return holder.get()


ServicesDep = Annotated[Services, Depends(_services)]


@dataclass(frozen=True)
class Window:
    """Which page of a list: ``limit`` items from ``offset``."""

    limit: int
    offset: int


def _window(
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="items per page")] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET, description="items skipped")] = 0,
) -> Window:
    return Window(limit, offset)


WindowDep = Annotated[Window, Depends(_window)]


@dataclass(frozen=True)
class Period:
    """Which times of a list: ``since`` (inclusive) to ``until`` (exclusive), either open."""

    since: datetime | None
    until: datetime | None


def _period(what: str) -> Any:
    """``since`` and ``until`` query parameters, described as when the items were ``what``."""

    def period(
        since: Annotated[datetime | None, Query(description=f"{what} at or after")] = None,
        until: Annotated[datetime | None, Query(description=f"{what} before")] = None,
    ) -> Period:
        return Period(since, until)

    return Depends(period)


#: The times events were received in.
ReceivedDep = Annotated[Period, _period("received")]
#: The times deliveries were created in.
CreatedDep = Annotated[Period, _period("created")]


def base_url(request: Request, services: Services) -> str:
    """Where this API server is reached: ``[api] base_url``, else the request's own origin and
    the path Airflow is served under."""
    if services.base_url:
        return services.base_url
    mounted = str(request.scope.get("root_path", ""))
    own = request.app.state.url_prefix
    prefix = mounted[: -len(own)] if own and mounted.endswith(own) else mounted
    return f"{request.url.scheme}://{request.url.netloc}{prefix}"
