"""Run the receiver on its own, outside the Airflow API server, under uvicorn.

``python -m airhook.receiver --host 127.0.0.1 --port 8081 [--workers N]``

Why: inside the API server every delivery also pays for Airflow's own request path (its
middleware costs more CPU than airhook's checks and insert together, ``docs/performance.md``)
and shares one process with the UI, the REST API and the dispatcher. Run on its own, the same
app (same store, same sources, same group-committed, deduplicated recording) answers several
times more deliveries per core, and can have workers of its own.

It serves the same URLs as the plugin mount, ``/airhook/webhooks/<source>``, so an ingress can
send ``/airhook/webhooks/`` here and everything else to the API server. It reads the same
configuration as every Airflow component (``AIRFLOW_HOME``, ``airflow.cfg``,
``AIRFLOW__AIRHOOK__*``, Airflow's Fernet key for the sources' secrets).

The dispatcher is off here by default: it writes asset events to Airflow's metadata DB, which
only the API server, the scheduler and the DAG processor may write to, and the API server already
runs it (one process at a time holds its lease). Events this receiver records are picked up by
the API server's dispatcher within ``[airhook] dispatch_poll_seconds``. ``--dispatcher`` turns it
on here as well (for a deployment where this process may use the metadata DB); the lease still
lets only one process dispatch, so every event still becomes an asset event exactly once.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m airhook.receiver",
        description="Serve airhook's webhook receiver on its own (dispatcher off by default).",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port to bind (8081)")
    parser.add_argument(
        "--workers", type=int, default=1, help="uvicorn worker processes (1); each records"
    )
    parser.add_argument(
        "--dispatcher",
        action="store_true",
        help="also run the dispatcher here (only where this process may write to Airflow's "
        "metadata DB; the API server runs it already)",
    )
    parser.add_argument(
        "--proxy-headers",
        action="store_true",
        help="believe X-Forwarded-For from the addresses in FORWARDED_ALLOW_IPS (off: the "
        "allow-list sees the TCP peer)",
    )
    parser.add_argument("--access-log", action="store_true", help="log every request (off)")
    parser.add_argument(
        "--log-level",
        default="info",
        choices=["critical", "error", "warning", "info", "debug"],
        help="uvicorn's log level (info)",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the arguments and serve until stopped (SIGINT or SIGTERM)."""
    args = _parser().parse_args(argv)
    if args.workers < 1:
        _parser().error("--workers must be at least 1")
    # Through the environment, so that every worker process (spawned, importing the factory
    # anew) reads the same setting through airhook.config, overriding airflow.cfg.
    os.environ["AIRFLOW__AIRHOOK__DISPATCHER_ENABLED"] = "True" if args.dispatcher else "False"
    import uvicorn

    uvicorn.run(
        "airhook.receiver.app:create_standalone_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        lifespan="on",
        access_log=args.access_log,
        proxy_headers=args.proxy_headers,
        log_level=args.log_level,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
