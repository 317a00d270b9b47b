"""The ``[airhook]`` configuration section: each option declared once, with its default.

Options are read from Airflow's configuration (``airflow.cfg`` or ``AIRFLOW__AIRHOOK__<OPTION>``)
with the default declared here, so a value is the same whether or not Airflow has registered the
provider's configuration yet. ``provider_info.get_provider_info`` publishes the same table.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

__all__ = ["OPTIONS", "Option", "database_url", "get_bool", "get_float", "get_int", "get_str"]


@dataclass(frozen=True)
class Option:
    """One ``[airhook]`` option."""

    name: str
    type: str  # "string" | "integer" | "float" | "boolean"
    default: str
    description: str
    example: str | None = None


OPTIONS: tuple[Option, ...] = (
    Option(
        "database_url",
        "string",
        "",
        "SQLAlchemy URL of the airhook store (sources, inbox, deliveries). Empty means an SQLite "
        "file airhook.db in AIRFLOW_HOME, fine on one machine. When Airflow runs on several "
        "machines, point every component at one PostgreSQL database.",
        "postgresql+psycopg2://airhook:***@db:5432/airhook",
    ),
    Option(
        "max_body_bytes",
        "integer",
        "1048576",
        "Largest delivery body the receiver reads (413 beyond it), unless a source sets its own.",
    ),
    Option(
        "timestamp_tolerance_seconds",
        "integer",
        "300",
        "How far a signed timestamp may be from the receiver's clock, either way, before the "
        "delivery is refused as stale (401).",
    ),
    Option(
        "source_cache_seconds",
        "float",
        "1.0",
        "How long the receiver trusts its in-memory copy of the sources before checking the "
        "store for changes: a rotated secret or a new source takes effect within this time.",
    ),
    Option(
        "dispatcher_enabled",
        "boolean",
        "True",
        "Whether API server processes run the dispatcher that turns recorded events into asset "
        "events. One process at a time holds the dispatcher lease; the others stand by.",
    ),
    Option(
        "dispatch_poll_seconds",
        "float",
        "0.2",
        "How often the dispatcher looks for events recorded by other processes (it is woken at "
        "once for events its own process records).",
    ),
    Option(
        "dispatch_batch_size",
        "integer",
        "500",
        "Most events turned into asset events in one Airflow metadata DB transaction.",
    ),
    Option(
        "backpressure_backlog",
        "integer",
        "20000",
        "Recorded events not yet dispatched (across every process sharing the store) from which "
        "the receiver answers 503 with Retry-After instead of recording more, until the "
        "dispatcher catches up. Counted every backpressure_check_seconds, so the bound may be "
        "passed by what arrives in that time. 0: no bound.",
    ),
    Option(
        "backpressure_writer_queue",
        "integer",
        "2000",
        "Deliveries waiting for this process's store writer from which it answers 503 with "
        "Retry-After: the store is not keeping up, and the sender would otherwise wait until it "
        "times out. 0: no bound.",
    ),
    Option(
        "backpressure_retry_after_seconds",
        "integer",
        "30",
        "The Retry-After (seconds) of a 503 answered under backpressure.",
    ),
    Option(
        "backpressure_check_seconds",
        "float",
        "1.0",
        "How often each receiving process counts the undispatched backlog.",
    ),
    Option(
        "outbound_allow_networks",
        "string",
        "",
        "Comma-separated networks (CIDR) that outbound webhook calls may reach although they are "
        "private, loopback or link-local. Empty: only public addresses.",
        "127.0.0.1/32,10.20.0.0/16",
    ),
    Option(
        "outbound_timeout_seconds",
        "float",
        "10",
        "Default timeout of one outbound call (connect and read), unless a connection or a "
        "subscription sets its own.",
    ),
    Option(
        "render_timeout_seconds",
        "float",
        "5",
        "Longest one outbound template (a subscription's or a WebhookOperator's body) may take "
        "to render, wall clock. Past it, rendering fails naming the template: nested loops that "
        "would run for hours stop instead of holding a worker.",
    ),
    Option(
        "disable_after_failures",
        "integer",
        "10",
        "Consecutive failed deliveries after which a subscription is disabled (its events are "
        "kept for replay). A successful delivery resets the count.",
    ),
    Option(
        "sender_poll_seconds",
        "float",
        "5",
        "How often each process running the receiver (API server processes, the standalone "
        "receiver) sends the outbound deliveries that are due: retries whose time has come and "
        "deliveries whose sender stopped mid-way. Claims give each delivery to one sender. "
        "0 starts no background sender: due deliveries then wait for the publishing task, a "
        "replay or 'airhook deliveries deliver-due'.",
    ),
    Option(
        "retention_events_days",
        "integer",
        "30",
        "Days a recorded inbound event is kept once it has been dispatched: it goes when both "
        "its receipt and its latest dispatch are older. An event not dispatched yet is never "
        "pruned. After that, its detail, its re-dispatch and AirhookInboxHook.get_event are "
        "gone, and a delivery of it sent again would be recorded as new: keep events longer "
        "than any platform retries. 0 keeps them for ever.",
    ),
    Option(
        "retention_deliveries_days",
        "integer",
        "30",
        "Days a delivered outbound delivery (with its attempt log) is kept after it was "
        "delivered. Dead letters (failed or dead) are kept until replayed or purged on purpose "
        "('airhook prune --dead-letters'); pending, sending and paused deliveries are never "
        "pruned. 0 keeps delivered ones for ever.",
    ),
    Option(
        "prune_interval_seconds",
        "float",
        "300",
        "How often the receiving processes (API server processes, the standalone receiver) "
        "prune what the retention options let go, in the background: one process at a time "
        "(a lease), in batches with a pause between, so the receiver keeps recording. 0 starts "
        "no background pruning: 'airhook prune' then does it when run.",
    ),
    Option(
        "prune_batch_size",
        "integer",
        "1000",
        "Most events or deliveries one pruning transaction deletes (with their attempts). "
        "Smaller batches hold SQLite's write lock, which the receiver waits for, for less time "
        "each.",
    ),
    Option(
        "sender_batch_size",
        "integer",
        "500",
        "Most due deliveries the background sender claims and sends in one round; a round's "
        "requests finish before the process can stop, so a smaller batch stops sooner, a "
        "larger one drains a backlog with fewer rounds.",
    ),
    Option(
        "payload_in_extra_max_bytes",
        "integer",
        "65536",
        "Largest payload copied into the asset event's extra. Larger payloads stay in the store "
        "only; tasks read them with AirhookInboxHook.get_event(extra['airhook_event_id']).",
    ),
)
_BY_NAME = {option.name: option for option in OPTIONS}


def _raw(name: str) -> str:
    from airflow.configuration import conf

    return conf.get("airhook", name, fallback=_BY_NAME[name].default)


def get_str(name: str) -> str:
    """Return a string option."""
    return _raw(name)


def get_int(name: str) -> int:
    """Return an integer option."""
    return int(_raw(name))


def get_float(name: str) -> float:
    """Return a float option."""
    return float(_raw(name))


def get_bool(name: str) -> bool:
    """Return a boolean option."""
    return _raw(name).strip().lower() in {"true", "1", "yes", "on"}


def database_url() -> str:
    """Return the store's URL: the configured one, or SQLite under AIRFLOW_HOME."""
    configured = get_str("database_url").strip()
    if configured:
        return configured
    from airflow.configuration import AIRFLOW_HOME

    return "sqlite:///" + os.path.join(AIRFLOW_HOME, "airhook.db")


def provider_config() -> dict[str, Any]:
    """Return the options in the shape of provider info's ``config`` section."""
    return {
        "airhook": {
            "description": "airhook: webhooks for Airflow (receiver, dispatcher, store).",
            "options": {
                option.name: {
                    "description": option.description,
                    "version_added": "0.1.0",
                    "type": option.type,
                    "example": option.example,
                    "default": option.default,
                }
                for option in OPTIONS
            },
        }
    }
