"""An outbound subscription: one endpoint that airhook delivers matching events to. Pure.

A subscription is the sender's side of what the platforms in ``shared/platforms/`` offer their
subscribers: a unique name, a URL, the events it wants (patterns with ``*``), an optional chatbot
filter (RKT's ``chatbotId``), the signing scheme and secrets a receiver verifies, and the rules of
delivery: method, timeout, extra headers, an optional body template and a retry schedule.

Three states, because "off" means two different things::

    active     deliveries go out
    disabled   switched off by airhook (10 consecutive failed deliveries, 410 Gone) or by an
               operator (``airhook subscriptions disable``): matching events are still recorded,
               as ``paused`` deliveries, and go out once the subscription is enabled again
    inactive   never switched on (created ``--inactive``): events are not recorded for it

Why the URL counts as a credential: a Slack incoming webhook or a Zapier catch hook is
authorised by its URL alone, so the store keeps it encrypted and logs show :attr:`origin` only.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from airhook.core.catalog import EventPattern, matches
from airhook.core.delivery_rules import DEFAULT_SCHEDULE, RetryPolicy
from airhook.core.errors import ConfigurationError
from airhook.core.secrets import Secret, SecretPair
from airhook.core.signing import SCHEMES, SigningScheme, get_scheme

__all__ = [
    "METHODS",
    "SUBSCRIPTION_NAME_RE",
    "Subscription",
    "SubscriptionState",
    "origin_of",
]

#: Names appear in CLI output, log lines and delivery ids: keep them plain (as source names).
SUBSCRIPTION_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")
METHODS = ("POST", "PUT", "PATCH")
#: Longest timeout a subscription may set: an attempt's claim on its delivery lasts this long.
MAX_TIMEOUT_SECONDS = 300.0
#: A schedule longer than this is a mistake, not a policy (the default has 8 entries).
MAX_SCHEDULE_LENGTH = 32
_HEADER_NAME_RE = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]{1,128}")
#: Headers the HTTP client or the signing scheme owns: an extra header may not replace them.
RESERVED_HEADERS = frozenset(
    {
        "host",
        "content-length",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)

SubscriptionState = Literal["active", "disabled", "inactive"]


def origin_of(url: str) -> str:
    """Return ``scheme://host[:port]`` of a URL: what may be shown and logged of it."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    try:
        port = parts.port
    except ValueError:
        port = None
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


@dataclass(frozen=True)
class Subscription:
    """One outbound endpoint, as the delivery engine uses it (secrets wrapped in ``Secret``).

    :param name: unique; part of every delivery's id, so renaming means new ids.
    :param url: where deliveries go (``http`` or ``https``); treated as a credential.
    :param events: event-name patterns, ``*`` matching any run of characters.
    :param chatbot_ids: when not empty, only events of these chatbots (RKT ``chatbotId``).
    :param scheme: signing scheme (``standard``, ``rkt``, ``ccai``, ``token``, ``hmac``), or
        ``None`` to send unsigned.
    :param secrets: primary and optional secondary secret; required with a scheme.
    :param scheme_options: the scheme's own options (e.g. ``header`` for ``hmac``).
    :param active: whether deliveries go out (see the module docstring for the states).
    :param method: ``POST``, ``PUT`` or ``PATCH``.
    :param timeout: seconds per attempt; ``None``: ``[airhook] outbound_timeout_seconds``.
    :param headers: extra request headers; kept encrypted, since they often carry a token.
    :param body_template: a template name or inline Jinja source rendering the body; ``None``
        sends the event payload itself.
    :param retry_schedule: the delay before each attempt, the first usually 0.
    :param consecutive_failures: deliveries that finally failed since the last success.
    :param disabled_reason: why the subscription was disabled (``None`` unless disabled).
    :param disabled_at: when it was disabled.
    """

    name: str
    url: str
    events: tuple[str, ...] = ("*",)
    chatbot_ids: tuple[str, ...] = ()
    scheme: str | None = "standard"
    secrets: SecretPair | None = None
    scheme_options: Mapping[str, Any] = field(default_factory=dict)
    active: bool = True
    method: str = "POST"
    timeout: float | None = None
    headers: Mapping[str, Secret] = field(default_factory=dict)
    body_template: str | None = None
    retry_schedule: tuple[float, ...] = DEFAULT_SCHEDULE
    consecutive_failures: int = 0
    disabled_reason: str | None = None
    disabled_at: datetime | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if not SUBSCRIPTION_NAME_RE.fullmatch(self.name):
            raise ConfigurationError(
                "a subscription name is 1-100 lower-case letters, digits, '-' or '_', "
                "starting with a letter or digit"
            )
        self._check_url()
        if isinstance(self.events, str) or not self.events:
            raise ConfigurationError("a subscription takes a list of event patterns ('*' for all)")
        for pattern in self.events:
            EventPattern(pattern)  # raises ConfigurationError for a bad pattern
        if isinstance(self.chatbot_ids, str) or any(
            not isinstance(c, str) or not c for c in self.chatbot_ids
        ):
            raise ConfigurationError("chatbot_ids is a list of non-empty chatbot ids")
        if self.scheme is not None:
            if self.scheme not in SCHEMES:
                raise ConfigurationError(
                    f"unknown signing scheme {self.scheme!r}; known: {sorted(SCHEMES)}"
                )
            if self.secrets is None:
                raise ConfigurationError(f"signing scheme {self.scheme!r} needs a secret")
            scheme = self.signing_scheme()  # bad options fail now, not at the first delivery
            try:
                # A secret the scheme cannot use (standard: not base64 after whsec_; ccai: more
                # than two) fails now too, rather than at every delivery.
                scheme.sign(b"", self.signing_secrets(), now=0, message_id="msg_check")  # type: ignore[union-attr]
            except ValueError as exc:
                raise ConfigurationError(
                    f"secret unusable with scheme {self.scheme!r}: {exc}"
                ) from None
        if self.method not in METHODS:
            raise ConfigurationError(f"method is one of {', '.join(METHODS)}, not {self.method!r}")
        if self.timeout is not None and not 0 < self.timeout <= MAX_TIMEOUT_SECONDS:
            raise ConfigurationError(
                f"timeout is more than 0 and at most {MAX_TIMEOUT_SECONDS:g} s"
            )
        for name, value in self.headers.items():
            if not _HEADER_NAME_RE.fullmatch(name):
                raise ConfigurationError(f"{name!r} is not a valid header name")
            if name.lower() in RESERVED_HEADERS:
                raise ConfigurationError(
                    f"header {name!r} is set by airhook and may not be replaced"
                )
            if not isinstance(value, Secret):
                raise TypeError("header values are Secret instances")
            if any(c in value.reveal() for c in "\r\n\0"):
                raise ConfigurationError(f"header {name!r} has a line break in its value")
        if self.body_template is not None and not self.body_template.strip():
            raise ConfigurationError("body_template is a template name or source, or None")
        if len(self.retry_schedule) > MAX_SCHEDULE_LENGTH:
            raise ConfigurationError(f"a retry schedule has at most {MAX_SCHEDULE_LENGTH} attempts")
        self.retry_policy()  # raises ConfigurationError for an empty or negative schedule
        if self.consecutive_failures < 0:
            raise ConfigurationError("consecutive_failures is not negative")
        if self.active and self.disabled_at is not None:
            raise ConfigurationError("an active subscription has no disabled_at")

    def _check_url(self) -> None:
        if not isinstance(self.url, str) or len(self.url) > 2048:
            raise ConfigurationError("a subscription URL is a string of at most 2048 characters")
        if any(c.isspace() for c in self.url):
            raise ConfigurationError("a subscription URL has no whitespace")
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https"):
            raise ConfigurationError("a subscription URL starts with https:// or http://")
        if not parts.hostname:
            raise ConfigurationError("a subscription URL names a host")
        try:
            parts.port  # noqa: B018 (urlsplit checks the port only when asked)
        except ValueError:
            raise ConfigurationError("a subscription URL has a bad port") from None

    # --- what the engine asks ----------------------------------------------------------------

    @property
    def state(self) -> SubscriptionState:
        """``active``, ``disabled`` (events kept as paused) or ``inactive`` (events not kept)."""
        if self.active:
            return "active"
        return "disabled" if self.disabled_at is not None else "inactive"

    @property
    def origin(self) -> str:
        """``scheme://host[:port]`` of the URL: the part safe to show and log."""
        return origin_of(self.url)

    def accepts(self, event: str, chatbot_id: str | None = None) -> bool:
        """Return whether the event matches (patterns and chatbot filter), whatever the state."""
        if self.chatbot_ids and chatbot_id not in self.chatbot_ids:
            return False
        return matches(self.events, event)

    def signing_scheme(self) -> SigningScheme | None:
        """Return the configured scheme, or ``None`` for unsigned deliveries."""
        if self.scheme is None:
            return None
        try:
            return get_scheme(self.scheme, **dict(self.scheme_options))
        except TypeError as exc:
            raise ConfigurationError(f"bad options for scheme {self.scheme!r}: {exc}") from None

    def signing_secrets(self) -> Sequence[Secret]:
        """The secrets to sign with, primary first (schemes that take one use the primary)."""
        return self.secrets.secrets if self.secrets else ()

    def retry_policy(self) -> RetryPolicy:
        """The retry policy of this endpoint (full jitter, ``Retry-After`` honoured)."""
        return RetryPolicy(schedule=tuple(float(d) for d in self.retry_schedule))

    # --- changes (each returns a new subscription) ---------------------------------------------

    def enabled(self) -> Subscription:
        """Return this subscription switched on, its failure count reset."""
        return replace(
            self, active=True, consecutive_failures=0, disabled_reason=None, disabled_at=None
        )

    def disabled(self, reason: str, at: datetime) -> Subscription:
        """Return this subscription disabled (its events are kept as paused deliveries)."""
        return replace(self, active=False, disabled_reason=reason, disabled_at=at)

    def with_new_secondary(self) -> Subscription:
        """Return it with a freshly generated secondary secret (signing uses both)."""
        return replace(self, secrets=self._pair().with_new_secondary())

    def rotated(self) -> Subscription:
        """Return it with primary and secondary swapped."""
        return replace(self, secrets=self._pair().rotated())

    def without_secondary(self) -> Subscription:
        """Return it signing with the primary secret only."""
        return replace(self, secrets=SecretPair(self._pair().primary))

    def _pair(self) -> SecretPair:
        if self.secrets is None:
            raise ConfigurationError(f"subscription {self.name!r} has no signing secret")
        return self.secrets
