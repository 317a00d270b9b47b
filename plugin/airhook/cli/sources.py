"""``airhook sources`` and ``airhook events``: the inbound side.

A source is one receiver URL, ``/airhook/webhooks/<name>``, and what a delivery to it must prove;
its recorded events are the inbox rows the dispatcher turns into asset events.
"""

from __future__ import annotations

import argparse
from dataclasses import replace
from typing import Any

from airhook.cli._common import (
    FILE_HELP,
    CommandError,
    inbox_repository,
    parse_options,
    print_json,
    read_secret,
    show_once,
    source_repository,
)
from airhook.core.access import BasicCredentials
from airhook.core.catalog import load_catalog
from airhook.core.profiles import PROFILES, get_profile
from airhook.core.secrets import SecretPair, generate_secret
from airhook.core.signing import SCHEMES
from airhook.core.source import Source

__all__ = ["add_commands"]

#: What ``sources secrets`` can do to a source's pair of signing secrets.
SECRET_ACTIONS = ("set-secondary", "generate-secondary", "rotate", "drop-secondary")


def describe(source: Source) -> dict[str, Any]:
    """What ``create``, ``list`` and ``show`` print: no secret, only whether there is one."""
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


def _basic(item: str) -> BasicCredentials:
    user, sep, path = item.partition(":")
    if not (user and sep and path):
        raise CommandError(f"--basic takes USER:PASSWORD_FILE, not {item!r}")
    return BasicCredentials(user, read_secret(path))


def _signing_secrets(args: argparse.Namespace, scheme: str | None) -> SecretPair | None:
    """The pair ``create`` stores: read from files, or generated (then shown once)."""
    if scheme is None:
        if args.secret_file or args.generate_secret or args.secondary_secret_file:
            raise CommandError("--scheme none checks no signature: give it no secret")
        return None
    if args.secret_file:
        primary = read_secret(args.secret_file)
    elif args.generate_secret:
        primary = generate_secret()
    else:
        raise CommandError(
            f"signing scheme {scheme!r} needs a secret: give --secret-file FILE "
            f"{FILE_HELP} or --generate-secret (or --scheme none with --bearer-token-file "
            "or --basic)"
        )
    secondary = read_secret(args.secondary_secret_file) if args.secondary_secret_file else None
    return SecretPair(primary, secondary)


def _create(args: argparse.Namespace) -> None:
    profile = get_profile(args.profile, load_catalog())
    scheme = None if args.scheme == "none" else (args.scheme or profile.scheme)
    secrets = _signing_secrets(args, scheme)
    source = Source(
        name=args.name,
        profile=args.profile,
        scheme=scheme,
        secrets=secrets,
        scheme_options=parse_options(args.option),
        bearer_tokens=tuple(read_secret(path) for path in args.bearer_token_file),
        basic_credentials=tuple(_basic(item) for item in args.basic),
        allow_ips=tuple(args.allow_ip),
        chatbot_ids=tuple(args.chatbot_id),
        events=tuple(args.events or ["*"]),
        max_body_bytes=args.max_body_bytes,
        active=not args.inactive,
    )
    created = source_repository().create(source)
    print_json(describe(created))
    if secrets is not None and args.generate_secret:
        show_once("secret", secrets.primary)


def _list(args: argparse.Namespace) -> None:
    print_json([describe(source) for source in source_repository().all()])


def _show(args: argparse.Namespace) -> None:
    print_json(describe(source_repository().get(args.name)))


def _delete(args: argparse.Namespace) -> None:
    source_repository().delete(args.name)
    print(f"deleted source {args.name} (its recorded events stay in the inbox)")


def _secrets(args: argparse.Namespace) -> None:
    if args.secret_file is not None and args.action != "set-secondary":
        raise CommandError(f"--secret-file goes with set-secondary, not {args.action}")
    sources = source_repository()
    source = sources.get(args.name)
    if source.secrets is None:
        raise CommandError(f"source {args.name} has no signing secret")
    pair = source.secrets
    if args.action == "set-secondary":
        pair = SecretPair(pair.primary, read_secret(args.secret_file or "-"))
    elif args.action == "generate-secondary":
        pair = pair.with_new_secondary()
    elif args.action == "rotate":
        pair = pair.rotated()
    else:
        pair = SecretPair(pair.primary)
    saved = sources.save(replace(source, secrets=pair))
    print_json(describe(saved))
    if args.action == "generate-secondary" and pair.secondary is not None:
        show_once("new secondary secret", pair.secondary)


def _active(args: argparse.Namespace) -> None:
    sources = source_repository()
    saved = sources.save(replace(sources.get(args.name), active=args.state == "on"))
    print_json(describe(saved))


def _events(args: argparse.Namespace) -> None:
    found = inbox_repository().find(args.source, limit=args.limit)
    print_json(
        [
            {
                "id": event.id,
                "event": event.event,
                "kind": event.kind,
                "received_at": event.received_at.isoformat(),
                "dispatched_at": (event.dispatched_at.isoformat() if event.dispatched_at else None),
            }
            for event in found
        ],
        lines=True,
    )


def _add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the source's name")


def add_commands(commands: Any) -> None:
    """Add the ``sources`` and ``events`` groups to the top-level subcommands."""
    group = commands.add_parser(
        "sources",
        help="inbound sources: who may deliver to which URL, and how they prove it",
        description="Inbound sources. A source named NAME receives at /airhook/webhooks/NAME.",
    )
    sources = group.add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do")

    create = sources.add_parser(
        "create",
        help="create a source",
        description="Create a source. A signing scheme needs a secret: --secret-file or "
        "--generate-secret. Secrets are stored encrypted with [core] fernet_key.",
    )
    create.add_argument(
        "name",
        help="the source's name: 1-100 lower-case letters, digits, '-' or '_'; "
        "its URL is /airhook/webhooks/NAME",
    )
    create.add_argument(
        "--profile",
        required=True,
        choices=PROFILES,
        help="the sender's platform: how its events are named, validated and signed",
    )
    create.add_argument(
        "--scheme",
        choices=[*sorted(SCHEMES), "none"],
        help="signing scheme (default: the profile's); 'none' checks no signature, "
        "so give --bearer-token-file or --basic",
    )
    primary = create.add_mutually_exclusive_group()
    primary.add_argument(
        "--secret-file", metavar="FILE", help=f"file holding the primary secret {FILE_HELP}"
    )
    primary.add_argument(
        "--generate-secret",
        action="store_true",
        help="generate the primary secret; printed once on standard error",
    )
    create.add_argument(
        "--secondary-secret-file",
        metavar="FILE",
        help=f"file holding a secondary secret, also accepted {FILE_HELP}",
    )
    create.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a signing scheme option, repeatable: e.g. header=X-Hub-Signature-256, "
        "prefix=sha256=, or event_field=action for the hmac profile",
    )
    create.add_argument(
        "--bearer-token-file",
        action="append",
        default=[],
        metavar="FILE",
        help=f"file holding a bearer token deliveries must carry, repeatable {FILE_HELP}",
    )
    create.add_argument(
        "--basic",
        action="append",
        default=[],
        metavar="USER:PASSWORD_FILE",
        help="basic-auth user and the file holding its password, repeatable",
    )
    create.add_argument(
        "--allow-ip",
        action="append",
        default=[],
        metavar="CIDR",
        help="accept deliveries only from this network, repeatable (default: any address)",
    )
    create.add_argument(
        "--chatbot-id",
        action="append",
        default=[],
        metavar="ID",
        help="accept only events of this chatbot, repeatable (default: any chatbot)",
    )
    create.add_argument(
        "--events",
        nargs="+",
        metavar="PATTERN",
        help="accepted event names, '*' matching any run of characters (default: '*')",
    )
    create.add_argument(
        "--max-body-bytes",
        type=int,
        metavar="BYTES",
        help="largest body accepted (default: [airhook] max_body_bytes)",
    )
    create.add_argument(
        "--inactive",
        action="store_true",
        help="create it switched off: deliveries are refused until 'sources active NAME on'",
    )
    create.set_defaults(func=_create)

    sources.add_parser("list", help="list the sources (no secrets)").set_defaults(func=_list)
    show = sources.add_parser("show", help="show one source (no secrets)")
    _add_name(show)
    show.set_defaults(func=_show)
    delete = sources.add_parser("delete", help="delete a source (its recorded events stay)")
    _add_name(delete)
    delete.set_defaults(func=_delete)

    secrets = sources.add_parser(
        "secrets",
        help="rotate a source's signing secrets",
        description="Rotate a source's signing secrets: add a secondary (both are accepted), "
        "rotate (the secondary becomes the primary), drop the old one.",
    )
    _add_name(secrets)
    secrets.add_argument(
        "action",
        choices=SECRET_ACTIONS,
        help="set-secondary: read one; generate-secondary: make one, printed once; "
        "rotate: swap primary and secondary; drop-secondary: keep the primary only",
    )
    secrets.add_argument(
        "--secret-file",
        metavar="FILE",
        help=f"with set-secondary: file holding the new secondary {FILE_HELP}, the default",
    )
    secrets.set_defaults(func=_secrets)

    active = sources.add_parser("active", help="switch a source on or off")
    _add_name(active)
    active.add_argument("state", choices=["on", "off"], help="off: deliveries are refused with 403")
    active.set_defaults(func=_active)

    events = commands.add_parser(
        "events", help="inbound events recorded by the receiver"
    ).add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do")
    listing = events.add_parser(
        "list", help="a source's recorded events, oldest first, one JSON line each"
    )
    listing.add_argument("source", help="the source's name")
    listing.add_argument(
        "--limit", type=int, default=50, help="print at most this many (default: %(default)s)"
    )
    listing.set_defaults(func=_events)
