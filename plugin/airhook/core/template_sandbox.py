"""The Jinja sandbox outbound templates run in, with the bounds the sandbox itself lacks. Pure.

``ImmutableSandboxedEnvironment`` keeps a template away from private attributes, from mutating
lists and dicts, and from ``str.format``'s attribute walks. It does not bound what one expression
may allocate or how long a render may run, and a template's author is not trusted with either.
:class:`SandboxEnvironment` adds:

- sizes: ``*`` refuses to build more than :data:`MAX_REPEAT_ITEMS` items or an integer above
  :data:`MAX_INT_BITS` bits, ``**`` an exponent above :data:`MAX_INT_EXPONENT`, ``+`` and ``~``
  a result longer than :data:`DEFAULT_MAX_OUTPUT_CHARS`; ``replace`` may not add more than
  :data:`MAX_REPEAT_ITEMS` characters; ``%`` and ``str.format`` widths, the padding filters and
  the padding ``str`` methods are limited or refused (they allocate whatever width they are
  given);
- time: a wall-clock deadline, checked where a template spends its time: each item of every
  ``{% for %}`` loop (:class:`_CodeGenerator` wraps the loop's iterable), each call (macros,
  methods, ``loop()`` recursion), each attribute or item lookup, and, by the renderer, each
  output chunk. Nested loops over ``range`` allocate nothing yet never end.

The deadline lives in a context variable (:data:`RENDER_DEADLINE`) that the renderer sets for the
duration of one render, so one environment serves many threads, each with its own clock.
"""

from __future__ import annotations

import functools
import re
import string
import time
from collections.abc import Callable, Mapping
from contextvars import ContextVar
from typing import Any

import jinja2
from jinja2 import nodes
from jinja2.compiler import CodeGenerator, Frame
from jinja2.exceptions import SecurityError, TemplateRuntimeError
from jinja2.runtime import Context
from jinja2.sandbox import ImmutableSandboxedEnvironment

from airhook.core.errors import AirhookError

__all__ = [
    "DEFAULT_MAX_OUTPUT_CHARS",
    "DEFAULT_RENDER_TIMEOUT_SECONDS",
    "MAX_INT_BITS",
    "MAX_INT_EXPONENT",
    "MAX_REPEAT_ITEMS",
    "RENDER_DEADLINE",
    "SandboxEnvironment",
    "guarded_builtin_filters",
    "timeout_message",
]

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

# Padding methods allocate whatever width they are given: not needed in a webhook body.
_UNSAFE_STR_METHODS = frozenset({"center", "ljust", "rjust", "zfill", "expandtabs"})
_MAX_FILTER_WIDTH = 1_000


# -- sizes ---------------------------------------------------------------------------------------

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


def guarded_builtin_filters(
    filters: Mapping[str, Callable[..., Any]],
) -> dict[str, Callable[..., Any]]:
    """Return bounded replacements for Jinja's built-in filters that allocate what they are
    asked to (``center``, ``indent``, ``wordwrap``, ``format``, ``replace``).

    :param filters: the environment's filters, whose padding filters are wrapped.
    """
    return {
        "center": _guard_width("center", filters["center"]),
        "indent": _guard_width("indent", filters["indent"]),
        "wordwrap": _guard_width("wordwrap", filters["wordwrap"]),
        "format": _guarded_format_filter,
        "replace": _guarded_replace_filter,
    }


# -- the deadline --------------------------------------------------------------------------------

#: The running render's (``time.monotonic()`` deadline, limit in seconds); ``None``: no limit.
#: A context variable, not an attribute: renderers are shared by threads, each with its own clock.
RENDER_DEADLINE: ContextVar[tuple[float, float] | None] = ContextVar(
    "airhook_render_deadline", default=None
)


def timeout_message(seconds: float) -> str:
    """What a render that ran past its deadline of ``seconds`` reports."""
    return f"rendering took longer than {seconds:g} seconds, the render time limit"


class _RenderTimeout(TemplateRuntimeError, AirhookError):
    """The render ran past its deadline (reported as a TemplateRenderError naming the line)."""

    def __init__(self, seconds: float) -> None:
        super().__init__(timeout_message(seconds))


def _check_deadline() -> None:
    bound = RENDER_DEADLINE.get()
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


# -- the environment -----------------------------------------------------------------------------


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


class SandboxEnvironment(ImmutableSandboxedEnvironment):
    """The immutable sandbox, plus limits on what one expression may allocate and on time."""

    code_generator_class = _CodeGenerator

    def timed_iter(self, iterable: Any) -> Any:
        _check_deadline()
        bound = RENDER_DEADLINE.get()
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
