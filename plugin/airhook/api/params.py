"""What every route may ask for besides its body: the services, a page window, times, the
receiver's base URL.

The services are built once per app, on first use (:class:`ServicesHolder`), not at import: the
API server imports the plugin before its configuration is complete, and a missing Fernet key
must answer 503 on the routes that need it, not keep the API server from starting.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Query, Request

from airhook.manage.container import Services

__all__ = [
    "MAX_LIMIT",
    "MAX_OFFSET",
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


def base_url(request: Request, services: Services) -> str:
    """Where this API server is reached: ``[api] base_url``, else the request's own origin and
    the path Airflow is served under."""
    if services.base_url:
        return services.base_url
    mounted = str(request.scope.get("root_path", ""))
    own = request.app.state.url_prefix
    prefix = mounted[: -len(own)] if own and mounted.endswith(own) else mounted
    return f"{request.url.scheme}://{request.url.netloc}{prefix}"
