"""airhook's errors as HTTP answers: bad input is a 4xx naming what is wrong, never a 5xx.

==========================================  ======  =========================================
error                                       status  body
==========================================  ======  =========================================
ConfigurationError (a field is not valid)   422     ``{"detail": [{"loc", "msg", "type"}]}``
TemplateRenderError                         422     the same, ``loc`` ending ``body_template``
RequestValidationError (FastAPI's)          422     the same, no value repeated (below)
PayloadError (an event airhook refuses)     its     ``{"detail": "..."}`` (422 or 400)
NotFoundError                               404     ``{"detail": "no source named 'x'"}``
AlreadyExistsError, ConflictError           409     ``{"detail": "..."}``
SetupError (no [core] fernet_key)           503     ``{"detail": "...", "setting": "..."}``
DeliveryError                               502     ``{"detail": "..."}``
any other AirhookError                      400     ``{"detail": "..."}``
==========================================  ======  =========================================

The 422 has the shape FastAPI gives its own validation errors, so a client reads one kind:
``loc`` is ``["body" | "query" | "path", field]``. Messages are the errors' own, which never
carry a secret (``airhook.core.errors``). FastAPI's own 422 (a wrong type, a value too long, an
unknown field) is answered in the same shape, ``loc``, ``msg`` and ``type`` only: by default it
repeats each refused value (``input``), and a refused value can be a secret, a header's token or
a URL whose path is a credential; it is also as large as the request (100,000 ids sent back).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from airhook.core.errors import (
    AirhookError,
    AlreadyExistsError,
    ConfigurationError,
    ConflictError,
    DeliveryError,
    NotFoundError,
    PayloadError,
    SetupError,
    TemplateRenderError,
)

__all__ = ["answer", "install", "invalid_request"]

#: Errors of a refused request listed at most (one per field is what a client needs).
MAX_ERRORS = 20
#: Longest part of a ``loc`` shown (a mapping's key is the client's text, as long as it sent).
_MAX_LOC_PART = 128


def _where(request: Request, field: str) -> list[str]:
    """``[part, field]``: which part of the request the field came in."""
    if field in request.path_params:
        return ["path", field]
    if field in request.query_params:
        return ["query", field]
    return ["body", field]


def _invalid(request: Request, field: str | None, message: str) -> JSONResponse:
    loc = _where(request, field) if field else ["body"]
    return JSONResponse(
        {"detail": [{"loc": loc, "msg": message, "type": "value_error"}]}, status_code=422
    )


def answer(request: Request, exc: AirhookError) -> JSONResponse:
    """The HTTP answer to an airhook error (see the module docstring)."""
    if isinstance(exc, ConfigurationError):
        return _invalid(request, exc.field, str(exc))
    if isinstance(exc, TemplateRenderError):
        return _invalid(request, "body_template", str(exc))
    detail: dict[str, Any] = {"detail": str(exc)}
    if isinstance(exc, NotFoundError):
        return JSONResponse(detail, status_code=404)
    if isinstance(exc, AlreadyExistsError | ConflictError):
        return JSONResponse(detail, status_code=409)
    if isinstance(exc, PayloadError):
        return JSONResponse(detail, status_code=exc.status_code)
    if isinstance(exc, SetupError):
        return JSONResponse({**detail, "setting": exc.setting}, status_code=503)
    if isinstance(exc, DeliveryError):
        return JSONResponse(detail, status_code=502)
    return JSONResponse(detail, status_code=400)


def invalid_request(exc: RequestValidationError) -> JSONResponse:
    """FastAPI's 422 without the refused values: ``loc``, ``msg`` and ``type`` of each error."""
    shown = []
    for error in exc.errors()[:MAX_ERRORS]:
        message = str(error.get("msg", "not valid"))
        reason = (error.get("ctx") or {}).get("error")
        if error.get("type") == "json_invalid" and isinstance(reason, str):
            message = f"{message}: {reason}"  # where the JSON breaks, not what it holds
        shown.append(
            {
                "loc": [
                    part if isinstance(part, int) else str(part)[:_MAX_LOC_PART]
                    for part in error.get("loc", ())
                ],
                "msg": message,
                "type": str(error.get("type", "value_error")),
            }
        )
    return JSONResponse({"detail": shown}, status_code=422)


def install(app: FastAPI) -> None:
    """Answer every airhook error raised by a route of ``app`` as the table says, and FastAPI's
    validation errors without the values refused."""

    async def handle(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AirhookError)
        return answer(request, exc)

    async def handle_invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return invalid_request(exc)

    app.add_exception_handler(AirhookError, handle)
    app.add_exception_handler(RequestValidationError, handle_invalid)
