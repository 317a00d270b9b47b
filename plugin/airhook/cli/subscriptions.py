"""``airhook subscriptions``: the outbound endpoints events are delivered to.

A subscription's URL, secrets and extra headers are credentials: they are read from files, kept
encrypted, and never printed (listings show the URL's origin and the header names only).
"""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from airhook.cli._common import (
    FILE_HELP,
    CommandError,
    delivery_engine,
    parse_options,
    print_json,
    read_secret,
    read_text,
    show_once,
)
from airhook.core.catalog import load_catalog, matches
from airhook.core.delivery_rules import DEFAULT_SCHEDULE
from airhook.core.secrets import Secret, SecretPair, generate_secret
from airhook.core.signing import SCHEMES
from airhook.core.subscription import METHODS, Subscription

if TYPE_CHECKING:
    from airhook.core.catalog import EventType

__all__ = ["add_commands"]

#: What ``subscriptions secrets`` can do to a subscription's pair of signing secrets.
SECRET_ACTIONS = ("generate-secondary", "rotate", "drop-secondary")


def describe(subscription: Subscription) -> dict[str, Any]:
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


def _headers(args: argparse.Namespace) -> dict[str, Secret]:
    headers = dict(
        _header(item, f"--header number {number}") for number, item in enumerate(args.header, 1)
    )
    for path in args.header_file:
        text = read_text(path, "header")
        headers.update(
            _header(line, f"{path}, line {number}")
            for number, line in enumerate(text.splitlines(), 1)
            if line.strip()
        )
    return headers


def _create(args: argparse.Namespace) -> None:
    url = args.url if args.url else read_text(args.url_file, "URL").strip()
    scheme = None if args.scheme == "none" else args.scheme
    generated = None
    secrets = None
    if scheme is None:
        if args.secret_file or args.secondary_secret_file:
            raise CommandError("--scheme none signs nothing: give it no secret")
    else:
        if args.secret_file:
            primary = read_secret(args.secret_file)
        else:
            primary = generated = generate_secret()
        secondary = read_secret(args.secondary_secret_file) if args.secondary_secret_file else None
        secrets = SecretPair(primary, secondary)
    template = read_text(args.template_file, "template") if args.template_file else args.template
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
        scheme_options=parse_options(args.option),
        active=not args.inactive,
        method=args.method,
        headers=_headers(args),
        body_template=template,
        **options,
    )
    created = delivery_engine().subscriptions.create(subscription)
    print_json(describe(created))
    if generated is not None:
        show_once("signing secret", generated)


def _list(args: argparse.Namespace) -> None:
    print_json([describe(s) for s in delivery_engine().subscriptions.all()])


def _show(args: argparse.Namespace) -> None:
    engine = delivery_engine()
    described = describe(engine.subscriptions.get(args.name))
    described["deliveries"] = engine.summary(subscription=args.name).as_dict()
    print_json(described)


def _delete(args: argparse.Namespace) -> None:
    delivery_engine().subscriptions.delete(args.name)
    print(f"deleted subscription {args.name} with its deliveries and their attempts")


def _secrets(args: argparse.Namespace) -> None:
    engine = delivery_engine()
    subscription = engine.subscriptions.get(args.name)
    if subscription.secrets is None:
        raise CommandError(f"subscription {args.name} signs nothing: it has no secret")
    if args.action == "generate-secondary":
        subscription = subscription.with_new_secondary()
    elif args.action == "rotate":
        subscription = subscription.rotated()
    else:
        subscription = subscription.without_secondary()
    saved = engine.subscriptions.save(subscription)
    print_json(describe(saved))
    if args.action == "generate-secondary" and saved.secrets and saved.secrets.secondary:
        show_once("new secondary secret", saved.secrets.secondary)


def _enable(args: argparse.Namespace) -> None:
    engine = delivery_engine()
    enabled = engine.subscriptions.enable(args.name)
    resumed = engine.summary(subscription=args.name).pending
    print_json(describe(enabled))
    if resumed:
        print(f"{resumed} kept deliveries resume now", file=sys.stderr)
        engine.deliver(subscription=args.name)


def _disable(args: argparse.Namespace) -> None:
    disabled = delivery_engine().subscriptions.disable(args.name, args.reason)
    print_json(describe(disabled))


def _sample(args: argparse.Namespace, subscription: Subscription) -> EventType:
    """The catalog event ``test`` sends: the one named, or the first the subscription takes."""
    catalog = load_catalog()
    if args.event is None:
        for event in catalog.events(args.platform):
            # Patterns only: a test is about the endpoint, whatever chatbot the sample names.
            if matches(subscription.events, event.name):
                return event
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
    return catalog.event(platforms[0], args.event)


def _test(args: argparse.Namespace) -> int:
    engine = delivery_engine()
    subscription = engine.subscriptions.get(args.name)
    event = _sample(args, subscription)
    attempt = engine.send_test(
        subscription, event.sample, event=event.name, platform=event.platform
    )
    print_json(
        {
            "subscription": subscription.name,
            "platform": event.platform,
            "event": event.name,
            "message_id": attempt.message_id,
            "outcome": attempt.outcome,
            "status_code": attempt.status_code,
            "latency_ms": attempt.latency_ms,
            "error": attempt.error,
            "response_excerpt": attempt.response_excerpt,
        }
    )
    return 0 if attempt.outcome == "delivered" else 1


def _add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the subscription's name")


def add_commands(commands: Any) -> None:
    """Add the ``subscriptions`` group to the top-level subcommands."""
    subs = commands.add_parser(
        "subscriptions",
        help="outbound subscriptions: the endpoints events are delivered to",
        description="Outbound subscriptions: the endpoints events are delivered to, signed.",
    ).add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do")

    create = subs.add_parser(
        "create",
        help="create a subscription",
        description="Create a subscription. Signed with a generated secret (printed once) "
        "unless --secret-file or --scheme none. URL, secrets and headers are stored "
        "encrypted with [core] fernet_key.",
    )
    create.add_argument(
        "name", help="the subscription's name: 1-100 lower-case letters, digits, '-' or '_'"
    )
    url = create.add_mutually_exclusive_group(required=True)
    url.add_argument("--url", help="the endpoint, https:// or http://")
    url.add_argument(
        "--url-file",
        metavar="FILE",
        help=f"file holding the URL, when the URL is itself a credential {FILE_HELP}",
    )
    create.add_argument(
        "--events",
        nargs="+",
        metavar="PATTERN",
        help="event names delivered, '*' matching any run of characters (default: '*')",
    )
    create.add_argument(
        "--chatbot-id",
        action="append",
        default=[],
        metavar="ID",
        help="deliver only events of this chatbot, repeatable (default: any chatbot)",
    )
    create.add_argument(
        "--scheme",
        choices=[*sorted(SCHEMES), "none"],
        default="standard",
        help="signing scheme (default: %(default)s); 'none' sends unsigned",
    )
    create.add_argument(
        "--secret-file",
        metavar="FILE",
        help=f"file holding the primary secret {FILE_HELP}; default: generate one",
    )
    create.add_argument(
        "--secondary-secret-file",
        metavar="FILE",
        help=f"file holding a secondary secret, signed with too {FILE_HELP}",
    )
    create.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a signing scheme option, repeatable: e.g. header=X-Signature for hmac",
    )
    create.add_argument(
        "--method",
        default="POST",
        choices=METHODS,
        type=str.upper,
        help="HTTP method (default: %(default)s)",
    )
    create.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="seconds per attempt (default: [airhook] outbound_timeout_seconds)",
    )
    create.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra header that is not secret, repeatable (arguments show in ps and "
        "shell history: use --header-file for tokens)",
    )
    create.add_argument(
        "--header-file",
        action="append",
        default=[],
        metavar="FILE",
        help=f"file of 'Name: value' lines, for secret headers, repeatable {FILE_HELP}",
    )
    template = create.add_mutually_exclusive_group()
    template.add_argument(
        "--template",
        help="body template: a shipped template's name (.j2) or inline Jinja source "
        "(default: the event payload itself)",
    )
    template.add_argument(
        "--template-file", metavar="FILE", help=f"file holding the body template {FILE_HELP}"
    )
    create.add_argument(
        "--retry-schedule",
        metavar="S,S,…",
        help="the delay in seconds before each attempt, e.g. 0,5,60 "
        f"(default: {','.join(f'{delay:g}' for delay in DEFAULT_SCHEDULE)})",
    )
    create.add_argument(
        "--inactive",
        action="store_true",
        help="create it switched off: matching events are not recorded for it",
    )
    create.set_defaults(func=_create)

    subs.add_parser("list", help="list the subscriptions (no secrets, no URL paths)").set_defaults(
        func=_list
    )
    for name, func, text in (
        ("show", _show, "show one subscription and its delivery counts"),
        ("delete", _delete, "delete a subscription with its deliveries"),
        ("enable", _enable, "switch on; kept deliveries go out now"),
    ):
        command = subs.add_parser(name, help=text)
        _add_name(command)
        command.set_defaults(func=func)
    disable = subs.add_parser("disable", help="switch off; matching events are kept as paused")
    _add_name(disable)
    disable.add_argument(
        "--reason",
        default="disabled with airhook subscriptions disable",
        help="why, shown by list and show (default: %(default)r)",
    )
    disable.set_defaults(func=_disable)

    secrets = subs.add_parser(
        "secrets",
        help="rotate a subscription's signing secrets",
        description="Rotate a subscription's signing secrets: add a secondary (deliveries are "
        "signed with both), rotate (the secondary becomes the primary), drop the old one.",
    )
    _add_name(secrets)
    secrets.add_argument(
        "action",
        choices=SECRET_ACTIONS,
        help="generate-secondary: make one, printed once; rotate: swap primary and secondary; "
        "drop-secondary: sign with the primary only",
    )
    secrets.set_defaults(func=_secrets)

    test = subs.add_parser(
        "test",
        help="send a catalog sample event now and print the outcome; exit 1 unless delivered",
    )
    _add_name(test)
    test.add_argument(
        "--event", help="the event to send (default: the first the subscription takes)"
    )
    test.add_argument(
        "--platform", help="the event's platform, when several platforms have that event"
    )
    test.set_defaults(func=_test)
