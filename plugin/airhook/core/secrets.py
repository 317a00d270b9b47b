"""Webhook secrets: generation, a value that never prints itself, and CCAI-style rotation.

Why a wrapper type: a secret passed around as ``str`` ends up in a ``repr``, a traceback or a
log line sooner or later. :class:`Secret` shows ``Secret('…')`` wherever it is printed, refuses to
be pickled, and hands out its value only through :meth:`Secret.reveal`.

Rotation follows the CCAI Platform model (see ``shared/platforms/ccai-platform.md``): a webhook has
a primary and an optional secondary secret, the sender signs with both, the receiver accepts
either. A new primary is never generated directly; instead a new secondary is generated and the two
are swapped. Because every step keeps one secret of the step before, no delivery signed under the
previous state fails under the next one.

Stored secrets are encrypted by a :class:`Cipher`: the store takes one, the shell builds it
(Airflow's Fernet, ``airhook.crypto``), so neither the core nor the store imports Airflow.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _random
from dataclasses import dataclass
from typing import NoReturn, Protocol

from airhook.core.errors import ConfigurationError

__all__ = ["SECRET_PREFIX", "Cipher", "Secret", "SecretPair", "generate_secret"]

#: Prefix of generated secrets, as Standard Webhooks, Svix and RKT spell them.
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
_SECRET_BYTES = 32


class Cipher(Protocol):
    """Symmetric encryption, as ``cryptography.fernet.Fernet`` provides it."""

    def encrypt(self, data: bytes) -> bytes: ...

    def decrypt(self, token: bytes) -> bytes: ...


class Secret:
    """A secret value that never shows itself in ``repr``, ``str``, f-strings or pickles."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str):
            raise TypeError("a secret is a str")
        if not value:
            raise ConfigurationError("a secret may not be empty")
        self._value = value

    def reveal(self) -> str:
        """Return the secret value; call it only where the value is really needed."""
        return self._value

    def __repr__(self) -> str:
        return "Secret('…')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Secret):
            return NotImplemented
        # Digests first so that a length difference does not show in the timing.
        return hmac.compare_digest(
            hashlib.sha256(self._value.encode()).digest(),
            hashlib.sha256(other._value.encode()).digest(),
        )

    def __hash__(self) -> int:
        return hash(hashlib.sha256(self._value.encode()).digest())

    def __reduce__(self) -> NoReturn:
        raise TypeError("Secret values are not pickled: store them encrypted instead")


def generate_secret() -> Secret:
    """Return a new random secret: ``whsec_`` and the base64 of 32 random bytes."""
    raw = _random.token_bytes(_SECRET_BYTES)
    return Secret(SECRET_PREFIX + base64.b64encode(raw).decode("ascii"))


@dataclass(frozen=True)
class SecretPair:
    """The primary and optional secondary secret of one webhook, rotated as CCAI Platform does.

    Every method returns a new pair; an instance never changes.
    """

    primary: Secret
    secondary: Secret | None = None

    @classmethod
    def generate(cls) -> SecretPair:
        """Return a pair with a new primary and no secondary."""
        return cls(primary=generate_secret())

    @property
    def secrets(self) -> tuple[Secret, ...]:
        """The secrets a receiver accepts and a sender signs with, primary first."""
        return (self.primary,) if self.secondary is None else (self.primary, self.secondary)

    def with_new_secondary(self) -> SecretPair:
        """Return this pair with a freshly generated secondary (replacing any old one)."""
        return SecretPair(primary=self.primary, secondary=generate_secret())

    def rotated(self) -> SecretPair:
        """Return the pair with primary and secondary swapped.

        The old primary stays valid as the secondary until it is replaced by
        :meth:`with_new_secondary`, so a sender that has not yet switched keeps working.
        """
        if self.secondary is None:
            raise ConfigurationError("generate a secondary secret before rotating")
        return SecretPair(primary=self.secondary, secondary=self.primary)

    def regeneration_steps(self) -> tuple[SecretPair, SecretPair, SecretPair]:
        """Return the three states that replace both secrets, each to be applied in turn.

        Generate a secondary, rotate, generate a secondary again (the CCAI "generate new secrets"
        procedure). Consecutive states share a secret, so a sender and a receiver one step apart
        still agree; the last state shares nothing with this one.
        """
        first = self.with_new_secondary()
        second = first.rotated()
        third = second.with_new_secondary()
        return first, second, third
