"""WebhookOperator against real HTTP servers on 127.0.0.1, its trigger, and one dag.test() run.

The operator is driven as Airflow drives it (render the template fields, ``execute``, on
deferral run the trigger and call ``execute_complete``) with a context holding what it reads;
one DAG runs for real under ``dag.test()`` in a subprocess with its own ``AIRFLOW_HOME``.
"""

from __future__ import annotations

import asyncio
import json
import re
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import standardwebhooks
from airflow.sdk import DAG, ExceptionRetryPolicy
from airflow.sdk.definitions.retry_policy import RetryAction, RetryRule
from airflow.sdk.exceptions import AirflowFailException, TaskDeferred

from airhook.core.catalog import load_catalog
from airhook.core.delivery_rules import RetryPolicy, message_id
from airhook.core.errors import DeliveryError, PayloadValidationError, TemplateRenderError
from airhook.core.ssrf import DestinationNotAllowedError
from airhook.operators.webhook import WebhookOperator
from airhook.triggers.delay import WebhookDelayTrigger
from tests.airflow_run import run_in_fresh_airflow
from tests.test_webhook_hook import PRIMARY, Reply, ScriptedServer, connection

REPO = Path(__file__).resolve().parents[1]
TINY = RetryPolicy(schedule=(0, 0.05, 0.05, 0.05), jitter=False)
SECRET_TOKEN = "tok-operator-secret-42"


def _context(try_number: int = 1, map_index: int = -1, **extra: Any) -> dict[str, Any]:
    ti = SimpleNamespace(
        dag_id="airhook_send",
        run_id="manual__2026-03-01T12:00:00+00:00",
        task_id="send",
        map_index=map_index,
        try_number=try_number,
    )
    context: dict[str, Any] = {
        "ti": ti,
        "ds": "2026-03-01",
        "run_id": ti.run_id,
        "dag_run": SimpleNamespace(conf={"chat_id": "cht_42", "summary": 'Refund "Pro" plan'}),
        # What a body template must not reach: any connection's password, any Variable.
        "conn": SimpleNamespace(airhook_slack=SimpleNamespace(password="leaked")),
        "var": SimpleNamespace(value=SimpleNamespace(api_key="leaked")),
    }
    context.update(extra)
    return context


def _operator(conn_id: str | None, **kwargs: Any) -> WebhookOperator:
    kwargs.setdefault("task_id", "send")
    kwargs.setdefault("delivery_policy", TINY)
    kwargs.setdefault(
        "body", {"event": "insight.summary", "chat_id": "{{ dag_run.conf['chat_id'] }}"}
    )
    return WebhookOperator(webhook_conn_id=conn_id, **kwargs)


def _run(operator: WebhookOperator, context: dict[str, Any] | None = None) -> Any:
    """Render the template fields and execute, as a worker does."""
    context = context or _context()
    operator.render_template_fields(context)
    return operator.execute(context)


@pytest.fixture(autouse=True)
def allow_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests call 127.0.0.1, which airhook refuses unless the configuration allows it."""
    monkeypatch.setenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS", "127.0.0.1/32")


@pytest.fixture(scope="module")
def server() -> Iterator[ScriptedServer]:
    started = ScriptedServer()
    yield started
    started.close()


@pytest.fixture
def scripted(server: ScriptedServer) -> ScriptedServer:
    server.reset_log()
    return server


@pytest.fixture
def conn_id(monkeypatch: pytest.MonkeyPatch, scripted: ScriptedServer) -> str:
    return connection(
        monkeypatch,
        "op_standard",
        host=scripted.url(),
        password=PRIMARY,
        extra={"signing": "standard", "token": SECRET_TOKEN},
    )


# --- the operator's shape ------------------------------------------------------------------


def test_template_fields() -> None:
    assert tuple(WebhookOperator.template_fields) == (
        "url",
        "method",
        "headers",
        "body",
        "body_template",
        "template_vars",
        "event_key",
    )
    assert WebhookOperator.template_fields_renderers["body"] == "json"


def test_deferrable_by_default() -> None:
    assert WebhookOperator(task_id="t", body="{}").deferrable is True


def test_airflows_own_retry_policy_is_left_alone() -> None:
    # Airflow 3.3 gives every operator a retry_policy (task retries); ours is delivery_policy.
    assert WebhookOperator(task_id="t", body="{}").retry_policy is None
    task_policy = ExceptionRetryPolicy(
        rules=[RetryRule(exception=DeliveryError, action=RetryAction.RETRY)]
    )
    operator = WebhookOperator(
        task_id="t", body="{}", retry_policy=task_policy, delivery_policy=TINY
    )
    assert operator.retry_policy is task_policy
    assert operator.delivery_policy is TINY


def test_body_and_body_template_exclude_each_other() -> None:
    with pytest.raises(ValueError, match="not both"):
        WebhookOperator(task_id="t", body="{}", body_template="x.json.j2")


@pytest.mark.parametrize("method", ["GET", "DELETE"])
def test_methods_without_a_body_are_refused(method: str) -> None:
    with pytest.raises(ValueError, match="is not one of"):
        WebhookOperator(task_id="t", body="{}", method=method)


def test_event_type_is_platform_and_event() -> None:
    with pytest.raises(ValueError, match="platform, event"):
        WebhookOperator(task_id="t", body="{}", event_type="rkt")  # type: ignore[arg-type]


# --- sending -------------------------------------------------------------------------------


def test_sends_the_rendered_json_signed_and_returns_the_answer(
    conn_id: str, scripted: ScriptedServer
) -> None:
    scripted.script(
        Reply(
            status=201,
            body=b'{"accepted": 1}',
            headers={"Content-Type": "application/json", "X-Request-Id": "r-1"},
        )
    )
    result = _run(_operator(conn_id, url="/insights", headers={"X-Run": "{{ ds }}"}))
    [request] = scripted.received
    assert request.path == "/hook/insights"
    assert json.loads(request.body) == {"event": "insight.summary", "chat_id": "cht_42"}
    assert request.headers["x-run"] == "2026-03-01"
    assert request.headers["authorization"] == f"Bearer {SECRET_TOKEN}"
    standardwebhooks.Webhook(PRIMARY).verify(request.body, request.headers)
    expected_id = message_id("airhook_send", "manual__2026-03-01T12:00:00+00:00", "send", -1, None)
    assert result == {
        "status_code": 201,
        "headers": {
            "Server": result["headers"]["Server"],
            "Date": result["headers"]["Date"],
            "Content-Type": "application/json",
            "X-Request-Id": "r-1",
            "Content-Length": "15",
        },
        "json": {"accepted": 1},
        "message_id": expected_id,
        "attempts": 1,
    }
    assert request.headers["webhook-id"] == expected_id
    assert request.headers["idempotency-key"] == expected_id


def test_string_body_is_sent_as_is(conn_id: str, scripted: ScriptedServer) -> None:
    _run(
        _operator(
            conn_id,
            body="chat={{ dag_run.conf['chat_id'] }}",
            method="put",
            headers={"Content-Type": "text/plain"},
        )
    )
    [request] = scripted.received
    assert request.method == "PUT"
    assert request.body == b"chat=cht_42"
    assert request.headers["content-type"] == "text/plain"


def test_xcom_result_holds_no_secret(conn_id: str, scripted: ScriptedServer) -> None:
    echoed = {"you_sent": {"authorization": f"Bearer {SECRET_TOKEN}"}, "key": PRIMARY}
    scripted.script(
        Reply(
            body=json.dumps(echoed).encode(),
            headers={"Content-Type": "application/json", "Set-Cookie": f"s={SECRET_TOKEN}"},
        )
    )
    result = _run(_operator(conn_id))
    text = json.dumps(result)
    assert SECRET_TOKEN not in text
    assert PRIMARY not in text
    assert result["json"] == {
        "you_sent": {"authorization": "Bearer [redacted]"},
        "key": "[redacted]",
    }
    assert "Set-Cookie" not in result["headers"]


# --- retries -------------------------------------------------------------------------------


def test_retries_500_then_succeeds_with_one_message_id(
    conn_id: str, scripted: ScriptedServer
) -> None:
    scripted.script(Reply(status=500), Reply(status=500), Reply(status=200))
    result = _run(_operator(conn_id, deferrable=False))
    assert result["attempts"] == 3
    ids = {request.headers["webhook-id"] for request in scripted.received}
    assert ids == {result["message_id"]}
    assert len(scripted.received) == 3


@pytest.mark.parametrize("status", [408, 429])
def test_408_and_429_are_retried(conn_id: str, scripted: ScriptedServer, status: int) -> None:
    scripted.script(Reply(status=status), Reply(status=200))
    assert _run(_operator(conn_id))["attempts"] == 2


@pytest.mark.parametrize("status", [400, 404, 410])
def test_4xx_fails_at_once_without_any_retry(
    conn_id: str, scripted: ScriptedServer, status: int
) -> None:
    scripted.script(Reply(status=status), Reply(status=200))
    with pytest.raises(AirflowFailException) as caught:
        _run(_operator(conn_id))
    cause = caught.value.__cause__
    assert isinstance(cause, DeliveryError)
    assert cause.status_code == status
    assert cause.retryable is False
    assert len(scripted.received) == 1


def test_timeouts_and_resets_are_retried(conn_id: str, scripted: ScriptedServer) -> None:
    scripted.script(Reply(delay=1.0), Reply(reset=True), Reply(status=200))
    result = _run(_operator(conn_id, timeout=0.2))
    assert result["attempts"] == 3
    assert len({request.headers["webhook-id"] for request in scripted.received}) == 1


def test_used_up_schedule_fails_so_that_airflow_may_retry_the_task(
    conn_id: str, scripted: ScriptedServer
) -> None:
    scripted.script(*[Reply(status=503)] * 4)
    with pytest.raises(DeliveryError, match="gave up after 4 attempts") as caught:
        _run(_operator(conn_id))
    assert not isinstance(caught.value, AirflowFailException)
    assert caught.value.retryable is True


def test_retry_after_is_waited_for(conn_id: str, scripted: ScriptedServer) -> None:
    scripted.script(Reply(status=503, headers={"Retry-After": "1"}), Reply(status=200))
    _run(_operator(conn_id, deferrable=False))
    first, second = scripted.received
    assert 1.0 <= second.at - first.at < 1.8


def test_task_retries_send_the_same_message_id(conn_id: str, scripted: ScriptedServer) -> None:
    # Two tries of one task instance: each a fresh operator, as each try is a fresh process.
    scripted.script(*[Reply(status=500)] * 4, Reply(status=200))
    with pytest.raises(DeliveryError):
        _run(_operator(conn_id), _context(try_number=1))
    result = _run(_operator(conn_id), _context(try_number=2))
    ids = [request.headers["webhook-id"] for request in scripted.received]
    assert len(ids) == 5
    assert set(ids) == {result["message_id"]}


def test_message_id_differs_by_map_index_and_event_key(
    conn_id: str, scripted: ScriptedServer
) -> None:
    ids = {
        _run(_operator(conn_id), _context(map_index=0))["message_id"],
        _run(_operator(conn_id), _context(map_index=1))["message_id"],
        _run(_operator(conn_id, event_key="{{ dag_run.conf['chat_id'] }}"))["message_id"],
        _run(_operator(conn_id, event_key="other"))["message_id"],
    }
    assert len(ids) == 4
    assert (
        message_id("airhook_send", "manual__2026-03-01T12:00:00+00:00", "send", -1, "cht_42") in ids
    )


# --- refusals: nothing is sent -------------------------------------------------------------


def test_loopback_is_refused_without_the_allow_setting(
    monkeypatch: pytest.MonkeyPatch, conn_id: str, scripted: ScriptedServer
) -> None:
    monkeypatch.delenv("AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS")
    with pytest.raises(AirflowFailException) as caught:
        _run(_operator(conn_id))
    assert isinstance(caught.value.__cause__, DestinationNotAllowedError)
    assert scripted.received == []


def test_metadata_address_is_refused() -> None:
    with pytest.raises(AirflowFailException) as caught:
        _run(_operator(None, url="http://169.254.169.254/latest/meta-data/"))
    assert isinstance(caught.value.__cause__, DestinationNotAllowedError)


def test_event_type_validation_failure_sends_nothing(
    conn_id: str, scripted: ScriptedServer
) -> None:
    lead = dict(load_catalog().event("rkt", "lead.captured").sample)
    lead["data"] = {**lead["data"]}
    del lead["data"]["sessionId"]
    operator = _operator(conn_id, body=lead, event_type=("rkt", "lead.captured"))
    with pytest.raises(AirflowFailException, match=r"rkt lead.captured: \$.data") as caught:
        _run(operator)
    assert isinstance(caught.value.__cause__, PayloadValidationError)
    assert caught.value.__cause__.keyword == "required"
    assert scripted.received == []


def test_event_type_validation_failure_names_the_missing_field(
    conn_id: str, scripted: ScriptedServer
) -> None:
    lead = dict(load_catalog().event("rkt", "lead.captured").sample)
    lead["data"] = {**lead["data"]}
    del lead["data"]["sessionId"]
    operator = _operator(conn_id, body=lead, event_type=("rkt", "lead.captured"))
    with pytest.raises(AirflowFailException) as caught:
        _run(operator)
    assert str(caught.value) == "rkt lead.captured: $.data: required failed (missing: sessionId)"


def test_valid_event_is_sent(conn_id: str, scripted: ScriptedServer) -> None:
    lead = load_catalog().event("rkt", "lead.captured").sample
    _run(_operator(conn_id, body=dict(lead), event_type=["rkt", "lead.captured"]))
    [request] = scripted.received
    assert json.loads(request.body) == lead


def test_event_type_needs_a_json_object(conn_id: str, scripted: ScriptedServer) -> None:
    with pytest.raises(AirflowFailException, match="not_json"):
        _run(_operator(conn_id, body="not json", event_type=("rkt", "lead.captured")))
    assert scripted.received == []


# --- body templates ------------------------------------------------------------------------

_SUMMARY_TEMPLATE = """\
{# A summary for a chat tool. #}
{"text": {{ ("Chat " ~ dag_run.conf.chat_id ~ ": " ~ dag_run.conf.summary) | tojson }},
 "channel": {{ channel | tojson }}, "day": {{ ds | tojson }}}
"""


def _dag_in(folder: Path, **kwargs: Any) -> DAG:
    dag = DAG("airhook_send", schedule=None, **kwargs)
    dag.fileloc = str(folder / "airhook_send.py")
    return dag


def test_body_template_from_the_dag_folder(
    tmp_path: Path, conn_id: str, scripted: ScriptedServer
) -> None:
    (tmp_path / "summary.json.j2").write_text(_SUMMARY_TEMPLATE)
    with _dag_in(tmp_path):
        operator = _operator(
            conn_id,
            body=None,
            body_template="summary.json.j2",
            template_vars={"channel": "#cx-{{ ds }}"},
        )
    _run(operator)
    [request] = scripted.received
    assert json.loads(request.body) == {
        "text": 'Chat cht_42: Refund "Pro" plan',
        "channel": "#cx-2026-03-01",
        "day": "2026-03-01",
    }


def test_body_template_from_template_searchpath(
    tmp_path: Path, conn_id: str, scripted: ScriptedServer
) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "summary.json.j2").write_text(_SUMMARY_TEMPLATE)
    with _dag_in(tmp_path / "dags", template_searchpath=[str(shared)]):
        operator = _operator(
            conn_id, body=None, body_template="summary.json.j2", template_vars={"channel": "x"}
        )
    _run(operator)
    assert json.loads(scripted.received[0].body)["channel"] == "x"


def test_shipped_template_renders(conn_id: str, scripted: ScriptedServer) -> None:
    event = dict(load_catalog().event("caleida", "insight.summary").sample)
    operator = _operator(
        conn_id,
        body=None,
        body_template="slack.json.j2",
        template_vars={"event": event, "platform": "caleida", "kind": "insight.summary"},
    )
    _run(operator)
    sent = json.loads(scripted.received[0].body)
    assert sent["text"].startswith("caleida insight.summary: The customer was billed")
    assert sent["blocks"][0]["type"] == "header"


@pytest.mark.parametrize(
    "expression",
    [
        "conn.airhook_slack.password",
        "var.value.api_key",
        # The operator itself: its hook reads any connection, its environment may be unsandboxed.
        'task.hook.get_connection("airhook_slack").password',
        "task.get_template_env()",
        'ti.xcom_pull(task_ids="other")',
        "macros.datetime",
    ],
)
def test_body_template_reaches_no_connection_variable_or_object(
    tmp_path: Path, conn_id: str, scripted: ScriptedServer, expression: str
) -> None:
    template = '{"x": {{ (EXPRESSION) | string | tojson }}}'.replace("EXPRESSION", expression)
    (tmp_path / "steal.json.j2").write_text(template)
    with _dag_in(tmp_path):
        operator = _operator(conn_id, body=None, body_template="steal.json.j2")
    context = _context(task=operator, macros=SimpleNamespace(datetime="reachable"))
    with pytest.raises(AirflowFailException, match=r"steal.json.j2:1: undefined") as caught:
        _run(operator, context)
    assert isinstance(caught.value.__cause__, TemplateRenderError)
    assert scripted.received == []


def test_body_template_reads_the_context_as_values(
    tmp_path: Path, conn_id: str, scripted: ScriptedServer
) -> None:
    (tmp_path / "values.json.j2").write_text(
        '{"task": {{ ti.task_id | tojson }}, "try": {{ ti.try_number }},'
        ' "chat": {{ dag_run.conf.chat_id | tojson }}, "run": {{ run_id | tojson }},'
        ' "limit": {{ params.limit }}, "day": {{ ds | tojson }}}'
    )
    with _dag_in(tmp_path):
        operator = _operator(conn_id, body=None, body_template="values.json.j2")
    _run(operator, _context(params={"limit": 3}))
    assert json.loads(scripted.received[0].body) == {
        "task": "send",
        "try": 1,
        "chat": "cht_42",
        "run": "manual__2026-03-01T12:00:00+00:00",
        "limit": 3,
        "day": "2026-03-01",
    }


def test_template_error_names_template_and_line(
    tmp_path: Path, conn_id: str, scripted: ScriptedServer
) -> None:
    (tmp_path / "broken.json.j2").write_text('{\n"a": 1,\n"b": {{ missing_value | tojson }}\n}')
    with _dag_in(tmp_path):
        operator = _operator(conn_id, body=None, body_template="broken.json.j2")
    with pytest.raises(AirflowFailException) as caught:
        _run(operator)
    error = caught.value.__cause__
    assert isinstance(error, TemplateRenderError)
    assert (error.template, error.lineno) == ("broken.json.j2", 3)
    assert scripted.received == []


def test_body_template_stops_at_the_configured_render_time_limit(
    tmp_path: Path, conn_id: str, scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIRFLOW__AIRHOOK__RENDER_TIMEOUT_SECONDS", "0.3")
    (tmp_path / "slow.json.j2").write_text(
        "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}{}"
    )
    with _dag_in(tmp_path):
        operator = _operator(conn_id, body=None, body_template="slow.json.j2")
    with pytest.raises(AirflowFailException, match=r"longer than 0\.3 seconds") as caught:
        _run(operator)
    error = caught.value.__cause__
    assert isinstance(error, TemplateRenderError)
    assert error.template == "slow.json.j2"
    assert scripted.received == []


# --- deferral ------------------------------------------------------------------------------


def _fire(trigger: WebhookDelayTrigger, timeout: float = 10) -> dict[str, Any]:
    async def first() -> Any:
        events = trigger.run()
        try:
            return await asyncio.wait_for(events.__anext__(), timeout)
        finally:
            await events.aclose()  # type: ignore[attr-defined]

    return dict(asyncio.run(first()).payload)


def test_trigger_serializes_its_class_path_and_every_argument() -> None:
    trigger = WebhookDelayTrigger(
        moment="2026-03-01T12:00:05+00:00", state={"attempts": 2, "body": "{}", "message_id": "m"}
    )
    assert trigger.serialize() == (
        "airhook.triggers.delay.WebhookDelayTrigger",
        {
            "moment": "2026-03-01T12:00:05+00:00",
            "state": {"attempts": 2, "body": "{}", "message_id": "m"},
        },
    )
    class_path, kwargs = trigger.serialize()
    assert WebhookDelayTrigger(**kwargs).serialize() == (class_path, kwargs)


def test_trigger_refuses_a_naive_moment() -> None:
    with pytest.raises(ValueError, match="time zone"):
        WebhookDelayTrigger(moment="2026-03-01T12:00:05")


def test_trigger_fires_at_its_moment_with_the_state() -> None:
    due = datetime.now(timezone.utc) + timedelta(seconds=0.3)
    fired = _fire(WebhookDelayTrigger(moment=due.isoformat(), state={"attempts": 1}))
    assert datetime.now(timezone.utc) >= due
    assert fired == {"status": "success", "moment": due.isoformat(), "state": {"attempts": 1}}


def test_retryable_failure_defers_then_execute_complete_continues(
    conn_id: str, scripted: ScriptedServer
) -> None:
    scripted.script(Reply(status=500), Reply(status=502), Reply(status=200))
    operator = _operator(conn_id, min_defer_seconds=0, settle_seconds=0)
    context = _context()
    before = datetime.now(timezone.utc)
    with pytest.raises(TaskDeferred) as deferred:
        _run(operator, context)
    assert deferred.value.method_name == "execute_complete"
    trigger = deferred.value.trigger
    assert isinstance(trigger, WebhookDelayTrigger)
    moment = datetime.fromisoformat(trigger.moment)
    assert (
        before + timedelta(seconds=0.05)
        <= moment
        <= datetime.now(timezone.utc) + timedelta(seconds=0.05)
    )
    first_body = scripted.received[0].body
    assert trigger.state == {
        "attempts": 1,
        "body": first_body.decode(),
        "message_id": scripted.received[0].headers["webhook-id"],
    }

    # Resumed (a new process in Airflow): the next attempt, failing again, defers again.
    resumed = _operator(conn_id, min_defer_seconds=0, settle_seconds=0)
    with pytest.raises(TaskDeferred) as again:
        resumed.execute_complete(context, _fire(trigger))
    assert again.value.trigger.state["attempts"] == 2
    result = _operator(conn_id, min_defer_seconds=0, settle_seconds=0).execute_complete(
        context, _fire(again.value.trigger)
    )
    assert result["attempts"] == 3
    assert [r.body for r in scripted.received] == [first_body] * 3
    assert {r.headers["webhook-id"] for r in scripted.received} == {result["message_id"]}


@pytest.mark.parametrize(
    ("retry_after", "deferred_for"),
    [
        (120, 120),  # as long as Retry-After asks
        # Above min_defer_seconds, deferred for settle_seconds: a trigger firing within seconds
        # of the deferral meets Airflow 3.3's race (airhook.triggers.SETTLE_SECONDS).
        (11, 15),
    ],
)
def test_a_deferral_waits_for_retry_after_and_at_least_the_settle_time(
    conn_id: str, scripted: ScriptedServer, retry_after: int, deferred_for: int
) -> None:
    scripted.script(Reply(status=429, headers={"Retry-After": str(retry_after)}))
    before = datetime.now(timezone.utc)
    with pytest.raises(TaskDeferred) as deferred:
        _run(_operator(conn_id))
    moment = datetime.fromisoformat(deferred.value.trigger.moment)
    assert before + timedelta(seconds=deferred_for) <= moment
    assert moment <= datetime.now(timezone.utc) + timedelta(seconds=deferred_for)


def test_short_waits_are_slept_on_the_worker(conn_id: str, scripted: ScriptedServer) -> None:
    scripted.script(Reply(status=500), Reply(status=200))
    result = _run(_operator(conn_id, min_defer_seconds=10))  # TINY waits 0.05 s
    assert result["attempts"] == 2


def test_execute_complete_raises_unless_the_event_says_success(conn_id: str) -> None:
    with pytest.raises(RuntimeError, match="unexpected trigger event"):
        _operator(conn_id).execute_complete(_context(), {"status": "error"})
    with pytest.raises(RuntimeError, match="unexpected trigger event"):
        _operator(conn_id).execute_complete(_context(), None)


def test_execute_complete_fails_at_once_on_410(conn_id: str, scripted: ScriptedServer) -> None:
    scripted.script(Reply(status=410))
    event = {"status": "success", "state": {"attempts": 2, "body": "{}", "message_id": "m"}}
    with pytest.raises(AirflowFailException):
        _operator(conn_id).execute_complete(_context(), event)
    assert scripted.received[0].headers["webhook-id"] == "m"


# --- one real run --------------------------------------------------------------------------

_DAG_FILE = """
import json
from datetime import datetime, timezone

from airflow.sdk import DAG, task

from airhook.operators.webhook import WebhookOperator
from airhook.core.delivery_rules import RetryPolicy

with DAG(
    "airhook_send_test",
    schedule=None,
    start_date=datetime(2026, 1, 1, tzinfo=timezone.utc),
    catchup=False,
) as dag:
    send = WebhookOperator(
        task_id="send",
        webhook_conn_id="airhook_test_endpoint",
        body_template="summary.json.j2",
        template_vars={{"channel": "#cx"}},
        event_key="{{{{ dag_run.conf['chat_id'] }}}}",
        delivery_policy=RetryPolicy(schedule=(0, 0.2, 0.2), jitter=False),
        min_defer_seconds=0,
    )

    @task
    def keep(result):
        with open({out!r}, "w") as out:
            json.dump(result, out)

    keep(send.output)

if __name__ == "__main__":
    run = dag.test(run_conf={{"chat_id": "cht_42", "summary": "Refund"}})
    print(json.dumps({{"state": str(run.state)}}))
"""


def test_dag_run_defers_between_attempts_and_delivers(
    tmp_path: Path, scripted: ScriptedServer
) -> None:
    scripted.script(Reply(status=500), Reply(status=503), Reply(status=200, body=b'{"ok":1}'))
    home, dags, out = tmp_path / "airflow", tmp_path / "dags", tmp_path / "result.json"
    dags.mkdir()
    (dags / "summary.json.j2").write_text(_SUMMARY_TEMPLATE)
    dag_file = dags / "send_dag.py"
    dag_file.write_text(textwrap.dedent(_DAG_FILE).format(out=str(out)))
    extra_env = {
        "AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
        "AIRFLOW_CONN_AIRHOOK_TEST_ENDPOINT": json.dumps(
            {
                "conn_type": "airhook_webhook",
                "host": scripted.url(),
                "password": PRIMARY,
                "extra": {"signing": "standard"},
            }
        ),
    }
    result = run_in_fresh_airflow(home, dags, [str(dag_file)], extra_env)
    logs = result.stdout + result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == {"state": "success"}, logs[-3000:]
    assert logs.count("running trigger in line") == 2  # deferred after each failed attempt
    assert PRIMARY not in logs
    assert "Traceback" not in logs, logs[-3000:]
    handed = json.loads(out.read_text())
    expected_id = handed["message_id"]
    assert handed["attempts"] == 3
    assert handed["status_code"] == 200
    assert handed["json"] == {"ok": 1}
    assert len(scripted.received) == 3
    for request in scripted.received:
        assert request.headers["webhook-id"] == expected_id
        standardwebhooks.Webhook(PRIMARY).verify(request.body, request.headers)
        assert json.loads(request.body) == {
            "text": "Chat cht_42: Refund",
            "channel": "#cx",
            "day": json.loads(request.body)["day"],
        }


def _operator_examples() -> list[str]:
    text = (REPO / "docs" / "operators.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```python\n(.*?)```", text, re.DOTALL)
    return [block for block in blocks if "WebhookOperator(" in block]


@pytest.mark.parametrize("example", _operator_examples(), ids=lambda block: block[:40])
def test_docs_examples_index_only_results_a_task_splits(example: str) -> None:
    # picked["event"] reads the XCom named "event", which only a multiple_outputs task pushes:
    # from a plain @task it fails at run time with XComNotFound.
    from airflow.sdk import task
    from airflow.sdk.definitions.xcom_arg import PlainXComArg

    with DAG("docs_example", schedule=None) as dag:
        exec(example, {"task": task, "WebhookOperator": WebhookOperator})
    senders = [t for t in dag.tasks if isinstance(t, WebhookOperator)]
    assert senders
    for sender in senders:
        for value in [*sender.template_vars.values(), sender.event_key]:
            if isinstance(value, PlainXComArg) and value.key != "return_value":
                assert value.operator.multiple_outputs, (sender.task_id, value.key)


def test_event_rendered_to_text_is_refused_with_a_hint(
    conn_id: str, scripted: ScriptedServer
) -> None:
    operator = _operator(
        conn_id,
        body=None,
        body_template="slack.json.j2",
        template_vars={"event": "{{ dag_run.conf }}"},
    )
    with pytest.raises(AirflowFailException, match="not a mapping; pass an upstream task's result"):
        _run(operator)
    assert scripted.received == []
