"""airhook.templates: the sandboxed renderer and the shipped template library.

Each shipped template declares in its header which sample events it supports; the tests render
exactly those claims, so a template cannot claim an event it does not handle.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from jinja2.exceptions import SecurityError, TemplateSyntaxError, UndefinedError

from airhook.core.catalog import EventType, load_catalog
from airhook.core.errors import TemplateRenderError
from airhook.core.rendering import (
    TemplateRenderer,
    is_template_name,
    renderer_for,
    shipped_templates,
    template_context,
)

REPO = Path(__file__).resolve().parents[1]
TEMPLATES = REPO / "templates"
DOCS = REPO / "docs" / "templates.md"
README = TEMPLATES / "README.md"
NOW = "2026-04-01T12:00:00Z"
ENVELOPES = {
    "rkt": "envelope/rkt.json.j2",
    "caleida": "envelope/caleida.json.j2",
    "eev": "envelope/eev.json.j2",
    "ccai": "envelope/ccai.json.j2",
}
CRM = ("hubspot_contact_upsert.json.j2", "salesforce_lead.json.j2")
RFC3339 = re.compile(
    json.loads((REPO / "schemas" / "common.json").read_text())["definitions"]["timestamp"][
        "pattern"
    ]
)

RENDERER = TemplateRenderer()
CATALOG = load_catalog()


def _context(event: EventType, **extra: Any) -> dict[str, Any]:
    return template_context(
        event=event.sample,
        platform=event.platform,
        kind=event.kind,
        source="crm-sync",
        now=NOW,
        **extra,
    )


def _claims() -> Iterator[Any]:
    for name in shipped_templates():
        doc = RENDERER.describe(name)
        for event in CATALOG.events():
            if doc.supports_event(event.platform, event.name):
                yield pytest.param(name, event, id=f"{name}-{event.platform}-{event.name}")


def _platform_events() -> Iterator[Any]:
    for platform in ENVELOPES:
        for event in CATALOG.events(platform):
            yield pytest.param(event, id=f"{event.platform}-{event.name}")


def _line_of(name: str, text: str) -> int:
    """The 1-based line of a shipped template that contains ``text``."""
    lines = (TEMPLATES / name).read_text(encoding="utf-8").splitlines()
    return next(i for i, line in enumerate(lines, start=1) if text in line)


def _strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from _strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from _strings(item)


def _slack(data: dict[str, Any], **extra: Any) -> Any:
    context = template_context(data=data, event_name="custom.event", platform="x", **extra)
    return RENDERER.render_json("slack.json.j2", context)


# -- the shipped library -------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "event"), list(_claims()))
def test_shipped_template_renders_every_sample_it_claims_into_json(
    name: str, event: EventType
) -> None:
    text = RENDERER.render_file(name, _context(event))
    assert isinstance(json.loads(text), dict)


@pytest.mark.parametrize("name", shipped_templates())
def test_shipped_template_claims_at_least_one_sample_event(name: str) -> None:
    doc = RENDERER.describe(name)
    assert any(doc.supports_event(e.platform, e.name) for e in CATALOG.events()), doc.supports


@pytest.mark.parametrize("name", shipped_templates())
def test_shipped_template_starts_with_a_comment_documenting_purpose_variables_and_support(
    name: str,
) -> None:
    source = (TEMPLATES / name).read_text(encoding="utf-8")
    assert source.startswith("{#")
    doc = RENDERER.describe(name)
    assert len(doc.summary) > 40
    assert "Variables:" in doc.text
    assert doc.supports


@pytest.mark.parametrize("event", list(_platform_events()))
def test_platform_envelope_from_the_samples_data_validates_against_the_event_schema(
    event: EventType,
) -> None:
    context = template_context(
        data=event.sample["data"],
        event_name=event.name,
        event_id="evt_test_0001",
        platform=event.platform,
        kind=event.kind,
        now=NOW,
        chatbot_id="cmf9n7u1c0001",
    )
    parsed = RENDERER.render_json(ENVELOPES[event.platform], context)
    event.validate(parsed)
    assert parsed["data"] == event.sample["data"]


@pytest.mark.parametrize("event", list(_platform_events()))
def test_platform_envelope_reassembles_the_sample_delivery_from_its_parts(
    event: EventType,
) -> None:
    parsed = RENDERER.render_json(ENVELOPES[event.platform], _context(event))
    assert parsed == event.sample


@pytest.mark.parametrize("event", list(CATALOG.events()), ids=lambda e: f"{e.platform}-{e.name}")
def test_standard_envelope_is_type_timestamp_and_data(event: EventType) -> None:
    parsed = RENDERER.render_json("envelope/standard.json.j2", _context(event))
    assert list(parsed) == ["type", "timestamp", "data"]
    assert parsed["type"] == event.name
    assert RFC3339.fullmatch(parsed["timestamp"])
    assert parsed["data"] == event.sample["data"]


def test_standard_envelope_without_a_timestamp_uses_now() -> None:
    context = template_context(data={"a": 1}, event_name="invoice.paid", now=NOW)
    parsed = RENDERER.render_json("envelope/standard.json.j2", context)
    assert parsed == {"type": "invoice.paid", "timestamp": NOW, "data": {"a": 1}}


def test_eev_envelope_without_an_event_id_fails_naming_it_and_its_line() -> None:
    context = template_context(data={"conversation_id": "c1"}, event_name="conversation.closed")
    with pytest.raises(TemplateRenderError) as caught:
        RENDERER.render_file("envelope/eev.json.j2", context)
    assert caught.value.template == "envelope/eev.json.j2"
    assert caught.value.lineno == _line_of("envelope/eev.json.j2", 'required("event_id")')
    assert "event_id" in caught.value.message


def test_rkt_envelope_without_a_chatbot_id_fails_naming_it() -> None:
    context = template_context(data={"sessionId": "rkt_1"}, event_name="session.created")
    with pytest.raises(TemplateRenderError, match="chatbot_id is required"):
        RENDERER.render_file("envelope/rkt.json.j2", context)


@pytest.mark.parametrize("event", list(CATALOG.events()), ids=lambda e: f"{e.platform}-{e.name}")
def test_slack_message_has_text_and_blocks_within_slacks_limits(event: EventType) -> None:
    parsed = RENDERER.render_json("slack.json.j2", _context(event))
    assert isinstance(parsed["text"], str)
    assert parsed["text"]
    blocks = parsed["blocks"]
    assert blocks[0]["type"] == "header"
    assert blocks[0]["text"]["type"] == "plain_text"
    assert 0 < len(blocks[0]["text"]["text"]) <= 150
    for block in blocks:
        assert block["type"] in {"header", "section", "context", "actions"}
        if block["type"] == "section":
            assert "text" in block or "fields" in block
            assert len(block.get("text", {}).get("text", "")) <= 3000
            assert len(block.get("fields", [])) <= 10
            assert all(len(f["text"]) <= 2000 for f in block.get("fields", []))
        if block["type"] == "context":
            assert block["elements"]


def test_slack_message_shows_at_most_ten_fields() -> None:
    parsed = _slack({f"field_{i:02}": i for i in range(15)})
    fields = [f for b in parsed["blocks"] for f in b.get("fields", [])]
    assert len(fields) == 10
    assert fields[0]["text"] == "*field_00*\n0"


def test_slack_message_escapes_the_characters_slack_reserves() -> None:
    parsed = _slack({"summary": "refund <now> & apologise", "note": "a<b"})
    section = parsed["blocks"][1]
    assert section["text"]["text"] == "refund &lt;now&gt; &amp; apologise"
    assert parsed["blocks"][2]["fields"][0]["text"] == "*note*\na&lt;b"


def test_slack_message_cuts_a_long_header_to_150_characters() -> None:
    parsed = _slack({"a": 1}, title="x" * 400)
    assert len(parsed["blocks"][0]["text"]["text"]) == 150


def test_slack_message_with_a_link_has_a_view_button() -> None:
    parsed = _slack({"a": 1}, link="https://app.example.com/chats/1")
    assert parsed["blocks"][-1] == {
        "type": "actions",
        "elements": [
            {
                "type": "button",
                "text": {"type": "plain_text", "text": "View"},
                "url": "https://app.example.com/chats/1",
            }
        ],
    }


def test_hubspot_upsert_of_an_rkt_lead_is_keyed_by_email_with_split_name() -> None:
    parsed = RENDERER.render_json(
        "hubspot_contact_upsert.json.j2", _context(CATALOG.event("rkt", "lead.captured"))
    )
    assert parsed == {
        "inputs": [
            {
                "idProperty": "email",
                "id": "john@example.com",
                "properties": {
                    "email": "john@example.com",
                    "firstname": "John",
                    "lastname": "Doe",
                    "lifecyclestage": "lead",
                },
            }
        ]
    }


def test_hubspot_upsert_reads_a_nested_customer_and_merges_extra_properties() -> None:
    event = CATALOG.event("eev", "ticket.created")
    context = _context(event, properties={"lifecyclestage": "customer", "hs_lead_status": "NEW"})
    properties = RENDERER.render_json("hubspot_contact_upsert.json.j2", context)["inputs"][0][
        "properties"
    ]
    assert properties == {
        "email": "grace@example.com",
        "lifecyclestage": "customer",
        "hs_lead_status": "NEW",
    }


@pytest.mark.parametrize("name", CRM)
def test_crm_template_without_an_email_fails_naming_the_template_and_line(name: str) -> None:
    context = template_context(data={"name": "No Mail"}, event_name="lead.captured", now=NOW)
    with pytest.raises(TemplateRenderError) as caught:
        RENDERER.render_file(name, context)
    assert caught.value.template == name
    assert caught.value.lineno == _line_of(name, "{%- set email = ")
    assert "email" in caught.value.message


def test_salesforce_lead_from_an_rkt_lead() -> None:
    parsed = RENDERER.render_json(
        "salesforce_lead.json.j2", _context(CATALOG.event("rkt", "lead.captured"))
    )
    assert parsed == {
        "FirstName": "John",
        "LastName": "Doe",
        "Company": "[not provided]",
        "Email": "john@example.com",
        "LeadSource": "Web",
        "Description": "Lead from rkt event lead.captured (rkt_abc123) at 2026-03-26T15:30:00.000Z",
    }


def test_salesforce_lead_without_a_name_still_has_the_required_last_name() -> None:
    parsed = RENDERER.render_json(
        "salesforce_lead.json.j2", _context(CATALOG.event("eev", "ticket.created"))
    )
    assert parsed["LastName"] == "[not provided]"
    assert parsed["Company"] == "[not provided]"
    assert parsed["Email"] == "grace@example.com"
    assert "FirstName" not in parsed


def test_salesforce_lead_cuts_names_to_salesforces_field_lengths() -> None:
    context = template_context(
        data={"email": "a@example.com", "name": f"{'F' * 60} {'L' * 100}", "company": "C" * 300},
        event_name="lead.captured",
    )
    parsed = RENDERER.render_json("salesforce_lead.json.j2", context)
    assert (len(parsed["FirstName"]), len(parsed["LastName"]), len(parsed["Company"])) == (
        40,
        80,
        255,
    )


@pytest.mark.parametrize("event", list(CATALOG.events()), ids=lambda e: f"{e.platform}-{e.name}")
def test_zapier_body_is_one_flat_object(event: EventType) -> None:
    parsed = RENDERER.render_json("zapier_catch_hook.json.j2", _context(event))
    assert not any(isinstance(value, dict) for value in parsed.values())
    assert parsed["event"] == event.name


def test_zapier_body_prefixes_data_so_it_cannot_clash_with_metadata() -> None:
    parsed = RENDERER.render_json(
        "zapier_catch_hook.json.j2", _context(CATALOG.event("rkt", "lead.captured"))
    )
    assert parsed["source"] == "crm-sync"
    assert parsed["data__source"] == "lead-tool"
    assert parsed["data__email"] == "john@example.com"


def test_make_body_has_the_same_keys_for_every_event() -> None:
    shapes = {
        tuple(RENDERER.render_json("make_custom_webhook.json.j2", _context(event)))
        for event in CATALOG.events()
    }
    assert shapes == {
        ("event", "kind", "platform", "source", "event_id", "timestamp", "data", "meta")
    }


def test_make_body_carries_the_data_unchanged() -> None:
    event = CATALOG.event("caleida", "insight.topic")
    parsed = RENDERER.render_json("make_custom_webhook.json.j2", _context(event))
    assert parsed["data"] == event.sample["data"]
    assert parsed["kind"] == "insight.topic"


@pytest.mark.parametrize(
    "name", [*CRM, "slack.json.j2", "zapier_catch_hook.json.j2", "envelope/standard.json.j2"]
)
def test_quotes_newlines_and_markup_in_values_still_render_valid_json(name: str) -> None:
    awkward = 'Zoë "Z" O\'Brien\n</script>\\'
    context = template_context(
        data={"email": "zoe@example.com", "name": awkward, "summary": awkward},
        event_name='lead."captured"',
    )
    parsed = RENDERER.render_json(name, context)
    assert any("Zoë" in text for text in _strings(parsed))


def test_hubspot_keeps_awkward_names_exactly() -> None:
    context = template_context(
        data={"email": "zoe@example.com", "name": 'Zoë "Z"\nO\'Brien'}, event_name="x"
    )
    properties = RENDERER.render_json("hubspot_contact_upsert.json.j2", context)["inputs"][0][
        "properties"
    ]
    assert (properties["firstname"], properties["lastname"]) == ('Zoë "Z"', "O'Brien")


# -- the variable convention ---------------------------------------------------------------------


@pytest.mark.parametrize("platform", sorted(CATALOG.platforms))
def test_template_context_reads_name_id_and_time_where_the_platforms_envelope_keeps_them(
    platform: str,
) -> None:
    info = CATALOG.platform(platform)
    event = next(CATALOG.events(platform))
    context = template_context(event=event.sample, platform=platform)
    assert context["event_name"] == event.sample[info.event_field]
    assert context["event_id"] == (event.sample.get(info.id_field) if info.id_field else None)
    assert context["timestamp"] == event.sample[info.timestamp_field]
    assert context["data"] == event.sample["data"]


def test_template_context_defines_every_standard_variable_even_when_unknown() -> None:
    context = template_context()
    assert set(context) == {
        "event",
        "data",
        "event_name",
        "event_id",
        "kind",
        "platform",
        "source",
        "timestamp",
        "now",
    }
    assert context["event"] == {}
    assert context["data"] == {}
    assert context["timestamp"] == context["now"]


def test_template_context_now_is_the_current_utc_time_in_rfc3339() -> None:
    before = dt.datetime.now(dt.timezone.utc)
    now = template_context()["now"]
    after = dt.datetime.now(dt.timezone.utc)
    assert RFC3339.fullmatch(now)
    assert now.endswith("Z")
    assert before - dt.timedelta(seconds=1) <= dt.datetime.fromisoformat(now) <= after


def test_template_context_formats_a_datetime_clock_in_utc() -> None:
    clock = dt.datetime(2026, 4, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    assert template_context(now=clock)["now"] == "2026-04-01T12:00:00Z"


def test_template_context_explicit_values_win_over_the_envelope() -> None:
    sample = CATALOG.event("eev", "ticket.created").sample
    context = template_context(event=sample, event_name="renamed", event_id="other", title="T")
    assert (context["event_name"], context["event_id"], context["title"]) == (
        "renamed",
        "other",
        "T",
    )


# -- filters -------------------------------------------------------------------------------------


def test_tojson_keeps_non_ascii_characters() -> None:
    out = RENDERER.render_string("{{ name | tojson }}", {"name": "Zoë → 東京"})
    assert out == '"Zoë → 東京"'


def test_tojson_writes_datetimes_as_rfc3339_utc() -> None:
    moment = dt.datetime(2026, 4, 1, 12, 0, tzinfo=dt.timezone.utc)
    assert RENDERER.render_string("{{ m | tojson }}", {"m": moment}) == '"2026-04-01T12:00:00Z"'


def test_tojson_of_an_undefined_value_nested_in_a_literal_fails() -> None:
    with pytest.raises(TemplateRenderError, match="has no attribute 'missing'") as caught:
        RENDERER.render_string('{{ {"a": data.missing} | tojson }}', {"data": {}})
    assert isinstance(caught.value.__cause__, UndefinedError)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (dt.datetime(2026, 4, 1, 12, 0, 0, 250000), "2026-04-01T12:00:00.250Z"),
        (dt.datetime(2026, 4, 1, 14, 0, tzinfo=dt.timezone(dt.timedelta(hours=2))), NOW),
        ("2026-03-26T15:30:00.000Z", "2026-03-26T15:30:00.000Z"),
        ("2026-04-01 14:00:00+02:00", NOW),
        (1775044800, NOW),
    ],
    ids=["naive-is-utc", "offset", "rfc3339-unchanged", "iso-normalised", "epoch"],
)
def test_iso8601_filter(value: Any, expected: str) -> None:
    assert RENDERER.render_string("{{ v | iso8601 }}", {"v": value}) == expected


def test_dig_returns_the_first_path_present() -> None:
    data = {"customer": {"email": "c@example.com"}, "visitor": {"email": "v@example.com"}}
    out = RENDERER.render_string(
        '{{ d | dig("email", "customer.email", "visitor.email") }}', {"d": data}
    )
    assert out == "c@example.com"


def test_dig_with_nothing_present_fails_naming_the_paths() -> None:
    with pytest.raises(TemplateRenderError, match=r"none of email, customer\.email is present"):
        RENDERER.render_string('{{ d | dig("email", "customer.email") }}', {"d": {}})


def test_dig_with_nothing_present_takes_a_default() -> None:
    assert RENDERER.render_string('{{ d | dig("a.b") | default("-") }}', {"d": {"a": 1}}) == "-"


def test_compact_drops_none_and_merge_lets_the_later_mapping_win() -> None:
    out = RENDERER.render_string(
        '{{ {"a": 1, "b": none} | compact | merge({"a": 2, "c": 3}) | tojson }}', {}
    )
    assert json.loads(out) == {"a": 2, "c": 3}


# -- errors name the template and the line -------------------------------------------------------


def test_undefined_variable_in_a_file_names_the_template_and_line(tmp_path: Path) -> None:
    (tmp_path / "body.json.j2").write_text(
        '{# a body #}\n{\n  "a": {{ data.a | tojson }},\n  "b": {{ data.missing | tojson }}\n}\n'
    )
    with pytest.raises(TemplateRenderError) as caught:
        TemplateRenderer([tmp_path]).render_file("body.json.j2", {"data": {"a": 1}})
    assert (caught.value.template, caught.value.lineno) == ("body.json.j2", 4)
    assert "missing" in caught.value.message


def test_undefined_variable_inline_names_the_given_name_and_line() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        RENDERER.render_string("line one\nline two {{ nope }}", {}, name="subscription crm body")
    assert (caught.value.template, caught.value.lineno) == ("subscription crm body", 2)
    assert caught.value.message == "undefined: 'nope' is undefined"


def test_syntax_error_names_the_line(tmp_path: Path) -> None:
    (tmp_path / "broken.json.j2").write_text("{\n\n  {% for x in %}\n}\n")
    with pytest.raises(TemplateRenderError) as caught:
        TemplateRenderer([tmp_path]).render_file("broken.json.j2", {})
    assert (caught.value.template, caught.value.lineno) == ("broken.json.j2", 3)
    assert caught.value.message.startswith("syntax error:")
    assert isinstance(caught.value.__cause__, TemplateSyntaxError)


def test_syntax_error_inline_names_the_line() -> None:
    with pytest.raises(TemplateRenderError) as caught:
        RENDERER.render_string("ok\nok\n{{ a + }}", {})
    assert (caught.value.template, caught.value.lineno) == ("<inline>", 3)


def test_error_in_an_included_template_names_that_template_and_the_include(
    tmp_path: Path,
) -> None:
    (tmp_path / "part.json.j2").write_text("x\ny\n{{ data.gone }}\n")
    (tmp_path / "whole.json.j2").write_text('{\n{% include "part.json.j2" %}\n}\n')
    with pytest.raises(TemplateRenderError) as caught:
        TemplateRenderer([tmp_path]).render_file("whole.json.j2", {"data": {}})
    assert (caught.value.template, caught.value.lineno) == ("part.json.j2", 3)
    assert "included from whole.json.j2:2" in caught.value.message


def test_syntax_error_in_an_included_template_names_that_template(tmp_path: Path) -> None:
    (tmp_path / "part.json.j2").write_text("x\n{% if %}\n")
    (tmp_path / "whole.json.j2").write_text('{% include "part.json.j2" %}')
    with pytest.raises(TemplateRenderError) as caught:
        TemplateRenderer([tmp_path]).render_file("whole.json.j2", {})
    assert (caught.value.template, caught.value.lineno) == ("part.json.j2", 2)


def test_missing_template_raises_render_error_naming_it(tmp_path: Path) -> None:
    with pytest.raises(TemplateRenderError, match="not found") as caught:
        TemplateRenderer([tmp_path]).render_file("absent.json.j2", {})
    assert (caught.value.template, caught.value.lineno) == ("absent.json.j2", None)


def test_missing_included_template_names_the_including_line(tmp_path: Path) -> None:
    (tmp_path / "whole.json.j2").write_text('a\n{% include "absent.json.j2" %}')
    with pytest.raises(TemplateRenderError, match=r"'absent\.json\.j2' not found") as caught:
        TemplateRenderer([tmp_path]).render_file("whole.json.j2", {})
    assert (caught.value.template, caught.value.lineno) == ("whole.json.j2", 2)


def test_output_that_is_not_json_fails_naming_the_template_without_quoting_it() -> None:
    token = "sk_live_0123456789"
    with pytest.raises(TemplateRenderError, match="not JSON") as caught:
        RENDERER.render_json('{"auth": {{ token }} }', {"token": token}, name="crm body")
    assert caught.value.template == "crm body"
    assert token not in str(caught.value)


def test_empty_output_is_not_json() -> None:
    with pytest.raises(TemplateRenderError, match="empty"):
        RENDERER.render_json("{% if false %}{}{% endif %}", {})


def test_a_foreign_exception_is_reported_by_type_without_its_message() -> None:
    token = "sk_live_0123456789"
    with pytest.raises(TemplateRenderError, match="LookupError") as caught:
        RENDERER.render_string('{{ "x".encode(token) }}', {"token": token})
    assert token not in str(caught.value)
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__


# -- the sandbox ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "source",
    [
        "{{ ''.__class__.__mro__ }}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ data.__class__.__subclasses__() }}",
        '{{ "{0.__class__}".format(data) }}',
        "{% set _ = data.update({'x': 1}) %}",
        "{% set _ = data.items_list.append(1) %}",
    ],
    ids=["str-mro", "cycler-globals", "subclasses", "format-string", "dict-update", "list-append"],
)
def test_sandbox_blocks_private_attributes_and_mutation(source: str) -> None:
    with pytest.raises(TemplateRenderError, match="blocked by the sandbox") as caught:
        RENDERER.render_string(source, {"data": {"items_list": [1]}})
    assert isinstance(caught.value.__cause__, SecurityError)


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'ab' * 600000 }}",
        "{{ [0] * 2000000 }}",
        "{{ 10 ** 100000 }}",
        "{{ 'x'.center(10 ** 9) }}",
        # Widths of printf-style and str.format formatting, and replace's growth.
        "{{ '%50000000s' % '' }}",
        "{{ '%*s' % (50000000, '') }}",
        "{{ '%50000000s' | format('') }}",
        "{{ '%(a)50000000s' % {'a': ''} }}",
        "{{ '%(a).50000000f' | format(a=1.0) }}",
        "{{ '{:>50000000}'.format('') }}",
        "{{ '{:{w}}'.format('', w=50000000) }}",
        "{{ '{a:>50000000}'.format_map({'a': ''}) }}",
        "{{ ('x' * 1000000).replace('x', 'x' * 50) }}",
        "{{ ('x' * 1000000) | replace('x', 'x' * 50) }}",
        # Doubling and squaring in a loop.
        "{% set s = namespace(v='x' * 1000) %}{% for i in range(40) %}"
        "{% set s.v = s.v + s.v %}{% endfor %}{{ s.v | length }}",
        "{% set n = namespace(v=3) %}{% for i in range(30) %}{% set n.v = n.v * n.v %}"
        "{% endfor %}{{ n.v > 0 }}",
        "{% set s = namespace(v='x' * 1000) %}{% for i in range(40) %}"
        "{% set s.v = s.v ~ s.v %}{% endfor %}{{ s.v | length }}",
    ],
)
def test_sandbox_refuses_expressions_that_allocate_without_bound(source: str) -> None:
    with pytest.raises(TemplateRenderError, match="blocked by the sandbox"):
        RENDERER.render_string(source, {})


@pytest.mark.parametrize(
    ("source", "rendered"),
    [
        ("{{ '%-4s|%5.2f' % ('ab', 3.14159) }}", "ab  | 3.14"),
        ("{{ '%s and %d' | format('x', 5) }}", "x and 5"),
        ("{{ '{0:>4}|{1:.1f}|{0}'.format('ab', 2.25) }}", "  ab|2.2|ab"),
        ("{{ 'a-b'.replace('-', '__') }} {{ 'a-b' | replace('-', '_') }}", "a__b a_b"),
        ("{{ '%(n)s=%(v)05.1f' % {'n': 'x', 'v': 2.5} }}", "x=002.5"),
        ("{{ 'a' ~ 1 ~ none ~ [2] }}{{ ('b' ~ 'c') | upper }}", "a1None[2]BC"),
        # A long value with one character to escape: the growth counts, not the length.
        ("{{ ('x' * 900000 ~ 'x' * 900000 ~ '&') | replace('&', '&amp;') | length }}", "1800005"),
    ],
)
def test_formatting_and_replace_within_the_limits_still_work(source: str, rendered: str) -> None:
    assert RENDERER.render_string(source, {}) == rendered


def test_output_beyond_the_limit_fails_naming_the_line() -> None:
    renderer = TemplateRenderer(max_output_chars=10_000)
    with pytest.raises(TemplateRenderError, match="longer than 10000") as caught:
        renderer.render_string("{\n{% for i in range(100000) %}{{ i }}{% endfor %}", {})
    assert caught.value.lineno == 2


NESTED_LOOPS = "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}"


def test_nested_loops_stop_at_the_render_time_limit() -> None:
    renderer = TemplateRenderer(render_timeout_seconds=0.5)
    started = time.monotonic()
    with pytest.raises(TemplateRenderError, match=r"longer than 0\.5 seconds") as caught:
        renderer.render_string(NESTED_LOOPS, {}, name="body of subscription crm")
    assert time.monotonic() - started < 30  # generous: the point is that it stops at all
    assert caught.value.template == "body of subscription crm"
    assert caught.value.lineno == 1


@pytest.mark.parametrize(
    "source",
    [
        # Recursion through a macro, and a recursive loop: each call checks the clock.
        "{% macro f() %}{% for i in range(100000) %}{% endfor %}{{ f() }}{% endmacro %}{{ f() }}",
        "{% for i in range(100000) recursive %}{% if loop.depth < 4 %}{{ loop(range(100000)) }}"
        "{% endif %}{% endfor %}",
        # A filtered loop, and loop.length (which would turn the iterable into a list).
        "{% for i in range(100000) if i >= 0 %}{% for j in range(100000) if j >= 0 %}"
        "{% endfor %}{% endfor %}",
        "{% for i in range(100000) %}{% for j in range(100000) %}{{ loop.length }}{% endfor %}"
        "{% endfor %}",
    ],
)
def test_long_renders_of_every_shape_stop_at_the_limit(source: str) -> None:
    with pytest.raises(TemplateRenderError, match="render time limit"):
        TemplateRenderer(render_timeout_seconds=0.2).render_string(source, {})


def test_file_templates_stop_at_the_limit_naming_the_file(tmp_path: Path) -> None:
    (tmp_path / "slow.json.j2").write_text("{\n" + NESTED_LOOPS + "\n}")
    renderer = renderer_for([tmp_path], render_timeout_seconds=0.2)
    with pytest.raises(TemplateRenderError, match="render time limit") as caught:
        renderer.render_json("slow.json.j2", {})
    assert (caught.value.template, caught.value.lineno) == ("slow.json.j2", 2)


def test_loops_within_the_limit_render_as_before() -> None:
    source = (
        "{% for i in range(3) %}{{ loop.length }}{{ loop.last }}{% endfor %}"
        "{% for k, v in d.items() %}{{ k }}={{ v }}{% else %}none{% endfor %}"
        "{% for x in [] %}{% else %}none{% endfor %}{% for x in [1, 2, 3] if x > 1 %}{{ x }}"
        "{% endfor %}"
    )
    rendered = TemplateRenderer(render_timeout_seconds=0.5).render_string(source, {"d": {"a": 1}})
    assert rendered == "3False3False3Truea=1none23"


def test_the_render_time_limit_is_per_render() -> None:
    renderer = TemplateRenderer(render_timeout_seconds=0.3)
    source = "{% for i in range(2000) %}{{ i }}{% endfor %}"
    for _ in range(5):  # together longer than one render's limit would allow, were it shared
        assert renderer.render_string(source, {}).endswith("1999")
        time.sleep(0.1)


def test_the_render_time_limit_can_be_switched_off_but_not_to_zero() -> None:
    assert TemplateRenderer(render_timeout_seconds=None).render_string("{{ 1 }}", {}) == "1"
    with pytest.raises(ValueError, match="positive"):
        TemplateRenderer(render_timeout_seconds=0)


def test_include_of_a_file_not_ending_in_j2_is_refused(tmp_path: Path) -> None:
    (tmp_path / "airflow.cfg").write_text("[core]\nfernet_key = secret\n")
    (tmp_path / "steal.json.j2").write_text('{% include "airflow.cfg" %}')
    with pytest.raises(TemplateRenderError, match="refused") as caught:
        TemplateRenderer([tmp_path]).render_file("steal.json.j2", {})
    assert "secret" not in str(caught.value)


def test_template_outside_the_search_folders_is_not_found(tmp_path: Path) -> None:
    (tmp_path / "outside.json.j2").write_text("{}")
    (tmp_path / "dags").mkdir()
    with pytest.raises(TemplateRenderError, match="not found"):
        TemplateRenderer([tmp_path / "dags"]).render_file("../outside.json.j2", {})


# -- search path ---------------------------------------------------------------------------------


def test_caller_folder_overrides_a_shipped_template(tmp_path: Path) -> None:
    (tmp_path / "slack.json.j2").write_text('{"text": "ours"}')
    assert TemplateRenderer([tmp_path]).render_json("slack.json.j2", {}) == {"text": "ours"}


def test_caller_folder_overrides_a_shipped_template_in_a_subfolder(tmp_path: Path) -> None:
    (tmp_path / "envelope").mkdir()
    (tmp_path / "envelope" / "rkt.json.j2").write_text('{"ours": true}')
    assert TemplateRenderer([tmp_path]).render_json("envelope/rkt.json.j2", {}) == {"ours": True}


def test_earlier_caller_folder_wins_over_a_later_one(tmp_path: Path) -> None:
    first, second = tmp_path / "dags", tmp_path / "extra"
    for folder, value in ((first, 1), (second, 2)):
        folder.mkdir()
        (folder / "body.json.j2").write_text(f'{{"from": {value}}}')
    assert TemplateRenderer([first, second]).render_json("body.json.j2", {}) == {"from": 1}


def test_a_caller_template_can_include_a_shipped_one(tmp_path: Path) -> None:
    (tmp_path / "wrap.json.j2").write_text('{"wrapped": {% include "envelope/standard.json.j2" %}}')
    context = template_context(data={"a": 1}, event_name="e", now=NOW)
    parsed = TemplateRenderer([tmp_path]).render_json("wrap.json.j2", context)
    assert parsed == {"wrapped": {"type": "e", "timestamp": NOW, "data": {"a": 1}}}


def test_without_shipped_templates_only_caller_folders_are_searched(tmp_path: Path) -> None:
    with pytest.raises(TemplateRenderError, match="not found"):
        TemplateRenderer([tmp_path], shipped=False).render_file("slack.json.j2", {})


def test_render_json_takes_a_name_ending_in_j2_as_a_file_and_anything_else_as_source() -> None:
    context = template_context(data={"a": 1}, event_name="e", now=NOW)
    assert RENDERER.render_json("envelope/standard.json.j2", context)["type"] == "e"
    assert RENDERER.render_json('{"name": {{ event_name | tojson }}}', context) == {"name": "e"}


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("slack.json.j2", True),
        ("envelope/rkt.json.j2", True),
        ('{"a": "{{ x }}.j2"}', False),
        ("text\nbody.j2", False),
        ("body.json", False),
    ],
)
def test_is_template_name(value: str, expected: bool) -> None:
    assert is_template_name(value) is expected


# -- compiled once -------------------------------------------------------------------------------


def _count_compiles(renderer: TemplateRenderer, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    compiled: list[str] = []
    original = renderer.environment.compile

    def counting(source: str, name: str | None = None, *args: Any, **kwargs: Any) -> Any:
        compiled.append(str(name))
        return original(source, name, *args, **kwargs)

    monkeypatch.setattr(renderer.environment, "compile", counting)
    return compiled


def test_a_file_template_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = TemplateRenderer()
    compiled = _count_compiles(renderer, monkeypatch)
    context = template_context(data={"a": 1}, event_name="e")
    for _ in range(3):
        renderer.render_file("envelope/standard.json.j2", context)
    assert compiled == ["envelope/standard.json.j2"]


def test_an_inline_template_is_compiled_once(monkeypatch: pytest.MonkeyPatch) -> None:
    renderer = TemplateRenderer()
    compiled = _count_compiles(renderer, monkeypatch)
    for value in range(3):
        assert renderer.render_string("{{ v }}", {"v": value}, name="n") == str(value)
    assert compiled == ["n"]


def test_a_changed_file_is_compiled_again(tmp_path: Path) -> None:
    path = tmp_path / "body.json.j2"
    path.write_text("one")
    renderer = TemplateRenderer([tmp_path])
    assert renderer.render_file("body.json.j2", {}) == "one"
    path.write_text("two")
    later = path.stat().st_mtime + 10
    os.utime(path, (later, later))
    assert renderer.render_file("body.json.j2", {}) == "two"


def test_renderer_for_shares_one_renderer_per_search_path(tmp_path: Path) -> None:
    assert renderer_for([tmp_path]) is renderer_for([str(tmp_path)])
    assert renderer_for([tmp_path]) is not renderer_for([])


# -- the package ---------------------------------------------------------------------------------


def test_shipped_templates_lists_every_j2_file_under_templates() -> None:
    expected = sorted(p.relative_to(TEMPLATES).as_posix() for p in TEMPLATES.rglob("*.j2"))
    assert expected
    assert shipped_templates() == expected


def test_renderer_lists_caller_and_shipped_templates(tmp_path: Path) -> None:
    (tmp_path / "mine.json.j2").write_text("{}")
    (tmp_path / "notes.txt").write_text("")
    names = TemplateRenderer([tmp_path]).list_templates()
    assert names == sorted({"mine.json.j2", *shipped_templates()})


@pytest.mark.parametrize("name", shipped_templates())
def test_docs_mention_every_shipped_template(name: str) -> None:
    assert f"`{name}`" in DOCS.read_text(encoding="utf-8")


@pytest.mark.parametrize("name", shipped_templates())
def test_templates_readme_has_a_section_for_every_shipped_template(name: str) -> None:
    headings = re.findall(r"^#+ `([^`]+)`", README.read_text(encoding="utf-8"), re.MULTILINE)
    assert name in headings


def test_reading_the_shipped_files_does_not_import_jinja() -> None:
    code = (
        "import sys\nfrom importlib.resources import files\n"
        "names = [p.name for p in files('airhook.templates').iterdir()]\n"
        "assert 'slack.json.j2' in names, names\n"
        "print('jinja2' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "False"


def test_rendering_imports_nothing_from_airflow() -> None:
    code = (
        "import sys\nfrom airhook.core.rendering import TemplateRenderer, template_context\n"
        "TemplateRenderer().render_json('slack.json.j2', template_context(event_name='e'))\n"
        "print(sorted(m for m in sys.modules if m == 'airflow' or m.startswith('airflow.')))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"
