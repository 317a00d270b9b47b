"""The one place the management services are built: store, cipher, repositories, engine.

The CLI, the REST API and the page reach airhook's state only through the services of
:mod:`airhook.manage`; this container builds what those services share, once per process, from
Airflow's configuration (:meth:`Services.from_config`) or from parts a test or a benchmark
hands in (the constructor). What only the API server can do (read which asset events and DAG
runs an event became, in Airflow's metadata DB) is a callable passed in, so a service never
imports Airflow's internals itself.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

from airhook.core.catalog import Catalog, load_catalog

if TYPE_CHECKING:
    from airhook.core.secrets import Cipher
    from airhook.delivery import DeliveryEngine
    from airhook.manage.activity import ActivityService
    from airhook.manage.catalog import CatalogService
    from airhook.manage.deliveries import DeliveryService
    from airhook.manage.events import EventService
    from airhook.manage.retention import RetentionService
    from airhook.manage.sources import SourceService
    from airhook.manage.subscriptions import SubscriptionService
    from airhook.store.engine import Store
    from airhook.store.inbox import InboxRepository
    from airhook.store.sources import SourceRepository

__all__ = ["AssetEventsOf", "DagsScheduledOn", "Services", "configured_cipher", "open_store"]

#: ``(event id, received at) -> [{"asset", "timestamp", "dag_runs": [...]}]``
AssetEventsOf = Callable[[str, datetime], list[dict[str, Any]]]
#: ``(asset names) -> DAG ids scheduled on any of them``
DagsScheduledOn = Callable[[Sequence[str]], list[str]]


def configured_cipher() -> Cipher:
    """Airflow's Fernet, which encrypts every stored secret (a SetupError without a key)."""
    from airhook.crypto import airflow_cipher

    return airflow_cipher()


def open_store() -> Store:
    """The store of ``[airhook] database_url``, migrated to the current schema."""
    from airhook.store import get_store
    from airhook.store.migrate import upgrade

    store = get_store()
    upgrade(store)
    return store


def configured_base_url() -> str:
    """``[api] base_url``: where the API server is reached from outside (may be empty)."""
    from airflow.configuration import conf

    return str(conf.get("api", "base_url", fallback="") or "")


class Services:
    """What every management service shares, built once.

    :param store: the airhook store.
    :param cipher: encrypts and decrypts the stored secrets.
    :param catalog: the event catalog (default: the shipped one).
    :param base_url: where the API server is reached, for receiver URLs (``[api] base_url``).
    :param asset_events_of: reads what an event became in Airflow (API server only); without
        it an event's detail lists no asset events.
    :param dags_scheduled_on: reads which DAGs schedule on assets (API server only).
    :param rejections: this process's receiver rejections, ``{source: {reason: n}}``.
    :param background_sender: whether a background sender runs in this process (the API
        server's), to which a large replay can be left.
    """

    def __init__(
        self,
        store: Store,
        cipher: Cipher,
        *,
        catalog: Catalog | None = None,
        base_url: str = "",
        asset_events_of: AssetEventsOf | None = None,
        dags_scheduled_on: DagsScheduledOn | None = None,
        rejections: Callable[[], dict[str, dict[str, int]]] | None = None,
        background_sender: Callable[[], bool] | None = None,
    ) -> None:
        from airhook.store.inbox import InboxRepository
        from airhook.store.sources import SourceRepository

        self.store = store
        self.cipher = cipher
        self.catalog = catalog or load_catalog()
        self.base_url = base_url
        self.asset_events_of = asset_events_of
        self.dags_scheduled_on = dags_scheduled_on
        self.rejections = rejections or dict
        self.background_sender = background_sender or (lambda: False)
        self.source_repository: SourceRepository = SourceRepository(store, cipher)
        self.inbox: InboxRepository = InboxRepository(store)
        self._engine: DeliveryEngine | None = None

    @classmethod
    def from_config(cls, **parts: Any) -> Services:
        """Build from Airflow's configuration: ``[core] fernet_key``, ``[airhook]
        database_url``, ``[api] base_url`` (the cipher first: a missing key is reported
        before the store is opened). ``parts``: the callables of the constructor."""
        cipher = configured_cipher()
        parts.setdefault("base_url", configured_base_url())
        return cls(open_store(), cipher, **parts)

    @property
    def engine(self) -> DeliveryEngine:
        """The delivery engine: subscriptions, the outbox, sending (configured on first use)."""
        if self._engine is None:
            from airhook.delivery import DeliveryEngine

            self._engine = DeliveryEngine(self.store, self.cipher, catalog=self.catalog)
        return self._engine

    # --- the services --------------------------------------------------------------------------

    def sources(self, base_url: str | None = None) -> SourceService:
        """Inbound sources; ``base_url`` overrides the configured one for receiver URLs."""
        from airhook.manage.sources import SourceService

        return SourceService(self, self.base_url if base_url is None else base_url)

    def subscriptions(self) -> SubscriptionService:
        """Outbound subscriptions."""
        from airhook.manage.subscriptions import SubscriptionService

        return SubscriptionService(self)

    def deliveries(self) -> DeliveryService:
        """Outbound deliveries and their attempts."""
        from airhook.manage.deliveries import DeliveryService

        return DeliveryService(self)

    def events(self) -> EventService:
        """Recorded inbound events."""
        from airhook.manage.events import EventService

        return EventService(self)

    def activity(self) -> ActivityService:
        """Counts over time, for the charts."""
        from airhook.manage.activity import ActivityService

        return ActivityService(self)

    def retention(self) -> RetentionService:
        """Pruning what retention lets go, or counting it (a dry run)."""
        from airhook.manage.retention import RetentionService

        return RetentionService(self)

    def catalog_info(self) -> CatalogService:
        """Platforms, events and setup steps."""
        from airhook.manage.catalog import CatalogService

        return CatalogService(self.catalog)
