"""Who may call the management API: Airflow's own users, roles and login, and no cross-site call.

One module, so the policy can be read (and swapped) in one place:

- **Who**: Airflow's ``get_user`` (the ``Authorization: Bearer`` token, else the UI's ``_token``
  cookie): anonymous is 401, a bad token 403 (Airflow's own answers). The auth manager is the
  process's (``get_auth_manager()``); ``AuthManagerDep`` reads the root app's state and fails
  in a mounted plugin app.
- **Reads**: ``is_authorized_configuration(method="GET", section="airhook")``. **Writes**: the
  same with the request's method (PATCH asks for PUT). SimpleAuthManager: viewer and user read,
  op and admin write; FAB: Op and Admin (Viewer and User neither: FAB grants configuration
  reads to Op). Why configuration: the custom-view and plugins-view checks let every
  SimpleAuthManager role, viewer included, "write", and airhook's sources and subscriptions
  are configuration. Wrong role: 403.
- **No cross-site writes**: a write authenticated by the cookie (no bearer token) must come
  from the API server's own origin: ``Sec-Fetch-Site`` is ``same-origin`` or ``none``, or else
  ``Origin`` is the request's own origin (or ``[api] base_url``'s). Otherwise 403 ``cross-site
  request refused``. Every write also takes a JSON body, which a cross-site form cannot send.
  Bearer clients (the CLI, scripts) are not browsers and are not checked; a bearer header with
  no token is none (Airflow then takes the cookie), so it is checked.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import urlsplit

from airflow.api_fastapi.auth.managers.models.base_user import BaseUser
from airflow.api_fastapi.core_api.security import get_user
from fastapi import Depends, HTTPException, Request, status
from fastapi.security.utils import get_authorization_scheme_param

__all__ = ["CROSS_SITE", "Reader", "Writer", "can_write", "check_same_origin"]

#: The 403 detail of a refused cross-site write.
CROSS_SITE = "cross-site request refused"
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_SAME_SITE_FETCH = frozenset({"same-origin", "none"})
#: The auth manager's method for each HTTP method of a write.
_RESOURCE_METHOD = {"POST": "POST", "PUT": "PUT", "PATCH": "PUT", "DELETE": "DELETE"}


def _authorized(user: BaseUser, method: str) -> bool:
    from airflow.api_fastapi.app import get_auth_manager
    from airflow.api_fastapi.auth.managers.models.resource_details import ConfigurationDetails

    return bool(
        get_auth_manager().is_authorized_configuration(
            method=method,  # type: ignore[arg-type]
            details=ConfigurationDetails(section="airhook"),
            user=user,
        )
    )


def can_write(user: BaseUser) -> bool:
    """Whether the user may change airhook's sources and subscriptions."""
    return _authorized(user, "POST")


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower() if parts.scheme and parts.netloc else ""


def _bearer_token(request: Request) -> bool:
    """Whether the request carries a bearer token as Airflow's ``get_user`` reads one (through
    FastAPI's ``HTTPBearer``): a ``Bearer`` header with no token is none, and Airflow then
    authenticates the request by its cookie."""
    scheme, token = get_authorization_scheme_param(request.headers.get("authorization"))
    return scheme.lower() == "bearer" and bool(token)


def check_same_origin(request: Request) -> None:
    """Refuse (403) a write the browser made for another site with the user's cookie."""
    if request.method in _SAFE_METHODS:
        return
    if _bearer_token(request):
        return
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        if fetch_site.lower() in _SAME_SITE_FETCH:
            return
        raise HTTPException(status.HTTP_403_FORBIDDEN, CROSS_SITE)
    origin = request.headers.get("origin")
    if origin is not None and origin.lower() in _own_origins(request):
        return
    raise HTTPException(status.HTTP_403_FORBIDDEN, CROSS_SITE)


def _own_origins(request: Request) -> set[str]:
    """The request's own origin (as its Host header names it) and ``[api] base_url``'s."""
    from airhook.manage.container import configured_base_url

    own = {_origin(str(request.base_url))}
    configured = _origin(configured_base_url())
    if configured:
        own.add(configured)
    return own - {""}


#: The request's Airflow user (401 anonymous, 403 a token Airflow refuses).
_User = Annotated[Any, Depends(get_user)]


def _reader(user: _User) -> BaseUser:
    if not _authorized(user, "GET"):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "reading airhook's settings is not allowed")
    return user


def _writer(request: Request, user: _User) -> BaseUser:
    check_same_origin(request)
    method = _RESOURCE_METHOD.get(request.method, "POST")
    if not _authorized(user, method):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "changing airhook's settings is not allowed")
    return user


#: A route's user, who may read (viewer and up).
Reader = Annotated[BaseUser, Depends(_reader)]
#: A route's user, who may write (op and admin), from this site.
Writer = Annotated[BaseUser, Depends(_writer)]
