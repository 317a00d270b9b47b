"""airhook.core.secrets: generation, a value that never shows itself, CCAI-style rotation."""

from __future__ import annotations

import base64
import itertools
import logging
import pickle

import pytest

from airhook.core.secrets import Secret, SecretPair, generate_secret
from airhook.core.signing import CcaiScheme, StandardScheme

NOW = 1_774_539_000
BODY = b'{"event_type":"chat.created"}'


def test_generated_secret_is_whsec_and_32_random_bytes() -> None:
    value = generate_secret().reveal()
    assert value.startswith("whsec_")
    assert len(base64.b64decode(value.removeprefix("whsec_"), validate=True)) == 32


def test_generated_secrets_differ() -> None:
    assert len({generate_secret().reveal() for _ in range(100)}) == 100


def test_secret_never_shows_its_value() -> None:
    secret = Secret("hunter2-very-secret")
    pair = SecretPair(primary=secret, secondary=Secret("second-very-secret"))
    for text in (repr(secret), str(secret), f"{secret}", f"{secret!r:>40}", repr(pair), str(pair)):
        assert "very-secret" not in text


def test_secret_never_shows_in_log_lines(caplog: pytest.LogCaptureFixture) -> None:
    secret = Secret("hunter2-very-secret")
    with caplog.at_level(logging.INFO):
        logging.getLogger("airhook.test").info("configured %s and %r", secret, secret)
    assert "very-secret" not in caplog.text
    assert "Secret(" in caplog.text


def test_secret_refuses_pickling() -> None:
    with pytest.raises(TypeError, match="not pickled"):
        pickle.dumps(Secret("hunter2"))


def test_secret_equality_compares_values() -> None:
    assert Secret("a") == Secret("a")
    assert Secret("a") != Secret("b")
    assert len({Secret("a"), Secret("a")}) == 1


@pytest.mark.parametrize("value", ["", None, b"bytes"])
def test_secret_rejects_empty_and_non_text(value: object) -> None:
    with pytest.raises((ValueError, TypeError)):
        Secret(value)  # type: ignore[arg-type]


def test_pair_starts_with_primary_only() -> None:
    pair = SecretPair.generate()
    assert pair.secondary is None
    assert pair.secrets == (pair.primary,)


def test_rotation_needs_a_secondary() -> None:
    with pytest.raises(ValueError, match="generate a secondary"):
        SecretPair.generate().rotated()


def test_rotation_swaps_primary_and_secondary() -> None:
    pair = SecretPair.generate().with_new_secondary()
    rotated = pair.rotated()
    assert rotated.primary == pair.secondary
    assert rotated.secondary == pair.primary


def test_new_secondary_keeps_primary() -> None:
    pair = SecretPair.generate().with_new_secondary()
    renewed = pair.with_new_secondary()
    assert renewed.primary == pair.primary
    assert renewed.secondary not in (pair.primary, pair.secondary)


def test_regeneration_replaces_both_secrets() -> None:
    start = SecretPair.generate().with_new_secondary()
    final = start.regeneration_steps()[-1]
    assert set(final.secrets).isdisjoint(start.secrets)
    assert len(final.secrets) == 2


@pytest.mark.parametrize("scheme", [StandardScheme(), CcaiScheme()], ids=["standard", "ccai"])
@pytest.mark.parametrize("start_with_secondary", [False, True])
def test_no_delivery_fails_while_both_secrets_are_regenerated(
    scheme: StandardScheme | CcaiScheme, start_with_secondary: bool
) -> None:
    # The sender and the receiver apply each step at different moments. Whichever is ahead, a
    # delivery signed with the sender's current secrets verifies with the receiver's current ones.
    start = SecretPair.generate()
    if start_with_secondary:
        start = start.with_new_secondary()
    states = [start, *start.regeneration_steps()]
    for before, after in itertools.pairwise(states):
        for sender, receiver in ((before, after), (after, before), (after, after)):
            headers = scheme.sign(BODY, sender.secrets, now=NOW)
            scheme.verify(headers, BODY, receiver.secrets, now=NOW)


def test_sender_signing_with_primary_only_survives_regeneration() -> None:
    # Schemes with one signature (rkt, token, hmac) sign with the primary alone: the receiver
    # still accepts it one step later, because each step keeps the previous primary.
    start = SecretPair.generate().with_new_secondary()
    states = [start, *start.regeneration_steps()]
    for before, after in itertools.pairwise(states):
        headers = StandardScheme().sign(BODY, [before.primary], now=NOW)
        StandardScheme().verify(headers, BODY, after.secrets, now=NOW)
