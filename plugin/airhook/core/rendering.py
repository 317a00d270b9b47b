"""Render outbound bodies, headers and URLs from Jinja templates whose authors are not ours.

A subscription's body template, or a file in a DAG folder, is written by someone who is not an
airhook developer and may not be trusted with the worker's Python objects. So templates run in
``ImmutableSandboxedEnvironment`` (no private attributes, no mutation of lists and dicts, sandboxed
``str.format``), with ``StrictUndefined`` (a misspelt or missing variable fails loudly instead of
sending an empty field to a CRM), and with a few extra limits the sandbox lacks: templates are
only ever files ending in ``.j2`` (so ``{% include %}`` cannot read ``airflow.cfg`` out of a
search folder), ``*`` and ``**`` refuse results beyond a size, the output is capped, and rendering
stops at a wall-clock deadline (nested loops over ``range`` allocate nothing yet never end).

The deadline is checked where a template spends its time: each item of every ``{% for %}`` loop,
each call (macros, methods, ``loop()`` recursion), each attribute or item lookup, and each output
chunk. It lives in a context variable set for the duration of one render, so one renderer serves
many threads, each with its own clock.

Autoescaping is off: the output is JSON or text, not HTML. Values go into JSON with ``tojson``,
which writes valid JSON (orjson; non-ASCII kept as UTF-8) for any string, quotes and newlines
included, and fails on an undefined value instead of writing ``null``.

Every failure (syntax, undefined variable, sandbox violation, missing template, output that is
not JSON, any exception raised while rendering) becomes one :class:`TemplateRenderError` naming
the template and, when known, its line. Messages name variables, attributes and templates, never
values: an exception that is not Jinja's own (its text may quote a value, a secret from a header
template for instance) is reported by type only.

Templates are compiled once: files through Jinja's cache (recompiled when the file changes),
inline sources through a small cache keyed by their text.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import os
import re
import string
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from types import TracebackType
from typing import Any

import jinja2
import orjson
from jinja2 import (
    BaseLoader,
    FileSystemLoader,
    StrictUndefined,
    Template,
    TemplateError,
    TemplateNotFound,
    TemplateSyntaxError,
    Undefined,
    UndefinedError,
    nodes,
    pass_environment,
)
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import FilterArgumentError, SecurityError, TemplateRuntimeError
from jinja2.loaders import split_template_path
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from airhook.core.errors import AirhookError, TemplateRenderError

__all__ = [
    "DEFAULT_MAX_OUTPUT_CHARS",
    "DEFAULT_RENDER_TIMEOUT_SECONDS",
    "INLINE",
    "STANDARD_VARIABLES",
    "TEMPLATE_SUFFIX",
    "TemplateDoc",
    "TemplateRenderer",
    "is_template_name",
    "renderer_for",
    "shipped_templates",
    "template_context",
]

#: Only files with this suffix are templates, in caller folders and among the shipped ones.
TEMPLATE_SUFFIX = ".j2"
#: The name an inline template reports in errors unless the caller gives one.
INLINE = "<inline>"
#: Rendering stops with an error past this many characters of output (a runaway loop).
DEFAULT_MAX_OUTPUT_CHARS = 10_000_000
#: Rendering stops with an error after this many seconds (``[airhook] render_timeout_seconds``).
DEFAULT_RENDER_TIMEOUT_SECONDS = 5.0
#: ``'x' * n`` and ``[..] * n`` may not build more items than this.
MAX_REPEAT_ITEMS = 1_000_000
#: ``a ** b`` on integers may not use an exponent larger than this (10 ** 10 ** 9 never ends).
MAX_INT_EXPONENT = 1_000
#: ``a * b`` on integers may not build a number larger than this many bits.
MAX_INT_BITS = 100_000
#: Inline templates kept compiled per renderer.
INLINE_CACHE_SIZE = 256

#: The variables :func:`template_context` always defines (``None`` when unknown).
STANDARD_VARIABLES: tuple[str, ...] = (
    "event",
    "data",
    "event_name",
    "event_id",
    "kind",
    "platform",
    "source",
    "timestamp",
    "now",
)

_PACKAGE = "airhook.templates"
# Padding methods allocate whatever width they are given: not needed in a webhook body.
_UNSAFE_STR_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_MAX_FILTER_WIDTH = 1_000
_RFC3339 = re.compile(
    r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])[Tt]([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9]"
    r"(\.[0-9]{1,9})?([Zz]|[+-]([01][0-9]|2[0-3]):[0-5][0-9])"
)
_HEADER = re.compile(r"\A\s*\{#(.*?)#\}", re.DOTALL)
_JSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_NAIVE_UTC | orjson.OPT_UTC_Z


def is_template_name(value: str) -> bool:
    """Return whether ``value`` names a template file rather than being template source.

    The rule Airflow applies to ``template_ext``: a one-line string ending in ``.j2`` is a file
    name; anything else (a ``{`` or a newline in it, another ending) is the template itself.
    """
    return value.endswith(TEMPLATE_SUFFIX) and "\n" not in value and "{" not in value


def shipped_templates() -> list[str]:
    """Return the names of airhook's shipped templates (``slack.json.j2``, ``envelope/rkt…``)."""

    def walk(folder: Traversable, prefix: str) -> Iterator[str]:
        for entry in folder.iterdir():
            if entry.is_dir():
                if entry.name != "__pycache__":
                    yield from walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(TEMPLATE_SUFFIX):
                yield f"{prefix}{entry.name}"

    return sorted(walk(resources.files(_PACKAGE), ""))


def _rfc3339(moment: dt.datetime) -> str:
    """Format a moment in UTC with ``Z``; milliseconds only when there are any."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=dt.timezone.utc)
    moment = moment.astimezone(dt.timezone.utc)
    spec = "milliseconds" if moment.microsecond else "seconds"
    return moment.isoformat(timespec=spec).replace("+00:00", "Z")


def template_context(
    *,
    event: Mapping[str, Any] | None = None,
    data: Mapping[str, Any] | None = None,
    event_name: str | None = None,
    event_id: str | None = None,
    kind: str | None = None,
    platform: str | None = None,
    source: str | None = None,
    timestamp: str | dt.datetime | None = None,
    now: str | dt.datetime | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Build the variables every template may rely on, plus template-specific extras.

    Every name in :data:`STANDARD_VARIABLES` is defined (``None`` when unknown), so a template
    can test ``platform`` or write ``event_id or …`` without tripping ``StrictUndefined``; an
    extra (``chatbot_id``, ``title``…) exists only when given, so a template that needs one fails
    naming it. What is not given is read from ``event`` where every platform's envelope keeps it:
    the name in ``event``/``event_type``/``type``, the id in ``id``/``event_id``, the time in
    ``timestamp``/``created_at``, the body in ``data``.

    :param event: the full event payload (an envelope as a platform sends it), if there is one.
    :param data: the event's body; defaults to ``event["data"]``, else ``{}``.
    :param event_name: the event's name as its platform spells it (``lead.captured``).
    :param event_id: the delivery or event id.
    :param kind: the canonical kind (``lead.captured``, ``conversation.started``…).
    :param platform: the platform profile (``rkt``, ``caleida``, ``eev``, ``ccai``, ``standard``).
    :param source: the airhook source the event arrived through, or the sender's name.
    :param timestamp: when the event happened; defaults to the envelope's time, else ``now``.
    :param now: the clock, passed in (tests, replays); defaults to the current UTC time.
    :param extra: template-specific variables, documented in each template's header.
    """
    envelope: dict[str, Any] = dict(event) if event is not None else {}

    def first(*keys: str) -> Any:
        for key in keys:
            value = envelope.get(key)
            if value is not None:
                return value
        return None

    if now is None:
        now = dt.datetime.now(dt.timezone.utc)
    now_text = _rfc3339(now) if isinstance(now, dt.datetime) else now
    if data is None:
        body = envelope.get("data")
        data = body if isinstance(body, Mapping) else {}
    if timestamp is None:
        timestamp = first("timestamp", "created_at")
    context: dict[str, Any] = {
        "event": envelope,
        "data": data,
        "event_name": event_name
        if event_name is not None
        else first("event", "event_type", "type"),
        "event_id": event_id if event_id is not None else first("id", "event_id"),
        "kind": kind,
        "platform": platform,
        "source": source,
        "timestamp": _rfc3339(timestamp) if isinstance(timestamp, dt.datetime) else timestamp,
        "now": now_text,
    }
    if context["timestamp"] is None:
        context["timestamp"] = now_text
    context.update(extra)
    return context


# -- filters -------------------------------------------------------------------------------------


def _fail_if_undefined(value: Any) -> None:
    if isinstance(value, Undefined):
        value._fail_with_undefined_error()


def _json_default(value: Any) -> Any:
    """Serialise what orjson does not know; an undefined value raises its UndefinedError."""
    _fail_if_undefined(value)
    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Mapping):
        return dict(value)
    if isinstance(value, (set, frozenset)) or (
        isinstance(value, Sequence) and not isinstance(value, (str, bytes))
    ):
        return list(value)
    raise TypeError(f"tojson cannot write a value of type {type(value).__name__}")


def _tojson(value: Any, indent: int | None = None, sort_keys: bool = False) -> str:
    """Write ``value`` as JSON: UTF-8 kept, NaN and infinities as ``null`` (orjson's rule)."""
    _fail_if_undefined(value)
    options = _JSON_OPTIONS
    if indent is not None:
        if indent != 2:
            raise FilterArgumentError("tojson supports indent=2 only")
        options |= orjson.OPT_INDENT_2
    if sort_keys:
        options |= orjson.OPT_SORT_KEYS
    try:
        return orjson.dumps(value, default=_json_default, option=options).decode("utf-8")
    except orjson.JSONEncodeError as exc:
        cause = exc.__cause__
        if isinstance(cause, UndefinedError):
            raise cause from None
        # orjson's messages name types and limits, not values.
        raise TemplateRuntimeError(f"tojson: {exc}") from None


def _iso8601(value: Any) -> str | None:
    """Format a date-time as RFC 3339 in UTC (``2026-03-26T15:30:00Z``).

    Accepts a ``datetime`` (naive means UTC), a ``date``, epoch seconds, or a string: a valid
    RFC 3339 string is returned unchanged (a delivery's own timestamp is not reformatted), other
    ISO 8601 strings are normalised. ``None`` stays ``None`` so optional fields can pass through.
    """
    _fail_if_undefined(value)
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        return _rfc3339(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _rfc3339(dt.datetime.fromtimestamp(value, tz=dt.timezone.utc))
    if isinstance(value, str):
        if _RFC3339.fullmatch(value):
            return value
        try:
            return _rfc3339(dt.datetime.fromisoformat(value))
        except ValueError:
            raise FilterArgumentError("iso8601: the string is not an ISO 8601 date-time") from None
    raise FilterArgumentError(f"iso8601: cannot format a {type(value).__name__}")


_MISSING = object()


def _lookup(value: Any, path: str) -> Any:
    current = value
    for part in path.split("."):
        if isinstance(current, Mapping):
            current = current.get(part, _MISSING)
        elif (
            isinstance(current, Sequence)
            and not isinstance(current, (str, bytes))
            and part.lstrip("-").isdigit()
        ):
            index = int(part)
            current = current[index] if -len(current) <= index < len(current) else _MISSING
        else:
            return _MISSING
        if current is _MISSING or current is None:
            return _MISSING
    return current


@pass_environment
def _dig(environment: jinja2.Environment, value: Any, *paths: str) -> Any:
    """Return the first of several dotted paths present (and not null) in ``value``.

    Payload shapes differ across platforms (``email``, ``customer.email``, ``visitor.email``);
    attribute access would fail on the first missing level. Nothing found yields an undefined
    value: ``| default(...)`` makes it optional, printing it fails naming the paths.
    """
    _fail_if_undefined(value)
    if not paths:
        raise FilterArgumentError("dig needs at least one path")
    for path in paths:
        found = _lookup(value, path)
        if found is not _MISSING:
            return found
    return environment.undefined(hint=f"none of {', '.join(paths)} is present")


def _required(value: Any, what: str = "a required value") -> Any:
    """Fail, naming ``what``, when ``value`` is undefined or ``None``."""
    if isinstance(value, Undefined) or value is None:
        raise UndefinedError(f"{what} is required but missing")
    return value


def _compact(value: Any) -> dict[Any, Any]:
    """Return a mapping without its ``None`` values (optional fields left out, not ``null``)."""
    _fail_if_undefined(value)
    if not isinstance(value, Mapping):
        raise FilterArgumentError(f"compact needs a mapping, not a {type(value).__name__}")
    return {key: item for key, item in value.items() if item is not None}


def _merge(value: Any, *others: Any) -> dict[Any, Any]:
    """Return a new mapping: ``value`` updated by each of ``others`` (the sandbox forbids
    ``dict.update``; this builds a copy instead)."""
    merged: dict[Any, Any] = {}
    for mapping in (value, *others):
        _fail_if_undefined(mapping)
        if not isinstance(mapping, Mapping):
            raise FilterArgumentError(f"merge needs mappings, not a {type(mapping).__name__}")
        merged.update(mapping)
    return merged


def _flatten(value: Any, sep: str = "_") -> dict[str, Any]:
    """Flatten nested mappings into one level: ``{"a": {"b": 1}}`` -> ``{"a_b": 1}``.

    Lists are kept as they are (Zapier turns a list into line items).
    """
    _fail_if_undefined(value)
    if not isinstance(value, Mapping):
        raise FilterArgumentError(f"flatten needs a mapping, not a {type(value).__name__}")
    flat: dict[str, Any] = {}

    def visit(mapping: Mapping[Any, Any], prefix: str) -> None:
        for key, item in mapping.items():
            name = f"{prefix}{key}"
            if isinstance(item, Mapping) and item:
                visit(item, f"{name}{sep}")
            else:
                flat[name] = item

    visit(value, "")
    return flat


#: A printf-style conversion: flags, width, precision ("*" takes them from the arguments).
_PRINTF_SPEC = re.compile(r"%(?:\([^)]*\))?[-+ #0]*(\*|\d+)?(?:\.(\*|\d+))?[a-zA-Z%]")
#: The numbers of a str.format spec (width, precision), and a nested field ("{:{w}}").
_FORMAT_NUMBERS = re.compile(r"\d+")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_printf_widths(template: str) -> None:
    """Refuse a ``%`` format whose width or precision could allocate without bound."""
    for width, precision in _PRINTF_SPEC.findall(template):
        for number in (width, precision):
            if number == "*" or (number and int(number) > _MAX_FILTER_WIDTH):
                raise SecurityError(f"'%' format width above {_MAX_FILTER_WIDTH}")


def _check_format_widths(template: str) -> None:
    """Refuse a ``str.format`` template whose field widths could allocate without bound."""
    for _, field, spec, _ in string.Formatter().parse(template):
        if field is None or not spec:
            continue
        if "{" in spec or any(
            int(number) > _MAX_FILTER_WIDTH for number in _FORMAT_NUMBERS.findall(spec)
        ):
            raise SecurityError(f"format width above {_MAX_FILTER_WIDTH}")


def _check_replace(text: str, old: str, new: str, count: int = -1) -> None:
    """Refuse ``replace`` that would add more than :data:`MAX_REPEAT_ITEMS` characters."""
    growth = len(new) - len(old)
    if growth <= 0:
        return
    found = text.count(old) if old else len(text) + 1
    if count >= 0:
        found = min(found, count)
    if found * growth > MAX_REPEAT_ITEMS:
        raise SecurityError(f"replace would add more than {MAX_REPEAT_ITEMS} characters")


def _guarded_format_filter(value: Any, *args: Any, **kwargs: Any) -> str:
    text = str(value)
    _check_printf_widths(text)
    return text % (kwargs or args)


@jinja2.pass_eval_context
def _guarded_replace_filter(
    eval_ctx: Any, value: Any, old: str, new: str, count: int | None = None
) -> Any:
    _check_replace(str(value), str(old), str(new), -1 if count is None else count)
    return jinja2.filters.do_replace(eval_ctx, value, old, new, count)


def _guard_width(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(original)
    def guarded(value: Any, width: Any = 80, *args: Any, **kwargs: Any) -> Any:
        if isinstance(width, int) and width > _MAX_FILTER_WIDTH:
            raise SecurityError(f"{name} width above {_MAX_FILTER_WIDTH}")
        return original(value, width, *args, **kwargs)

    return guarded


# -- the deadline --------------------------------------------------------------------------------

#: The running render's (``time.monotonic()`` deadline, limit in seconds); ``None``: no limit.
#: A context variable, not an attribute: renderers are shared by threads, each with its own clock.
_DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar(
    "airhook_render_deadline", default=None
)


def _timeout_message(seconds: float) -> str:
    return f"rendering took longer than {seconds:g} seconds, the render time limit"


class _RenderTimeout(TemplateRuntimeError, AirhookError):
    """The render ran past its deadline (reported as a TemplateRenderError naming the line)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(_timeout_message(seconds))


def _check_deadline() -> None:
    bound = _DEADLINE.get()
    if bound is not None and time.monotonic() > bound[0]:
        raise _RenderTimeout(bound[1])


class _TimedIterator:
    """Iterate ``iterable``, checking the deadline before each item.

    ``len()`` is passed through so that ``loop.length`` does not turn a ``range`` into a list.
    """

    __slots__ = ("_deadline", "_iterable", "_iterator", "_seconds")

    def __init__(self, iterable: Any, deadline: float, seconds: float) -> None:
        self._iterable = iterable
        self._iterator = iter(iterable)
        self._deadline = deadline
        self._seconds = seconds

    def __iter__(self) -> _TimedIterator:
        return self

    def __next__(self) -> Any:
        if time.monotonic() > self._deadline:
            raise _RenderTimeout(self._seconds)
        return next(self._iterator)

    def __len__(self) -> int:
        return len(self._iterable)


# -- environment and loader ----------------------------------------------------------------------


class _CodeGenerator(CodeGenerator):
    """Jinja's code generator, with every ``~`` concatenation checked by the environment and
    every ``{% for %}`` loop's items checked against the deadline."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # The iterables of the loops being compiled, innermost last (Jinja allows no custom
        # node type to mark them with).
        self._loop_iterables: list[nodes.Node] = []

    def visit_For(self, node: nodes.For, frame: Frame) -> None:
        # Two nested loops over range(100000) allocate nothing and call nothing, yet run for
        # hours: the items themselves must check the clock. (A recursive loop's deeper levels
        # iterate what loop() was given; those calls go through the environment's call().)
        self._loop_iterables.append(node.iter)
        try:
            super().visit_For(node, frame)
        finally:
            self._loop_iterables.pop()

    def visit(self, node: nodes.Node, *args: Any, **kwargs: Any) -> Any:
        if self._loop_iterables and node is self._loop_iterables[-1]:
            self.write("environment.timed_iter(")
            super().visit(node, *args, **kwargs)
            self.write(")")
            return None
        return super().visit(node, *args, **kwargs)

    def visit_Concat(self, node: nodes.Concat, frame: Frame) -> None:
        # '~' compiles to a join the sandbox never sees; doubling a string with it in a loop
        # would grow without bound. Each result is checked (so at most twice the limit is
        # ever built).
        self.write("environment.checked_concat(")
        super().visit_Concat(node, frame)
        self.write(")")


class _Environment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus limits on what one expression may allocate."""

    code_generator_class = _CodeGenerator

    def timed_iter(self, iterable: Any) -> Any:
        _check_deadline()
        bound = _DEADLINE.get()
        if bound is None:
            return iterable
        return _TimedIterator(iterable, *bound)

    def checked_concat(self, value: Any) -> Any:
        if len(value) > DEFAULT_MAX_OUTPUT_CHARS:
            raise SecurityError(f"'~' would build more than {DEFAULT_MAX_OUTPUT_CHARS} characters")
        return value

    intercepted_binops = frozenset({"*", "**", "%", "+"})

    def is_safe_attribute(self, obj: Any, attr: str, value: Any) -> bool:
        if isinstance(obj, str) and attr in _UNSAFE_STR_METHODS:
            return False
        return super().is_safe_attribute(obj, attr, value)

    def call_binop(self, context: Context, operator: str, left: Any, right: Any) -> Any:
        if operator == "%" and isinstance(left, str):
            _check_printf_widths(left)
        elif operator == "*":
            for seq, count in ((left, right), (right, left)):
                if (
                    isinstance(seq, (str, list, tuple))
                    and isinstance(count, int)
                    and len(seq) * count > MAX_REPEAT_ITEMS
                ):
                    raise SecurityError(f"'*' would build more than {MAX_REPEAT_ITEMS} items")
            if (
                _is_int(left)
                and _is_int(right)
                and left.bit_length() + right.bit_length() > MAX_INT_BITS
            ):
                # Squaring in a loop doubles the digits each time.
                raise SecurityError(f"'*' would build an integer above {MAX_INT_BITS} bits")
        elif (
            operator == "+"
            and isinstance(left, (str, list, tuple))
            and isinstance(right, (str, list, tuple))
            and len(left) + len(right) > DEFAULT_MAX_OUTPUT_CHARS
        ):
            # Doubling in a loop: 'x + x' thirty times is a gigabyte.
            raise SecurityError(f"'+' would build more than {DEFAULT_MAX_OUTPUT_CHARS} items")
        elif (
            operator == "**"
            and isinstance(left, int)
            and isinstance(right, int)
            and abs(left) > 1
            and right > MAX_INT_EXPONENT
        ):
            raise SecurityError(f"'**' with an exponent above {MAX_INT_EXPONENT}")
        return super().call_binop(context, operator, left, right)

    def wrap_str_format(self, value: Any) -> Callable[..., str] | None:
        # The sandbox's own wrapper of str.format and str.format_map, checked first.
        wrapped = super().wrap_str_format(value)
        if wrapped is None:
            return None
        template = value.__self__

        def checked(*args: Any, **kwargs: Any) -> str:
            _check_format_widths(template)
            return wrapped(*args, **kwargs)

        return checked

    def getattr(self, obj: Any, attribute: str) -> Any:
        _check_deadline()
        return super().getattr(obj, attribute)

    def getitem(self, obj: Any, argument: Any) -> Any:
        _check_deadline()
        return super().getitem(obj, argument)

    def call(__self, __context: Context, __obj: Any, *args: Any, **kwargs: Any) -> Any:
        _check_deadline()
        if isinstance(getattr(__obj, "__self__", None), str) and __obj.__name__ == "replace":
            old, new = (str(a) for a in args[:2])
            count = int(args[2]) if len(args) > 2 else -1
            _check_replace(__obj.__self__, old, new, count)
        return super().call(__context, __obj, *args, **kwargs)


class _Loader(BaseLoader):
    """Caller folders first, in order, then airhook's shipped templates; ``.j2`` files only.

    It remembers which file each name came from, so an error raised in an included template can
    be reported under the template's name rather than its absolute path.
    """

    def __init__(self, searchpath: Sequence[Path], *, shipped: bool) -> None:
        self.searchpath = tuple(searchpath)
        self.shipped = shipped
        self._folders = FileSystemLoader([str(p) for p in self.searchpath]) if searchpath else None
        self.names: dict[str, str] = {}

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if not template.endswith(TEMPLATE_SUFFIX):
            raise TemplateNotFound(template, f"template names end with {TEMPLATE_SUFFIX}")
        if self._folders is not None:
            try:
                source, filename, uptodate = self._folders.get_source(environment, template)
            except TemplateNotFound:
                pass
            else:
                if filename is not None:
                    self.names[filename] = template
                return source, filename, uptodate
        if self.shipped:
            resource = resources.files(_PACKAGE).joinpath(*split_template_path(template))
            if resource.is_file():
                filename = str(resource)
                self.names[filename] = template
                # Shipped files change only with a new installation, i.e. a new process.
                return resource.read_text(encoding="utf-8"), filename, lambda: True
        raise TemplateNotFound(template)

    def list_templates(self) -> list[str]:
        names = set(shipped_templates()) if self.shipped else set()
        if self._folders is not None:
            names.update(n for n in self._folders.list_templates() if n.endswith(TEMPLATE_SUFFIX))
        return sorted(names)


def _template_frames(tb: TracebackType | None) -> list[tuple[str, int]]:
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


def _generator_lineno(generator: Any) -> tuple[str | None, int | None]:
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


@dataclass(frozen=True)
class TemplateDoc:
    """The documentation comment a template starts with, and the events it claims to support.

    The header's ``Supports:`` line lists ``platform:event`` patterns (``*`` a wildcard), comma
    separated; tests render each claimed sample event, so the claim is checked, not just stated.
    """

    name: str
    text: str
    supports: tuple[str, ...]

    @property
    def summary(self) -> str:
        """The header's first paragraph, on one line."""
        return " ".join(self.text.split("\n\n", 1)[0].split())

    def supports_event(self, platform: str, event_name: str) -> bool:
        """Return whether the template claims to render this platform's event."""
        key = f"{platform}:{event_name}"
        for pattern in self.supports:
            full = pattern if ":" in pattern else f"{pattern}:*"
            regex = ".*".join(re.escape(part) for part in full.split("*"))
            if re.fullmatch(regex, key):
                return True
        return False


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
        self._loader = _Loader(self.searchpath, shipped=shipped)
        self.environment = _Environment(
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
        self.environment.filters.update(
            tojson=_tojson,
            iso8601=_iso8601,
            dig=_dig,
            required=_required,
            compact=_compact,
            merge=_merge,
            flatten=_flatten,
            center=_guard_width("center", self.environment.filters["center"]),
            indent=_guard_width("indent", self.environment.filters["indent"]),
            wordwrap=_guard_width("wordwrap", self.environment.filters["wordwrap"]),
            format=_guarded_format_filter,
            replace=_guarded_replace_filter,
        )
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
            raise self._error(exc, name) from _cause(exc)
        return self._render(template, context, name)

    def render_file(self, name: str, context: Mapping[str, Any]) -> str:
        """Render the template file ``name`` (relative, ending ``.j2``) from the search path."""
        if not name.endswith(TEMPLATE_SUFFIX):
            raise TemplateRenderError(name, None, f"template names end with {TEMPLATE_SUFFIX}")
        try:
            template = self.environment.get_template(name)
        except Exception as exc:
            raise self._error(exc, name) from _cause(exc)
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
            raise self._error(exc, name) from None
        match = _HEADER.match(source)
        if match is None:
            raise TemplateRenderError(name, 1, "the template does not start with a {# … #} comment")
        lines = [line.rstrip() for line in match.group(1).strip("\n").splitlines()]
        margin = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
        text = "\n".join(line[margin:] for line in lines).strip()
        supports: tuple[str, ...] = ()
        for line in text.splitlines():
            if line.startswith("Supports:"):
                items = line.removeprefix("Supports:").split(",")
                supports = tuple(item.strip() for item in items if item.strip())
        return TemplateDoc(name=name, text=text, supports=supports)

    def list_templates(self) -> list[str]:
        """Return every template name this renderer can load (caller folders and shipped)."""
        return self._loader.list_templates()

    # -- internals -------------------------------------------------------------------------------

    def _compile_inline(self, source: str, name: str) -> Template:
        key = (name, source)
        template = self._inline.get(key)
        if template is None:
            # filename=None: Jinja's traceback frames then say "<template>", mapped back below.
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
        token = _DEADLINE.set(bound)
        generator = template.generate(context)
        try:
            for chunk in generator:
                size += len(chunk)
                if size > limit:
                    filename, lineno = _generator_lineno(generator)
                    raise TemplateRenderError(
                        self._name_of(filename, name),
                        lineno,
                        f"output longer than {limit} characters",
                    )
                if bound is not None and time.monotonic() > bound[0]:
                    filename, lineno = _generator_lineno(generator)
                    raise TemplateRenderError(
                        self._name_of(filename, name), lineno, _timeout_message(bound[1])
                    )
                chunks.append(chunk)
        except TemplateRenderError:
            raise
        except Exception as exc:
            raise self._error(exc, name) from _cause(exc)
        finally:
            generator.close()  # type: ignore[attr-defined]  # a generator, typed Iterator by Jinja
            _DEADLINE.reset(token)
        return "".join(chunks)

    def _name_of(self, filename: str | None, default: str) -> str:
        if filename is None or filename == "<template>":
            return default
        return self._loader.names.get(filename, default)

    def _error(self, exc: BaseException, name: str) -> TemplateRenderError:
        """Translate any rendering failure into TemplateRenderError(template, line, message)."""
        frames = [
            (self._name_of(filename, name), lineno)
            for filename, lineno in _template_frames(exc.__traceback__)
        ]
        where, lineno = frames[-1] if frames else (name, None)
        via = ""
        if len(frames) > 1:
            outer = ", ".join(f"{n}:{line}" for n, line in reversed(frames[:-1]))
            via = f" (included from {outer})"

        if isinstance(exc, TemplateSyntaxError):
            template = exc.name or self._name_of(exc.filename, name)
            return TemplateRenderError(template, exc.lineno, f"syntax error: {exc.message}")
        if isinstance(exc, TemplateNotFound) and not str(exc.name).endswith(TEMPLATE_SUFFIX):
            refused = f"template {exc.name!r} refused: template names end with {TEMPLATE_SUFFIX}"
            return TemplateRenderError(where, lineno, f"{refused}{via}")
        if isinstance(exc, TemplateNotFound):
            searched = ", ".join(str(p) for p in self.searchpath) or "no caller folders"
            shipped = " and airhook's shipped templates" if self._loader.shipped else ""
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


def _cause(exc: BaseException) -> BaseException | None:
    """Chain Jinja's own errors (their text names variables, not values); drop any other."""
    return exc if isinstance(exc, TemplateError) else None


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
