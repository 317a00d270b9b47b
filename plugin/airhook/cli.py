"""The ``airhook`` command: the store's schema, inbound sources and recorded events.

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

from airhook.access import BasicCredentials
from airhook.catalog import load_catalog
from airhook.profiles import PROFILES
from airhook.secrets import Secret, SecretPair, generate_secret
from airhook.source import Source

__all__ = ["CommandError", "main"]


class CommandError(Exception):
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
    try:
        cipher = airflow_cipher()
    except RuntimeError as exc:
        raise CommandError(str(exc)) from None
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
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; bad input or setup exits with 2 and a one-line message."""
    from cryptography.fernet import InvalidToken

    args = build_parser().parse_args(argv)
    # Airflow's logging writes to standard output, which carries this command's JSON: keep
    # Alembic's per-run INFO lines ("Context impl SQLiteImpl.") out of it.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    try:
        args.func(args)
    except InvalidToken:
        print(
            "airhook: cannot decrypt the stored credentials: [core] fernet_key is not the key "
            "they were stored with",
            file=sys.stderr,
        )
        return 2
    except (CommandError, KeyError, ValueError) as exc:
        print(f"airhook: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
