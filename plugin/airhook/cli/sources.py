"""``airhook sources``: the inbound side.

A source is one receiver URL, ``/airhook/webhooks/<name>``, and what a delivery to it must prove.
Every command goes through :class:`airhook.manage.sources.SourceService`, as the REST API does.

Why ~500 lines: most of it is argparse definitions with a help text for every argument of eight
commands; the logic is the service's.
"""

from __future__ import annotations

import argparse
import json
import textwrap
import urllib.error
import urllib.request
from typing import Any

from airhook.cli import _common
from airhook.cli._common import (
    FILE_HELP,
    CommandError,
    add_active_switch,
    add_replacing,
    add_scheme_options,
    add_secrets_command,
    parse_options,
    read_secret,
)
from airhook.cli._output import (
    add_json,
    add_window,
    details,
    emit,
    emit_secret_change,
    listing,
    secrets_summary,
    show_once,
    when,
)
from airhook.core.catalog import load_catalog
from airhook.core.errors import DeliveryError
from airhook.core.profiles import PROFILES, get_profile
from airhook.core.signing import SCHEMES
from airhook.manage.sources import SECRET_ACTIONS, UNSIGNED, Poster
from airhook.manage.views import SourceView

__all__ = ["add_commands", "http_poster", "render_source"]

#: Seconds a test delivery may take to be answered (the receiver answers at once).
TEST_TIMEOUT = 30.0


# --- rendering -----------------------------------------------------------------------------------


def render_source(view: dict[str, Any]) -> str:
    """One source as ``label: value`` lines."""
    received = str(view["events_received"])
    if view["last_received_at"]:
        received += f" (last {when(view['last_received_at'])})"
    return details(
        [
            ("name", view["name"]),
            ("receiver URL", view["receiver_url"]),
            ("profile", view["profile"]),
            ("scheme", view["scheme"] or "none"),
            ("scheme options", view["scheme_options"]),
            ("secrets", secrets_summary(view, "checks no signature")),
            ("bearer tokens", view["bearer_tokens"]),
            ("basic users", view["basic_users"]),
            ("events", view["events"]),
            ("allowed networks", view["allow_ips"] or "any"),
            ("chatbot ids", view["chatbot_ids"] or "any"),
            ("max body bytes", view["max_body_bytes"] or "default ([airhook] max_body_bytes)"),
            ("active", view["active"]),
            ("events received", received),
            ("created", when(view["created_at"])),
            ("updated", when(view["updated_at"])),
        ]
    )


def _render_list(page: dict[str, Any]) -> str:
    rows = [
        (
            s["name"],
            s["profile"],
            s["scheme"] or "none",
            s["active"],
            s["events"],
            s["events_received"],
            when(s["last_received_at"]),
        )
        for s in page["items"]
    ]
    headers = ("name", "profile", "scheme", "active", "events", "received", "last received")
    return listing(page, rows, headers)


def _render_created(document: dict[str, Any]) -> str:
    steps = document["setup"]["steps"]
    text = f"created source {document['source']['name']}\n{render_source(document['source'])}"
    if steps:
        text += "\n\nIn the sender's platform:\n" + "\n".join(
            textwrap.fill(step, 100, initial_indent=f"  {n}. ", subsequent_indent="     ")
            for n, step in enumerate(steps, 1)
        )
    return text


# --- commands ------------------------------------------------------------------------------------


def _basic(items: list[str]) -> dict[str, str]:
    users: dict[str, str] = {}
    for item in items:
        user, sep, path = item.partition(":")
        if not (user and sep and path):
            raise CommandError(f"--basic takes USER:PASSWORD_FILE, not {item!r}")
        users[user] = read_secret(path)
    return users


def _create(args: argparse.Namespace) -> None:
    scheme = args.scheme or get_profile(args.profile, load_catalog()).scheme
    secret = secondary = None
    if scheme == UNSIGNED:
        if args.secret_file or args.generate_secret or args.secondary_secret_file:
            raise CommandError("--scheme none checks no signature: give it no secret")
    elif args.secret_file:
        secret = read_secret(args.secret_file)
    elif not args.generate_secret:
        raise CommandError(
            f"signing scheme {scheme!r} needs a secret: give --secret-file FILE "
            f"{FILE_HELP} or --generate-secret (or --scheme none with --bearer-token-file "
            "or --basic)"
        )
    if args.secondary_secret_file and scheme != UNSIGNED:
        secondary = read_secret(args.secondary_secret_file)
    created = (
        _common.services()
        .sources()
        .create(
            args.name,
            args.profile,
            scheme=args.scheme,
            events=args.events or ["*"],
            allow_ips=args.allow_ip,
            chatbot_ids=args.chatbot_id,
            max_body_bytes=args.max_body_bytes,
            active=not args.inactive,
            scheme_options=parse_options(args.option),
            secret=secret,
            secondary_secret=secondary,
            bearer_tokens=[read_secret(path) for path in args.bearer_token_file],
            basic_credentials=_basic(args.basic),
        )
    )
    # The REST API's answer, but for the secret: it goes to standard error, once.
    emit(args, {"source": created.view.as_dict(), "setup": created.setup}, _render_created)
    if created.secret is not None:
        show_once("secret", created.secret)


def _list(args: argparse.Namespace) -> None:
    page = _common.services().sources().list(limit=args.limit, offset=args.offset)
    emit(args, page.as_dict(), _render_list)


def _show(args: argparse.Namespace) -> None:
    emit(args, _common.services().sources().get(args.name).as_dict(), render_source)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``update`` changes: those given, as the REST API's PATCH takes them."""
    changes: dict[str, Any] = {}
    if args.events:
        changes["events"] = args.events
    if args.allow_ip or args.any_ip:
        changes["allow_ips"] = args.allow_ip
    if args.chatbot_id or args.any_chatbot:
        changes["chatbot_ids"] = args.chatbot_id
    if args.max_body_bytes is not None or args.default_max_body_bytes:
        changes["max_body_bytes"] = args.max_body_bytes
    if args.active is not None:
        changes["active"] = args.active
    if args.option or args.no_options:
        changes["scheme_options"] = parse_options(args.option)
    if not changes:
        raise CommandError("nothing to change: give at least one option (see --help)")
    return changes


def _update(args: argparse.Namespace) -> None:
    changes = _changes(args)
    emit(args, _common.services().sources().update(args.name, changes).as_dict(), render_source)


def _delete(args: argparse.Namespace) -> None:
    _common.services().sources().delete(args.name)
    emit(
        args,
        {"deleted": args.name},
        lambda _: f"deleted source {args.name} (its recorded events stay in the inbox)",
    )


def _secrets(args: argparse.Namespace) -> None:
    if args.secret_file is not None and args.action != "set-secondary":
        raise CommandError(f"--secret-file goes with set-secondary, not {args.action}")
    secret = read_secret(args.secret_file or "-") if args.action == "set-secondary" else None
    change = _common.services().sources().change_secrets(args.name, args.action, secret=secret)
    emit_secret_change(args, "source", change, render_source)


def _active(args: argparse.Namespace) -> None:
    view = _common.services().sources().update(args.name, {"active": args.state == "on"})
    emit(args, view.as_dict(), render_source)


def http_poster(base_url: str, timeout: float = TEST_TIMEOUT) -> Poster:
    """A :data:`~airhook.manage.sources.Poster` that POSTs to the receiver of the API server
    at ``base_url`` over HTTP, as the sender would (the REST API hands the request to the
    receiver in its own process instead)."""

    def post(name: str, headers: dict[str, str], body: bytes) -> tuple[int, Any]:
        url = SourceView.receiver_url_of(base_url, name)
        request = urllib.request.Request(url, data=body, headers=headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
                status, text = response.status, response.read()
        except urllib.error.HTTPError as answer:
            status, text = answer.code, answer.read()
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DeliveryError(
                url, None, f"cannot reach the receiver: {reason}", retryable=True
            ) from None
        try:
            return status, json.loads(text)
        except ValueError:
            return status, None

    return post


def _render_test(result: dict[str, Any]) -> str:
    lines = [
        details(
            [
                ("event", result["event"]),
                ("status", result["status"]),
                ("answer", json.dumps(result["answer"])),
                ("recorded as", result["event_id"]),
                ("DAGs scheduled on it", result["dags"]),
            ]
        )
    ]
    if result["status"] != 202:
        lines.append("not recorded: the receiver's answer says why (docs/receiver.md, Answers)")
    return "\n".join(lines)


def _test(args: argparse.Namespace) -> int:
    if args.url is not None and not args.url.startswith(("http://", "https://")):
        raise CommandError(
            f"--url takes the API server's http:// or https:// URL, not {args.url!r}"
        )
    services = _common.services()
    base_url = args.url or services.base_url
    if not base_url:
        raise CommandError(
            "the test goes to the receiver of a running API server: give --url "
            "(e.g. http://localhost:8080) or set [api] base_url"
        )
    result = services.sources().test(args.name, http_poster(base_url, args.timeout), args.event)
    emit(args, result, _render_test)
    return 0 if result["status"] == 202 else 1


# --- the parsers ---------------------------------------------------------------------------------


def _add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the source's name")


def _add_create(sources: Any) -> None:
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
        choices=[*sorted(SCHEMES), UNSIGNED],
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
    add_scheme_options(
        create,
        examples="header=X-Hub-Signature-256, prefix=sha256=, or event_field=action for the "
        "hmac profile",
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
    add_json(create)
    create.set_defaults(func=_create)


def _add_update(sources: Any) -> None:
    update = sources.add_parser(
        "update",
        help="change a source's settings (its secrets and recorded events stay)",
        description="Change some of a source's settings, as the REST API's PATCH does: only "
        "what is given changes, and a list given replaces the old one whole. The name and the "
        "profile stay (create another source for another platform); secrets change with "
        "'sources secrets'.",
    )
    _add_name(update)
    update.add_argument(
        "--events",
        nargs="+",
        metavar="PATTERN",
        help="the accepted event names, '*' matching any run of characters",
    )
    add_replacing(
        update,
        "--allow-ip",
        metavar="CIDR",
        help="accept deliveries only from these networks, repeatable (replaces the list)",
        reset="--any-ip",
        reset_help="accept deliveries from any address again",
    )
    add_replacing(
        update,
        "--chatbot-id",
        metavar="ID",
        help="accept only events of these chatbots, repeatable (replaces the list)",
        reset="--any-chatbot",
        reset_help="accept events of any chatbot again",
    )
    size = update.add_mutually_exclusive_group()
    size.add_argument("--max-body-bytes", type=int, metavar="BYTES", help="largest body accepted")
    size.add_argument(
        "--default-max-body-bytes",
        action="store_true",
        help="back to the default limit, [airhook] max_body_bytes",
    )
    add_active_switch(
        update, on="switch it on", off="switch it off: deliveries are refused with 403"
    )
    add_scheme_options(update)
    add_json(update)
    update.set_defaults(func=_update)


def _add_secrets(sources: Any) -> None:
    secrets = add_secrets_command(
        sources,
        "source",
        description="Act on a source's signing secrets: add a secondary (both are accepted), "
        "rotate (the secondary becomes the primary), drop the old one, or regenerate the "
        "primary (the old one stays as the secondary for the changeover). A generated secret "
        "is printed once, on standard error.",
        actions=SECRET_ACTIONS,
        actions_help="generate-secondary: make one, printed once; rotate: swap primary and "
        "secondary; drop-secondary: keep the primary only; regenerate: a new primary, printed "
        "once, the old one kept as secondary; set-secondary: read the platform's new one",
        func=_secrets,
    )
    secrets.add_argument(
        "--secret-file",
        metavar="FILE",
        help=f"with set-secondary: file holding the new secondary {FILE_HELP}, the default",
    )
    add_json(secrets)


def _add_test(sources: Any) -> None:
    test = sources.add_parser(
        "test",
        help="post a signed sample event to the source's receiver; exit 1 unless recorded",
        description="Post a catalog sample of an event, signed with the source's own secret "
        "(and its bearer token or basic credentials), to the source's receiver URL on a "
        "running API server, over HTTP as the platform would: the receiver checks and records "
        "it as a real delivery, and the DAGs scheduled on it run. The API server is the one "
        "at --url, else [api] base_url; with neither the command cannot test (the REST API's "
        "test needs no URL: it runs inside the API server).",
    )
    _add_name(test)
    test.add_argument(
        "--event",
        help="the catalog event to send (default: the first the source takes)",
    )
    test.add_argument(
        "--url",
        metavar="URL",
        help="the API server's base URL, e.g. http://localhost:8080 (default: [api] base_url)",
    )
    test.add_argument(
        "--timeout",
        type=float,
        default=TEST_TIMEOUT,
        metavar="SECONDS",
        help="how long to wait for the receiver's answer (default: %(default)s)",
    )
    add_json(test)
    test.set_defaults(func=_test)


def add_commands(commands: Any) -> None:
    """Add the ``sources`` group to the top-level subcommands."""
    group = commands.add_parser(
        "sources",
        help="inbound sources: who may deliver to which URL, and how they prove it",
        description="Inbound sources. A source named NAME receives at /airhook/webhooks/NAME.",
    )
    sources = group.add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do")
    _add_create(sources)

    listing_ = sources.add_parser("list", help="list the sources, newest first (no secrets)")
    add_window(listing_)
    add_json(listing_)
    listing_.set_defaults(func=_list)

    show = sources.add_parser("show", help="show one source (no secrets)")
    _add_name(show)
    add_json(show)
    show.set_defaults(func=_show)

    _add_update(sources)

    delete = sources.add_parser("delete", help="delete a source (its recorded events stay)")
    _add_name(delete)
    add_json(delete)
    delete.set_defaults(func=_delete)

    _add_secrets(sources)

    active = sources.add_parser("active", help="switch a source on or off")
    _add_name(active)
    active.add_argument("state", choices=["on", "off"], help="off: deliveries are refused with 403")
    add_json(active)
    active.set_defaults(func=_active)

    _add_test(sources)
