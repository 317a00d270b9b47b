"""Triggers: deferrable waits that run in the triggerer.

The timing every airhook deferral follows, defined once here:
"""

from __future__ import annotations

#: A deferral lasts at least this long. Airflow 3.3 marks a task failed when its trigger fires
#: before the scheduler has processed the deferring worker's exit (apache/airflow#66374, #67287,
#: #72716); that took about 6 s on an idle machine here.
SETTLE_SECONDS = 15.0
#: Waits shorter than this are slept on the worker: deferring and resuming costs seconds of
#: scheduling, and a shorter deferral would meet the race above.
MIN_DEFER_SECONDS = 10.0
