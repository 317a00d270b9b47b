"""What a person picks from when adding a webhook: platforms, their events, and setup steps.

The events come from the event catalog (``airhook.core.catalog``), grouped by the part of their
name before the first dot (``insight.summary`` is in ``insight``), so a form can offer a group's
``insight.*`` beside each event. The setup steps say, per platform, where its own dashboard takes
the receiver URL and the secret airhook generated: summarised from the platforms' webhook
documents (``shared/platforms/``), for the sender's side of each.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from airhook.core.catalog import Catalog
from airhook.core.profiles import PROFILES, get_profile
from airhook.core.signing import SCHEMES

__all__ = ["SETUP_STEPS", "TITLES", "CatalogService"]

#: Titles of the generic profiles, which have no catalog platform.
TITLES = {"standard": "Standard Webhooks (Svix)", "hmac": "Generic HMAC sender"}

#: Per profile: where to paste the receiver URL and the secret, in the sender's own words.
SETUP_STEPS: dict[str, tuple[str, ...]] = {
    "caleida": (
        "In the Caleida dashboard, open Integrations > Webhook and click '+ Add Webhook'.",
        "Paste the receiver URL as the webhook URL and give the webhook a unique name.",
        "Paste the secret airhook generated as the webhook's secret: Caleida sends it with "
        "every call and airhook compares it.",
        "Tick the events this source accepts, then click Add to switch the webhook on.",
    ),
    "ccai": (
        "In the CCAI Platform portal, open Settings > Developer Settings and find the "
        "Webhooks pane.",
        "Switch the Webhooks toggle on and paste the receiver URL as the webhook URL.",
        "CCAI Platform generates the secrets: click Generate for the primary secret and give "
        "it to this source as its secret (airhook then keeps no secret of its own making).",
        "Generate the secondary secret too and add it here with 'set-secondary'; click Save. "
        "To change secrets later: generate a new secondary in the portal, set it here, then "
        "rotate in both places.",
    ),
    "eev": (
        "In eeV.ai, open Settings > Webhooks and click 'Add Webhook'.",
        "Give it a name, paste the receiver URL, choose POST, and select the events to send.",
        "Paste the secret airhook generated as the webhook secret, so that every call is "
        "signed, and give this source the HMAC layout eeV.ai signs with as scheme options "
        "(e.g. header=X-Eev-Signature, timestamp_header=X-Eev-Timestamp, "
        "content={timestamp}.{body}); keep SSL verification on.",
        "Click 'Test webhook connection': the test event appears among this source's recorded "
        "events. Then save the webhook.",
    ),
    "rkt": (
        "Create the endpoint with RKT's management API: POST /api/webhooks-config with the "
        "receiver URL as 'url', the events (or '*'), and a chatbotId to limit it to one chatbot.",
        "RKT answers with its signing secret (whsec_…), shown once: give it to this source as "
        "its secret, so that airhook verifies X-RKT-Signature with it.",
        "RKT disables the endpoint after 10 failed calls in a row; switch it back on from RKT's "
        "dashboard once the cause is fixed.",
    ),
    "standard": (
        "In the sender's webhook settings, add an endpoint with the receiver URL.",
        "Paste the secret airhook generated (whsec_…) as the endpoint's signing secret: the "
        "sender signs each call with webhook-id, webhook-timestamp and webhook-signature.",
        "Choose the event types to send, matching this source's event patterns.",
    ),
    "hmac": (
        "In the sender's webhook settings, paste the receiver URL as the endpoint.",
        "Paste the secret airhook generated as the sender's signing secret, and set this "
        "source's scheme options to the header (and prefix) the sender signs in, e.g. "
        "header=X-Hub-Signature-256, prefix=sha256=.",
        "The event name is read from the body's 'event' field unless the event_field option "
        "names another.",
    ),
}


def _group(name: str) -> str:
    """The group of an event name: the part before its first dot (or the whole name)."""
    return name.split(".", 1)[0]


@dataclass(frozen=True)
class CatalogService:
    """The platforms and events a source or subscription can be made for."""

    catalog: Catalog

    def steps(self, profile: str) -> list[str]:
        """Where a platform of ``profile`` takes the receiver URL and the secret."""
        return list(SETUP_STEPS.get(profile, ()))

    def platforms(self) -> list[dict[str, Any]]:
        """Every profile, with its title, default scheme, events and setup steps."""
        found = []
        for profile_name in PROFILES:
            profile = get_profile(profile_name, self.catalog)
            title = (
                self.catalog.platform(profile.platform).title
                if profile.platform
                else TITLES[profile_name]
            )
            events = (
                [
                    {"name": event.name, "group": _group(event.name), "kind": event.kind}
                    for event in sorted(self.catalog.events(profile.platform), key=lambda e: e.name)
                ]
                if profile.platform
                else []
            )
            found.append(
                {
                    "profile": profile_name,
                    "title": title,
                    "scheme": profile.scheme,
                    "events": events,
                    "setup_steps": self.steps(profile_name),
                }
            )
        return found

    def as_dict(self) -> dict[str, Any]:
        """``{"platforms": [...], "schemes": [...]}``: what a form offers."""
        return {"platforms": self.platforms(), "schemes": sorted(SCHEMES)}
