"""The management service layer: the one set of operations the CLI, the REST API and the page
call, so that the three cannot drift.

Plain Python: no HTTP framework, no argument parsing. Services take and return plain values and
the views of :mod:`airhook.manage.views` (JSON-ready through ``as_dict``), and raise airhook's
own errors (:mod:`airhook.core.errors`); an input error is a
:class:`~airhook.core.errors.ConfigurationError` naming its ``field``. A secret is returned once,
by the action that generated it, and never shown again.

::

    Services (container: store, cipher, catalog, repositories, delivery engine)
      .sources()        SourceService        list · get · create · update · delete ·
                                             change_secrets · test (signed, via the receiver)
      .subscriptions()  SubscriptionService  list · get · create · update · delete ·
                                             change_secrets · test (a catalog sample, sent now)
      .events()         EventService         list · get (payload, asset events, DAG runs) ·
                                             redispatch
      .deliveries()     DeliveryService      list · get (attempts) · replay
      .activity()       ActivityService      counts per hour, rejections by reason
      .retention()      RetentionService     prune (or count, a dry run) what retention lets go
      .catalog_info()   CatalogService       platforms, events grouped, setup steps
"""

from __future__ import annotations

from airhook.manage.container import Services, configured_cipher, open_store
from airhook.manage.views import (
    AttemptView,
    Created,
    DeliveryView,
    EventView,
    Page,
    SecretChange,
    SourceView,
    SubscriptionView,
)

__all__ = [
    "AttemptView",
    "Created",
    "DeliveryView",
    "EventView",
    "Page",
    "SecretChange",
    "Services",
    "SourceView",
    "SubscriptionView",
    "configured_cipher",
    "open_store",
]
