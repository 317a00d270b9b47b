"""Naming a database error in a log line without what its message quotes.

A SQLAlchemy error's message carries the statement's parameters (``[parameters: …]``) and
PostgreSQL's DETAIL the failing row: for the inbox and Airflow's asset events, the payloads.
"""

from __future__ import annotations

__all__ = ["describe_error"]


def describe_error(error: BaseException) -> str:
    """Name an error by its type and driver error code, never its message, and where it was
    raised."""
    origin = getattr(error, "orig", None) or error  # SQLAlchemy wraps the driver's error
    name = f"{type(origin).__module__}.{type(origin).__qualname__}"
    code = getattr(origin, "pgcode", None) or getattr(origin, "sqlite_errorname", None)
    described = f"{name} {code}" if code else name
    frame = error.__traceback__
    while frame is not None and frame.tb_next is not None:
        frame = frame.tb_next
    if frame is not None:
        code_object = frame.tb_frame.f_code
        described += f" at {code_object.co_filename}:{frame.tb_lineno} ({code_object.co_name})"
    return described
