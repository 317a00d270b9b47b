"""airhook.core.access: bearer tokens, basic auth and the IP allow-list."""

from __future__ import annotations

import base64

import pytest

from airhook.core.access import BasicCredentials, IpAllowList, check_basic, check_bearer
from airhook.core.errors import AddressNotAllowedError, AuthenticationError, VerificationError
from airhook.core.secrets import Secret

TOKENS = [Secret("tok-primary"), Secret("tok-secondary")]
CREDS = [BasicCredentials("eev", Secret("pa:ss")), BasicCredentials("ops", Secret("x"))]


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


def test_bearer_primary_and_secondary_accepted() -> None:
    assert check_bearer({"Authorization": "Bearer tok-primary"}, TOKENS) == 0
    assert check_bearer({"authorization": "bearer tok-secondary"}, TOKENS) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"Authorization": ""},
        {"Authorization": "Bearer"},
        {"Authorization": "Bearer tok"},
        {"Authorization": "Bearer tok-primaryX"},
        {"Authorization": "Basic tok-primary"},
        {"Authorization": "Bearer tök"},
        {"Authorization": "Bearer " + "t" * 5000},
    ],
)
def test_bearer_rejections_are_authentication_errors(headers: dict[str, str]) -> None:
    with pytest.raises(AuthenticationError) as info:
        check_bearer(headers, TOKENS)
    assert info.value.status_code == 401
    assert "tok-primary" not in str(info.value)


def test_bearer_without_configured_tokens_fails() -> None:
    with pytest.raises(AuthenticationError):
        check_bearer({"Authorization": "Bearer x"}, [])


def test_basic_accepts_password_with_colon() -> None:
    assert check_basic(_basic("eev", "pa:ss"), CREDS) == 0
    assert check_basic(_basic("ops", "x"), CREDS) == 1


@pytest.mark.parametrize(
    "headers",
    [
        {},
        _basic("eev", "wrong"),
        _basic("wrong", "pa:ss"),
        _basic("ops", "pa:ss"),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Basic " + base64.b64encode(b"no-colon").decode()},
        {"Authorization": "Bearer pa:ss"},
    ],
)
def test_basic_rejections_are_authentication_errors(headers: dict[str, str]) -> None:
    with pytest.raises(AuthenticationError):
        check_basic(headers, CREDS)


def test_empty_allow_list_allows_everything() -> None:
    allow = IpAllowList()
    assert not allow
    assert allow.allows("203.0.113.9")
    assert allow.allows(None)


def test_allow_list_checks_ipv4_and_ipv6_networks() -> None:
    allow = IpAllowList(["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"])
    assert allow.allows("203.0.113.200")
    assert allow.allows("198.51.100.7")
    assert allow.allows("2001:db8::1")
    assert not allow.allows("203.0.114.1")
    assert not allow.allows("198.51.100.8")
    assert not allow.allows("2001:db9::1")


def test_allow_list_unwraps_ipv4_mapped_ipv6() -> None:
    allow = IpAllowList(["10.1.0.0/16"])
    assert allow.allows("::ffff:10.1.2.3")
    assert not allow.allows("::ffff:10.2.2.3")


@pytest.mark.parametrize("address", [None, "", "not-an-ip", "300.1.1.1", "10.1.2.3%eth0"])
def test_allow_list_refuses_missing_or_garbage_addresses(address: str | None) -> None:
    with pytest.raises(AddressNotAllowedError) as info:
        IpAllowList(["10.1.0.0/16"]).check(address)
    assert info.value.status_code == 403
    assert isinstance(info.value, VerificationError)


def test_allow_list_rejects_invalid_networks() -> None:
    with pytest.raises(ValueError, match="not an IP network"):
        IpAllowList(["10.0.0.0/33"])
