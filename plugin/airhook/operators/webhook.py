"""``WebhookOperator``: send one signed, templated webhook call from a DAG, reliably.

Thin on purpose: the body is rendered and validated here; everything about HTTP, signing and
what an answer means belongs to :class:`~airhook.hooks.webhook.WebhookHook`, and every retry
rule to :mod:`airhook.core.delivery_rules`.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta, timezone
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowFailException

from airhook.core import delivery_rules
from airhook.core.delivery_rules import Outcome, RetryPolicy
from airhook.core.errors import AirhookError, DeliveryError, TemplateRenderError
from airhook.hooks.webhook import ALLOWED_METHODS, DEFAULT_RETRY_POLICY, Attempt, WebhookHook
from airhook.triggers import MIN_DEFER_SECONDS, SETTLE_SECONDS
from airhook.triggers.delay import WebhookDelayTrigger

if TYPE_CHECKING:
    from airflow.sdk import Context

__all__ = ["WebhookOperator"]

#: Task context entries a body template gets as they are: values, not objects. The rest of the
#: context is objects (``task``, ``ti``, ``conn``, ``var``, ``macros``…) whose attributes and
#: methods reach connections' passwords, Variables or an unsandboxed template environment, and
#: template authors are not necessarily the DAG's authors.
_PLAIN_CONTEXT_KEYS = (
    "ds",
    "ds_nodash",
    "ts",
    "ts_nodash",
    "ts_nodash_with_tz",
    "logical_date",
    "data_interval_start",
    "data_interval_end",
    "run_id",
    "task_instance_key_str",
    "test_mode",
)


def _plain(value: Any) -> Any:
    """A copy of ``value`` made of JSON-like values only (mappings, lists, scalars, datetimes)."""
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, str | int | float | bool | datetime):
        return value
    return str(value)


def plain_template_context(context: Mapping[str, Any]) -> dict[str, Any]:
    """The task context as a body template sees it: values copied out of Airflow's objects.

    ``dag_run`` and ``ti`` (also ``task_instance``) become mappings of their identifying fields
    and ``dag_run.conf``; ``params`` and ``triggering_asset_events`` (asset name to a list of
    ``{"extra", "timestamp"}``) become plain data. Jinja reads a mapping's keys as attributes,
    so ``{{ dag_run.conf.chat_id }}`` and ``{{ ti.task_id }}`` read as before.
    """
    plain = {k: _plain(context[k]) for k in _PLAIN_CONTEXT_KEYS if k in context}
    dag_run = context.get("dag_run")
    if dag_run is not None:
        plain["dag_run"] = {
            field: _plain(getattr(dag_run, field, None))
            for field in (
                "dag_id",
                "run_id",
                "run_type",
                "logical_date",
                "data_interval_start",
                "data_interval_end",
                "run_after",
                "start_date",
            )
        }
        plain["dag_run"]["conf"] = _plain(getattr(dag_run, "conf", None) or {})
    ti = context.get("ti") or context.get("task_instance")
    if ti is not None:
        plain["ti"] = plain["task_instance"] = {
            field: _plain(getattr(ti, field, None))
            for field in ("dag_id", "task_id", "run_id", "map_index", "try_number")
        }
    if "params" in context:
        plain["params"] = _plain(dict(context["params"]))
    events = context.get("triggering_asset_events") or {}
    # Always defined (empty on a run no asset started), as in Airflow's own context.
    plain["triggering_asset_events"] = {
        str(getattr(asset, "name", asset)): [
            {"extra": _plain(event.extra), "timestamp": _plain(event.timestamp)}
            for event in asset_events
        ]
        for asset, asset_events in events.items()
    }
    return plain


class WebhookOperator(BaseOperator):
    """Send a signed call with a templated body; retry with backoff; return the answer.

    The body is ``body`` (a string sent as is, or a dict/list sent as JSON), or the file
    ``body_template`` rendered by airhook's sandboxed Jinja (strict undefined variables) with the
    task's context and ``template_vars``. With ``event_type`` the rendered body is validated
    against that event's JSON Schema before anything is sent.

    Every attempt carries the same ``webhook-id`` / ``Idempotency-Key``, derived from the DAG,
    run, task, map index and ``event_key`` (never the try number), so neither the operator's own
    retries nor Airflow's task retries look like new events to the receiver.

    Retries: 2xx delivers; 410 and other 4xx (but 408, 425 and 429) fail the task at once, with no
    Airflow retry either; 408/425/429, 5xx, timeouts and connection errors are retried after
    ``delivery_policy``'s next delay (full jitter), or ``Retry-After`` on 429/503 when longer. When
    the attempts are used up the task fails and Airflow's own ``retries`` may run it again.

    Returns (to XCom) ``{"status_code", "headers", "json", "message_id", "attempts"}``; response
    headers carrying credentials or cookies are left out, and secrets are scrubbed.

    :param webhook_conn_id: the ``airhook_webhook`` connection: URL, signing, auth, TLS, timeout.
        ``None``: unsigned calls to an absolute ``url``.
    :param url: a path joined to the connection's URL, or an absolute URL at the connection's
        origin. (templated)
    :param method: ``POST``, ``PUT`` or ``PATCH``. (templated)
    :param headers: extra request headers; signing and auth headers always win. (templated)
    :param body: the body: a string sent as is, or a dict or list sent as JSON. (templated)
    :param body_template: a ``.j2`` file rendered in airhook's sandbox, looked up in the DAG's
        folder, its ``template_searchpath``, then airhook's shipped templates. (templated)
    :param template_vars: extra variables for ``body_template``. (templated)
    :param event_type: ``(platform, event)``, e.g. ``("rkt", "lead.captured")``: the body must
        be a valid event of that type, or nothing is sent.
    :param event_key: what distinguishes this event among others sent by the same task
        instance, e.g. an insight id; part of the message id. (templated)
    :param delivery_policy: the delays between this task's attempts
        (:class:`airhook.core.delivery_rules.RetryPolicy`); default 6 attempts over about 45 minutes
        (:data:`~airhook.hooks.webhook.DEFAULT_RETRY_POLICY`). Not to be confused with Airflow
        3.3's own ``retry_policy`` of every operator, which decides task retries and still works.
    :param timeout: seconds per attempt; default: the connection's, then
        ``[airhook] outbound_timeout_seconds`` (10 s).
    :param deferrable: wait between attempts in the triggerer, holding no worker slot.
    :param min_defer_seconds: shorter waits are slept on the worker: deferring and resuming costs
        seconds of scheduling, and Airflow 3.3 can fail a task whose trigger fires within seconds
        of the deferral (apache/airflow#66374, #67287, #72716).
    :param settle_seconds: a deferral lasts at least this long, for the same race (a wait just
        above ``min_defer_seconds`` is stretched to it), as the other airhook deferrals do.
    """

    template_fields: Sequence[str] = (
        "url",
        "method",
        "headers",
        "body",
        "body_template",
        "template_vars",
        "event_key",
    )
    template_fields_renderers = {  # noqa: RUF012 (Airflow reads a plain dict)
        "headers": "json",
        "body": "json",
        "template_vars": "json",
    }
    ui_color = "#fdf1e8"

    def __init__(
        self,
        *,
        webhook_conn_id: str | None = WebhookHook.default_conn_name,
        url: str = "",
        method: str = "POST",
        headers: Mapping[str, Any] | None = None,
        body: str | Mapping[str, Any] | Sequence[Any] | None = None,
        body_template: str | None = None,
        template_vars: Mapping[str, Any] | None = None,
        event_type: Sequence[str] | None = None,
        event_key: str | None = None,
        delivery_policy: RetryPolicy | None = None,
        timeout: float | None = None,
        deferrable: bool = True,
        min_defer_seconds: float = MIN_DEFER_SECONDS,
        settle_seconds: float = SETTLE_SECONDS,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if body is not None and body_template is not None:
            raise ValueError("pass body or body_template, not both")
        if event_type is not None and (isinstance(event_type, str) or len(event_type) != 2):
            raise ValueError('event_type is (platform, event), e.g. ("rkt", "lead.captured")')
        if "{{" not in method and method.upper() not in ALLOWED_METHODS:
            raise ValueError(f"method {method!r} is not one of {sorted(ALLOWED_METHODS)}")
        self.webhook_conn_id = webhook_conn_id
        self.url = url
        self.method = method
        self.headers = dict(headers or {})
        self.body = body
        self.body_template = body_template
        self.template_vars = dict(template_vars or {})
        self.event_type = tuple(event_type) if event_type is not None else None
        self.event_key = event_key
        self.delivery_policy = delivery_policy or DEFAULT_RETRY_POLICY
        self.timeout = timeout
        self.deferrable = deferrable
        self.min_defer_seconds = min_defer_seconds
        self.settle_seconds = settle_seconds

    @cached_property
    def hook(self) -> WebhookHook:
        """The hook; one per task run, so its pooled session serves every attempt."""
        return WebhookHook(self.webhook_conn_id, timeout=self.timeout)

    # --- the task ---------------------------------------------------------------------------

    def execute(self, context: Context) -> dict[str, Any]:
        """Render and validate the body, then attempt the delivery."""
        try:
            body = self.render_body(context)
            self.validate_body(body)
        except AirhookError as exc:
            # A template or schema error does not heal by retrying the task.
            raise AirflowFailException(str(exc)) from exc
        return self._deliver(body, self.message_id(context), attempts_made=0)

    def execute_complete(self, context: Context, event: Mapping[str, Any] | None = None) -> Any:
        """Resume after a wait in the triggerer: make the next attempt."""
        if not event or event.get("status") != "success":
            raise RuntimeError(f"unexpected trigger event {event!r}")
        state = event["state"]
        return self._deliver(
            state["body"].encode("utf-8"), state["message_id"], attempts_made=state["attempts"]
        )

    # --- parts ------------------------------------------------------------------------------

    def message_id(self, context: Context) -> str:
        """The delivery's id: DAG, run, task, map index and event key; never the try number."""
        ti = context["ti"]
        return delivery_rules.message_id(
            ti.dag_id, ti.run_id, ti.task_id, ti.map_index, self.event_key
        )

    def render_body(self, context: Context) -> bytes:
        """Return the body's bytes: ``body`` as given or as JSON, or the rendered template."""
        if self.body_template is not None:
            from airhook.core.rendering import STANDARD_VARIABLES, renderer_for, template_context

            variables = plain_template_context(context)
            variables.update(self.template_vars)
            # The standard variables (event, data, platform…) are always defined, as the shipped
            # templates expect; template_vars may set them.
            standard = {k: variables.pop(k) for k in STANDARD_VARIABLES if k in variables}
            for key in ("event", "data"):
                value = standard.get(key)
                if value is not None and not isinstance(value, Mapping):
                    # The usual cause: "{{ … }}" renders to text, a dict's repr at best.
                    raise TemplateRenderError(
                        self.body_template,
                        None,
                        f"template_vars[{key!r}] is a {type(value).__name__}, not a mapping; "
                        "pass an upstream task's result (an XComArg) or render with "
                        "render_template_as_native_obj=True",
                    )
            from airhook.config import get_float

            renderer = renderer_for(
                self.body_searchpath(),
                render_timeout_seconds=get_float("render_timeout_seconds"),
            )
            text = renderer.render_file(
                self.body_template, template_context(**standard, **variables)
            )
            return text.encode("utf-8")
        if self.body is None:
            return b""
        if isinstance(self.body, str):
            return self.body.encode("utf-8")
        return json.dumps(self.body, ensure_ascii=False, separators=(",", ":")).encode("utf-8")

    def body_searchpath(self) -> tuple[str, ...]:
        """Folders searched for ``body_template`` before the shipped templates: the DAG's folder,
        then its ``template_searchpath``."""
        paths: list[str] = []
        if self.has_dag():
            dag = self.dag
            folder = os.path.dirname(dag.fileloc) if dag.fileloc else ""
            if folder:
                paths.append(folder)
            extra = dag.template_searchpath or []
            paths.extend([extra] if isinstance(extra, str) else list(extra))
        return tuple(paths)

    def validate_body(self, body: bytes) -> None:
        """Raise :class:`~airhook.core.errors.PayloadError` unless the body is its event type's."""
        if self.event_type is None:
            return
        from airhook.core.catalog import load_catalog
        from airhook.core.payload import parse_body

        platform, name = self.event_type
        load_catalog().event(platform, name).validate(parse_body(body))

    def _deliver(self, body: bytes, msg_id: str, *, attempts_made: int) -> dict[str, Any]:
        hook = self.hook
        try:
            while True:
                attempt = hook.attempt(
                    self.method,
                    self.url,
                    self.headers,
                    body,
                    message_id=msg_id,
                    attempts_made=attempts_made,
                    retry_policy=self.delivery_policy,
                    timeout=self.timeout,
                )
                attempts_made = attempt.number
                if attempt.outcome is Outcome.DELIVERED:
                    return self._xcom(attempt)
                if attempt.next_delay is None:
                    assert attempt.error is not None
                    raise attempt.error
                self.log.warning(
                    "attempt %d failed (%s); next in %.1f s",
                    attempt.number,
                    attempt.error,
                    attempt.next_delay,
                )
                if self.deferrable and attempt.next_delay >= self.min_defer_seconds:
                    delay = max(attempt.next_delay, self.settle_seconds)
                    due = datetime.now(timezone.utc) + timedelta(seconds=delay)
                    self.defer(
                        trigger=WebhookDelayTrigger(
                            moment=due.isoformat(),
                            state={
                                "attempts": attempts_made,
                                "body": body.decode("utf-8"),
                                "message_id": msg_id,
                            },
                        ),
                        method_name="execute_complete",
                    )
                time.sleep(attempt.next_delay)
        except AirhookError as exc:
            if isinstance(exc, DeliveryError) and exc.retryable:
                raise
            raise AirflowFailException(str(exc)) from exc
        finally:
            hook.close()

    @staticmethod
    def _xcom(attempt: Attempt) -> dict[str, Any]:
        result = attempt.result
        assert result is not None
        return {
            "status_code": result.status_code,
            "headers": result.headers,
            "json": result.json,
            "message_id": result.message_id,
            "attempts": attempt.number,
        }
