"""Inbound sources: list, show, create, edit, delete, their secrets, and a signed test delivery.

A source's secrets leave this module once, in the answer to the action that generated them
(:class:`~airhook.manage.views.Created`, :class:`~airhook.manage.views.SecretChange`); a view
shows only whether they exist. An edit is the stored source with the changed fields replaced
(``dataclasses.replace``) and saved under the same name, so its recorded events stay its own.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Literal

from airhook.core.access import BasicCredentials, IpAllowList
from airhook.core.asset_uris import uris_for
from airhook.core.errors import ConfigurationError, ConflictError, SourceNotFoundError
from airhook.core.profiles import PROFILES, get_profile
from airhook.core.secrets import Secret, SecretPair, generate_secret
from airhook.core.source import SOURCE_NAME_RE, Source
from airhook.manage import fields
from airhook.manage.samples import signed_sample
from airhook.manage.views import Created, Page, SecretChange, SourceView

if TYPE_CHECKING:
    from airhook.manage.container import Services

__all__ = ["EDITABLE", "SECRET_ACTIONS", "UNSIGNED", "Poster", "SourceService"]

#: What an edit may change (the name is the URL; the profile decides how events are read).
EDITABLE = ("events", "allow_ips", "chatbot_ids", "max_body_bytes", "active", "scheme_options")
#: What can be done to a source's pair of signing secrets.
SECRET_ACTIONS = ("generate-secondary", "rotate", "drop-secondary", "regenerate", "set-secondary")
#: The ``scheme`` of a source that checks no signature (it proves itself with a bearer token or
#: basic credentials instead).
UNSIGNED = "none"
#: Longest bearer token or basic password accepted (a header value).
_MAX_CREDENTIAL = 1000
#: Largest per-source body limit: the receiver holds a body in memory.
MAX_BODY_LIMIT = 64 * 1024 * 1024
#: Options a source takes besides its scheme's: which body field names the event (``hmac``).
_SOURCE_OPTIONS: Mapping[str, type] = {"event_field": str}

#: ``(source name, headers, body) -> (status, JSON answer)``: a POST to the source's receiver.
Poster = Callable[[str, dict[str, str], bytes], tuple[int, Any]]


class SourceService:
    """Inbound sources, as the CLI, the API and the page manage them.

    :param base_url: where the API server is reached, for each source's receiver URL.
    """

    def __init__(self, services: Services, base_url: str) -> None:
        self._services = services
        self._repository = services.source_repository
        self._base_url = base_url

    # --- reading -------------------------------------------------------------------------------

    def view(self, source: Source) -> SourceView:
        """The source as shown, with what it received."""
        latest, total = self._services.inbox.list(source=source.name, limit=1)
        return SourceView(
            source=source,
            receiver_url=SourceView.receiver_url_of(self._base_url, source.name),
            events_received=total,
            last_received_at=latest[0].received_at if latest else None,
        )

    def list(self, *, limit: int = 50, offset: int = 0) -> Page[SourceView]:
        """Every source, newest first, a page at a time."""
        return Page.newest_first(self._repository.all(), self.view, limit=limit, offset=offset)

    def get_source(self, name: str) -> Source:
        """The stored source called ``name`` (its secrets included: for callers in this layer)."""
        if not isinstance(name, str) or not SOURCE_NAME_RE.fullmatch(name):
            raise SourceNotFoundError(str(name)[:100])
        return self._repository.get(name)

    def get(self, name: str) -> SourceView:
        """One source."""
        return self.view(self.get_source(name))

    # --- changing ------------------------------------------------------------------------------

    def create(
        self,
        name: str,
        profile: str,
        *,
        scheme: str | None = None,
        events: Any = ("*",),
        allow_ips: Any = (),
        chatbot_ids: Any = (),
        max_body_bytes: int | None = None,
        active: bool = True,
        scheme_options: Any = None,
        secret: str | None = None,
        secondary_secret: str | None = None,
        bearer_tokens: Any = (),
        basic_credentials: Any = None,
    ) -> Created[SourceView]:
        """Create a source, signed by ``scheme`` (default: the profile's; :data:`UNSIGNED`:
        no signature checked, so ``bearer_tokens`` or ``basic_credentials`` are needed).

        :param secret: the sender's own secret, when its platform generates it (CCAI Platform,
            RKT); otherwise airhook generates one and returns it this once.
        :param secondary_secret: a second secret also accepted (CCAI Platform's secondary).
        :param bearer_tokens: tokens a delivery may carry as ``Authorization: Bearer``.
        :param basic_credentials: ``{user: password}`` a delivery may present with basic auth.
        """
        with fields.field("name"):
            if not isinstance(name, str) or not SOURCE_NAME_RE.fullmatch(name):
                raise ConfigurationError(
                    "a source name is 1-100 lower-case letters, digits, '-' or '_', "
                    "starting with a letter or digit"
                )
        if profile not in PROFILES:
            raise ConfigurationError(
                f"unknown profile {profile!r}; known: {', '.join(PROFILES)}", field="profile"
            )
        chosen = (
            scheme if scheme is not None else get_profile(profile, self._services.catalog).scheme
        )
        signed = chosen != UNSIGNED
        options = (
            fields.check_scheme_options(chosen, scheme_options or {}, extra=_SOURCE_OPTIONS)
            if signed
            else _unsigned_options(scheme_options or {})
        )
        generated = None
        pair = None
        if signed:
            generated = None if secret is not None else generate_secret()
            with fields.field("secret"):
                primary = Secret(secret) if secret is not None else generated
            with fields.field("secondary_secret"):
                second = Secret(secondary_secret) if secondary_secret is not None else None
            assert primary is not None
            pair = SecretPair(primary, second)
        elif secret is not None or secondary_secret is not None:
            raise ConfigurationError(
                "a source that checks no signature takes no secret", field="secret"
            )
        with fields.field("scheme"):
            source = Source(
                name=name,
                profile=profile,
                scheme=chosen if signed else None,
                secrets=pair,
                scheme_options=options,
                bearer_tokens=_bearer_tokens(bearer_tokens),
                basic_credentials=_basic_credentials(basic_credentials),
            )
        if pair is not None:
            _check_usable(source, pair.primary, "secret")
            if pair.secondary is not None:
                _check_usable(source, pair.secondary, "secondary_secret")
        settings = {
            "events": events,
            "allow_ips": allow_ips,
            "chatbot_ids": chatbot_ids,
            "max_body_bytes": max_body_bytes,
            "active": active,
        }
        source = fields.apply(source, self._checked(source, settings), EDITABLE)
        created = self._repository.create(source)
        view = self.view(created)
        return Created(
            view=view,
            secret=generated.reveal() if generated is not None else None,
            setup={
                "receiver_url": view.receiver_url,
                "steps": self._services.catalog_info().steps(profile),
            },
        )

    def update(self, name: str, changes: Mapping[str, Any]) -> SourceView:
        """Change some of :data:`EDITABLE`; the rest, the secrets and the history stay."""
        unknown = sorted(set(changes) - set(EDITABLE))
        if unknown:
            raise ConfigurationError(
                f"a source's {unknown[0]} cannot be changed (editable: {', '.join(EDITABLE)})",
                field=unknown[0],
            )
        source = self.get_source(name)
        changed = fields.apply(source, self._checked(source, changes), EDITABLE)
        return self.view(self._repository.save(changed))

    def delete(self, name: str) -> None:
        """Delete a source; its recorded events stay in the inbox."""
        self._repository.delete(self.get_source(name).name)

    def change_secrets(
        self,
        name: str,
        action: Literal[
            "generate-secondary", "rotate", "drop-secondary", "regenerate", "set-secondary"
        ],
        *,
        secret: str | None = None,
    ) -> SecretChange[SourceView]:
        """Act on the signing secrets, CCAI Platform's way; a generated secret is returned once.

        ``generate-secondary``: a new secondary, both accepted. ``rotate``: the secondary
        becomes the primary (the old primary stays as the secondary). ``drop-secondary``: the
        primary only. ``regenerate``: a new primary, the old one kept as the secondary for the
        changeover. ``set-secondary``: ``secret`` (the platform's new one) as the secondary.
        """
        if action not in SECRET_ACTIONS:
            raise ConfigurationError(
                f"action is one of {', '.join(SECRET_ACTIONS)}", field="action"
            )
        if (secret is not None) != (action == "set-secondary"):
            raise ConfigurationError(
                "secret goes with set-secondary, and only with it", field="secret"
            )
        source = self.get_source(name)
        if source.secrets is None:
            raise ConflictError("source", name, "it checks no signature: it has no secret")
        pair = source.secrets
        shown: Secret | None = None
        with fields.field("action"):
            if action == "generate-secondary":
                pair = pair.with_new_secondary()
                shown = pair.secondary
            elif action == "rotate":
                pair = pair.rotated()
            elif action == "drop-secondary":
                pair = SecretPair(pair.primary)
            elif action == "regenerate":
                shown = generate_secret()
                pair = SecretPair(shown, pair.primary)
            else:
                with fields.field("secret"):
                    pair = SecretPair(pair.primary, Secret(secret or ""))
                _check_usable(source, pair.secrets[1], "secret")
        saved = self._repository.save(replace(source, secrets=pair))
        return SecretChange(self.view(saved), shown.reveal() if shown is not None else None)

    # --- testing -------------------------------------------------------------------------------

    def test(self, name: str, post: Poster, event: str | None = None) -> dict[str, Any]:
        """Send a signed catalog sample of ``event`` through the source's own receiver.

        :param post: makes the request (the API: in-process, to the receiver app it serves).
        :returns: ``{"event", "status", "answer", "event_id", "dags"}``: the receiver's answer,
            the recorded event's id (when recorded), and the DAGs scheduled on the assets the
            event goes to.
        """
        source = self.get_source(name)
        if event is not None and (not isinstance(event, str) or not event.isprintable()):
            raise ConfigurationError("event is an event name", field="event")
        sample = signed_sample(source, self._services.catalog, event)
        status, answer = post(source.name, sample.headers, sample.body)
        event_id = answer.get("id") if isinstance(answer, dict) and status == 202 else None
        scheduled = self._services.dags_scheduled_on
        dags = scheduled(uris_for(source.name, sample.event, sample.kind)) if scheduled else []
        return {
            "event": sample.event,
            "status": status,
            "answer": answer,
            "event_id": event_id,
            "dags": dags,
        }

    # --- checks --------------------------------------------------------------------------------

    def _checked(self, source: Source, changes: Mapping[str, Any]) -> dict[str, Any]:
        """The changes in the model's types, each checked beyond what :class:`Source` checks."""
        checked: dict[str, Any] = {}
        for key, value in changes.items():
            if key == "events":
                patterns = fields.strings(value, "events", allow_empty=False)
                platform = get_profile(source.profile, self._services.catalog).platform
                fields.check_event_patterns(patterns, self._services.catalog, platform=platform)
                checked[key] = patterns
            elif key == "allow_ips":
                networks = fields.strings(value, "allow_ips")
                with fields.field("allow_ips"):
                    IpAllowList(networks)
                checked[key] = networks
            elif key == "chatbot_ids":
                checked[key] = fields.strings(value, "chatbot_ids")
            elif key == "max_body_bytes":
                if value is not None and (
                    isinstance(value, bool)
                    or not isinstance(value, int)
                    or not 1 <= value <= MAX_BODY_LIMIT
                ):
                    raise ConfigurationError(
                        f"max_body_bytes is from 1 to {MAX_BODY_LIMIT}, or null for the default",
                        field="max_body_bytes",
                    )
                checked[key] = value
            elif key == "active":
                if not isinstance(value, bool):
                    raise ConfigurationError("active is true or false", field="active")
                checked[key] = value
            elif key == "scheme_options":
                checked[key] = (
                    fields.check_scheme_options(source.scheme, value, extra=_SOURCE_OPTIONS)
                    if source.scheme is not None
                    else _unsigned_options(value)
                )
        return checked


def _unsigned_options(options: Any) -> dict[str, Any]:
    """A source without a scheme takes only its own options (``event_field``)."""
    if not isinstance(options, Mapping):
        raise ConfigurationError("scheme_options is an object", field="scheme_options")
    for key, value in options.items():
        if key not in _SOURCE_OPTIONS:
            raise ConfigurationError(
                f"a source that checks no signature takes no option {str(key)[:100]!r} "
                f"(it takes: {', '.join(_SOURCE_OPTIONS)})",
                field="scheme_options",
            )
        if not isinstance(value, _SOURCE_OPTIONS[key]):
            raise ConfigurationError(f"option {key!r} has the wrong type", field="scheme_options")
    return dict(options)


def _credential(value: Any, what: str, name: str) -> Secret:
    """One bearer token or password: text a header can carry (never quoted in an error)."""
    if (
        not isinstance(value, str)
        or not value
        or len(value) > _MAX_CREDENTIAL
        or not value.isascii()
        or not value.isprintable()
        or value != value.strip()
    ):
        raise ConfigurationError(
            f"each {what} is 1-{_MAX_CREDENTIAL} printable ASCII characters, "
            "without surrounding spaces",
            field=name,
        )
    return Secret(value)


def _bearer_tokens(tokens: Any) -> tuple[Secret, ...]:
    """The bearer tokens of a new source, as secrets."""
    if isinstance(tokens, str) or not isinstance(tokens, Sequence):
        raise ConfigurationError("bearer_tokens is a list of tokens", field="bearer_tokens")
    return tuple(_credential(token, "bearer token", "bearer_tokens") for token in tokens)


def _basic_credentials(users: Any) -> tuple[BasicCredentials, ...]:
    """The basic-auth users of a new source (``{user: password}``)."""
    if users is None:
        return ()
    if not isinstance(users, Mapping):
        raise ConfigurationError(
            "basic_credentials is an object of users and passwords", field="basic_credentials"
        )
    found = []
    for user, password in users.items():
        if (
            not isinstance(user, str)
            or not user
            or len(user) > 200
            or ":" in user
            or not user.isprintable()
        ):
            raise ConfigurationError(
                "a basic-auth user is 1-200 printable characters without ':'",
                field="basic_credentials",
            )
        found.append(BasicCredentials(user, _credential(password, "password", "basic_credentials")))
    return tuple(found)


def _check_usable(source: Source, secret: Secret, name: str) -> None:
    """Refuse a secret the source's scheme cannot sign with (``standard``: not ``whsec_`` and
    base64): no delivery could ever be verified with it."""
    try:
        source.signing_scheme().sign(b"{}", [secret], now=0, message_id="msg_check")
    except ValueError as exc:
        raise ConfigurationError(
            f"secret unusable with scheme {source.scheme!r}: {exc}", field=name
        ) from None
