"""Provider metadata for Airflow (read through the ``apache_airflow_provider`` entry point)."""

from __future__ import annotations

from typing import Any

from airhook import __version__
from airhook.config import provider_config


def get_provider_info() -> dict[str, Any]:
    """Return airhook's provider info, in the shape of Airflow's ``provider_info.schema.json``."""
    return {
        "package-name": "airflow-provider-airhook",
        "name": "airhook",
        "description": (
            "Webhooks for Apache Airflow 3: verified inbound platform events as asset events "
            "and DAG runs; signed, templated, reliable outbound calls."
        ),
        "versions": [__version__],
        "config": provider_config(),
        # Declarative connection UI (Airflow 3.2+ deprecates the hook methods for it).
        "connection-types": [
            {
                "hook-class-name": "airhook.hooks.webhook.WebhookHook",
                "connection-type": "airhook_webhook",
                "hook-name": "Webhook (airhook)",
                "ui-field-behaviour": {
                    "hidden-fields": [],
                    "relabeling": {
                        "host": "URL or host",
                        "schema": "URL scheme",
                        "password": "Signing secret, bearer token or password",
                    },
                    "placeholders": {
                        "host": "https://hooks.example.com/services/T000/B000",
                        "schema": "https",
                        "login": "basic auth only",
                        "extra": '{"signing": "standard", "secondary_secret": "whsec_..."}',
                    },
                },
                "conn-fields": {
                    "signing": {
                        "label": "Signing scheme",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["none", "standard", "rkt", "ccai", "token", "hmac", None],
                        },
                    },
                    "secondary_secret": {
                        "label": "Secondary signing secret",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "auth": {
                        "label": "Auth",
                        "schema": {
                            "type": ["string", "null"],
                            "enum": ["none", "bearer", "basic", None],
                        },
                    },
                    "token": {
                        "label": "Bearer token (next to a signing secret)",
                        "schema": {"type": ["string", "null"], "format": "password"},
                    },
                    "timeout": {
                        "label": "Timeout (seconds)",
                        "schema": {"type": ["number", "null"]},
                    },
                    "verify_tls": {
                        "label": "Verify TLS",
                        "schema": {"type": ["boolean", "null"], "default": True},
                    },
                },
            }
        ],
    }
