"""Input checks that name the field at fault, for every change the services make.

Why a module of its own: the core's models check a whole source or subscription at once, and
their errors say what is wrong but not in which field, while a form or an API client needs the
field. So the services apply a change one field at a time (:func:`apply`), each step under
:func:`field`, and the core's own checks run at each step: whatever fails is the field's. The
few checks the core leaves to its callers (a pattern that names no known event, a template that
does not compile, scheme options of the wrong type) are here too.

Every error is a :class:`~airhook.core.errors.ConfigurationError` with ``field`` set, and says
why without quoting a value that could be a secret.
"""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any, TypeVar

from airhook.core.catalog import Catalog, EventPattern, matches
from airhook.core.errors import ConfigurationError, TemplateRenderError
from airhook.core.secrets import generate_secret
from airhook.core.signing import SCHEMES

__all__ = [
    "MAX_IDS",
    "apply",
    "check_event_patterns",
    "check_ids",
    "check_scheme_options",
    "check_template",
    "field",
    "strings",
    "utc",
]

T = TypeVar("T")

#: Most ids one request may name (re-dispatch, replay).
MAX_IDS = 1000
#: Longest chatbot id, basic user or filter value accepted.
_MAX_TEXT = 200


@contextmanager
def field(name: str | None) -> Iterator[None]:
    """Name ``name`` in any :class:`ConfigurationError` raised inside the block.

    An error that already names its field keeps it.
    """
    try:
        yield
    except ConfigurationError as exc:
        if exc.field is not None or name is None:
            raise
        raise ConfigurationError(str(exc), field=name) from None


def apply(model: T, changes: Mapping[str, Any], order: Sequence[str]) -> T:
    """Return ``model`` with ``changes`` made one field at a time, in ``order``.

    Each step rebuilds the frozen dataclass, so its own checks run with the fields changed so
    far: an error at a step is that field's (the model was valid before it).
    """
    for name in order:
        if name in changes:
            with field(name):
                model = dataclasses.replace(model, **{name: changes[name]})  # type: ignore[type-var]
    return model


def strings(value: Any, name: str, *, allow_empty: bool = True) -> tuple[str, ...]:
    """A list of short printable strings, as a tuple (``name`` names the field)."""
    if isinstance(value, str) or not isinstance(value, Sequence):
        raise ConfigurationError(f"{name} is a list of strings", field=name)
    if not allow_empty and not value:
        raise ConfigurationError(f"{name} names at least one item", field=name)
    for item in value:
        if not isinstance(item, str) or not item or len(item) > _MAX_TEXT:
            raise ConfigurationError(
                f"each of {name} is a non-empty string of at most {_MAX_TEXT} characters",
                field=name,
            )
        if not item.isprintable():
            raise ConfigurationError(f"{name} may not hold control characters", field=name)
    return tuple(value)


def check_event_patterns(
    patterns: Sequence[str], catalog: Catalog, *, platform: str | None, name: str = "events"
) -> None:
    """Refuse a pattern that is malformed, or that matches no event airhook knows.

    :param platform: the catalog platform the events come from; ``None``: any platform's
        (a subscription's events come from any publisher). A pattern of ``*`` alone is always
        allowed.
    """
    known = sorted({e.name for e in catalog.events(platform)})
    for pattern in patterns:
        with field(name):
            EventPattern(pattern)
        if pattern != "*" and not any(matches(pattern, event) for event in known):
            where = f"{platform}'s events" if platform else "the catalog"
            raise ConfigurationError(
                f"event pattern {pattern!r} matches none of {where}", field=name
            )


def _option_types(scheme: str) -> dict[str, Any]:
    """The options a scheme takes, with their declared types."""
    cls = SCHEMES[scheme]
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls) if f.name != "name"}


def _fits(value: Any, hint: Any) -> bool:
    """Whether an option's JSON value has the type the scheme declares."""
    allowed = typing.get_args(hint) if typing.get_origin(hint) is not None else (hint,)
    for kind in allowed:
        if kind is type(None) and value is None:
            return True
        if kind is int and isinstance(value, int) and not isinstance(value, bool):
            return True
        if kind is str and isinstance(value, str):
            return True
        if isinstance(kind, str) and isinstance(value, str):  # Literal["hex", "base64"]
            return True
    return False


def check_scheme_options(
    scheme: str | None, options: Any, *, extra: Mapping[str, type] | None = None
) -> dict[str, Any]:
    """Return a scheme's options once they are known, of their types, and sign with them.

    :param extra: options the caller takes besides the scheme's own (a source's ``event_field``).
    """
    if not isinstance(options, Mapping):
        raise ConfigurationError("scheme_options is an object", field="scheme_options")
    options = dict(options)
    if scheme is None:
        if options:
            raise ConfigurationError(
                "scheme_options go with a signing scheme", field="scheme_options"
            )
        return options
    if scheme not in SCHEMES:
        raise ConfigurationError(
            f"unknown signing scheme {scheme!r}; known: {sorted(SCHEMES)}", field="scheme"
        )
    extra = extra or {}
    types = _option_types(scheme)
    own: dict[str, Any] = {}
    for key, value in options.items():
        if key in extra:
            if not isinstance(value, extra[key]):
                raise ConfigurationError(
                    f"option {key!r} has the wrong type", field="scheme_options"
                )
            continue
        if key not in types:
            known = ", ".join(sorted([*types, *extra])) or "none"
            raise ConfigurationError(
                f"scheme {scheme!r} takes no option {key!r} (it takes: {known})",
                field="scheme_options",
            )
        if not _fits(value, types[key]):
            raise ConfigurationError(f"option {key!r} has the wrong type", field="scheme_options")
        own[key] = value
    with field("scheme_options"):
        try:
            signer = SCHEMES[scheme](**own)
            signer.sign(b"{}", [generate_secret()], now=0, message_id="msg_check")
        except ConfigurationError:
            raise
        except (TypeError, ValueError) as exc:
            raise ConfigurationError(f"options unusable with scheme {scheme!r}: {exc}") from None
    return options


def check_template(template: Any, samples: Sequence[T], render: Callable[[T], object]) -> None:
    """Refuse a body template that does not render JSON for any of ``samples``.

    :param samples: the catalog events the subscription takes (a few); a template that renders
        for at least one of them is accepted, since a field only some events carry is no
        mistake. A syntax error, an unknown template name or output that is not JSON fails
        for every one.
    :param render: renders the template for one sample, as a delivery would (the delivery
        engine's planner), raising :class:`TemplateRenderError`.
    """
    if not isinstance(template, str) or not template.strip():
        raise ConfigurationError(
            "body_template is a template name or source, or null", field="body_template"
        )
    first: TemplateRenderError | None = None
    for sample in samples:
        try:
            render(sample)
            return
        except TemplateRenderError as exc:
            first = first or exc
    if first is None:
        return
    where = f" (line {first.lineno})" if first.lineno else ""
    raise ConfigurationError(
        f"body_template does not render{where}: {first.message}", field="body_template"
    )


def check_ids(ids: Any, name: str = "ids") -> list[str]:
    """A non-empty list of at most :data:`MAX_IDS` ids, without repeats."""
    found = list(dict.fromkeys(strings(ids, name, allow_empty=False)))
    if len(found) > MAX_IDS:
        raise ConfigurationError(f"at most {MAX_IDS} {name} per request", field=name)
    return found


def utc(moment: datetime | None, name: str) -> datetime | None:
    """A time as UTC (naive: UTC already); one outside what UTC can hold names its field."""
    if moment is None:
        return None
    if moment.tzinfo is None:
        return moment.replace(tzinfo=timezone.utc)
    try:
        return moment.astimezone(timezone.utc)
    except OverflowError:
        raise ConfigurationError(f"{name} is out of range", field=name) from None
