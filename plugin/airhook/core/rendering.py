"""Render outbound bodies, headers and URLs from Jinja templates whose authors are not ours.

A subscription's body template, or a file in a DAG folder, is written by someone who is not an
airhook developer and may not be trusted with the worker's Python objects. So templates run in
``ImmutableSandboxedEnvironment`` (no private attributes, no mutation of lists and dicts, sandboxed
``str.format``), with ``StrictUndefined`` (a misspelt or missing variable fails loudly instead of
sending an empty field to a CRM), and with a few extra limits the sandbox lacks: templates are
only ever files ending in ``.j2`` (so ``{% include %}`` cannot read ``airflow.cfg`` out of a
search folder), ``*`` and ``**`` refuse results beyond a size, the output is capped, and rendering
stops at a wall-clock deadline (nested loops over ``range`` allocate nothing yet never end).

Autoescaping is off: the output is JSON or text, not HTML. Values go into JSON with ``tojson``,
which writes valid JSON (orjson; non-ASCII kept as UTF-8) for any string, quotes and newlines
included, and fails on an undefined value instead of writing ``null``.

Every failure (syntax, undefined variable, sandbox violation, missing template, output that is
not JSON, any exception raised while rendering) becomes one :class:`TemplateRenderError` naming
the template and, when known, its line, never a value.

Templates are compiled once: files through Jinja's cache (recompiled when the file changes),
inline sources through a small cache keyed by their text.

This module is the façade: :class:`TemplateRenderer` and :func:`renderer_for`, and every public
name of the parts below, re-exported, so callers import from here only. Each job is a module of
its own:

- :mod:`airhook.core.template_sandbox`: the sandbox's extra bounds (sizes, widths) and the
  render deadline;
- :mod:`airhook.core.template_filters`: airhook's filters (``tojson``, ``iso8601``, ``dig``…);
- :mod:`airhook.core.template_files`: template names, the loader, shipped templates, headers;
- :mod:`airhook.core.template_errors`: failures translated into :class:`TemplateRenderError`;
- :mod:`airhook.core.template_variables`: :func:`template_context`, the standard variables.
"""

from __future__ import annotations

import functools
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import orjson
from jinja2 import StrictUndefined, Template, TemplateNotFound

from airhook.core.errors import TemplateRenderError
from airhook.core.template_errors import cause, generator_lineno, render_error
from airhook.core.template_files import (
    TEMPLATE_SUFFIX,
    TemplateDoc,
    TemplateLoader,
    is_template_name,
    shipped_templates,
    template_doc,
)
from airhook.core.template_filters import FILTERS
from airhook.core.template_sandbox import (
    DEFAULT_MAX_OUTPUT_CHARS,
    DEFAULT_RENDER_TIMEOUT_SECONDS,
    MAX_INT_BITS,
    MAX_INT_EXPONENT,
    MAX_REPEAT_ITEMS,
    RENDER_DEADLINE,
    SandboxEnvironment,
    guarded_builtin_filters,
    timeout_message,
)
from airhook.core.template_variables import STANDARD_VARIABLES, template_context

__all__ = [
    "DEFAULT_MAX_OUTPUT_CHARS",
    "DEFAULT_RENDER_TIMEOUT_SECONDS",
    "INLINE",
    "INLINE_CACHE_SIZE",
    "MAX_INT_BITS",
    "MAX_INT_EXPONENT",
    "MAX_REPEAT_ITEMS",
    "STANDARD_VARIABLES",
    "TEMPLATE_SUFFIX",
    "TemplateDoc",
    "TemplateRenderer",
    "is_template_name",
    "renderer_for",
    "shipped_templates",
    "template_context",
]

#: The name an inline template reports in errors unless the caller gives one.
INLINE = "<inline>"
#: Inline templates kept compiled per renderer.
INLINE_CACHE_SIZE = 256


# -- the renderer --------------------------------------------------------------------------------


class TemplateRenderer:
    """Render templates from caller folders and airhook's shipped library, in a sandbox.

    Build one per set of folders and keep it (or use :func:`renderer_for`): it holds the compiled
    templates. Thread-safe for rendering.

    :param searchpath: folders searched first, in order (the DAG folder, ``template_searchpath``);
        a file there overrides a shipped template of the same name.
    :param shipped: whether to fall back to airhook's shipped templates.
    :param max_output_chars: rendering fails once the output grows past this.
    :param render_timeout_seconds: rendering fails once one render has taken this long (wall
        clock); ``None`` for no limit. Airflow-facing callers pass ``[airhook]
        render_timeout_seconds``.
    """

    def __init__(
        self,
        searchpath: Iterable[str | os.PathLike[str]] = (),
        *,
        shipped: bool = True,
        max_output_chars: int = DEFAULT_MAX_OUTPUT_CHARS,
        render_timeout_seconds: float | None = DEFAULT_RENDER_TIMEOUT_SECONDS,
    ) -> None:
        if render_timeout_seconds is not None and not render_timeout_seconds > 0:
            raise ValueError("render_timeout_seconds must be positive (or None for no limit)")
        self.searchpath: tuple[Path, ...] = tuple(Path(p) for p in searchpath)
        self.max_output_chars = max_output_chars
        self.render_timeout_seconds = render_timeout_seconds
        self._loader = TemplateLoader(self.searchpath, shipped=shipped)
        self.environment = SandboxEnvironment(
            loader=self._loader,
            undefined=StrictUndefined,
            # Bodies are JSON or text, never HTML: HTML escaping would corrupt them. Values are
            # made safe for JSON by the tojson filter instead.
            autoescape=False,
            trim_blocks=True,
            lstrip_blocks=True,
            auto_reload=True,
            cache_size=400,
        )
        self.environment.globals.pop("lipsum", None)  # unbounded text generator, no use here
        self.environment.filters.update(FILTERS)
        self.environment.filters.update(guarded_builtin_filters(self.environment.filters))
        self._inline: dict[tuple[str, str], Template] = {}

    def __repr__(self) -> str:
        return f"TemplateRenderer(searchpath={[str(p) for p in self.searchpath]!r})"

    # -- public API ------------------------------------------------------------------------------

    def render_string(self, source: str, context: Mapping[str, Any], name: str = INLINE) -> str:
        """Render template source given inline (a URL, a header value, a body).

        :param source: the template text.
        :param context: the variables (see :func:`template_context`).
        :param name: how errors name this template, for example ``"body of subscription crm"``.
        """
        try:
            template = self._compile_inline(source, name)
        except Exception as exc:
            raise render_error(exc, name, self._loader) from cause(exc)
        return self._render(template, context, name)

    def render_file(self, name: str, context: Mapping[str, Any]) -> str:
        """Render the template file ``name`` (relative, ending ``.j2``) from the search path."""
        if not name.endswith(TEMPLATE_SUFFIX):
            raise TemplateRenderError(name, None, f"template names end with {TEMPLATE_SUFFIX}")
        try:
            template = self.environment.get_template(name)
        except Exception as exc:
            raise render_error(exc, name, self._loader) from cause(exc)
        return self._render(template, context, name)

    def render(self, name_or_source: str, context: Mapping[str, Any]) -> str:
        """Render a template file if :func:`is_template_name` says so, else inline source."""
        if is_template_name(name_or_source):
            return self.render_file(name_or_source, context)
        return self.render_string(name_or_source, context)

    def render_json(
        self, name_or_source: str, context: Mapping[str, Any], *, name: str | None = None
    ) -> Any:
        """Render (a file or inline source, as :meth:`render` decides) and parse the JSON.

        :param name: for inline source, how errors name it (default ``<inline>``).
        :raises TemplateRenderError: also when the output is not JSON; the message gives the
            output's line and column, not its text.
        """
        if is_template_name(name_or_source):
            label = name_or_source
            text = self.render_file(name_or_source, context)
        else:
            label = name or INLINE
            text = self.render_string(name_or_source, context, label)
        if not text.strip():
            raise TemplateRenderError(label, None, "rendered output is empty, not JSON")
        try:
            return orjson.loads(text)
        except orjson.JSONDecodeError as exc:
            raise TemplateRenderError(
                label,
                None,
                f"rendered output is not JSON: {exc.msg} at output line {exc.lineno}, "
                f"column {exc.colno} (use the tojson filter for values)",
            ) from None

    def describe(self, name: str) -> TemplateDoc:
        """Return the documentation comment ``name`` starts with (and its ``Supports:`` claims)."""
        if not name.endswith(TEMPLATE_SUFFIX):
            raise TemplateRenderError(name, None, f"template names end with {TEMPLATE_SUFFIX}")
        try:
            source, _, _ = self._loader.get_source(self.environment, name)
        except TemplateNotFound as exc:
            raise render_error(exc, name, self._loader) from None
        return template_doc(name, source)

    def list_templates(self) -> list[str]:
        """Return every template name this renderer can load (caller folders and shipped)."""
        return self._loader.list_templates()

    # -- internals -------------------------------------------------------------------------------

    def _compile_inline(self, source: str, name: str) -> Template:
        key = (name, source)
        template = self._inline.get(key)
        if template is None:
            # filename=None: traceback frames then say "<template>" (TemplateLoader.name_of).
            code = self.environment.compile(source, name=name)
            template = self.environment.template_class.from_code(
                self.environment, code, self.environment.make_globals(None)
            )
            if len(self._inline) >= INLINE_CACHE_SIZE:
                self._inline.pop(next(iter(self._inline)), None)
            self._inline[key] = template
        return template

    def _render(self, template: Template, context: Mapping[str, Any], name: str) -> str:
        limit = self.max_output_chars
        seconds = self.render_timeout_seconds
        bound = (time.monotonic() + seconds, seconds) if seconds is not None else None
        chunks: list[str] = []
        size = 0
        token = RENDER_DEADLINE.set(bound)
        generator = template.generate(context)
        try:
            for chunk in generator:
                size += len(chunk)
                if size > limit:
                    filename, lineno = generator_lineno(generator)
                    raise TemplateRenderError(
                        self._loader.name_of(filename, name),
                        lineno,
                        f"output longer than {limit} characters",
                    )
                if bound is not None and time.monotonic() > bound[0]:
                    filename, lineno = generator_lineno(generator)
                    raise TemplateRenderError(
                        self._loader.name_of(filename, name), lineno, timeout_message(bound[1])
                    )
                chunks.append(chunk)
        except TemplateRenderError:
            raise
        except Exception as exc:
            raise render_error(exc, name, self._loader) from cause(exc)
        finally:
            generator.close()  # type: ignore[attr-defined]  # a generator, typed Iterator by Jinja
            RENDER_DEADLINE.reset(token)
        return "".join(chunks)


@functools.lru_cache(maxsize=32)
def _cached_renderer(
    searchpath: tuple[str, ...], shipped: bool, render_timeout_seconds: float | None
) -> TemplateRenderer:
    return TemplateRenderer(
        searchpath, shipped=shipped, render_timeout_seconds=render_timeout_seconds
    )


def renderer_for(
    searchpath: Iterable[str | os.PathLike[str]] = (),
    *,
    shipped: bool = True,
    render_timeout_seconds: float | None = DEFAULT_RENDER_TIMEOUT_SECONDS,
) -> TemplateRenderer:
    """Return a renderer shared by every caller with the same folders and limits (compiled
    templates kept across tasks and deliveries in one process).

    :param render_timeout_seconds: see :class:`TemplateRenderer`.
    """
    return _cached_renderer(
        tuple(os.fspath(p) for p in searchpath), shipped, render_timeout_seconds
    )
