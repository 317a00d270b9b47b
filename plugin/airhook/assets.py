"""Schedule DAGs on webhook events: ``schedule=airhook.on("caleida", "insight.*")``.

Patterns are expanded against the catalog when the DAG file is parsed, into one asset per
matching event (combined with ``|``), so the scheduler sees ordinary assets.
"""

from __future__ import annotations

from collections.abc import Sequence

from airflow.sdk import Asset
from airflow.sdk.definitions.asset import AssetAny

from airhook.core.asset_uris import event_uri, kind_uri, source_uri
from airhook.core.catalog import CANONICAL_KINDS, load_catalog, matches
from airhook.core.errors import ConfigurationError

__all__ = ["event_asset", "kind_asset", "on", "on_kind", "source_asset"]


def _asset(uri: str) -> Asset:
    return Asset(uri=uri, name=uri, group="airhook")


def source_asset(source: str) -> Asset:
    """The asset updated by every event of ``source``."""
    return _asset(source_uri(source))


def event_asset(source: str, event: str) -> Asset:
    """The asset updated by one event of ``source``."""
    return _asset(event_uri(source, event))


def kind_asset(kind: str) -> Asset:
    """The asset updated by one canonical kind, whichever source it comes from."""
    return _asset(kind_uri(kind))


def _any(assets: list[Asset]) -> Asset | AssetAny:
    return assets[0] if len(assets) == 1 else AssetAny(*assets)


def on(
    source: str, events: str | Sequence[str] = "*", *, platform: str | None = None
) -> Asset | AssetAny:
    """Return what to schedule on for events of ``source`` matching ``events`` (``*`` allowed).

    ``"*"`` is the source's own asset. Other patterns are expanded against the event names of
    the catalog (of ``platform`` only, if given); a name without ``*`` that no platform defines
    is taken as it is, for sources with the generic ``standard`` and ``hmac`` profiles.
    """
    patterns = [events] if isinstance(events, str) else list(events)
    if "*" in patterns:
        return source_asset(source)
    catalog = load_catalog()
    known = sorted({e.name for e in catalog.events(platform)})
    names: list[str] = []
    for pattern in patterns:
        found = [name for name in known if matches(pattern, name)]
        if not found and "*" not in pattern:
            found = [pattern]
        if not found:
            raise ConfigurationError(f"no event matches {pattern!r}")
        names.extend(name for name in found if name not in names)
    return _any([event_asset(source, name) for name in names])


def on_kind(kinds: str | Sequence[str]) -> Asset | AssetAny:
    """Return what to schedule on for canonical kinds (``*`` allowed), from every source."""
    patterns = [kinds] if isinstance(kinds, str) else list(kinds)
    found = [kind for kind in CANONICAL_KINDS if matches(patterns, kind)]
    if not found:
        raise ConfigurationError(f"no canonical kind matches {patterns!r}")
    return _any([kind_asset(kind) for kind in found])
