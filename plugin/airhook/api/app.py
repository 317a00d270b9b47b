"""The management app: the REST API under ``/api/v1``, its OpenAPI document, and the page.

Airflow's API server mounts it at ``/airhook/manage`` (``airhook.plugin``), before the receiver's
``/airhook``, since Starlette takes the first mount whose prefix matches::

    /airhook/manage/api/v1/...            the REST API (Airflow login: viewer reads, op writes)
    /airhook/manage/api/v1/openapi.json   its OpenAPI document (logged-in users)
    /airhook/manage/ui/                   the page's static files (no data in them, no login)

The app has no docs pages and no public OpenAPI route of FastAPI's own: plugin apps are mounted
without Airflow's authentication, so the document is served by a route that requires a login.

The page's files go out with :data:`PAGE_HEADERS`: only a page of the same origin (Airflow's UI)
may frame it, since its calls are same-origin and would pass the cross-site check if another
site framed it and had the user click its buttons; and it may load nothing but its own files and
call nothing but its own API, a second wall should data ever reach the DOM as markup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio.from_thread
import httpx
from fastapi import APIRouter, FastAPI, Request
from fastapi.openapi.utils import get_openapi
from starlette.responses import Response
from starlette.staticfiles import StaticFiles
from starlette.types import Scope

from airhook.api import deliveries, errors, events, overview, sources, subscriptions
from airhook.api.auth import Reader
from airhook.api.gate import RequestGate
from airhook.api.params import ServicesHolder
from airhook.manage.container import Services
from airhook.manage.sources import Poster

__all__ = [
    "API_PATH",
    "OPENAPI_PATH",
    "PAGE_HEADERS",
    "UI_PATH",
    "URL_PREFIX",
    "create_app",
    "receiver_poster",
]

#: Where Airflow mounts the app.
URL_PREFIX = "/airhook/manage"
#: The REST API, below the mount.
API_PATH = "/api/v1"
OPENAPI_PATH = f"{API_PATH}/openapi.json"
#: The page, below the mount.
UI_PATH = "/ui"
VERSION = "1"
#: Sent with each of the page's files (see the module docstring).
PAGE_HEADERS = {
    "Content-Security-Policy": "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            "connect-src 'self'",
            "img-src 'self'",
            "base-uri 'none'",
            "form-action 'self'",
            "frame-ancestors 'self'",
        ]
    ),
    "X-Frame-Options": "SAMEORIGIN",
    "X-Content-Type-Options": "nosniff",
}


class _PageFiles(StaticFiles):
    """The page's static files, each with :data:`PAGE_HEADERS`."""

    async def get_response(self, path: str, scope: Scope) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def receiver_poster(receiver: Any) -> Poster:
    """A :data:`~airhook.manage.sources.Poster` that hands a request to the receiver app in
    this process (what the sender's POST to ``/airhook/webhooks/<name>`` reaches), from a
    route's worker thread.

    In process rather than over the network: the API server's own address as seen from inside
    (behind a proxy, in a container) is not known, while the receiver app is at hand; the
    request takes the receiver's whole path (verification, validation, recording) all the same.
    """

    async def post(name: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        transport = httpx.ASGITransport(app=receiver, client=("127.0.0.1", 0))
        async with httpx.AsyncClient(transport=transport, base_url="http://airhook") as client:
            response = await client.post(f"/webhooks/{name}", content=body, headers=headers)
        try:
            answer = response.json()
        except ValueError:
            answer = None
        return response.status_code, answer

    def call(name: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        runtime = getattr(receiver.state, "runtime", None)
        if runtime is not None:
            # A source created or changed a moment ago is tested as it is now, not as the
            # receiver's cache saw it up to [airhook] source_cache_seconds ago.
            runtime.sources.refresh()
        return anyio.from_thread.run(post, name, headers, body)

    return call


def _unavailable(name: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
    """The poster when no receiver runs in this process."""
    return 503, {"error": "receiver_unavailable"}


def create_app(
    services: Callable[[], Services] | None = None,
    *,
    receiver: Any = None,
    static_dir: Any = None,
    url_prefix: str = URL_PREFIX,
) -> FastAPI:
    """Return the management app.

    :param services: builds the services on first use (default: from Airflow's configuration,
        with what only the API server reads of Airflow: asset events, scheduled DAGs, and the
        receiver's rejection counts).
    :param receiver: the receiver app of this process: a source's test delivery goes to it.
    :param static_dir: the page's files (default: ``airhook/page/static`` when it exists).
    :param url_prefix: where Airflow mounts this app (to work out receiver URLs).
    """
    app = FastAPI(
        title="airhook management API",
        version=VERSION,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
        description="Sources, subscriptions, recorded events and deliveries of airhook. Every "
        "route needs an Airflow login (bearer token or the UI's session): viewers read, "
        "op and admin write.",
    )
    # Before FastAPI reads a body: none without credentials, none over 1 MiB (airhook.api.gate).
    app.add_middleware(RequestGate)
    app.state.services = ServicesHolder(services or _configured(receiver))
    app.state.receiver_poster = receiver_poster(receiver) if receiver is not None else _unavailable
    app.state.url_prefix = url_prefix
    errors.install(app)

    api = APIRouter(prefix=API_PATH)
    for module in (overview, sources, subscriptions, events, deliveries):
        api.include_router(module.router)

    built: list[dict[str, Any]] = []

    @api.get("/openapi.json", include_in_schema=False)
    def openapi(user: Reader, request: Request) -> Any:
        """The OpenAPI document, for logged-in users; its server is where this app is mounted."""
        if not built:  # the routes do not change once the app is built
            built.append(
                get_openapi(
                    title=app.title,
                    version=app.version,
                    description=app.description,
                    routes=app.routes,
                )
            )
        return {**built[0], "servers": [{"url": str(request.scope.get("root_path", "")) or "/"}]}

    app.include_router(api)

    if static_dir is None:
        from airhook.page import STATIC_DIR

        static_dir = STATIC_DIR
    if static_dir is not None and static_dir.is_dir():
        app.mount(UI_PATH, _PageFiles(directory=static_dir, html=True), name="ui")
    return app


def _configured(receiver: Any) -> Callable[[], Services]:
    """The services of the API server: configuration, plus what it alone reads of Airflow."""

    def build() -> Services:
        from airhook import airflow_internals

        def runtime() -> Any:
            return getattr(getattr(receiver, "state", None), "runtime", None)

        def rejections() -> dict[str, dict[str, int]]:
            running = runtime()
            return running.metrics.snapshot() if running is not None else {}

        def background_sender() -> bool:
            running = runtime()
            return running is not None and running.sender is not None

        return Services.from_config(
            asset_events_of=airflow_internals.asset_events_of,
            dags_scheduled_on=airflow_internals.dags_scheduled_on,
            rejections=rejections,
            background_sender=background_sender,
        )

    return build
