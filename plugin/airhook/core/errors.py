"""The one exception tree of airhook.

Every error airhook raises on purpose derives from :class:`AirhookError`, so a caller can catch
the family with one clause, and every field a caller acts on (an HTTP status, a JSON path, the
reason a signature was refused) is an attribute, never something to parse out of a message::

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
    └── DeliveryError                an outbound call did not succeed

Messages never contain a secret, a signature or a payload: they are written to logs.
"""

from __future__ import annotations

__all__ = [
    "AddressNotAllowedError",
    "AirhookError",
    "AuthenticationError",
    "DeliveryError",
    "PayloadError",
    "PayloadParseError",
    "PayloadValidationError",
    "SignatureError",
    "TemplateRenderError",
    "UnknownEventError",
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
    :param retryable: whether a later attempt may succeed.
    """

    def __init__(self, url: str, status_code: int | None, message: str, *, retryable: bool) -> None:
        self.url = url
        self.status_code = status_code
        self.retryable = retryable
        super().__init__(f"{url}: {message}")
