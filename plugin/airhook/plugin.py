"""The Airflow plugin, registered through the ``airflow.plugins`` entry point.

Provider info's ``plugins`` key is not read under Airflow's default settings, so the entry point
is what loads it. The API server mounts two apps, in this order:

- ``/airhook/manage``: the management REST API and the "Webhooks" page (``airhook.api``),
  behind Airflow's login;
- ``/airhook``: the receiver (``airhook.receiver``), whose deliveries authenticate themselves.

The order matters: Starlette hands a request to the first mount whose prefix matches, and
``/airhook`` matches ``/airhook/manage/...`` too. Airflow runs each app's lifespan; the
receiver's starts the store writer, the source cache and the dispatcher in that process.

The page is an ``external_views`` entry (Admin → Webhooks, at ``/plugin/airhook``), shown by
Airflow's UI in an iframe; its ``href`` carries the ``[api] base_url`` path when there is one.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from airflow.plugins_manager import AirflowPlugin

from airhook.api import UI_PATH
from airhook.api import URL_PREFIX as MANAGE_PREFIX
from airhook.api import create_app as create_manage_app
from airhook.receiver.app import create_app

URL_PREFIX = "/airhook"


def _base_path() -> str:
    """The path of ``[api] base_url`` (``""`` when Airflow is served at the root)."""
    from airflow.configuration import conf

    base_url = conf.get("api", "base_url", fallback="") or ""
    return urlsplit(base_url).path.rstrip("/")


_receiver = create_app()


class AirhookPlugin(AirflowPlugin):
    """airhook's plugin: the management API and page, and the webhook receiver."""

    name = "airhook"
    fastapi_apps = [  # noqa: RUF012 (Airflow reads this class attribute)
        {
            "app": create_manage_app(receiver=_receiver),
            "url_prefix": MANAGE_PREFIX,
            "name": "airhook management",
        },
        {"app": _receiver, "url_prefix": URL_PREFIX, "name": "airhook receiver"},
    ]
    external_views = [  # noqa: RUF012 (Airflow reads this class attribute)
        {
            "name": "Webhooks",
            "href": f"{_base_path()}{MANAGE_PREFIX}{UI_PATH}/",
            "destination": "nav",
            "url_route": "airhook",
            "category": "admin",
        }
    ]
