"""airhook.core.catalog: every documented event has a schema and a sample; both validators agree."""

from __future__ import annotations

import copy
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

from airhook.core.catalog import CANONICAL_KINDS, EventPattern, load_catalog, matches
from airhook.core.errors import PayloadValidationError, UnknownEventError, UnknownPlatformError

REPO = Path(__file__).resolve().parents[1]
SCHEMAS = REPO / "schemas"
PLATFORM_DOCS = REPO.parent / "shared" / "platforms"

# The events each platform's published document lists (shared/platforms/), spelled as there.
DOCUMENTED = {
    "caleida": [
        "chat",
        "message",
        "insight.summary",
        "insight.topic",
        "insight.key",
        "insight.conversation",
        "insight.sentiment",
    ],
    "eev": [
        "conversation.created",
        "conversation.updated",
        "conversation.closed",
        "conversation.escalated",
        "conversation.transferred",
        "ticket.created",
        "ticket.updated",
        "ticket.resolved",
        "ticket.reopened",
        "ticket.assigned",
        "agent.response",
        "agent.escalation",
        "agent.error",
        "agent.training",
        "system.maintenance",
        "system.error",
        "system.backup",
        "system.update",
    ],
    "rkt": [
        "session.created",
        "session.resolved",
        "message.received",
        "message.sent",
        "lead.captured",
        "ticket.created",
        "ticket.updated",
        "handoff.escalated",
        "handoff.assigned",
        "handoff.returned",
    ],
    # CCAI names the events only in prose; airhook's names for them (docs/platforms.md).
    "ccai": ["chat.created", "chat.message_received", "chat.transferred", "chat.escalated"],
}
DOC_FILES = {"caleida": "caleida.md", "eev": "eev-ai.md", "rkt": "rkt-chatbot.md"}

CATALOG = load_catalog()
ALL_EVENTS = list(CATALOG.events())


def _ids(events: list[Any]) -> list[str]:
    return [f"{e.platform}:{e.name}" for e in events]


# --- coverage -------------------------------------------------------------------------------------


def test_catalog_has_exactly_the_documented_events() -> None:
    found = {p: sorted(e.name for e in CATALOG.events(p)) for p in CATALOG.platforms}
    assert found == {p: sorted(names) for p, names in DOCUMENTED.items()}


@pytest.mark.parametrize("platform", sorted(DOC_FILES))
def test_documented_names_appear_in_the_platform_document(platform: str) -> None:
    doc = PLATFORM_DOCS / DOC_FILES[platform]
    if not doc.exists():
        pytest.skip("shared/platforms is not beside this checkout")
    text = doc.read_text()
    for name in DOCUMENTED[platform]:
        assert name in text, f"{name} is not in {doc.name}"


def test_every_schema_file_is_valid_draft_7() -> None:
    files = sorted(SCHEMAS.rglob("*.json"))
    assert len(files) == 1 + 4 + sum(len(v) for v in DOCUMENTED.values())
    for path in files:
        document = json.loads(path.read_text())
        assert document["$schema"] == "http://json-schema.org/draft-07/schema#", path
        jsonschema.Draft7Validator.check_schema(document)


def test_event_schema_file_names_match_their_events() -> None:
    for event in ALL_EVENTS:
        assert (SCHEMAS / event.platform / f"{event.name}.json").is_file()
        assert event.schema["x-airhook-event"] == event.name


@pytest.mark.parametrize("event", ALL_EVENTS, ids=_ids(ALL_EVENTS))
def test_sample_validates_with_both_validators(event: Any) -> None:
    event.validate(event.sample)
    assert event.errors(event.sample) == []
    assert CATALOG.validate(event.platform, event.sample) is event


def test_every_event_names_a_canonical_kind() -> None:
    for event in ALL_EVENTS:
        assert event.kind in CANONICAL_KINDS


def test_conversation_started_spans_every_platform() -> None:
    started = {(e.platform, e.name) for e in CATALOG.events_of_kind("conversation.started")}
    assert started == {
        ("caleida", "chat"),
        ("eev", "conversation.created"),
        ("rkt", "session.created"),
        ("ccai", "chat.created"),
    }


def test_kind_patterns_select_across_platforms() -> None:
    insights = {e.name for e in CATALOG.events_of_kind("insight.*")}
    assert insights == {n for n in DOCUMENTED["caleida"] if n.startswith("insight.")}
    escalations = {(e.platform, e.name) for e in CATALOG.events_of_kind("conversation.escalated")}
    assert escalations == {
        ("eev", "conversation.escalated"),
        ("rkt", "handoff.escalated"),
        ("ccai", "chat.escalated"),
    }


def test_platform_envelopes_name_their_fields() -> None:
    rkt = CATALOG.platform("rkt")
    assert (rkt.event_field, rkt.id_field, rkt.chatbot_field) == ("event", None, "chatbotId")
    assert CATALOG.platform("ccai").event_field == "event_type"
    with pytest.raises(UnknownPlatformError, match="no platform named 'zapier'"):
        CATALOG.platform("zapier")


def test_catalog_is_built_once() -> None:
    assert load_catalog() is CATALOG


# --- realistic constraints ------------------------------------------------------------------------


def _rkt_lead() -> dict[str, Any]:
    return copy.deepcopy(CATALOG.event("rkt", "lead.captured").sample)


def _fail(platform: str, payload: Any) -> PayloadValidationError:
    with pytest.raises(PayloadValidationError) as info:
        CATALOG.validate(platform, payload)
    return info.value


def test_lead_with_bad_email_fails_at_its_path() -> None:
    lead = _rkt_lead()
    lead["data"]["email"] = "john.example.com"
    error = _fail("rkt", lead)
    assert (error.json_path, error.keyword) == ("$.data.email", "pattern")
    assert error.platform == "rkt"
    assert error.event == "lead.captured"
    assert error.status_code == 422


def test_missing_envelope_field_fails_at_the_root() -> None:
    lead = _rkt_lead()
    del lead["chatbotId"]
    error = _fail("rkt", lead)
    assert (error.json_path, error.keyword) == ("$", "required")
    assert "chatbotId" in error.message


def test_bad_timestamp_fails() -> None:
    for bad in ("2026-03-26 15:30:00", "2026-13-26T15:30:00Z", "2026-03-26T15:30:00", "yesterday"):
        lead = _rkt_lead()
        lead["timestamp"] = bad
        assert _fail("rkt", lead).json_path == "$.timestamp"


def test_sentiment_score_must_be_in_range() -> None:
    insight = copy.deepcopy(CATALOG.event("caleida", "insight.sentiment").sample)
    insight["data"]["sentiment"]["score"] = 1.5
    error = _fail("caleida", insight)
    assert (error.json_path, error.keyword) == ("$.data.sentiment.score", "maximum")
    insight["data"]["sentiment"]["score"] = -1
    CATALOG.validate("caleida", insight)


def test_topic_confidence_is_a_probability() -> None:
    insight = copy.deepcopy(CATALOG.event("caleida", "insight.topic").sample)
    insight["data"]["topics"][1]["confidence"] = -0.1
    assert _fail("caleida", insight).json_path == "$.data.topics[1].confidence"


def test_unknown_extra_fields_are_allowed_everywhere() -> None:
    for event in ALL_EVENTS:
        payload = copy.deepcopy(event.sample)
        payload["added_by_platform_later"] = {"x": 1}
        payload["data"]["new_field"] = [1, 2, 3]
        event.validate(payload)


def test_unknown_event_name_fails() -> None:
    lead = _rkt_lead()
    lead["event"] = "lead.lost"
    with pytest.raises(UnknownEventError) as info:
        CATALOG.validate("rkt", lead)
    assert info.value.status_code == 422


@pytest.mark.parametrize("payload", [None, [], "lead.captured", {"data": {}}, {"event": 7}])
def test_payload_without_an_event_name_fails(payload: Any) -> None:
    with pytest.raises(UnknownEventError):
        CATALOG.validate("rkt", payload)


def test_event_name_must_match_its_schema() -> None:
    # A body that names one event cannot pass as another.
    lead = _rkt_lead()
    with pytest.raises(PayloadValidationError) as info:
        CATALOG.event("rkt", "message.sent").validate(lead)
    assert info.value.json_path in {"$.event", "$.data"}


# --- both validators agree on every mutation ----------------------------------------------

REPLACEMENTS: list[Any] = [None, True, 0, -1, 1.5, 10**12, "", "x", "x" * 70_000, [], {}, ["a"]]


def _paths(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, (*path, key))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, (*path, index))


def _mutations(sample: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for path in _paths(sample):
        if not path:
            continue
        for replacement in REPLACEMENTS:
            mutated = copy.deepcopy(sample)
            parent = mutated
            for step in path[:-1]:
                parent = parent[step]
            parent[path[-1]] = copy.deepcopy(replacement)
            yield f"{path}={replacement!r:.20}", mutated
        removed = copy.deepcopy(sample)
        parent = removed
        for step in path[:-1]:
            parent = parent[step]
        del parent[path[-1]]
        yield f"del {path}", removed


@pytest.mark.parametrize("event", ALL_EVENTS, ids=_ids(ALL_EVENTS))
def test_validators_agree_on_every_mutation(event: Any) -> None:
    checked = rejected = 0
    for label, payload in _mutations(event.sample):
        fast = event.is_valid(payload)
        slow = not event.errors(payload)
        assert fast == slow, f"validators disagree on {label}"
        checked += 1
        rejected += not fast
    assert checked > 50
    assert rejected > 10  # the mutations really exercise the schema


@pytest.mark.parametrize("event", ALL_EVENTS, ids=_ids(ALL_EVENTS))
def test_missing_required_data_field_is_reported_at_data(event: Any) -> None:
    required = event.schema["properties"]["data"]["required"]
    assert required, "every event requires something in data"
    for field_name in required:
        payload = copy.deepcopy(event.sample)
        del payload["data"][field_name]
        with pytest.raises(PayloadValidationError) as info:
            event.validate(payload)
        assert (info.value.json_path, info.value.keyword) == ("$.data", "required")
        assert repr(field_name) in info.value.message
        assert info.value.missing == (field_name,)
        assert f"(missing: {field_name})" in str(info.value)  # the logged text names it too


def test_required_failure_names_every_missing_property_and_no_value() -> None:
    lead = _rkt_lead()
    lead["data"] = {"name": "john@secret-domain"}
    error = _fail("rkt", lead)
    assert (error.json_path, error.keyword) == ("$.data", "required")
    assert error.missing == ("leadId", "email", "sessionId")
    assert str(error) == (
        "rkt lead.captured: $.data: required failed (missing: leadId, email, sessionId)"
    )


@pytest.mark.parametrize("event", ALL_EVENTS, ids=_ids(ALL_EVENTS))
def test_wrongly_typed_data_field_is_reported_at_its_path(event: Any) -> None:
    for field_name in event.schema["properties"]["data"]["required"]:
        payload = copy.deepcopy(event.sample)
        payload["data"][field_name] = True  # no required field is a boolean
        with pytest.raises(PayloadValidationError) as info:
            event.validate(payload)
        assert info.value.json_path == f"$.data.{field_name}"


# --- patterns -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "name", "expected"),
    [
        ("*", "chat", True),
        ("*", "insight.summary", True),
        ("insight.*", "insight.summary", True),
        ("insight.*", "insight", False),
        ("insight.*", "insights.summary", False),
        ("ticket.*", "ticket.created", True),
        ("ticket.*", "session.created", False),
        ("*.created", "ticket.created", True),
        ("chat", "chat", True),
        ("chat", "chat.created", False),
        ("chat.*", "chat.message_received", True),
    ],
)
def test_pattern_matching(pattern: str, name: str, expected: bool) -> None:
    assert EventPattern(pattern).matches(name) is expected
    assert matches(pattern, name) is expected


def test_several_patterns_match_if_any_does() -> None:
    assert matches(["lead.*", "ticket.*"], "ticket.updated")
    assert not matches(["lead.*", "ticket.*"], "session.created")
    assert not matches([], "anything")


@pytest.mark.parametrize("pattern", ["", "insight.?", "a b", "[abc]", "x" * 201, "ins(ight)"])
def test_invalid_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="event pattern"):
        EventPattern(pattern)


def test_regex_characters_in_patterns_are_literal() -> None:
    assert not matches("insight.summary", "insightXsummary")


@pytest.mark.parametrize(
    ("pattern", "name"),
    [
        ("*" * 12 + "Z", "conversation.transferred"),  # a run of stars
        ("*" * 199 + "Z", "x" * 1000),
        ("*a" * 8 + "*Z", "a" * 200),  # stars between letters the name is full of
        ("a*" * 99 + "Z", "a" * 1000),
    ],
)
def test_a_pattern_that_does_not_match_says_so_at_once(pattern: str, name: str) -> None:
    # Any op can save such a pattern (the API checks it against the catalog's names, and the
    # receiver and the fan-out match each event's name against it): no backtracking blow-up.
    started = time.perf_counter()
    assert not EventPattern(pattern).matches(name)
    assert time.perf_counter() - started < 0.1


@given(
    pattern=st.text(alphabet="ab.*", min_size=1, max_size=12),
    name=st.text(alphabet="ab.", max_size=12),
)
def test_patterns_match_as_stars_for_any_run(pattern: str, name: str) -> None:
    reference = re.fullmatch(".*".join(re.escape(part) for part in pattern.split("*")), name)
    assert EventPattern(pattern).matches(name) is (reference is not None)


def test_events_filtered_by_pattern() -> None:
    assert {e.name for e in CATALOG.events("eev", "system.*")} == {
        "system.maintenance",
        "system.error",
        "system.backup",
        "system.update",
    }


def test_docs_list_every_event_with_its_kind() -> None:
    text = (REPO / "docs" / "platforms.md").read_text()
    for event in ALL_EVENTS:
        assert f"| `{event.name}` | `{event.kind}` |" in text, event.name
    for kind in CANONICAL_KINDS:
        assert f"| `{kind}` |" in text, kind


def test_sample_is_a_fresh_copy_each_time() -> None:
    event = CATALOG.event("rkt", "lead.captured")
    first = event.sample
    first["data"]["email"] = "changed@example.com"
    assert event.sample["data"]["email"] == "john@example.com"
