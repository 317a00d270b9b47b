"""The one exception tree of airhook.

Every error airhook raises on purpose derives from :class:`AirhookError`, so a caller can catch
the family with one clause, and every field a caller acts on (an HTTP status, a JSON path, the
reason a signature was refused, the name that was not found) is an attribute, never something to
parse out of a message::

    AirhookError
    ├── VerificationError            the delivery is not proven to come from the sender
    │   ├── SignatureError           missing, malformed or wrong signature; stale timestamp
    │   ├── AuthenticationError      bearer token or basic credentials missing or wrong
    │   └── AddressNotAllowedError   the client address is outside the allow-list
    ├── PayloadError                 the body is not an event airhook accepts
    │   ├── PayloadParseError        not JSON, or beyond the size and nesting limits
    │   ├── UnknownEventError        the platform has no event of that name
    │   └── PayloadValidationError   the event does not match its JSON Schema
    ├── TemplateRenderError          an outbound template failed to render
    ├── DeliveryError                an outbound call did not succeed
    │   └── DestinationNotAllowedError   the URL resolves to a refused address (core.ssrf)
    ├── ConfigurationError           a source, subscription, scheme or option is not valid
    │                                (also a ValueError, which such errors were before)
    ├── NotFoundError                nothing of that kind and name
    │   ├── SourceNotFoundError
    │   ├── SubscriptionNotFoundError
    │   ├── DeliveryNotFoundError
    │   └── UnknownPlatformError     the catalog has no such platform
    ├── AlreadyExistsError           the name is taken
    │   ├── SourceExistsError
    │   └── SubscriptionExistsError
    ├── ConflictError                the action does not fit the current state
    ├── SetupError                   airhook cannot run as installed: no [core] fernet_key
    ├── LeaseLostError               another dispatcher took the lease mid-round
    └── CommandError                 the ``airhook`` command's own usage errors (airhook.cli)

Private control-flow signals (the receiver's body over the limit or client gone, a render past
its deadline) derive from :class:`AirhookError` too: ``tests/test_errors.py`` imports every
module of the package and checks that no exception class is left outside the tree, nor out of
this drawing.

Messages never contain a secret, a signature or a payload: they are written to logs.
"""

from __future__ import annotations

__all__ = [
    "AddressNotAllowedError",
    "AirhookError",
    "AlreadyExistsError",
    "AuthenticationError",
    "ConfigurationError",
    "ConflictError",
    "DeliveryError",
    "DeliveryNotFoundError",
    "LeaseLostError",
    "NotFoundError",
    "PayloadError",
    "PayloadParseError",
    "PayloadValidationError",
    "SetupError",
    "SignatureError",
    "SourceExistsError",
    "SourceNotFoundError",
    "SubscriptionExistsError",
    "SubscriptionNotFoundError",
    "TemplateRenderError",
    "UnknownEventError",
    "UnknownPlatformError",
    "VerificationError",
]


class AirhookError(Exception):
    """Base of every error airhook raises on purpose."""


class VerificationError(AirhookError):
    """A delivery could not be proven to come from its sender.

    :param reason: a short machine-readable code, stable across releases (used as a metric label).
    :param detail: a human explanation that contains no secret and no payload.
    """

    #: The HTTP status a receiver answers with.
    status_code: int = 401

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class SignatureError(VerificationError):
    """The signature or its timestamp is missing, malformed, stale or does not match.

    Reasons: ``missing_header``, ``malformed_header``, ``no_matching_signature``,
    ``timestamp_too_old``, ``timestamp_in_future``, ``no_secret``.
    """


class AuthenticationError(VerificationError):
    """Bearer token or basic-auth credentials are missing or wrong."""


class AddressNotAllowedError(VerificationError):
    """The client address is not in the source's IP allow-list."""

    status_code = 403


class PayloadError(AirhookError):
    """The body of a delivery, or an event to send, is not acceptable."""

    status_code: int = 400


class PayloadParseError(PayloadError):
    """The body is not a JSON object within the size and nesting limits."""

    def __init__(self, reason: str, detail: str = "") -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}" if detail else reason)


class UnknownEventError(PayloadError):
    """The platform defines no event of that name (or the envelope names none)."""

    status_code = 422

    def __init__(self, platform: str, event: object) -> None:
        self.platform = platform
        self.event = event
        # The value came from a payload: quoted only when it is a short name, else its type.
        shown = (
            repr(event)
            if isinstance(event, str) and len(event) <= 100
            else f"(a {type(event).__name__})"
        )
        super().__init__(f"{platform} has no event {shown}")


class PayloadValidationError(PayloadError):
    """An event does not match the JSON Schema of its type.

    :param platform: the platform profile, for example ``rkt``.
    :param event: the event name as the platform spells it.
    :param json_path: where in the payload the first relevant failure is, for example
        ``$.data.email``.
    :param keyword: the JSON Schema keyword that failed, for example ``required``.
    :param message: the validator's explanation; it may quote the offending value, so it goes to
        the sender in a response body but not into logs (log ``json_path`` and ``keyword``).
    :param missing: for ``required``, the properties missing at ``json_path`` (names from the
        schema, never values, so the error's text names them).
    """

    status_code = 422

    def __init__(
        self,
        *,
        platform: str,
        event: str,
        json_path: str,
        keyword: str,
        message: str,
        missing: tuple[str, ...] = (),
    ) -> None:
        self.platform = platform
        self.event = event
        self.json_path = json_path
        self.keyword = keyword
        self.message = message
        self.missing = missing
        named = f" (missing: {', '.join(missing)})" if missing else ""
        super().__init__(f"{platform} {event}: {json_path}: {keyword} failed{named}")


class TemplateRenderError(AirhookError):
    """An outbound template could not be rendered.

    :param template: the template's name (file name, or ``<inline>``).
    :param lineno: the line in the template where rendering failed, when known.
    """

    def __init__(self, template: str, lineno: int | None, message: str) -> None:
        self.template = template
        self.lineno = lineno
        self.message = message
        where = f"{template}:{lineno}" if lineno else template
        super().__init__(f"{where}: {message}")


class DeliveryError(AirhookError):
    """An outbound call failed.

    :param url: the target, without query string or credentials.
    :param status_code: the HTTP status, or ``None`` when no response arrived.
    :param message: what went wrong, naming no URL (kept as ``reason``).
    :param retryable: whether a later attempt may succeed.
    """

    def __init__(self, url: str, status_code: int | None, message: str, *, retryable: bool) -> None:
        self.url = url
        self.reason = message
        self.status_code = status_code
        self.retryable = retryable
        super().__init__(f"{url}: {message}")


class ConfigurationError(AirhookError, ValueError):
    """A source, a subscription, a signing scheme or one of their options is not valid.

    Also a :class:`ValueError`: these errors were plain ``ValueError`` before the tree, and
    callers (DAG code among them) may still catch them as such.

    :param field: the input field at fault (``url``, ``events``, ``body_template``…), when the
        error is about one: the management API answers 422 naming it.
    """

    status_code: int = 400

    def __init__(self, message: str = "", *, field: str | None = None) -> None:
        self.field = field
        super().__init__(message)


class NotFoundError(AirhookError):
    """Nothing of that kind goes by that name.

    :param kind: what was looked up: ``source``, ``subscription``, ``delivery``, ``platform``.
    :param name: the name (or id) asked for.
    :param known: the names that exist, when there are few enough to list.
    """

    status_code: int = 404

    def __init__(self, kind: str, name: str, *, known: tuple[str, ...] = ()) -> None:
        self.kind = kind
        self.name = name
        self.known = known
        listed = f" (known: {', '.join(known)})" if known else ""
        super().__init__(f"no {kind} named {name!r}{listed}")


class SourceNotFoundError(NotFoundError):
    """No inbound source of that name."""

    def __init__(self, name: str) -> None:
        super().__init__("source", name)


class SubscriptionNotFoundError(NotFoundError):
    """No outbound subscription of that name."""

    def __init__(self, name: str) -> None:
        super().__init__("subscription", name)


class DeliveryNotFoundError(NotFoundError):
    """No outbound delivery with that id (``name`` is the message id)."""

    def __init__(self, message_id: str) -> None:
        super().__init__("delivery", message_id)

    def __str__(self) -> str:
        return f"no delivery {self.name!r}"


class UnknownPlatformError(NotFoundError):
    """The event catalog has no platform of that name."""

    def __init__(self, name: str, known: tuple[str, ...] = ()) -> None:
        super().__init__("platform", name, known=known)


class AlreadyExistsError(AirhookError):
    """A name is taken.

    :param kind: ``source`` or ``subscription``.
    :param name: the name that exists already.
    """

    status_code: int = 409

    def __init__(self, kind: str, name: str) -> None:
        self.kind = kind
        self.name = name
        super().__init__(f"{kind} {name!r} exists already")


class SourceExistsError(AlreadyExistsError):
    """A source of that name exists already."""

    def __init__(self, name: str) -> None:
        super().__init__("source", name)


class SubscriptionExistsError(AlreadyExistsError):
    """A subscription of that name exists already."""

    def __init__(self, name: str) -> None:
        super().__init__("subscription", name)


class ConflictError(AirhookError):
    """The action does not fit the current state (a delivery being sent cannot be replayed).

    :param kind: what the action was about (``delivery``).
    :param name: its name or id.
    :param reason: what stands in the way, for a person to read.
    """

    status_code: int = 409

    def __init__(self, kind: str, name: str, reason: str) -> None:
        self.kind = kind
        self.name = name
        self.reason = reason
        super().__init__(f"{kind} {name}: {reason}")


class SetupError(AirhookError):
    """airhook cannot run as installed (for example, Airflow has no ``[core] fernet_key``).

    :param setting: the setting to fix, as Airflow's configuration names it.
    """

    def __init__(self, setting: str, message: str) -> None:
        self.setting = setting
        super().__init__(message)


class LeaseLostError(AirhookError):
    """Another dispatcher took the lease while this one was writing; its round was undone.

    :param holder: the dispatcher that lost the lease.
    """

    def __init__(self, holder: str) -> None:
        self.holder = holder
        super().__init__(f"dispatcher {holder} lost its lease")
