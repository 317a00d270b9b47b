"""What airhook.airflow_internals assumes of Airflow's non-public API, pinned.

A new Airflow release that moves any of these fails here, by name, before the dispatcher or the
queue keeper fails in a running deployment.
"""

from __future__ import annotations

import inspect


def test_the_asset_tables_have_the_columns_used() -> None:
    from airflow.models.asset import (
        AssetDagRunQueue,
        AssetEvent,
        AssetModel,
        DagScheduleAssetReference,
        association_table,
    )

    assert {"asset_id", "target_dag_id", "created_at"} <= set(AssetDagRunQueue.__table__.c.keys())
    assert {"id", "asset_id", "extra", "timestamp"} <= set(AssetEvent.__table__.c.keys())
    assert {"id", "name"} <= set(AssetModel.__table__.c.keys())
    assert {"asset_id", "dag_id"} <= set(DagScheduleAssetReference.__table__.c.keys())
    assert association_table.name == "dagrun_asset_event"
    assert {"dag_run_id", "event_id"} <= set(association_table.c.keys())


def test_the_asset_manager_has_the_calls_used() -> None:
    from airflow.assets.manager import AssetManager

    assert "callback_sink" in inspect.signature(AssetManager.register_asset_change).parameters
    assert callable(AssetManager.notify_asset_changed)
    assert callable(AssetManager.nofity_asset_event_emitted)  # sic: Airflow's spelling


def test_the_scheduler_still_builds_asset_runs_as_the_queue_keeper_assumes() -> None:
    from airflow.jobs.scheduler_job_runner import SchedulerJobRunner

    # The keeper's reasoning (airhook.requeue): a run consumes the events after the DAG's
    # previous asset-triggered run up to the newest queue row it read, then deletes those rows.
    source = inspect.getsource(SchedulerJobRunner._create_dag_runs_asset_triggered)
    assert "previous_dag_run_run_after" in source
    assert "delete(AssetDagRunQueue)" in source


def test_metrics_and_the_fernet_are_where_they_are_looked_up() -> None:
    from airflow.models.crypto import get_fernet
    from airflow.observability.metrics import stats_utils
    from airflow.observability.stats import Stats, initialize
    from airflow.utils.session import create_session

    assert callable(Stats.incr)
    assert callable(initialize)
    assert callable(stats_utils.get_stats_factory)
    assert callable(get_fernet)
    assert callable(create_session)
