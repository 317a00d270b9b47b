"""The event catalog: every platform's events, their JSON Schemas, samples and canonical kinds.

The schemas live in the ``schemas/`` folder of the repository and ship inside the package as
``airhook.schemas``: ``common.json`` (shared definitions), and per platform an ``envelope.json``
(the delivery's outer shape, plus an ``x-airhook-platform`` annotation saying which field names
the event, carries the delivery id and so on) and one ``<event>.json`` per event (annotated with
``x-airhook-event`` and ``x-airhook-kind``, with a valid sample under ``examples``).

Why two validators: the schemas are Draft 7, which fastjsonschema compiles to Python code that
checks a 1 KB event in a few microseconds; jsonschema is twenty times slower but explains a
failure well (``best_match``, JSON path). So the hot path runs the compiled check and only a
failure pays for jsonschema's explanation. Both are built once, when the catalog loads.

Event patterns use ``*`` as the only wildcard; it matches any run of characters, dots included:
``*``, ``insight.*``, ``ticket.*``.
"""

from __future__ import annotations

import copy
import functools
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib import resources
from importlib.abc import Traversable
from typing import Any

import fastjsonschema
import jsonschema
import referencing
import referencing.jsonschema
from jsonschema.exceptions import best_match

from airhook.core.errors import (
    ConfigurationError,
    PayloadValidationError,
    UnknownEventError,
    UnknownPlatformError,
)

__all__ = [
    "CANONICAL_KINDS",
    "Catalog",
    "EventPattern",
    "EventType",
    "Platform",
    "load_catalog",
    "matches",
]

#: Canonical kinds: one vocabulary across platforms, so that a DAG can wait for "a conversation
#: started" whichever platform it came from. Every event schema names exactly one of these.
CANONICAL_KINDS: Mapping[str, str] = {
    "conversation.started": "a chat, session or conversation was created",
    "conversation.updated": "a conversation's status changed",
    "conversation.closed": "a conversation ended or was resolved",
    "conversation.escalated": "a conversation was handed to a human",
    "conversation.transferred": "a conversation moved to another agent or queue",
    "conversation.assigned": "a human agent took over a conversation",
    "conversation.returned": "a conversation went back from a human to the AI",
    "message.created": "a message was written, by either side",
    "message.received": "the end user sent a message",
    "message.sent": "the AI or an agent answered",
    "insight.summary": "a conversation summary was generated",
    "insight.topic": "topics were detected in a conversation",
    "insight.key": "key points of a conversation were extracted",
    "insight.conversation": "conversation metrics were computed",
    "insight.sentiment": "a conversation's sentiment was scored",
    "lead.captured": "an end user left contact details",
    "ticket.created": "a support ticket was opened",
    "ticket.updated": "a support ticket changed",
    "ticket.resolved": "a support ticket was resolved",
    "ticket.reopened": "a resolved ticket was reopened",
    "ticket.assigned": "a support ticket was assigned to an agent",
    "agent.escalation": "the AI agent decided to escalate",
    "agent.error": "the AI agent failed",
    "agent.training": "the AI agent finished training",
    "system.maintenance": "the platform entered maintenance",
    "system.error": "the platform reported an error",
    "system.backup": "the platform finished a backup",
    "system.update": "the platform deployed an update",
}

_PATTERN_RE = re.compile(r"[A-Za-z0-9_.*\-]{1,200}")


class EventPattern:
    """An event-name pattern where ``*`` matches any run of characters (dots included).

    Matched without a regular expression: ``.*`` runs one after another (``**``) or between
    letters a name repeats (``*a*a*a*Z`` against ``aaaa…``) make a backtracking engine try
    every split of the name, which for a 20-character pattern outlasts any request. Only ``*``
    is special, so the text before the first star must begin the name, the text after the last
    must end it, and each piece in between is found leftmost, in order: linear in the name.
    """

    __slots__ = ("_first", "_last", "_middle", "text")

    def __init__(self, text: str) -> None:
        if not _PATTERN_RE.fullmatch(text):
            raise ConfigurationError(
                f"event pattern {text!r} may use letters, digits, '_', '-', '.' and '*' only"
            )
        self.text = text
        parts = text.split("*")
        self._first = parts[0]
        # None: no star, the name is the text itself.
        self._last: str | None = parts[-1] if len(parts) > 1 else None
        self._middle = tuple(part for part in parts[1:-1] if part)

    def matches(self, name: str) -> bool:
        """Return whether the event ``name`` matches this pattern."""
        if self._last is None:
            return name == self.text
        end = len(name) - len(self._last)
        if end < len(self._first) or not name.startswith(self._first):
            return False
        if not name.endswith(self._last):
            return False
        at = len(self._first)
        for part in self._middle:
            found = name.find(part, at, end)
            if found < 0:
                return False
            at = found + len(part)
        return True

    def __repr__(self) -> str:
        return f"EventPattern({self.text!r})"


@functools.lru_cache(maxsize=1024)
def _pattern(text: str) -> EventPattern:
    return EventPattern(text)


def matches(pattern: str | Iterable[str], name: str) -> bool:
    """Return whether ``name`` matches the pattern, or any of several patterns."""
    patterns = (pattern,) if isinstance(pattern, str) else pattern
    return any(_pattern(p).matches(name) for p in patterns)


@dataclass(frozen=True)
class Platform:
    """A platform's envelope: where its deliveries keep the event name, id and so on."""

    name: str
    title: str
    event_field: str
    id_field: str | None
    timestamp_field: str | None
    chatbot_field: str | None
    signing: str
    envelope_schema: Mapping[str, Any] = field(repr=False)


@dataclass(frozen=True)
class EventType:
    """One event of one platform."""

    platform: str
    name: str
    kind: str
    description: str
    schema: Mapping[str, Any] = field(repr=False)
    example: Mapping[str, Any] = field(repr=False)
    _check: Callable[[Any], Any] = field(repr=False, compare=False)
    _explainer: jsonschema.protocols.Validator = field(repr=False, compare=False)

    @property
    def sample(self) -> dict[str, Any]:
        """A valid payload of this event: a fresh copy each time, free to change."""
        return copy.deepcopy(dict(self.example))

    def validate(self, payload: Any) -> None:
        """Raise :class:`PayloadValidationError` unless ``payload`` is valid for this type."""
        try:
            self._check(payload)
        except fastjsonschema.JsonSchemaValueException as fast_error:
            raise self._explain(payload, fast_error) from None

    def is_valid(self, payload: Any) -> bool:
        """Return whether ``payload`` is valid, by the fast validator alone."""
        try:
            self._check(payload)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    def errors(self, payload: Any) -> list[jsonschema.ValidationError]:
        """Return every violation, explained by jsonschema (slow: for reports and tests)."""
        return list(self._explainer.iter_errors(payload))

    def _explain(
        self, payload: Any, fast_error: fastjsonschema.JsonSchemaValueException
    ) -> PayloadValidationError:
        error = best_match(self._explainer.iter_errors(payload))
        if error is None:  # the validators disagree; report what the fast one saw
            path = "$" + (fast_error.name or "data").removeprefix("data")
            return PayloadValidationError(
                platform=self.platform,
                event=self.name,
                json_path=path,
                keyword=fast_error.rule or "unknown",
                message=fast_error.message,
            )
        missing: tuple[str, ...] = ()
        if (
            error.validator == "required"
            and isinstance(error.instance, Mapping)
            and isinstance(error.validator_value, list)
        ):
            # Every property the object lacks, not only the one best_match picked; the names
            # come from the schema, so the error's text (which is logged) may carry them.
            missing = tuple(str(n) for n in error.validator_value if n not in error.instance)
        return PayloadValidationError(
            platform=self.platform,
            event=self.name,
            json_path=error.json_path,
            keyword=str(error.validator),
            message=error.message,
            missing=missing,
        )


class Catalog:
    """Every platform and event airhook knows, loaded once from the shipped schemas."""

    def __init__(self, root: Traversable) -> None:
        documents = dict(_read_documents(root))
        registry: referencing.Registry = referencing.Registry().with_resources(
            (uri, referencing.jsonschema.DRAFT7.create_resource(doc))
            for uri, doc in documents.items()
        )
        by_uri = {uri: doc for uri, doc in documents.items()}

        def load_local(uri: str) -> Any:
            # Refs resolve against the schemas' own (unreachable) $id: never fetch anything.
            try:
                return by_uri[uri]
            except KeyError:
                raise LookupError(f"schema {uri} is not shipped with airhook") from None

        handlers = {"https": load_local, "http": load_local}
        self.platforms: dict[str, Platform] = {}
        self._events: dict[str, dict[str, EventType]] = {}
        for doc in documents.values():
            info = doc.get("x-airhook-platform")
            if info:
                self.platforms[info["name"]] = Platform(
                    name=info["name"],
                    title=info["title"],
                    event_field=info["event_field"],
                    id_field=info["id_field"],
                    timestamp_field=info["timestamp_field"],
                    chatbot_field=info["chatbot_field"],
                    signing=info["signing"],
                    envelope_schema=doc,
                )
                self._events.setdefault(info["name"], {})
        for uri, doc in documents.items():
            name = doc.get("x-airhook-event")
            if name is None:
                continue
            platform = uri.rsplit("/", 2)[-2]
            kind = doc["x-airhook-kind"]
            if kind not in CANONICAL_KINDS:
                raise ValueError(f"{uri}: unknown canonical kind {kind!r}")
            self._events[platform][name] = EventType(
                platform=platform,
                name=name,
                kind=kind,
                description=doc.get("description", ""),
                schema=doc,
                example=doc["examples"][0],
                _check=fastjsonschema.compile(doc, handlers=handlers, use_formats=False),
                _explainer=jsonschema.Draft7Validator(doc, registry=registry),
            )

    def platform(self, name: str) -> Platform:
        """Return the platform called ``name``."""
        try:
            return self.platforms[name]
        except KeyError:
            raise UnknownPlatformError(name, tuple(sorted(self.platforms))) from None

    def event(self, platform: str, name: str) -> EventType:
        """Return one event type, or raise :class:`UnknownEventError`."""
        try:
            return self._events[platform][name]
        except KeyError:
            raise UnknownEventError(platform, name) from None

    def events(self, platform: str | None = None, pattern: str = "*") -> Iterator[EventType]:
        """Yield the event types of one platform (or all), whose names match ``pattern``."""
        platforms = [self.platform(platform).name] if platform is not None else sorted(self._events)
        for name in platforms:
            for event in self._events[name].values():
                if matches(pattern, event.name):
                    yield event

    def events_of_kind(self, kind_pattern: str) -> Iterator[EventType]:
        """Yield the event types of every platform whose canonical kind matches the pattern."""
        for event in self.events():
            if matches(kind_pattern, event.kind):
                yield event

    def event_name(self, platform: str, payload: Any) -> str:
        """Return the event name a payload's envelope carries, or raise UnknownEventError."""
        field_name = self.platforms[platform].event_field
        name = payload.get(field_name) if isinstance(payload, dict) else None
        if not isinstance(name, str) or name not in self._events[platform]:
            raise UnknownEventError(platform, name)
        return name

    def validate(self, platform: str, payload: Any) -> EventType:
        """Validate a parsed delivery against the schema of the event it names; return its type."""
        event = self._events[platform][self.event_name(platform, payload)]
        event.validate(payload)
        return event


def _read_documents(root: Traversable) -> Iterator[tuple[str, dict[str, Any]]]:
    def walk(folder: Traversable) -> Iterator[Traversable]:
        for entry in sorted(folder.iterdir(), key=lambda e: e.name):
            if entry.is_dir():
                yield from walk(entry)
            elif entry.name.endswith(".json"):
                yield entry

    for entry in walk(root):
        document = json.loads(entry.read_text(encoding="utf-8"))
        yield document["$id"], document


def schema_root() -> Traversable:
    """Return the folder of the shipped schemas (inside the installed package)."""
    return resources.files("airhook.schemas")


@functools.cache
def load_catalog() -> Catalog:
    """Return the catalog of the shipped schemas, built once per process."""
    return Catalog(schema_root())
