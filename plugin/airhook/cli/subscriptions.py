"""``airhook subscriptions``: the outbound endpoints events are delivered to.

A subscription's URL, secrets and extra headers are credentials: they are read from files, kept
encrypted, and never printed (the URL is shown as its origin, headers by name). Every command
goes through :class:`airhook.manage.subscriptions.SubscriptionService`, as the REST API does.

Why ~550 lines: most of it is argparse definitions with a help text for every argument of nine
commands; the logic is the service's.
"""

from __future__ import annotations

import argparse
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
    read_text,
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
from airhook.core.delivery_rules import DEFAULT_SCHEDULE
from airhook.core.signing import SCHEMES
from airhook.core.subscription import METHODS
from airhook.manage.subscriptions import SECRET_ACTIONS

__all__ = ["add_commands", "render_subscription"]

#: Why a subscription was disabled, when the command gives no ``--reason``.
DISABLED_BY_CLI = "disabled with airhook subscriptions disable"


# --- rendering -----------------------------------------------------------------------------------


def _template(text: str | None) -> str | None:
    """A body template as shown in a table: its name, or how long its inline source is."""
    from airhook.core.rendering import is_template_name

    if text is None or is_template_name(text):
        return text
    return f"<inline, {len(text)} characters>"


def render_subscription(view: dict[str, Any]) -> str:
    """One subscription as ``label: value`` lines."""
    state = view["state"]
    if view["disabled_reason"]:
        state += f" since {when(view['disabled_at'])}: {view['disabled_reason']}"
    return details(
        [
            ("name", view["name"]),
            ("url", view["url"]),
            ("state", state),
            ("events", view["events"]),
            ("chatbot ids", view["chatbot_ids"] or "any"),
            ("scheme", view["scheme"] or "none"),
            ("scheme options", view["scheme_options"]),
            ("secrets", secrets_summary(view, "sends unsigned")),
            ("method", view["method"]),
            ("timeout", view["timeout"] or "default ([airhook] outbound_timeout_seconds)"),
            ("headers", view["header_names"]),
            ("body template", _template(view["body_template"]) or "the event payload"),
            ("retry schedule (s)", view["retry_schedule"]),
            ("consecutive failures", view["consecutive_failures"]),
            ("deliveries", view["deliveries"]),
            ("created", when(view["created_at"])),
            ("updated", when(view["updated_at"])),
        ]
    )


def _render_list(page: dict[str, Any]) -> str:
    rows = [
        (
            s["name"],
            s["state"],
            s["url"],
            s["events"],
            s["scheme"] or "none",
            s["deliveries"].get("delivered", 0),
            s["deliveries"].get("pending", 0),
            s["deliveries"].get("failed", 0) + s["deliveries"].get("dead", 0),
            s["deliveries"].get("paused", 0),
        )
        for s in page["items"]
    ]
    headers = (
        "name",
        "state",
        "url",
        "events",
        "scheme",
        "delivered",
        "pending",
        "failed",
        "paused",
    )
    return listing(page, rows, headers)


def _render_attempt(result: dict[str, Any]) -> str:
    return details(
        [
            ("event", f"{result['event']} ({result['platform']})"),
            ("message id", result["message_id"]),
            ("outcome", result["outcome"]),
            ("status", result["status_code"]),
            ("latency (ms)", result["latency_ms"]),
            ("error", result["error"]),
            ("response", result["response_excerpt"]),
        ]
    )


# --- input ---------------------------------------------------------------------------------------


def _header(line: str, where: str) -> tuple[str, str]:
    name, sep, value = line.partition(":")
    if not (sep and name.strip() and value.strip()):
        # Not the line itself: a header file holds secret values.
        raise CommandError(f"{where}: a header is 'Name: value'")
    return name.strip(), value.strip()


def _schedule(text: str) -> list[float]:
    try:
        return [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise CommandError(
            f"--retry-schedule takes seconds separated by commas, not {text!r}"
        ) from None


def _headers(args: argparse.Namespace) -> dict[str, str]:
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


def _url(args: argparse.Namespace) -> str | None:
    if args.url is not None:
        return str(args.url)
    return read_text(args.url_file, "URL").strip() if args.url_file is not None else None


def _template_of(args: argparse.Namespace) -> str | None:
    if args.template_file is not None:
        return read_text(args.template_file, "template")
    return args.template


# --- commands ------------------------------------------------------------------------------------


def _create(args: argparse.Namespace) -> None:
    scheme = None if args.scheme == "none" else args.scheme
    if scheme is None and (args.secret_file or args.secondary_secret_file):
        raise CommandError("--scheme none signs nothing: give it no secret")
    url = _url(args)
    secret = read_secret(args.secret_file) if args.secret_file else None
    secondary = read_secret(args.secondary_secret_file) if args.secondary_secret_file else None
    settings: dict[str, Any] = {
        "chatbot_ids": args.chatbot_id,
        "method": args.method,
        "headers": _headers(args),
        "scheme_options": parse_options(args.option),
        "active": not args.inactive,
    }
    template = _template_of(args)
    if template is not None:
        settings["body_template"] = template
    if args.timeout is not None:
        settings["timeout"] = args.timeout
    if args.retry_schedule is not None:
        settings["retry_schedule"] = _schedule(args.retry_schedule)
    created = (
        _common.services()
        .subscriptions()
        .create(
            args.name,
            url or "",
            events=args.events or ["*"],
            scheme=scheme,
            allow_unknown_events=args.allow_unknown_events,
            secret=secret,
            secondary_secret=secondary,
            **settings,
        )
    )
    # The REST API's answer, but for the secret: it goes to standard error, once.
    emit(
        args,
        {"subscription": created.view.as_dict()},
        lambda doc: (
            f"created subscription {args.name}\n" + render_subscription(doc["subscription"])
        ),
    )
    if created.secret is not None:
        show_once("signing secret", created.secret)


def _list(args: argparse.Namespace) -> None:
    page = _common.services().subscriptions().list(limit=args.limit, offset=args.offset)
    emit(args, page.as_dict(), _render_list)


def _show(args: argparse.Namespace) -> None:
    emit(args, _common.services().subscriptions().get(args.name).as_dict(), render_subscription)


def _changes(args: argparse.Namespace) -> dict[str, Any]:
    """The settings ``update`` changes: those given, as the REST API's PATCH takes them."""
    changes: dict[str, Any] = {}
    url = _url(args)
    if url is not None:
        changes["url"] = url
    if args.events:
        changes["events"] = args.events
    if args.chatbot_id or args.any_chatbot:
        changes["chatbot_ids"] = args.chatbot_id
    if args.method is not None:
        changes["method"] = args.method
    if args.timeout is not None or args.default_timeout:
        changes["timeout"] = args.timeout
    if args.header or args.header_file or args.no_headers:
        changes["headers"] = _headers(args)
    template = _template_of(args)
    if template is not None or args.no_template:
        changes["body_template"] = template
    if args.retry_schedule is not None:
        changes["retry_schedule"] = _schedule(args.retry_schedule)
    if args.scheme is not None:
        changes["scheme"] = None if args.scheme == "none" else args.scheme
    if args.option or args.no_options:
        changes["scheme_options"] = parse_options(args.option)
    if args.active is not None:
        changes["active"] = args.active
    if not changes:
        raise CommandError("nothing to change: give at least one option (see --help)")
    return changes


def _update(args: argparse.Namespace) -> None:
    changes = _changes(args)
    view = (
        _common.services()
        .subscriptions()
        .update(
            args.name,
            changes,
            allow_unknown_events=args.allow_unknown_events,
            reason=args.reason,
        )
    )
    emit(args, view.as_dict(), render_subscription)


def _delete(args: argparse.Namespace) -> None:
    _common.services().subscriptions().delete(args.name)
    emit(
        args,
        {"deleted": args.name},
        lambda _: f"deleted subscription {args.name} with its deliveries and their attempts",
    )


def _secrets(args: argparse.Namespace) -> None:
    change = _common.services().subscriptions().change_secrets(args.name, args.action)
    emit_secret_change(args, "subscription", change, render_subscription)


def _enable(args: argparse.Namespace) -> None:
    view = _common.services().subscriptions().update(args.name, {"active": True})
    emit(args, view.as_dict(), render_subscription)


def _disable(args: argparse.Namespace) -> None:
    view = (
        _common.services().subscriptions().update(args.name, {"active": False}, reason=args.reason)
    )
    emit(args, view.as_dict(), render_subscription)


def _test(args: argparse.Namespace) -> int:
    result = _common.services().subscriptions().test(args.name, args.event, args.platform)
    emit(args, result, _render_attempt)
    return 0 if result["outcome"] == "delivered" else 1


# --- the parsers ---------------------------------------------------------------------------------


def _add_name(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", help="the subscription's name")


def _add_settings(parser: argparse.ArgumentParser, *, update: bool) -> None:
    """The options ``create`` and ``update`` share (``update``: none has a default)."""
    parser.add_argument(
        "--events",
        nargs="+",
        metavar="PATTERN",
        help="event names delivered, '*' matching any run of characters"
        + ("" if update else " (default: '*')"),
    )
    parser.add_argument(
        "--allow-unknown-events",
        action="store_true",
        help="accept patterns that match no catalog event (events DAGs publish under names "
        "of their own)",
    )
    parser.add_argument(
        "--method",
        default=None if update else "POST",
        choices=METHODS,
        type=str.upper,
        help="HTTP method" + ("" if update else " (default: %(default)s)"),
    )
    parser.add_argument(
        "--header",
        action="append",
        default=[],
        metavar="'NAME: VALUE'",
        help="an extra header that is not secret, repeatable (arguments show in ps and "
        "shell history: use --header-file for tokens)"
        + ("; the headers given replace all the old ones" if update else ""),
    )
    parser.add_argument(
        "--header-file",
        action="append",
        default=[],
        metavar="FILE",
        help=f"file of 'Name: value' lines, for secret headers, repeatable {FILE_HELP}",
    )
    template = parser.add_mutually_exclusive_group()
    template.add_argument(
        "--template",
        help="body template: a shipped template's name (.j2) or inline Jinja source"
        + ("" if update else " (default: the event payload itself)"),
    )
    template.add_argument(
        "--template-file", metavar="FILE", help=f"file holding the body template {FILE_HELP}"
    )
    parser.add_argument(
        "--retry-schedule",
        metavar="S,S,…",
        help="the delay in seconds before each attempt, e.g. 0,5,60 "
        f"(default: {','.join(f'{delay:g}' for delay in DEFAULT_SCHEDULE)})",
    )
    if update:
        template.add_argument(
            "--no-template", action="store_true", help="send the event payload itself again"
        )
        parser.add_argument(
            "--no-headers", action="store_true", help="send no extra header any more"
        )


def _add_create(subs: Any) -> None:
    create = subs.add_parser(
        "create",
        help="create a subscription",
        description="Create a subscription. Signed with a generated secret (printed once, on "
        "standard error) unless --secret-file or --scheme none. URL, secrets and headers are "
        "stored encrypted with [core] fernet_key.",
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
    _add_settings(create, update=False)
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
    add_scheme_options(create, examples="header=X-Signature for hmac")
    create.add_argument(
        "--timeout",
        type=float,
        metavar="SECONDS",
        help="seconds per attempt (default: [airhook] outbound_timeout_seconds)",
    )
    create.add_argument(
        "--inactive",
        action="store_true",
        help="create it switched off: matching events are not recorded for it",
    )
    add_json(create)
    create.set_defaults(func=_create)


def _add_update(subs: Any) -> None:
    update = subs.add_parser(
        "update",
        help="change a subscription's settings (its deliveries stay)",
        description="Change some of a subscription's settings, as the REST API's PATCH does: "
        "only what is given changes; a list, the URL or the headers given replace the old "
        "ones whole. The name stays; secrets change with 'subscriptions secrets'. An unsigned "
        "subscription cannot start signing here (its new secret would have to be shown): "
        "create it again.",
    )
    _add_name(update)
    url = update.add_mutually_exclusive_group()
    url.add_argument("--url", help="the new endpoint, https:// or http://")
    url.add_argument(
        "--url-file",
        metavar="FILE",
        help=f"file holding the new URL, when the URL is itself a credential {FILE_HELP}",
    )
    _add_settings(update, update=True)
    add_replacing(
        update,
        "--chatbot-id",
        metavar="ID",
        help="deliver only events of these chatbots, repeatable (replaces the list)",
        reset="--any-chatbot",
        reset_help="deliver events of any chatbot again",
    )
    update.add_argument(
        "--scheme",
        choices=[*sorted(SCHEMES), "none"],
        help="another signing scheme with the same secrets ('none': send unsigned, and forget "
        "the secrets); its options start empty unless --option is given",
    )
    add_scheme_options(update)
    timeout = update.add_mutually_exclusive_group()
    timeout.add_argument("--timeout", type=float, metavar="SECONDS", help="seconds per attempt")
    timeout.add_argument(
        "--default-timeout",
        action="store_true",
        help="back to the default, [airhook] outbound_timeout_seconds",
    )
    add_active_switch(
        update,
        on="switch it on (as 'enable': kept deliveries go out now)",
        off="switch it off (as 'disable': matching events are kept as paused)",
    )
    update.add_argument(
        "--reason",
        default=DISABLED_BY_CLI,
        help="with --inactive: why, shown by list and show (default: %(default)r)",
    )
    add_json(update)
    update.set_defaults(func=_update)


def add_commands(commands: Any) -> None:
    """Add the ``subscriptions`` group to the top-level subcommands."""
    subs = commands.add_parser(
        "subscriptions",
        help="outbound subscriptions: the endpoints events are delivered to",
        description="Outbound subscriptions: the endpoints events are delivered to, signed.",
    ).add_subparsers(dest="cmd", required=True, metavar="COMMAND", help="what to do")

    _add_create(subs)
    listing_ = subs.add_parser(
        "list", help="list the subscriptions, newest first (no secrets, no URL paths)"
    )
    add_window(listing_)
    add_json(listing_)
    listing_.set_defaults(func=_list)
    for name, func, text in (
        ("show", _show, "show one subscription and its delivery counts"),
        ("delete", _delete, "delete a subscription with its deliveries"),
        ("enable", _enable, "switch on; kept deliveries go out now"),
    ):
        command = subs.add_parser(name, help=text)
        _add_name(command)
        add_json(command)
        command.set_defaults(func=func)
    _add_update(subs)
    disable = subs.add_parser("disable", help="switch off; matching events are kept as paused")
    _add_name(disable)
    disable.add_argument(
        "--reason",
        default=DISABLED_BY_CLI,
        help="why, shown by list and show (default: %(default)r)",
    )
    add_json(disable)
    disable.set_defaults(func=_disable)

    secrets = add_secrets_command(
        subs,
        "subscription",
        description="Act on a subscription's signing secrets: add a secondary (deliveries are "
        "signed with both), rotate (the secondary becomes the primary), drop the old one, or "
        "regenerate the primary (the old one stays as the secondary for the changeover). A "
        "generated secret is printed once, on standard error.",
        actions=SECRET_ACTIONS,
        actions_help="generate-secondary: make one, printed once; rotate: swap primary and "
        "secondary; drop-secondary: sign with the primary only; regenerate: a new primary, "
        "printed once, the old one kept as secondary",
        func=_secrets,
    )
    add_json(secrets)

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
    add_json(test)
    test.set_defaults(func=_test)
