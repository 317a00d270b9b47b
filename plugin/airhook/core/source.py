"""An inbound source: who may deliver to one receiver URL, and how they prove it. Pure, no Airflow.

A source is a unique name (its URL is ``/airhook/webhooks/<name>``), a platform profile, the
secrets its signing scheme checks (primary and secondary), optional bearer tokens or basic
credentials, an optional IP allow-list, an optional chatbot filter and the event patterns it
accepts.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from airhook.core.access import BasicCredentials, IpAllowList
from airhook.core.catalog import EventPattern, matches
from airhook.core.errors import ConfigurationError
from airhook.core.profiles import PROFILES
from airhook.core.secrets import Secret, SecretPair
from airhook.core.signing import SCHEMES, SigningScheme, get_scheme

__all__ = ["SOURCE_NAME_RE", "Source"]

#: Source names appear in URLs, asset URIs and log lines: keep them plain.
SOURCE_NAME_RE = re.compile(r"[a-z0-9][a-z0-9_-]{0,99}")


@dataclass(frozen=True)
class Source:
    """One inbound source, as the receiver uses it (secrets decrypted, wrapped in ``Secret``)."""

    name: str
    profile: str
    scheme: str | None
    secrets: SecretPair | None = None
    scheme_options: dict[str, Any] = field(default_factory=dict)
    bearer_tokens: tuple[Secret, ...] = ()
    basic_credentials: tuple[BasicCredentials, ...] = ()
    allow_ips: tuple[str, ...] = ()
    chatbot_ids: tuple[str, ...] = ()
    events: tuple[str, ...] = ("*",)
    max_body_bytes: int | None = None
    active: bool = True
    created_at: datetime | None = None
    updated_at: datetime | None = None

    def __post_init__(self) -> None:
        if not SOURCE_NAME_RE.fullmatch(self.name):
            raise ConfigurationError(
                "a source name is 1-100 lower-case letters, digits, '-' or '_', "
                "starting with a letter or digit"
            )
        if self.profile not in PROFILES:
            raise ConfigurationError(
                f"unknown profile {self.profile!r}; known: {', '.join(PROFILES)}"
            )
        if self.scheme is not None and self.scheme not in SCHEMES:
            raise ConfigurationError(
                f"unknown signing scheme {self.scheme!r}; known: {sorted(SCHEMES)}"
            )
        if self.scheme is not None and self.secrets is None:
            raise ConfigurationError(f"signing scheme {self.scheme!r} needs a secret")
        if self.scheme is None and not (self.bearer_tokens or self.basic_credentials):
            raise ConfigurationError(
                "a source must authenticate: a signing scheme, bearer or basic auth"
            )
        if not self.events:
            raise ConfigurationError("a source accepts at least one event pattern ('*' for all)")
        for pattern in self.events:
            EventPattern(pattern)  # raises ConfigurationError for a bad pattern
        IpAllowList(self.allow_ips)  # raises ConfigurationError for a bad network
        if self.max_body_bytes is not None and self.max_body_bytes < 1:
            raise ConfigurationError("max_body_bytes must be positive")
        if self.scheme is not None:
            self.signing_scheme()  # unknown or inconsistent options fail now, not per request

    def signing_scheme(self, tolerance: int | None = None) -> SigningScheme:
        """Return the configured scheme (with ``tolerance`` where the scheme takes one)."""
        if self.scheme is None:
            raise ConfigurationError(f"source {self.name!r} has no signing scheme")
        options = dict(self.scheme_options)
        options.pop("event_field", None)  # a profile option, not the scheme's
        if tolerance is not None and self.scheme in ("standard", "ccai", "hmac"):
            options.setdefault("tolerance", tolerance)
        try:
            return get_scheme(self.scheme, **options)
        except TypeError as exc:
            raise ConfigurationError(f"bad options for scheme {self.scheme!r}: {exc}") from None

    def accepts(self, event: str, chatbot_id: str | None) -> bool:
        """Return whether this source takes the event (patterns and chatbot filter)."""
        if self.chatbot_ids and chatbot_id not in self.chatbot_ids:
            return False
        return matches(self.events, event)

    def verifying_secrets(self) -> Sequence[Secret]:
        """The secrets a delivery's signature may be made with, primary first."""
        return self.secrets.secrets if self.secrets else ()
