"""The example pipelines' analytics table ``insights``, and the database it lives in.

Not a DAG: ``airhook_insight_export`` writes the table, ``airhook_insight_digest`` reads it.
Airflow puts the DAG folder on ``sys.path``, so both import this module by name; copy it along
with them.

Where the table is: the Airflow connection ``airhook_analytics``, read with SQLAlchemy itself
(the common SQL provider that comes with Airflow has no hook for an arbitrary SQLAlchemy URL
without a database's own provider). The URL is the connection's extra ``sqlalchemy_url`` when it
has one, else built from its fields (``AIRFLOW_CONN_AIRHOOK_ANALYTICS=postgresql://u:p@db/analytics``
works); without the connection, an SQLite file: ``$AIRFLOW_HOME/analytics.db``.

One row per insight, keyed by the airhook event id, written with ``INSERT … ON CONFLICT DO
NOTHING``: a re-delivery, a re-dispatch or a re-run never adds a second row.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import sqlalchemy as sa

__all__ = [
    "CONN_ID",
    "analytics_engine",
    "analytics_url",
    "insert_insights",
    "insight_row",
    "insights",
    "summaries_between",
]

CONN_ID = "airhook_analytics"

metadata = sa.MetaData()
insights = sa.Table(
    "insights",
    metadata,
    sa.Column("event_id", sa.String(255), primary_key=True),  # the airhook event id
    sa.Column("source", sa.String(255), nullable=False),
    sa.Column("platform", sa.String(64)),
    sa.Column("event", sa.String(255), nullable=False),
    sa.Column("kind", sa.String(64), nullable=False),
    sa.Column("conversation_id", sa.String(255)),
    sa.Column("insight_id", sa.String(255)),
    sa.Column("summary", sa.Text),
    sa.Column("topic", sa.Text),
    sa.Column("sentiment", sa.String(64)),
    sa.Column("score", sa.Float),
    sa.Column("value", sa.Text),  # the event's data, as JSON
    sa.Column("generated_at", sa.String(64)),
    sa.Column("received_at", sa.DateTime, nullable=False, index=True),  # UTC
)

#: Where each platform keeps the conversation an event belongs to.
_CONVERSATION_KEYS = ("chat_id", "conversation_id", "sessionId", "session_id")
#: Database drivers by Airflow connection type, where the two names differ.
_DRIVERS = {"postgres": "postgresql"}


def analytics_url(conn_id: str = CONN_ID) -> str:
    """The SQLAlchemy URL of the analytics database (see the module's docstring)."""
    from airflow.sdk import BaseHook
    from airflow.sdk.exceptions import AirflowNotFoundException

    try:
        conn = BaseHook.get_connection(conn_id)
    except AirflowNotFoundException:
        home = os.environ.get("AIRFLOW_HOME") or str(Path.home() / "airflow")
        return f"sqlite:///{Path(home) / 'analytics.db'}"
    extra = json.loads(conn.extra) if conn.extra else {}
    if extra.get("sqlalchemy_url"):
        return str(extra["sqlalchemy_url"])
    driver = _DRIVERS.get(conn.conn_type or "", conn.conn_type or "")
    if driver == "sqlite":
        return f"sqlite:///{conn.host}"
    return sa.URL.create(
        driver,
        username=conn.login or None,
        password=conn.password or None,
        host=conn.host or None,
        port=conn.port or None,
        database=conn.schema or None,
    ).render_as_string(hide_password=False)


def analytics_engine(url: str | None = None) -> sa.Engine:
    """An engine on the analytics database, the table created if it is missing."""
    engine = sa.create_engine(url or analytics_url())
    try:
        metadata.create_all(engine, checkfirst=True)
    except sa.exc.DBAPIError:
        # Two runs creating the table at once: the one that lost finds it there now (check and
        # create are not atomic, neither on SQLite nor on PostgreSQL); anything else is raised.
        with engine.connect() as connection:
            if not sa.inspect(connection).has_table(insights.name):
                raise
    return engine


def _text(value: Any) -> str | None:
    return None if value is None else str(value)


def insight_row(extra: Mapping[str, Any], payload: Mapping[str, Any]) -> dict[str, Any]:
    """The table's row for one insight event: its asset event's ``extra`` and its payload."""
    data = payload.get("data")
    data = data if isinstance(data, Mapping) else {}
    kind = str(extra.get("kind") or extra["event"])
    summary = topic = sentiment = score = None
    if kind == "insight.summary":
        summary = _text(data.get("summary"))
    elif kind == "insight.key":
        points = data.get("key_points") or []
        summary = "; ".join(str(point) for point in points) or None
    elif kind == "insight.topic":
        names = [t.get("name") for t in data.get("topics") or [] if isinstance(t, Mapping)]
        topic = ", ".join(str(name) for name in names if name) or None
    elif kind == "insight.sentiment":
        scored = data.get("sentiment")
        if isinstance(scored, Mapping):
            sentiment = _text(scored.get("label"))
            score = float(scored["score"]) if scored.get("score") is not None else None
    received = datetime.fromisoformat(str(extra["received_at"]))
    if received.tzinfo is not None:
        received = received.astimezone(timezone.utc).replace(tzinfo=None)
    return {
        "event_id": str(extra["airhook_event_id"]),
        "source": str(extra["source"]),
        "platform": _text(extra.get("profile")),
        "event": str(extra["event"]),
        "kind": kind,
        "conversation_id": next(
            (str(data[key]) for key in _CONVERSATION_KEYS if data.get(key) is not None), None
        ),
        "insight_id": _text(data.get("insight_id")),
        "summary": summary,
        "topic": topic,
        "sentiment": sentiment,
        "score": score,
        "value": json.dumps(data, sort_keys=True, separators=(",", ":")),
        "generated_at": _text(data.get("generated_at") or payload.get("created_at")),
        "received_at": received,
    }


def insert_insights(engine: sa.Engine, rows: Iterable[Mapping[str, Any]]) -> int:
    """Insert the rows whose event id the table lacks; return how many were new.

    ``ON CONFLICT (event_id) DO NOTHING`` on SQLite and PostgreSQL, ``INSERT IGNORE`` on MySQL;
    elsewhere row by row, a duplicate key skipped in a savepoint.
    """
    rows = [dict(row) for row in rows]
    if not rows:
        return 0
    dialect = engine.dialect.name
    with engine.begin() as connection:
        if dialect in ("sqlite", "postgresql"):
            from sqlalchemy.dialects import postgresql, sqlite

            insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
            statement = insert(insights).on_conflict_do_nothing(index_elements=["event_id"])
            return sum(connection.execute(statement, [row]).rowcount for row in rows)
        if dialect in ("mysql", "mariadb"):
            statement = insights.insert().prefix_with("IGNORE")
            return sum(connection.execute(statement, [row]).rowcount for row in rows)
        added = 0
        for row in rows:
            try:
                with connection.begin_nested():
                    connection.execute(insights.insert(), [row])
                added += 1
            except sa.exc.IntegrityError:
                continue
        return added


def summaries_between(engine: sa.Engine, since: datetime, until: datetime) -> list[dict[str, Any]]:
    """The ``insight.summary`` rows received in ``[since, until)`` (UTC), oldest first."""

    def naive(moment: datetime) -> datetime:
        return moment.astimezone(timezone.utc).replace(tzinfo=None) if moment.tzinfo else moment

    columns = [
        insights.c.event_id,
        insights.c.source,
        insights.c.platform,
        insights.c.conversation_id,
        insights.c.insight_id,
        insights.c.summary,
        insights.c.received_at,
    ]
    query = (
        sa.select(*columns)
        .where(insights.c.kind == "insight.summary")
        .where(insights.c.received_at >= naive(since), insights.c.received_at < naive(until))
        .order_by(insights.c.received_at, insights.c.event_id)
    )
    with engine.connect() as connection:
        rows = connection.execute(query).mappings().all()
    return [
        {
            **{key: value for key, value in row.items() if key != "received_at"},
            "received_at": row["received_at"].replace(tzinfo=timezone.utc).isoformat(),
        }
        for row in rows
    ]
