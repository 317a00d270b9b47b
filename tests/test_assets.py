"""airhook.on / airhook.on_kind and the asset URIs the dispatcher writes to."""

from __future__ import annotations

import pytest
from airflow.sdk import Asset
from airflow.sdk.definitions.asset import AssetAny

import airhook
from airhook.core.asset_uris import event_uri, kind_uri, source_uri, uris_for
from airhook.core.catalog import CANONICAL_KINDS


def _names(condition: Asset | AssetAny) -> list[str]:
    assert isinstance(condition, AssetAny)
    objects = list(condition.objects)
    assert all(isinstance(o, Asset) for o in objects)
    return [o.name for o in objects]  # type: ignore[union-attr]


# --- pure URIs -------------------------------------------------------------------------------


def test_source_uri() -> None:
    assert source_uri("caleida") == "airhook://caleida"


def test_event_uri() -> None:
    assert event_uri("caleida", "insight.summary") == "airhook://caleida/insight.summary"


def test_kind_uri() -> None:
    assert kind_uri("conversation.started") == "airhook-kind://conversation.started"


def test_uris_for_an_event_with_a_kind() -> None:
    assert uris_for("rkt", "session.created", "conversation.started") == [
        "airhook://rkt",
        "airhook://rkt/session.created",
        "airhook-kind://conversation.started",
    ]


def test_uris_for_an_event_without_a_kind() -> None:
    assert uris_for("gh", "push", None) == ["airhook://gh", "airhook://gh/push"]


# --- airhook.on ------------------------------------------------------------------------------


def test_on_star_is_the_source_asset() -> None:
    asset = airhook.on("caleida", "*")
    assert isinstance(asset, Asset)
    assert asset.name == "airhook://caleida"
    assert asset.group == "airhook"
    assert airhook.on("caleida") == asset


def test_on_star_among_patterns_is_the_source_asset() -> None:
    assert airhook.on("caleida", ["insight.summary", "*"]) == airhook.on("caleida", "*")


def test_on_a_pattern_is_any_of_the_matching_event_assets() -> None:
    assert _names(airhook.on("caleida", "insight.*")) == [
        "airhook://caleida/insight.conversation",
        "airhook://caleida/insight.key",
        "airhook://caleida/insight.sentiment",
        "airhook://caleida/insight.summary",
        "airhook://caleida/insight.topic",
    ]


def test_asset_names_are_the_uris_the_dispatcher_writes_to() -> None:
    condition = airhook.on("caleida", "insight.*")
    assert isinstance(condition, AssetAny)
    for asset in condition.objects:
        assert isinstance(asset, Asset)
        source, event = asset.name.removeprefix("airhook://").split("/")
        assert asset.name in uris_for(source, event, None)


def test_on_one_event_name_is_that_event_asset() -> None:
    asset = airhook.on("rkt", "lead.captured")
    assert isinstance(asset, Asset)
    assert asset.name == "airhook://rkt/lead.captured"


def test_on_a_list_of_patterns_joins_their_events_once() -> None:
    assert _names(airhook.on("rkt", ["lead.captured", "message.*", "lead.*"])) == [
        "airhook://rkt/lead.captured",
        "airhook://rkt/message.received",
        "airhook://rkt/message.sent",
    ]


def test_on_without_platform_takes_every_platforms_names() -> None:
    names = _names(airhook.on("helpdesk", "ticket.*"))
    assert "airhook://helpdesk/ticket.assigned" in names  # eeV.ai's
    assert "airhook://helpdesk/ticket.created" in names  # eeV.ai's and RKT's


def test_platform_narrows_the_pattern_to_its_events() -> None:
    assert _names(airhook.on("helpdesk", "ticket.*", platform="rkt")) == [
        "airhook://helpdesk/ticket.created",
        "airhook://helpdesk/ticket.updated",
    ]


def test_exact_name_not_in_the_catalog_is_taken_as_is() -> None:
    asset = airhook.on("github", "push")
    assert isinstance(asset, Asset)
    assert asset.name == "airhook://github/push"


def test_star_pattern_matching_nothing_raises() -> None:
    with pytest.raises(ValueError, match=r"no event matches 'nothing\.\*'"):
        airhook.on("caleida", "nothing.*")


def test_pattern_of_another_platform_raises_with_platform() -> None:
    with pytest.raises(ValueError, match="no event matches"):
        airhook.on("caleida", "ticket.*", platform="caleida")


# --- airhook.on_kind -------------------------------------------------------------------------


def test_on_kind_pattern_is_any_of_the_matching_kinds() -> None:
    expected = [f"airhook-kind://{k}" for k in CANONICAL_KINDS if k.startswith("conversation.")]
    assert len(expected) == 7
    assert _names(airhook.on_kind("conversation.*")) == expected


def test_on_kind_of_one_kind_is_its_asset() -> None:
    asset = airhook.on_kind("lead.captured")
    assert isinstance(asset, Asset)
    assert asset.name == "airhook-kind://lead.captured"


def test_on_kind_of_several_patterns() -> None:
    assert _names(airhook.on_kind(["lead.captured", "ticket.re*"])) == [
        "airhook-kind://lead.captured",
        "airhook-kind://ticket.resolved",
        "airhook-kind://ticket.reopened",
    ]


def test_on_kind_matching_nothing_raises() -> None:
    with pytest.raises(ValueError, match="no canonical kind matches"):
        airhook.on_kind("nothing.*")
