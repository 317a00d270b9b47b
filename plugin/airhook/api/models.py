"""The request bodies of the management API: their JSON types, checked by FastAPI.

Only types and bounds live here (so the OpenAPI document describes them); what the values mean
(a known event, a URL airhook may call, a template that renders) is checked by the services,
whose errors name the field. Every write takes a JSON body, ``{}`` where nothing else is needed:
a cross-site HTML form cannot send one (``airhook.api.auth``). Unknown fields are refused, so a
misspelt setting is a 422 rather than silently ignored.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "EMPTY",
    "Empty",
    "Redispatch",
    "Replay",
    "SecretAction",
    "SourceCreate",
    "SourcePatch",
    "SourceSecretAction",
    "SourceTest",
    "SubscriptionCreate",
    "SubscriptionPatch",
    "SubscriptionTest",
]

#: The most ids one request may name (as :data:`airhook.manage.fields.MAX_IDS`).
MAX_IDS = 1000

Name = Annotated[str, Field(min_length=1, max_length=100)]
Text = Annotated[str, Field(min_length=1, max_length=200)]
Patterns = Annotated[list[Text], Field(min_length=1, max_length=100)]
Texts = Annotated[list[Text], Field(max_length=100)]
Seconds = Annotated[float, Field(allow_inf_nan=False)]
Ids = Annotated[
    list[Annotated[str, Field(min_length=1, max_length=40)]],
    Field(min_length=1, max_length=MAX_IDS),
]
Option = str | int | None
#: The most extra headers a subscription sends (each goes with every delivery).
MAX_HEADERS = 50
Headers = Annotated[
    dict[
        Annotated[str, Field(min_length=1, max_length=128)], Annotated[str, Field(max_length=4096)]
    ],
    Field(max_length=MAX_HEADERS),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _changes(body: BaseModel, nullable: tuple[str, ...]) -> dict[str, Any]:
    """The fields a PATCH gave; ``null`` means "unchanged" except for ``nullable`` ones, where
    it means "clear" (back to the default)."""
    given = body.model_dump(exclude_unset=True)
    return {k: v for k, v in given.items() if v is not None or k in nullable}


class Empty(_Body):
    """No settings: the body of an action that needs none (``{}``)."""


EMPTY = Empty()


class SourceCreate(_Body):
    """A new inbound source."""

    name: Name
    profile: Text
    scheme: Text | None = Field(None, description="default: the profile's scheme")
    events: Patterns = Field(default_factory=lambda: ["*"])
    allow_ips: Texts = Field(default_factory=list)
    chatbot_ids: Texts = Field(default_factory=list)
    max_body_bytes: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    active: bool = True
    scheme_options: dict[Text, Option] = Field(default_factory=dict)
    secret: Annotated[str, Field(min_length=1, max_length=1000)] | None = Field(
        None,
        description="the sender's own secret, when its platform generates it (CCAI Platform, "
        "RKT); without it airhook generates one and returns it once",
    )
    secondary_secret: Annotated[str, Field(min_length=1, max_length=1000)] | None = None


class SourcePatch(_Body):
    """Changes to a source: only the fields given change."""

    events: Patterns | None = None
    allow_ips: Texts | None = None
    chatbot_ids: Texts | None = None
    max_body_bytes: Annotated[int, Field(ge=1, le=2**31 - 1)] | None = None
    active: bool | None = None
    scheme_options: dict[Text, Option] | None = None

    NULLABLE: ClassVar[tuple[str, ...]] = ("max_body_bytes",)

    def changes(self) -> dict[str, Any]:
        """The fields given (``null`` kept where it means "the default")."""
        return _changes(self, self.NULLABLE)


class SourceSecretAction(_Body):
    """What to do to a source's signing secrets."""

    action: Literal["generate-secondary", "rotate", "drop-secondary", "regenerate", "set-secondary"]
    secret: Annotated[str, Field(min_length=1, max_length=1000)] | None = Field(
        None, description="with set-secondary only: the platform's new secret"
    )


class SecretAction(_Body):
    """What to do to a subscription's signing secrets."""

    action: Literal["generate-secondary", "rotate", "drop-secondary", "regenerate"]


class SourceTest(_Body):
    """Which catalog event to send (default: the first the source takes)."""

    event: Text | None = None


class SubscriptionCreate(_Body):
    """A new outbound subscription."""

    name: Name
    url: Annotated[str, Field(min_length=1, max_length=2048)]
    events: Patterns = Field(default_factory=lambda: ["*"])
    scheme: Text | None = "standard"
    scheme_options: dict[Text, Option] = Field(default_factory=dict)
    chatbot_ids: Texts = Field(default_factory=list)
    method: Literal["POST", "PUT", "PATCH"] = "POST"
    timeout: Annotated[Seconds, Field(gt=0, le=300)] | None = None
    headers: Headers = Field(default_factory=dict)
    body_template: Annotated[str, Field(min_length=1, max_length=100_000)] | None = None
    retry_schedule: (
        Annotated[list[Annotated[Seconds, Field(ge=0)]], Field(min_length=1, max_length=32)] | None
    ) = None
    active: bool = True


class SubscriptionPatch(_Body):
    """Changes to a subscription: only the fields given change (``null`` clears
    ``body_template``, ``timeout`` and ``scheme``); ``url`` and ``headers`` replace whole."""

    url: Annotated[str, Field(min_length=1, max_length=2048)] | None = None
    events: Patterns | None = None
    scheme: Text | None = None
    scheme_options: dict[Text, Option] | None = None
    chatbot_ids: Texts | None = None
    method: Literal["POST", "PUT", "PATCH"] | None = None
    timeout: Annotated[Seconds, Field(gt=0, le=300)] | None = None
    headers: Headers | None = None
    body_template: Annotated[str, Field(min_length=1, max_length=100_000)] | None = None
    retry_schedule: (
        Annotated[list[Annotated[Seconds, Field(ge=0)]], Field(min_length=1, max_length=32)] | None
    ) = None
    active: bool | None = None

    NULLABLE: ClassVar[tuple[str, ...]] = ("scheme", "timeout", "body_template")

    def changes(self) -> dict[str, Any]:
        """The fields given (``null`` kept where it means "clear")."""
        return _changes(self, self.NULLABLE)


class SubscriptionTest(_Body):
    """Which catalog event to send (default: the first the subscription takes)."""

    event: Text | None = None
    platform: Text | None = None


class Redispatch(_Body):
    """The recorded events to send to their assets again."""

    ids: Ids


class Replay(_Body):
    """Deliveries to send again: ``ids``, or a ``subscription``'s in a time window."""

    ids: Ids | None = None
    subscription: Name | None = None
    since: datetime | None = None
    until: datetime | None = None
    dead_only: bool = True
    include_delivered: bool = False
