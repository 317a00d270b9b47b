"""The ``airhook`` command: the store's schema, inbound sources and recorded events, outbound
subscriptions and their deliveries.

Secrets are never taken as plain arguments (they would land in shell history and ``ps``): give a
file (``-`` for standard input) or let airhook generate one, which is printed once.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from airhook.core.access import BasicCredentials
from airhook.core.catalog import load_catalog, matches
from airhook.core.errors import AirhookError
from airhook.core.profiles import PROFILES
from airhook.core.secrets import Secret, SecretPair, generate_secret
from airhook.core.source import Source

__all__ = ["CommandError", "main"]


class CommandError(AirhookError):
    """Input or setup the user must fix: reported in one line, exit code 2, no traceback."""


def _read_secret(path: str) -> Secret:
    try:
        text = sys.stdin.readline() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise CommandError(f"cannot read the secret file {path!r}: {exc.strerror}") from None
    value = text.strip()
    if not value:
        raise CommandError(f"no secret in {path!r}")
    return Secret(value)


def _repositories() -> tuple[Any, Any]:
    from airhook.crypto import airflow_cipher
    from airhook.store import get_store
    from airhook.store.inbox import InboxRepository
    from airhook.store.migrate import upgrade
    from airhook.store.sources import SourceRepository

    # The key first: with no key, refuse before touching the store.
    cipher = airflow_cipher()  # SetupError with no key
    store = get_store()
    upgrade(store)
    return SourceRepository(store, cipher), InboxRepository(store)


def _describe(source: Source) -> dict[str, Any]:
    return {
        "name": source.name,
        "url_path": f"/airhook/webhooks/{source.name}",
        "profile": source.profile,
        "scheme": source.scheme,
        "scheme_options": source.scheme_options,
        "secondary_secret": bool(source.secrets and source.secrets.secondary),
        "bearer_tokens": len(source.bearer_tokens),
        "basic_users": [c.username for c in source.basic_credentials],
        "allow_ips": list(source.allow_ips),
        "chatbot_ids": list(source.chatbot_ids),
        "events": list(source.events),
        "max_body_bytes": source.max_body_bytes,
        "active": source.active,
        "updated_at": source.updated_at.isoformat() if source.updated_at else None,
    }


def _options(pairs: Sequence[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise CommandError(f"--option takes key=value, not {pair!r}")
        options[key] = int(value) if value.isdigit() else value
    return options


def _basic(item: str) -> BasicCredentials:
    user, sep, path = item.partition(":")
    if not (user and sep and path):
        raise CommandError(f"--basic takes USER:PASSWORD_FILE, not {item!r}")
    return BasicCredentials(user, _read_secret(path))


def _cmd_db_migrate(args: argparse.Namespace) -> None:
    from airhook.store import get_store
    from airhook.store.migrate import current_revision, upgrade

    store = get_store()
    upgrade(store)
    print(f"airhook store at revision {current_revision(store)}")


def _cmd_sources_create(args: argparse.Namespace) -> None:
    sources, _ = _repositories()
    catalog = load_catalog()
    default_scheme = (
        catalog.platforms[args.profile].signing
        if args.profile in catalog.platforms
        else args.profile
    )
    scheme = None if args.scheme == "none" else (args.scheme or default_scheme)
    generated = None
    secrets = None
    if args.secret_file:
        secrets = SecretPair(_read_secret(args.secret_file))
    elif args.generate_secret:
        generated = generate_secret()
        secrets = SecretPair(generated)
    if secrets and args.secondary_secret_file:
        secrets = SecretPair(secrets.primary, _read_secret(args.secondary_secret_file))
    source = Source(
        name=args.name,
        profile=args.profile,
        scheme=scheme,
        secrets=secrets,
        scheme_options=_options(args.option),
        bearer_tokens=tuple(_read_secret(p) for p in args.bearer_token_file),
        basic_credentials=tuple(_basic(item) for item in args.basic),
        allow_ips=tuple(args.allow_ip),
        chatbot_ids=tuple(args.chatbot_id),
        events=tuple(args.events or ["*"]),
        max_body_bytes=args.max_body_bytes,
        active=not args.inactive,
    )
    created = sources.create(source)
    print(json.dumps(_describe(created), indent=2))
    if generated is not None:
        print("secret (shown once, store it now):", generated.reveal(), file=sys.stderr)


def _cmd_sources_list(args: argparse.Namespace) -> None:
    sources, _ = _repositories()
    print(json.dumps([_describe(s) for s in sources.all()], indent=2))


def _cmd_sources_show(args: argparse.Namespace) -> None:
    sources, _ = _repositories()
    print(json.dumps(_describe(sources.get(args.name)), indent=2))


def _cmd_sources_delete(args: argparse.Namespace) -> None:
    sources, _ = _repositories()
    sources.delete(args.name)
    print(f"deleted source {args.name} (its recorded events stay in the inbox)")


def _cmd_sources_secrets(args: argparse.Namespace) -> None:
    sources, _ = _repositories()
    source = sources.get(args.name)
    if source.secrets is None:
        raise CommandError(f"source {args.name} has no signing secret")
    pair = source.secrets
    shown = None
    if args.action == "set-secondary":
        pair = SecretPair(pair.primary, _read_secret(args.secret_file or "-"))
    elif args.action == "generate-secondary":
        pair = pair.with_new_secondary()
        shown = pair.secondary
    elif args.action == "rotate":
        pair = pair.rotated()
    elif args.action == "drop-secondary":
        pair = SecretPair(pair.primary)
    saved = sources.save(_replace(source, secrets=pair))
    print(json.dumps(_describe(saved), indent=2))
    if shown is not None:
        print("new secondary secret (shown once):", shown.reveal(), file=sys.stderr)


def _cmd_sources_active(args: argparse.Namespace) -> None:
    sources, _ = _repositories()
    saved = sources.save(_replace(sources.get(args.name), active=args.state == "on"))
    print(json.dumps(_describe(saved), indent=2))


def _replace(source: Source, **changes: Any) -> Source:
    from dataclasses import replace

    return replace(source, **changes)


def _cmd_events_list(args: argparse.Namespace) -> None:
    _, inbox = _repositories()
    events = inbox.find(args.source, limit=args.limit)
    for event in events:
        print(
            json.dumps(
                {
                    "id": event.id,
                    "event": event.event,
                    "kind": event.kind,
                    "received_at": event.received_at.isoformat(),
                    "dispatched_at": event.dispatched_at.isoformat()
                    if event.dispatched_at
                    else None,
                }
            )
        )


# --- outbound: subscriptions and deliveries -----------------------------------------------------


def _engine() -> Any:
    from airhook.crypto import airflow_cipher
    from airhook.fanout import DeliveryEngine
    from airhook.store import get_store
    from airhook.store.migrate import upgrade

    cipher = airflow_cipher()  # SetupError with no key
    store = get_store()
    upgrade(store)
    return DeliveryEngine(store, cipher)


def _describe_subscription(subscription: Any) -> dict[str, Any]:
    """What ``list`` and ``show`` print: no secret, no URL path (it can be a credential)."""
    from airhook.core.rendering import is_template_name

    template = subscription.body_template
    if template is not None and not is_template_name(template):
        template = f"<inline, {len(template)} characters>"
    return {
        "name": subscription.name,
        "origin": subscription.origin,
        "state": subscription.state,
        "events": list(subscription.events),
        "chatbot_ids": list(subscription.chatbot_ids),
        "scheme": subscription.scheme,
        "scheme_options": dict(subscription.scheme_options),
        "secondary_secret": bool(subscription.secrets and subscription.secrets.secondary),
        "headers": sorted(subscription.headers),
        "method": subscription.method,
        "timeout": subscription.timeout,
        "body_template": template,
        "retry_schedule": list(subscription.retry_schedule),
        "consecutive_failures": subscription.consecutive_failures,
        "disabled_reason": subscription.disabled_reason,
        "disabled_at": subscription.disabled_at.isoformat() if subscription.disabled_at else None,
        "updated_at": subscription.updated_at.isoformat() if subscription.updated_at else None,
    }


def _read_text(path: str, what: str) -> str:
    try:
        text = sys.stdin.read() if path == "-" else open(path, encoding="utf-8").read()  # noqa: SIM115
    except OSError as exc:
        raise CommandError(f"cannot read the {what} file {path!r}: {exc.strerror}") from None
    return text


def _header(line: str, where: str) -> tuple[str, Secret]:
    name, sep, value = line.partition(":")
    if not (sep and name.strip() and value.strip()):
        # Not the line itself: a header file holds secret values.
        raise CommandError(f"{where}: a header is 'Name: value'")
    return name.strip(), Secret(value.strip())


def _schedule(text: str) -> tuple[float, ...]:
    try:
        return tuple(float(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise CommandError(
            f"--retry-schedule takes seconds separated by commas, not {text!r}"
        ) from None


def _when(text: str | None) -> Any:
    from datetime import datetime, timezone

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise CommandError(f"{text!r} is not an ISO 8601 time") from None
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


def _cmd_subscriptions_create(args: argparse.Namespace) -> None:
    from airhook.core.subscription import Subscription

    engine = _engine()
    url = args.url if args.url else _read_text(args.url_file, "URL").strip()
    scheme = None if args.scheme == "none" else args.scheme
    generated = None
    secrets = None
    if scheme is not None:
        if args.secret_file:
            secrets = SecretPair(_read_secret(args.secret_file))
        else:
            generated = generate_secret()
            secrets = SecretPair(generated)
        if args.secondary_secret_file:
            secrets = SecretPair(secrets.primary, _read_secret(args.secondary_secret_file))
    headers = dict(
        _header(item, f"--header number {number}") for number, item in enumerate(args.header, 1)
    )
    for path in args.header_file:
        text = _read_text(path, "header")
        headers.update(
            _header(line, f"{path}, line {number}")
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip()
        )
    template = args.template
    if args.template_file:
        template = _read_text(args.template_file, "template")
    options: dict[str, Any] = {}
    if args.timeout is not None:
        options["timeout"] = args.timeout
    if args.retry_schedule is not None:
        options["retry_schedule"] = _schedule(args.retry_schedule)
    subscription = Subscription(
        name=args.name,
        url=url,
        events=tuple(args.events or ["*"]),
        chatbot_ids=tuple(args.chatbot_id),
        scheme=scheme,
        secrets=secrets,
        scheme_options=_options(args.option),
        active=not args.inactive,
        method=args.method.upper(),
        headers=headers,
        body_template=template,
        **options,
    )
    created = engine.subscriptions.create(subscription)
    print(json.dumps(_describe_subscription(created), indent=2))
    if generated is not None:
        print("signing secret (shown once, store it now):", generated.reveal(), file=sys.stderr)


def _cmd_subscriptions_list(args: argparse.Namespace) -> None:
    engine = _engine()
    print(json.dumps([_describe_subscription(s) for s in engine.subscriptions.all()], indent=2))


def _cmd_subscriptions_show(args: argparse.Namespace) -> None:
    engine = _engine()
    described = _describe_subscription(engine.subscriptions.get(args.name))
    summary = engine.summary(subscription=args.name)
    described["deliveries"] = summary.as_dict()
    print(json.dumps(described, indent=2))


def _cmd_subscriptions_delete(args: argparse.Namespace) -> None:
    engine = _engine()
    engine.subscriptions.delete(args.name)
    print(f"deleted subscription {args.name} with its deliveries and their attempts")


def _cmd_subscriptions_secrets(args: argparse.Namespace) -> None:
    engine = _engine()
    subscription = engine.subscriptions.get(args.name)
    if subscription.secrets is None:
        raise CommandError(f"subscription {args.name} signs nothing: it has no secret")
    shown = None
    if args.action == "generate-secondary":
        subscription = subscription.with_new_secondary()
        shown = subscription.secrets.secondary
    elif args.action == "rotate":
        subscription = subscription.rotated()
    else:
        subscription = subscription.without_secondary()
    saved = engine.subscriptions.save(subscription)
    print(json.dumps(_describe_subscription(saved), indent=2))
    if shown is not None:
        print("new secondary secret (shown once):", shown.reveal(), file=sys.stderr)


def _cmd_subscriptions_enable(args: argparse.Namespace) -> None:
    engine = _engine()
    enabled = engine.subscriptions.enable(args.name)
    resumed = engine.summary(subscription=args.name).pending
    print(json.dumps(_describe_subscription(enabled), indent=2))
    if resumed:
        print(f"{resumed} kept deliveries resume now", file=sys.stderr)
        engine.deliver(subscription=args.name)


def _cmd_subscriptions_disable(args: argparse.Namespace) -> None:
    engine = _engine()
    disabled = engine.subscriptions.disable(args.name, args.reason)
    print(json.dumps(_describe_subscription(disabled), indent=2))


def _sample(args: argparse.Namespace, subscription: Any) -> tuple[str, str, Any]:
    catalog = load_catalog()
    if args.event is None:
        for event in catalog.events(args.platform):
            # Patterns only: a test is about the endpoint, whatever chatbot the sample names.
            if matches(subscription.events, event.name):
                return event.platform, event.name, event.sample
        raise CommandError(f"no catalog event matches {list(subscription.events)}; give --event")
    platforms = (
        [args.platform]
        if args.platform
        else [e.platform for e in catalog.events() if e.name == args.event]
    )
    if not platforms:
        raise CommandError(f"no platform has an event {args.event!r}")
    if len(platforms) > 1:
        raise CommandError(f"{args.event!r} exists on {', '.join(platforms)}: give --platform")
    event = catalog.event(platforms[0], args.event)
    return event.platform, event.name, event.sample


def _cmd_subscriptions_test(args: argparse.Namespace) -> int:
    engine = _engine()
    subscription = engine.subscriptions.get(args.name)
    platform, name, sample = _sample(args, subscription)
    attempt = engine.send_test(subscription, sample, event=name, platform=platform)
    print(
        json.dumps(
            {
                "subscription": subscription.name,
                "platform": platform,
                "event": name,
                "message_id": attempt.message_id,
                "outcome": attempt.outcome,
                "status_code": attempt.status_code,
                "latency_ms": attempt.latency_ms,
                "error": attempt.error,
                "response_excerpt": attempt.response_excerpt,
            },
            indent=2,
        )
    )
    return 0 if attempt.outcome == "delivered" else 1


def _cmd_deliveries_list(args: argparse.Namespace) -> None:
    engine = _engine()
    found = engine.outbox.find(
        subscription=args.subscription,
        statuses=args.status or None,
        since=_when(args.since),
        until=_when(args.until),
        limit=args.limit,
    )
    for delivery in found:
        print(json.dumps(delivery.as_dict()))


def _cmd_deliveries_show(args: argparse.Namespace) -> None:
    engine = _engine()
    described = engine.outbox.get(args.id).as_dict()
    described["attempts_log"] = [
        {
            "attempted_at": a.attempted_at.isoformat(),
            "outcome": a.outcome,
            "status_code": a.status_code,
            "latency_ms": a.latency_ms,
            "error": a.error,
            "response_excerpt": a.response_excerpt,
        }
        for a in engine.outbox.attempts(args.id)
    ]
    print(json.dumps(described, indent=2))


def _cmd_deliveries_replay(args: argparse.Namespace) -> None:
    if (args.id is None) == (args.subscription is None):
        raise CommandError("replay takes --id, or --subscription (with --since/--until or --dead)")
    if args.id is not None and (args.since or args.until or args.dead):
        raise CommandError("--since, --until and --dead go with --subscription, not --id")
    engine = _engine()
    if args.subscription is not None:
        engine.subscriptions.get(args.subscription)  # a typo is an error, not "0 replayed"
    ids = engine.replay(
        message_id=args.id,
        subscription=args.subscription,
        since=_when(args.since),
        until=_when(args.until),
        dead_only=args.dead,
        include_delivered=args.include_delivered,
        wait=args.wait,
    )
    summary = engine.summary(message_ids=ids)
    print(json.dumps({"replayed": len(ids), **summary.as_dict()}, indent=2))


def _cmd_deliveries_deliver_due(args: argparse.Namespace) -> None:
    engine = _engine()
    attempted = engine.deliver(subscription=args.subscription)
    print(json.dumps({"attempted": attempted.deliveries, **attempted.as_dict()}, indent=2))


def _add_outbound_commands(commands: Any) -> None:
    """The ``subscriptions`` and ``deliveries`` groups."""
    subs = commands.add_parser("subscriptions", help="outbound subscriptions").add_subparsers(
        dest="cmd", required=True
    )
    create = subs.add_parser("create", help="create a subscription")
    create.add_argument("name")
    url = create.add_mutually_exclusive_group(required=True)
    url.add_argument("--url", help="the endpoint")
    url.add_argument("--url-file", help="file holding the URL, when it is a credential ('-')")
    create.add_argument("--events", nargs="+", metavar="PATTERN", help="default '*'")
    create.add_argument("--chatbot-id", action="append", default=[])
    create.add_argument(
        "--scheme",
        choices=["standard", "rkt", "ccai", "token", "hmac", "none"],
        default="standard",
        help="signing scheme (default standard); 'none' sends unsigned",
    )
    create.add_argument(
        "--secret-file", help="file holding the primary secret ('-'); default: generate one"
    )
    create.add_argument("--secondary-secret-file")
    create.add_argument("--option", action="append", default=[], metavar="KEY=VALUE")
    create.add_argument("--method", default="POST", choices=["POST", "PUT", "PATCH"])
    create.add_argument("--timeout", type=float, help="seconds per attempt")
    create.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="a header that is not secret (arguments show in ps and shell history)",
    )
    create.add_argument(
        "--header-file", action="append", default=[], help="'Name: value' lines (secret ones)"
    )
    template = create.add_mutually_exclusive_group()
    template.add_argument("--template", help="a shipped template name (.j2) or inline source")
    template.add_argument("--template-file", help="file holding the template source")
    create.add_argument("--retry-schedule", metavar="S,S,…", help="e.g. 0,5,300,1800")
    create.add_argument("--inactive", action="store_true", help="create switched off")
    create.set_defaults(func=_cmd_subscriptions_create)
    subs.add_parser("list", help="list subscriptions (no secrets)").set_defaults(
        func=_cmd_subscriptions_list
    )
    for name, func, text in (
        ("show", _cmd_subscriptions_show, "show one subscription and its delivery counts"),
        ("delete", _cmd_subscriptions_delete, "delete a subscription and its deliveries"),
        ("enable", _cmd_subscriptions_enable, "switch on; kept deliveries go out now"),
    ):
        command = subs.add_parser(name, help=text)
        command.add_argument("name")
        command.set_defaults(func=func)
    disable = subs.add_parser("disable", help="switch off; matching events are kept")
    disable.add_argument("name")
    disable.add_argument("--reason", default="disabled with airhook subscriptions disable")
    disable.set_defaults(func=_cmd_subscriptions_disable)
    secrets = subs.add_parser("secrets", help="rotate a subscription's signing secrets")
    secrets.add_argument("name")
    secrets.add_argument("action", choices=["generate-secondary", "rotate", "drop-secondary"])
    secrets.set_defaults(func=_cmd_subscriptions_secrets)
    test = subs.add_parser("test", help="send a catalog sample event now; print the outcome")
    test.add_argument("name")
    test.add_argument("--event", help="event name (default: the first the subscription takes)")
    test.add_argument("--platform", help="the event's platform, when several have it")
    test.set_defaults(func=_cmd_subscriptions_test)

    dels = commands.add_parser("deliveries", help="outbound deliveries").add_subparsers(
        dest="cmd", required=True
    )
    listing = dels.add_parser("list", help="deliveries, oldest first")
    listing.add_argument("--subscription")
    listing.add_argument(
        "--status",
        action="append",
        choices=["pending", "sending", "delivered", "failed", "dead", "paused"],
    )
    listing.add_argument("--since", help="ISO 8601 time (created at or after)")
    listing.add_argument("--until", help="ISO 8601 time (created before)")
    listing.add_argument("--limit", type=int, default=100)
    listing.set_defaults(func=_cmd_deliveries_list)
    show = dels.add_parser("show", help="one delivery and its attempts")
    show.add_argument("id")
    show.set_defaults(func=_cmd_deliveries_show)
    replay = dels.add_parser("replay", help="send deliveries again, now")
    replay.add_argument("--id", help="one delivery (any status)")
    replay.add_argument("--subscription", help="a subscription's undelivered deliveries")
    replay.add_argument("--since", help="with --subscription: created at or after")
    replay.add_argument("--until", help="with --subscription: created before")
    replay.add_argument(
        "--dead", action="store_true", help="with --subscription: its dead letters only"
    )
    replay.add_argument(
        "--include-delivered", action="store_true", help="delivered ones of the window too"
    )
    replay.add_argument(
        "--wait", type=float, default=0.0, help="make retries due within this many seconds"
    )
    replay.set_defaults(func=_cmd_deliveries_replay)
    due = dels.add_parser("deliver-due", help="send every delivery whose attempt is due")
    due.add_argument("--subscription")
    due.set_defaults(func=_cmd_deliveries_deliver_due)


def build_parser() -> argparse.ArgumentParser:
    """Return the command's argument parser."""
    parser = argparse.ArgumentParser(prog="airhook", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="group", required=True)

    db = commands.add_parser("db", help="the airhook store").add_subparsers(
        dest="cmd", required=True
    )
    db.add_parser("migrate", help="create or upgrade the store's tables").set_defaults(
        func=_cmd_db_migrate
    )

    src = commands.add_parser("sources", help="inbound sources").add_subparsers(
        dest="cmd", required=True
    )
    create = src.add_parser("create", help="create a source")
    create.add_argument("name")
    create.add_argument("--profile", required=True, choices=PROFILES)
    create.add_argument(
        "--scheme",
        choices=["standard", "rkt", "ccai", "token", "hmac", "none"],
        help="signing scheme (default: the profile's); 'none' for auth only",
    )
    primary = create.add_mutually_exclusive_group()
    primary.add_argument("--secret-file", help="file holding the primary secret ('-': stdin)")
    primary.add_argument(
        "--generate-secret", action="store_true", help="generate the secret; printed once"
    )
    create.add_argument("--secondary-secret-file", help="file holding the secondary secret")
    create.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="scheme option, e.g. header=X-Hub-Signature-256 prefix=sha256=",
    )
    create.add_argument("--bearer-token-file", action="append", default=[])
    create.add_argument("--basic", action="append", default=[], metavar="USER:PASSWORD_FILE")
    create.add_argument("--allow-ip", action="append", default=[], metavar="CIDR")
    create.add_argument("--chatbot-id", action="append", default=[])
    create.add_argument(
        "--events", nargs="+", metavar="PATTERN", help="accepted events (default '*')"
    )
    create.add_argument("--max-body-bytes", type=int)
    create.add_argument("--inactive", action="store_true")
    create.set_defaults(func=_cmd_sources_create)
    src.add_parser("list", help="list sources (no secrets)").set_defaults(func=_cmd_sources_list)
    show = src.add_parser("show", help="show one source (no secrets)")
    show.add_argument("name")
    show.set_defaults(func=_cmd_sources_show)
    delete = src.add_parser("delete", help="delete a source")
    delete.add_argument("name")
    delete.set_defaults(func=_cmd_sources_delete)
    secrets = src.add_parser("secrets", help="rotate a source's signing secrets")
    secrets.add_argument("name")
    secrets.add_argument(
        "action", choices=["set-secondary", "generate-secondary", "rotate", "drop-secondary"]
    )
    secrets.add_argument("--secret-file", help="with set-secondary: file holding it ('-': stdin)")
    secrets.set_defaults(func=_cmd_sources_secrets)
    active = src.add_parser("active", help="turn a source on or off")
    active.add_argument("name")
    active.add_argument("state", choices=["on", "off"])
    active.set_defaults(func=_cmd_sources_active)

    events = commands.add_parser("events", help="recorded events").add_subparsers(
        dest="cmd", required=True
    )
    listing = events.add_parser("list", help="a source's recorded events, oldest first")
    listing.add_argument("source")
    listing.add_argument("--limit", type=int, default=50)
    listing.set_defaults(func=_cmd_events_list)

    _add_outbound_commands(commands)
    return parser


class _StderrHandler(logging.Handler):
    """Write log lines to whatever ``sys.stderr`` is at the time."""

    def emit(self, record: logging.LogRecord) -> None:
        try:
            print(self.format(record), file=sys.stderr)
        except Exception:
            self.handleError(record)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; bad input or setup exits with 2 and a one-line message."""
    from cryptography.fernet import InvalidToken

    args = build_parser().parse_args(argv)
    # Airflow's logging writes to standard output, which carries this command's JSON: keep
    # Alembic's per-run INFO lines ("Context impl SQLiteImpl.") out of it.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    # The delivery engine's lines (retries, disabled subscriptions) are diagnostics: standard
    # error, so that standard output stays the command's JSON alone.
    engine_log = logging.getLogger("airhook")
    if not any(isinstance(h, _StderrHandler) for h in engine_log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("airhook: %(levelname)s %(message)s"))
        engine_log.addHandler(handler)
    engine_log.propagate = False

    try:
        code = args.func(args)
    except InvalidToken:
        print(
            "airhook: cannot decrypt the stored credentials: [core] fernet_key is not the key "
            "they were stored with",
            file=sys.stderr,
        )
        return 2
    except (CommandError, AirhookError, KeyError, ValueError) as exc:
        print(f"airhook: {exc}", file=sys.stderr)
        return 2
    return int(code or 0)


if __name__ == "__main__":
    raise SystemExit(main())
