"""The management REST API: a thin FastAPI app over :mod:`airhook.manage`.

::

    app            the app: routers under /api/v1, the OpenAPI route, the page's static files
    auth           who may read and write (Airflow's login and roles), no cross-site writes
    errors         airhook's errors as 4xx answers naming what is wrong
    models         request bodies (types and bounds only)
    params         the services, the page window, the receiver's base URL
    overview       /whoami, /catalog, /activity
    sources        /sources
    subscriptions  /subscriptions
    events         /events
    deliveries     /deliveries

Routes check who asks, call one service, and return its view's JSON; they hold no rule of
their own (the CLI calls the same services).
"""

from __future__ import annotations

from airhook.api.app import API_PATH, OPENAPI_PATH, UI_PATH, URL_PREFIX, create_app

__all__ = ["API_PATH", "OPENAPI_PATH", "UI_PATH", "URL_PREFIX", "create_app"]
