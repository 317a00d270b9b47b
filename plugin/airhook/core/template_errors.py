"""Every rendering failure as one TemplateRenderError: the template, its line, no values. Pure.

Syntax errors, undefined variables, sandbox refusals, missing templates, the render time limit
and any other exception raised while rendering all reach the caller as
:class:`~airhook.core.errors.TemplateRenderError` naming the template (the included one, with
the templates that included it) and, when known, its line. Messages name variables, attributes
and templates, never values: an exception that is not Jinja's own (its text may quote a value,
a secret from a header template for instance) is reported by type only, and is not chained.

The line comes from Jinja's debug support: it rewrites a rendering exception's traceback so that
frames of compiled template code point at the template's file and line
(:func:`template_frames`), and a paused render generator knows its template line
(:func:`generator_lineno`, for the limits the renderer checks between output chunks).
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

from jinja2 import TemplateError, TemplateNotFound, TemplateSyntaxError, UndefinedError
from jinja2.exceptions import SecurityError

from airhook.core.errors import TemplateRenderError
from airhook.core.template_files import TEMPLATE_SUFFIX, TemplateLoader

__all__ = ["cause", "generator_lineno", "render_error", "template_frames"]


def template_frames(tb: TracebackType | None) -> list[tuple[str, int]]:
    """Return (filename, line) of each template frame, outermost first.

    Jinja rewrites a rendering exception's traceback so that frames of compiled template code
    point at the template's file and line (its debug support); those frames carry
    ``__jinja_exception__`` in their globals.
    """
    frames = []
    while tb is not None:
        if "__jinja_exception__" in tb.tb_frame.f_globals:
            frames.append((tb.tb_frame.f_code.co_filename, tb.tb_lineno))
        tb = tb.tb_next
    return frames


def generator_lineno(generator: Any) -> tuple[str | None, int | None]:
    """Return the template filename and line a paused render generator is at."""
    filename: str | None = None
    lineno: int | None = None
    while generator is not None:
        frame = getattr(generator, "gi_frame", None)
        template = frame.f_globals.get("__jinja_template__") if frame is not None else None
        if template is not None and frame is not None:
            filename = template.filename
            lineno = template.get_corresponding_lineno(frame.f_lineno)
        generator = getattr(generator, "gi_yieldfrom", None)
    return filename, lineno


def cause(exc: BaseException) -> BaseException | None:
    """Chain Jinja's own errors (their text names variables, not values); drop any other."""
    return exc if isinstance(exc, TemplateError) else None


def render_error(exc: BaseException, name: str, loader: TemplateLoader) -> TemplateRenderError:
    """Translate any rendering failure into TemplateRenderError(template, line, message).

    :param name: how the caller names the template being rendered (a file name or a label).
    :param loader: the renderer's loader: it maps loaded files back to template names, and its
        folders are named when a template is not found.
    """
    frames = [
        (loader.name_of(filename, name), lineno)
        for filename, lineno in template_frames(exc.__traceback__)
    ]
    where, lineno = frames[-1] if frames else (name, None)
    via = ""
    if len(frames) > 1:
        outer = ", ".join(f"{n}:{line}" for n, line in reversed(frames[:-1]))
        via = f" (included from {outer})"

    if isinstance(exc, TemplateSyntaxError):
        template = exc.name or loader.name_of(exc.filename, name)
        return TemplateRenderError(template, exc.lineno, f"syntax error: {exc.message}")
    if isinstance(exc, TemplateNotFound) and not str(exc.name).endswith(TEMPLATE_SUFFIX):
        refused = f"template {exc.name!r} refused: template names end with {TEMPLATE_SUFFIX}"
        return TemplateRenderError(where, lineno, f"{refused}{via}")
    if isinstance(exc, TemplateNotFound):
        searched = ", ".join(str(p) for p in loader.searchpath) or "no caller folders"
        shipped = " and airhook's shipped templates" if loader.shipped else ""
        missing = f"template {exc.name!r} not found in {searched}{shipped}"
        if frames:
            return TemplateRenderError(where, lineno, f"{missing}{via}")
        return TemplateRenderError(str(exc.name or name), None, missing)
    if isinstance(exc, SecurityError):
        return TemplateRenderError(where, lineno, f"blocked by the sandbox: {exc}{via}")
    if isinstance(exc, UndefinedError):
        return TemplateRenderError(where, lineno, f"undefined: {exc}{via}")
    if isinstance(exc, TemplateError):
        return TemplateRenderError(where, lineno, f"{exc.message or type(exc).__name__}{via}")
    # Not Jinja's: its text may quote a value (a header template's secret, a payload field).
    return TemplateRenderError(
        where,
        lineno,
        f"{type(exc).__name__} raised while rendering (its message is withheld: it may quote "
        f"values){via}",
    )
