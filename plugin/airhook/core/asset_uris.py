"""The asset URIs airhook dispatches events to. Pure: the dispatcher and ``airhook.on`` share it.

Every recorded event becomes an asset event on up to three assets, so that a DAG can listen as
broadly or narrowly as it likes:

==============================  =========================================================
``airhook://<source>``          every event of one source
``airhook://<source>/<event>``  one event of one source, as the platform names it
``airhook-kind://<kind>``       one canonical kind, from every source (catalog platforms)
==============================  =========================================================

Each is also the asset's ``name``; Airflow normalises the URI it stores (a bare
``airhook://rkt`` gains a trailing ``/``), so the dispatcher finds assets by name. Only assets some
DAG references exist in Airflow; the dispatcher writes to those alone.
"""

from __future__ import annotations

__all__ = ["KIND_SCHEME", "SOURCE_SCHEME", "event_uri", "kind_uri", "source_uri", "uris_for"]

SOURCE_SCHEME = "airhook"
KIND_SCHEME = "airhook-kind"


def source_uri(source: str) -> str:
    """The asset of every event of ``source``."""
    return f"{SOURCE_SCHEME}://{source}"


def event_uri(source: str, event: str) -> str:
    """The asset of one event of ``source``."""
    return f"{SOURCE_SCHEME}://{source}/{event}"


def kind_uri(kind: str) -> str:
    """The asset of one canonical kind across sources."""
    return f"{KIND_SCHEME}://{kind}"


def uris_for(source: str, event: str, kind: str | None) -> list[str]:
    """Every asset URI an event of ``source`` is dispatched to."""
    uris = [source_uri(source), event_uri(source, event)]
    if kind is not None:
        uris.append(kind_uri(kind))
    return uris
