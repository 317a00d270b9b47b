"""``/sources``: inbound sources, their secrets, and a signed test delivery through the receiver.

Thin: each route checks who asks (``auth``), hands its input to
:class:`~airhook.manage.sources.SourceService` and returns the view's JSON.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response, status

from airhook.api.auth import Reader, Writer
from airhook.api.models import SourceCreate, SourcePatch, SourceSecretAction, SourceTest
from airhook.api.params import ServicesDep, WindowDep, base_url
from airhook.manage.sources import Poster

__all__ = ["router"]

router = APIRouter(prefix="/sources", tags=["sources"])


@router.get("")
def list_sources(user: Reader, services: ServicesDep, window: WindowDep, request: Request) -> Any:
    """Every source, newest first: settings, whether secrets exist, events received."""
    page = services.sources(base_url(request, services)).list(
        limit=window.limit, offset=window.offset
    )
    return page.as_dict()


@router.post("", status_code=status.HTTP_201_CREATED)
def create_source(body: SourceCreate, user: Writer, services: ServicesDep, request: Request) -> Any:
    """Create a source; its generated secret is in this answer and never again."""
    created = services.sources(base_url(request, services)).create(**body.model_dump())
    return {"source": created.view.as_dict(), "secret": created.secret, "setup": created.setup}


@router.get("/{name}")
def get_source(name: str, user: Reader, services: ServicesDep, request: Request) -> Any:
    """One source."""
    return services.sources(base_url(request, services)).get(name).as_dict()


@router.patch("/{name}")
def update_source(
    name: str, body: SourcePatch, user: Writer, services: ServicesDep, request: Request
) -> Any:
    """Change some of a source's settings; its secrets and recorded events stay."""
    return services.sources(base_url(request, services)).update(name, body.changes()).as_dict()


@router.delete("/{name}", status_code=status.HTTP_204_NO_CONTENT)
def delete_source(name: str, user: Writer, services: ServicesDep) -> Response:
    """Delete a source; its recorded events stay."""
    services.sources().delete(name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post("/{name}/secrets")
def change_source_secrets(
    name: str, body: SourceSecretAction, user: Writer, services: ServicesDep, request: Request
) -> Any:
    """Generate a secondary, rotate, drop the secondary, regenerate, or set the platform's new
    secondary; a generated secret is in this answer and never again."""
    change = services.sources(base_url(request, services)).change_secrets(
        name, body.action, secret=body.secret
    )
    return {"source": change.view.as_dict(), "secret": change.secret}


@router.post("/{name}/test")
def test_source(
    name: str, body: SourceTest, user: Writer, services: ServicesDep, request: Request
) -> Any:
    """Send a signed catalog sample through the source's own receiver; the answer, the recorded
    event's id and the DAGs scheduled on its assets."""
    poster: Poster = request.app.state.receiver_poster
    return services.sources().test(name, poster, body.event)
