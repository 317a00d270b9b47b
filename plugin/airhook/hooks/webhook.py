"""``WebhookHook``: signed outbound HTTP calls through an Airflow connection.

The hook owns everything about the receiving system: where it is (the connection's URL), how it
trusts us (a signing scheme, a bearer token or basic auth), TLS, timeouts, the pooled session,
the destination check that keeps calls away from private networks, and what one attempt's result
means for the next (:meth:`WebhookHook.attempt`). Operators only build the hook and call it.

Secrets stay inside: they are held as :class:`~airhook.core.secrets.Secret`, registered with
Airflow's log masker, scrubbed from anything the receiver echoes back, and never part of a log
line, an exception or a :class:`DeliveryResult`.

Why ~500 lines: the hook is the Airflow-facing owner of a connection, as the http provider's
``HttpHook`` is: URL resolution, headers, one attempt and its consequence, the retry loop and the
scrubbing of answers belong together; connection parsing is :mod:`airhook.hooks.connection`'s and
the HTTP is :mod:`airhook.delivery.client`'s.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from airhook import metrics
from airhook.core.delivery_rules import Outcome, RetryPolicy, classify, honoured_retry_after
from airhook.core.errors import DeliveryError
from airhook.core.redaction import REDACTED, excerpt, redact
from airhook.core.ssrf import DestinationNotAllowedError, DestinationPolicy, redact_url
from airhook.delivery.client import BlockingClient, tls_setting
from airhook.hooks.connection import ConnectionSettings, Sensitive, read_connection

if TYPE_CHECKING:
    import ssl


__all__ = [
    "ALLOWED_METHODS",
    "DEFAULT_RETRY_POLICY",
    "Attempt",
    "DeliveryResult",
    "WebhookHook",
]

#: Methods that carry a body: a webhook delivers something.
ALLOWED_METHODS = frozenset({"POST", "PUT", "PATCH"})
#: A task's own attempts: immediately, then about 5 s, 30 s, 2 min, 10 min and 30 min apart
#: (full jitter). Shorter than subscriptions' 27-hour schedule: a task that waits a day blocks
#: its DAG run; Airflow's task retries (same message id) can extend it.
DEFAULT_RETRY_POLICY = RetryPolicy(schedule=(0, 5, 30, 120, 600, 1800))
#: The most of a response body that is read: enough for any API's JSON answer, bounded so that
#: a hostile endpoint cannot fill the worker's memory.
MAX_RESPONSE_BYTES = 1024 * 1024
#: Response headers never handed on (to XCom, logs): credentials and session state.
_DROPPED_RESPONSE_HEADERS = frozenset(
    {"authorization", "proxy-authorization", "cookie", "set-cookie", "x-webhook-secret"}
)


@dataclass(frozen=True)
class DeliveryResult:
    """What the receiver answered to one call. Holds no secret.

    :param status_code: the HTTP status.
    :param headers: the response headers, without credentials or cookies.
    :param json: the parsed JSON body, or ``None`` when the body is not JSON.
    :param excerpt: the start of the body as text, for logs and delivery records.
    :param latency: seconds from sending the request to reading the answer.
    :param url: the URL called, without query string or credentials.
    :param message_id: the delivery's id (``webhook-id`` and ``Idempotency-Key``).
    """

    status_code: int
    headers: dict[str, str]
    json: Any
    excerpt: str
    latency: float
    url: str
    message_id: str

    @property
    def outcome(self) -> Outcome:
        """What the status means for the delivery (the core's rule, as in the fan-out engine)."""
        return classify(self.status_code)

    @property
    def retry_after(self) -> float | None:
        """Seconds the receiver asked us to wait (429 and 503 only, as in the fan-out engine),
        else ``None``."""
        value = next((v for k, v in self.headers.items() if k.lower() == "retry-after"), None)
        return honoured_retry_after(self.status_code, value)


@dataclass(frozen=True)
class Attempt:
    """One attempt of a delivery and what follows from it.

    :param number: which attempt this was, from 1.
    :param outcome: delivered, retry later, failed for good, or gone (410).
    :param result: the answer, or ``None`` when none arrived (timeout, reset, refused).
    :param error: why the delivery has not succeeded (``None`` when delivered); its
        ``retryable`` says whether a later attempt could.
    :param next_delay: seconds until the next attempt; ``None`` when there is none (delivered,
        failed for good, or the retry schedule is used up).
    """

    number: int
    outcome: Outcome
    result: DeliveryResult | None
    error: DeliveryError | None
    next_delay: float | None


def _origin(url: str) -> tuple[str, str, int | None]:
    parts = urlsplit(url)
    port = parts.port or (
        443 if parts.scheme == "https" else 80 if parts.scheme == "http" else None
    )
    return parts.scheme, (parts.hostname or "").lower(), port


def _is_absolute(url: str) -> bool:
    return "://" in url.split("?", 1)[0]


class WebhookHook(BaseHook):
    """Send signed webhook calls to the endpoint an Airflow connection describes.

    The connection (type ``airhook_webhook``):

    - **host**: the endpoint's full URL (``https://hooks.example.com/services/T0/B0``), or a host
      name with **schema** (``https`` by default), **port** and extra ``path``.
    - **password**: the primary signing secret when extra ``signing`` names a scheme; otherwise
      the bearer token, or with a **login** the basic-auth password.
    - **extra**: ``signing`` (``standard``, ``rkt``, ``ccai``, ``token``, ``hmac`` or ``none``),
      ``signing_options`` (the scheme's options, e.g. ``{"header": "X-Signature"}``),
      ``secondary_secret`` (signed with too, where the scheme allows: rotation), ``auth``
      (``none``, ``bearer``, ``basic``; inferred when absent), ``token`` (a bearer token next to
      a signing secret), ``headers`` (sent with every call), ``timeout`` (seconds; default
      ``[airhook] outbound_timeout_seconds``), ``verify_tls`` (default true), ``ca_bundle`` (a
      CA file to verify against), ``path``.

    :param webhook_conn_id: the connection; ``None`` for unsigned calls to absolute URLs.
    :param timeout: seconds per call (connect and read), overriding the connection's.
    """

    conn_name_attr = "webhook_conn_id"
    default_conn_name = "airhook_webhook_default"
    conn_type = "airhook_webhook"
    hook_name = "Webhook (airhook)"

    def __init__(
        self,
        webhook_conn_id: str | None = default_conn_name,
        *,
        timeout: float | None = None,
    ) -> None:
        super().__init__()
        self.webhook_conn_id = webhook_conn_id
        self.timeout = timeout
        self._settings_cache: ConnectionSettings | None = None
        self._client: BlockingClient | None = None
        self._tls_setting: bool | ssl.SSLContext | None = None

    # --- connection -------------------------------------------------------------------------

    @property
    def settings(self) -> ConnectionSettings:
        """The connection, read on first use (so that building a hook at parse time is free)."""
        if self._settings_cache is None:
            self._settings_cache = self._read_connection()
        return self._settings_cache

    def _read_connection(self) -> ConnectionSettings:
        if self.webhook_conn_id is None:
            return ConnectionSettings()
        conn = self.get_connection(self.webhook_conn_id)
        settings, sensitive = read_connection(conn, f"connection {self.webhook_conn_id!r}")
        self._mask(sensitive)
        return settings

    def _mask(self, sensitive: list[Sensitive]) -> None:
        """Register secrets with Airflow's log masker (belt and braces: we never log them).

        The masker refuses values shorter than ``[logging] min_length_masked_secret`` (5) with
        a warning that names nothing ("Skipping masking for a secret as it's too short"), so
        only values it accepts are handed to it. A value shorter than that is not hidden from
        logs whoever registers it: a sure secret (a password, a token) is named in a warning of
        ours, never its value; a short header value (``X-Env: dev``) is no API key and passes.

        :param sensitive: (where the value came from, the value, whether it is surely a secret).
        """
        from airflow.configuration import conf
        from airflow.sdk.log import mask_secret

        shortest = conf.getint("logging", "min_length_masked_secret", fallback=5)
        for where, value, surely_secret in sensitive:
            if len(value) >= shortest:
                mask_secret(value)
            elif value and surely_secret:
                self.log.warning(
                    "connection %r: %s is shorter than %d characters, too short for Airflow's "
                    "log masker to hide",
                    self.webhook_conn_id,
                    where,
                    shortest,
                )

    def get_conn(self) -> BlockingClient:
        """Return the client, created on first use and reused: connections are pooled.

        airhook's one HTTP client (:mod:`airhook.delivery.client`), as the fan-out engine uses:
        its connections go only to addresses the destination policy has just passed, so a DNS
        answer that changes after :meth:`send`'s check cannot redirect the call.
        """
        if self._client is None:
            self._client = BlockingClient(self.destination_policy())
        return self._client

    def close(self) -> None:
        """Close the pooled connections; the next call opens new ones."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> WebhookHook:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # --- building a call --------------------------------------------------------------------

    def resolve_url(self, url: str | None) -> str:
        """Return the URL to call: ``url`` joined to the connection's, or ``url`` itself.

        An absolute ``url`` must have the connection's origin (scheme, host and port) when the
        connection has a host: a templated URL must not carry the connection's credentials
        somewhere else.
        """
        base = self.settings.base_url
        if url and _is_absolute(url):
            if base and _origin(url) != _origin(base):
                raise ValueError(
                    f"{redact_url(url)} is not at the origin of connection "
                    f"{self.webhook_conn_id!r}; pass a path, or use a connection for that host"
                )
            return url
        if not base:
            raise ValueError(
                f"connection {self.webhook_conn_id!r} has no host: pass an absolute url"
                if self.webhook_conn_id
                else "without a connection the url must be absolute"
            )
        if not url:
            return base
        return base.rstrip("/") + "/" + url.lstrip("/")

    def destination_policy(self) -> DestinationPolicy:
        """The destination rules, from ``[airhook] outbound_allow_networks``.

        Configuration only, on purpose: a DAG author cannot widen what the workers may reach.
        """
        from airhook.config import get_str

        return DestinationPolicy(allow=get_str("outbound_allow_networks").split(","))

    def build_headers(
        self, headers: Mapping[str, Any] | None, body: bytes, *, message_id: str
    ) -> dict[str, str]:
        """Return the request headers: defaults, the connection's, ``headers``, then ours.

        Authentication, signature and id headers come last, so a template can neither drop nor
        spoof them.
        """
        settings = self.settings
        # Case-insensitive merge: a later "content-type" replaces an earlier "Content-Type".
        merged: dict[str, tuple[str, str]] = {"content-type": ("Content-Type", "application/json")}
        layers: list[Mapping[str, Any]] = [settings.headers, headers or {}]
        ours: dict[str, str] = {"webhook-id": message_id, "Idempotency-Key": message_id}
        if settings.authorization is not None:
            ours["Authorization"] = settings.authorization.reveal()
        if settings.scheme is not None:
            ours.update(
                settings.scheme.sign(body, settings.secrets, now=time.time(), message_id=message_id)
            )
        for layer in (*layers, ours):
            for name, value in layer.items():
                merged[str(name).lower()] = (str(name), str(value))
        return dict(merged.values())

    # --- calling ----------------------------------------------------------------------------

    def send(
        self,
        method: str,
        url: str | None,
        headers: Mapping[str, Any] | None = None,
        body: bytes = b"",
        *,
        message_id: str,
        timeout: float | None = None,
    ) -> DeliveryResult:
        """Send one signed call and return the answer, whatever its status.

        The destination is checked (:class:`~airhook.core.ssrf.DestinationPolicy`) before anything
        connects. Redirects are not followed: a redirect could lead past that check.

        :param method: ``POST``, ``PUT`` or ``PATCH``.
        :param url: a path joined to the connection's URL, or an absolute URL.
        :param headers: extra request headers.
        :param body: the exact bytes to send (and sign).
        :param message_id: the delivery's stable id, sent as ``webhook-id`` and
            ``Idempotency-Key``; the same on every attempt.
        :param timeout: seconds for this call; default: the hook's, the connection's, then
            ``[airhook] outbound_timeout_seconds``.
        :raises DestinationNotAllowedError: the URL points at a refused address.
        :raises DeliveryError: no answer arrived (``retryable`` says whether to try again).
        """
        method = method.upper()
        if method not in ALLOWED_METHODS:
            raise ValueError(f"method {method!r} is not one of {sorted(ALLOWED_METHODS)}")
        target = self.resolve_url(url)
        shown = redact_url(target)
        self.destination_policy().check(target)
        request_headers = self.build_headers(headers, body, message_id=message_id)
        seconds = self._timeout(timeout)
        answer = self.get_conn().request(
            method,
            target,
            headers=request_headers,
            body=body,
            timeout=seconds,
            shown=shown,
            read_limit=MAX_RESPONSE_BYTES,
            tls=self._tls(),
        )
        content = answer.body
        latency = answer.latency
        result = DeliveryResult(
            status_code=answer.status,
            headers=self._safe_headers(answer.headers),
            json=self._scrub_json(self._parse_json(answer.header("Content-Type"), content)),
            excerpt=excerpt(content, self.settings.redact),
            latency=latency,
            url=shown,
            message_id=message_id,
        )
        self.log.info(
            "%s %s: %s in %.0f ms (message %s)",
            method,
            shown,
            result.status_code,
            latency * 1000,
            message_id,
        )
        return result

    def attempt(
        self,
        method: str,
        url: str | None,
        headers: Mapping[str, Any] | None = None,
        body: bytes = b"",
        *,
        message_id: str,
        attempts_made: int = 0,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        timeout: float | None = None,
    ) -> Attempt:
        """Make attempt number ``attempts_made + 1`` and decide what comes next.

        Delivered (2xx): done. 410: gone, no further attempt. Other 4xx (but 408, 425, 429):
        failed, no further attempt. 408/425/429, 5xx, timeouts and connection errors: retried
        after the policy's next delay, or ``Retry-After`` on 429/503 when that is longer.

        :raises DestinationNotAllowedError: the URL points at a refused address (nothing sent).
        """
        number = attempts_made + 1
        result: DeliveryResult | None = None
        retry_after: float | None = None
        error: DeliveryError | None = None
        try:
            result = self.send(method, url, headers, body, message_id=message_id, timeout=timeout)
        except DestinationNotAllowedError:
            raise
        except DeliveryError as exc:
            outcome = Outcome.RETRY if exc.retryable else Outcome.FAILED
            error = exc
        else:
            outcome = result.outcome
            retry_after = result.retry_after
            if outcome is not Outcome.DELIVERED:
                gone = " (gone)" if outcome is Outcome.GONE else ""
                error = DeliveryError(
                    result.url,
                    result.status_code,
                    f"answered {result.status_code}{gone}",
                    retryable=outcome is Outcome.RETRY,
                )
        metrics.incr(f"airhook.webhook.{outcome.value}")
        if result is not None:
            metrics.timing("airhook.webhook.attempt_seconds", result.latency)
        next_delay = None
        if outcome is Outcome.RETRY:
            next_delay = retry_policy.next_delay(number, retry_after=retry_after)
            if next_delay is None and error is not None:
                last = error
                error = DeliveryError(
                    last.url,
                    last.status_code,
                    f"gave up after {number} attempts",
                    retryable=True,
                )
                error.__cause__ = last
        return Attempt(number, outcome, result, error, next_delay)

    def deliver(
        self,
        method: str,
        url: str | None,
        headers: Mapping[str, Any] | None = None,
        body: bytes = b"",
        *,
        message_id: str,
        retry_policy: RetryPolicy = DEFAULT_RETRY_POLICY,
        timeout: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> Attempt:
        """Attempt until delivered or given up, waiting in this process between attempts.

        Returns the successful attempt (``attempt.number`` is how many were made).

        :raises DeliveryError: the delivery failed for good or the schedule is used up.
        """
        made = 0
        while True:
            attempt = self.attempt(
                method,
                url,
                headers,
                body,
                message_id=message_id,
                attempts_made=made,
                retry_policy=retry_policy,
                timeout=timeout,
            )
            if attempt.outcome is Outcome.DELIVERED:
                return attempt
            if attempt.next_delay is None:
                assert attempt.error is not None
                raise attempt.error
            self.log.warning(
                "attempt %d of %s failed (%s); next in %.1f s",
                attempt.number,
                message_id,
                attempt.error,
                attempt.next_delay,
            )
            sleep(attempt.next_delay)
            made = attempt.number

    # --- answers ----------------------------------------------------------------------------

    def _timeout(self, timeout: float | None) -> float:
        for candidate in (timeout, self.timeout, self.settings.timeout):
            if candidate is not None:
                return float(candidate)
        from airhook.config import get_float

        return get_float("outbound_timeout_seconds")

    def _tls(self) -> bool | ssl.SSLContext:
        """The connection's TLS setting, built once (a CA bundle is read from disk)."""
        if self._tls_setting is None:
            self._tls_setting = tls_setting(self.settings.verify)
            if self._tls_setting is False:
                self.log.warning(
                    "connection %r: TLS certificates are not verified (extra verify_tls is "
                    "false): anyone on the path can read and change these calls",
                    self.webhook_conn_id,
                )
        return self._tls_setting

    @staticmethod
    def _parse_json(content_type: str | None, content: bytes) -> Any:
        kind = content_type or ""
        if "json" not in kind.lower() and content.lstrip()[:1] not in (b"{", b"["):
            return None
        try:
            return json.loads(content)
        except ValueError:
            return None

    def _scrub(self, text: str) -> str:
        """``text`` with every secret of the connection replaced (a receiver may echo them)."""
        return redact(text, self.settings.redact, REDACTED)

    def _scrub_json(self, value: Any) -> Any:
        if isinstance(value, str):
            return self._scrub(value)
        if isinstance(value, list):
            return [self._scrub_json(item) for item in value]
        if isinstance(value, dict):
            return {self._scrub(str(k)): self._scrub_json(v) for k, v in value.items()}
        return value

    def _safe_headers(self, headers: Mapping[str, str]) -> dict[str, str]:
        return {
            name: self._scrub(value)
            for name, value in headers.items()
            if name.lower() not in _DROPPED_RESPONSE_HEADERS
        }
