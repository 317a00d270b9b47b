"""A local Airflow for tests, the demo and benchmarks: every component on 127.0.0.1.

``airflow standalone`` binds 0.0.0.0 and starts many workers; this starts ``api-server``,
``scheduler``, ``dag-processor`` and ``triggerer`` as separate processes with small limits, each
in its own process group, and stops exactly those groups (never anything by name).

The scheduler and the triggerer run without their log servers (``--skip-serve-logs``): Airflow
3.3 binds those to every interface (``serve_logs`` hands uvicorn ``host=""``, and no option
changes that), by default on 8793 and 8794, where a second stack would collide. They exist for an
API server on another machine; here the API server reads the log folder that the task runners
and the triggerer write. ``tests/e2e/test_demo.py`` checks that nothing of the demo's stack
listens anywhere but 127.0.0.1.

Two more components run on request: ``celery-worker`` (``airflow celery worker``, when the stack
has a ``celery_broker_url``: CeleryExecutor, Redis as the broker, Celery's results in the
metadata DB) and ``receiver``, airhook's standalone receiver (``python -m airhook.receiver``).
The worker runs without its log server too, for the same reason.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["CELERY_WORKER", "COMPONENTS", "RECEIVER", "AirflowStack", "free_port"]

_SECRETS_LOCK = threading.Lock()
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
# The components that start a log server unless told not to.
SERVE_LOGS = ("scheduler", "triggerer", "celery-worker")
#: ``airflow celery worker``: only for a stack with a ``celery_broker_url``.
CELERY_WORKER = "celery-worker"
#: airhook's standalone receiver (``python -m airhook.receiver``), on a port of its own.
RECEIVER = "receiver"
HEALTH_PATHS = {"api-server": "/api/v2/monitor/health", RECEIVER: "/airhook/receiver/health"}
ADMIN_USER = "admin"


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class AirflowStack:
    """Airflow in ``home``, DAGs from ``dags_folder``, serving on 127.0.0.1:``port``.

    :param metadata_url: Airflow's metadata DB (default: SQLite in ``home``).
    :param airhook_url: the airhook store (default: SQLite in ``home``).
    :param celery_broker_url: run tasks with CeleryExecutor through this broker (a Redis URL,
        ``devstack.redis.RedisServer``), results in the metadata DB, which must then be
        PostgreSQL (``metadata_url``); default: Airflow's default executor (LocalExecutor).
    :param celery_concurrency: task processes of each Celery worker.
    :param extra_env: more environment (``AIRFLOW__SECTION__KEY`` settings).
    """

    home: Path
    dags_folder: Path
    port: int = field(default_factory=free_port)
    metadata_url: str | None = None
    airhook_url: str | None = None
    celery_broker_url: str | None = None
    celery_concurrency: int = 4
    extra_env: Mapping[str, str] = field(default_factory=dict)
    admin_password: str = "airhook-admin"  # noqa: S105 (a throw-away local stack)
    # Where the API server looks for a running task's served log: ports of this stack's own, on
    # which nothing listens, so that it never reads another Airflow's log server on 8793/8794.
    log_server_ports: tuple[int, int] = field(default_factory=lambda: (free_port(), free_port()))
    processes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # Where each component's log was when it last started (its logs are appended to).
    log_starts: dict[str, int] = field(default_factory=dict)

    @property
    def base_url(self) -> str:
        """The API server's address."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The environment every component and CLI call of this stack runs with."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        home = str(self.home)
        secrets_path = self.home / "secrets.json"
        with _SECRETS_LOCK:  # callers in several threads must all get the one key
            if not secrets_path.exists():
                from cryptography.fernet import Fernet

                secrets_path.parent.mkdir(parents=True, exist_ok=True)
                written = {"fernet": Fernet.generate_key().decode(), "jwt": os.urandom(24).hex()}
                # Created exclusively: another process writing the same home loses, not wins.
                try:
                    with secrets_path.open("x") as new:
                        new.write(json.dumps(written))
                except FileExistsError:
                    pass
            secrets = json.loads(secrets_path.read_text())
        passwords = self.home / "simple_auth_manager_passwords.json"
        passwords.write_text(json.dumps({ADMIN_USER: self.admin_password}))
        env.update(
            {
                "AIRFLOW_HOME": home,
                "AIRFLOW__CORE__DAGS_FOLDER": str(self.dags_folder),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__PARALLELISM": "4",
                "AIRFLOW__CORE__FERNET_KEY": secrets["fernet"],
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.base_url}/execution/",
                # A task's start request carries every asset event of its run; under webhook
                # load in the same API server, runs of thousands of events took 10-22 s to
                # start, past Airflow's 5 s default (docs/receiver.md, "Runs of many events").
                "AIRFLOW__WORKERS__EXECUTION_API_TIMEOUT": "60",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__BASE_URL": self.base_url,
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API_AUTH__JWT_SECRET": secrets["jwt"],
                "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
                "AIRFLOW__SCHEDULER__USE_JOB_SCHEDULE": "True",
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "5",
                "AIRFLOW__DAG_PROCESSOR__PARSING_PROCESSES": "1",
                "AIRFLOW__TRIGGERER__CAPACITY": "100",
                "AIRFLOW__LOGGING__LOGGING_LEVEL": "INFO",
                "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(self.log_server_ports[0]),
                "AIRFLOW__LOGGING__TRIGGER_LOG_SERVER_PORT": str(self.log_server_ports[1]),
                "AIRFLOW__AIRHOOK__DISPATCH_POLL_SECONDS": "0.1",
                "AIRFLOW__AIRHOOK__SOURCE_CACHE_SECONDS": "0.5",
                "PYTHONUNBUFFERED": "1",
            }
        )
        if self.metadata_url:
            env["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] = self.metadata_url
        if self.airhook_url:
            env["AIRFLOW__AIRHOOK__DATABASE_URL"] = self.airhook_url
        if self.celery_broker_url:
            env.update(self.celery_env())
        env.update(self.extra_env)
        return env

    def celery_env(self) -> dict[str, str]:
        """CeleryExecutor's settings: the broker, results in the metadata DB, the worker's size."""
        if not self.metadata_url or not self.metadata_url.startswith("postgresql"):
            raise ValueError("CeleryExecutor here needs the metadata DB on PostgreSQL")
        # Celery's database backend takes "db+" and a SQLAlchemy URL; the driver stays named
        # (SQLAlchemy 2.1's default for postgresql:// is psycopg 3, which is not installed).
        backend = "db+" + self.metadata_url
        return {
            "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
            "AIRFLOW__CELERY__BROKER_URL": str(self.celery_broker_url),
            "AIRFLOW__CELERY__RESULT_BACKEND": backend,
            "AIRFLOW__CELERY__WORKER_CONCURRENCY": str(self.celery_concurrency),
            # The provider's default is a day: a task a dead worker had taken from the queue but
            # not finished would wait that long to be handed out again.
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "300",
        }

    # --- commands ----------------------------------------------------------------------------

    def airflow(self, *args: str, timeout: float = 300, check: bool = True) -> str:
        """Run an ``airflow`` CLI command in this stack's environment; return its output."""
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "airflow", *args],
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and result.returncode != 0:
            raise RuntimeError(
                f"airflow {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def airhook(self, *args: str, stdin: str | None = None, timeout: float = 120) -> str:
        """Run the ``airhook`` CLI in this stack's environment; return its output."""
        result = subprocess.run(  # noqa: S603
            [sys.executable, "-m", "airhook.cli", *args],
            env=self.env(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"airhook {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}"
            )
        return result.stdout

    def migrate(self) -> None:
        """Create Airflow's metadata DB and the airhook store."""
        self.home.mkdir(parents=True, exist_ok=True)
        self.airflow("db", "migrate")
        self.airhook("db", "migrate")

    # --- processes ---------------------------------------------------------------------------

    def log_path(self, component: str) -> Path:
        """Where a component's output goes."""
        return self.home / "logs" / f"{component}.log"

    def start_component(
        self,
        component: str,
        *,
        name: str | None = None,
        port: int | None = None,
        env: Mapping[str, str] | None = None,
    ) -> None:
        """Start one component in its own process group.

        :param name: the key to stop it by (default: the component); lets a second API server run
            beside the first, e.g. ``start_component("api-server", name="api-server-2", port=p)``,
            or a second Celery worker (whose Celery node name it becomes).
        :param port: the API server's port (default: the stack's); the receiver's (required).
        :param env: more environment for this process only.
        """
        name = name or component
        args = [sys.executable, "-m", "airflow", component]
        if component == "api-server":
            args += ["--host", "127.0.0.1", "--port", str(port or self.port), "--workers", "1"]
        elif component == CELERY_WORKER:
            if not self.celery_broker_url:
                raise ValueError("a Celery worker needs a stack with a celery_broker_url")
            args = [sys.executable, "-m", "airflow", "celery", "worker", "--skip-serve-logs"]
            args += ["--celery-hostname", f"{name}@%h", "--without-mingle", "--without-gossip"]
        elif component == RECEIVER:
            if port is None:
                raise ValueError("the standalone receiver needs a port")
            args = [sys.executable, "-m", "airhook.receiver", "--host", "127.0.0.1"]
            args += ["--port", str(port)]
        elif component in SERVE_LOGS:
            args.append("--skip-serve-logs")
        path = self.log_path(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("ab") as log_file:
            self.log_starts[name] = log_file.tell()
            self.processes[name] = subprocess.Popen(  # noqa: S603
                args,
                env={**self.env(), **(env or {})},
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def start(self, components: Iterable[str] = COMPONENTS, *, timeout: float = 180) -> None:
        """Start the components and wait until the API server answers.

        The API server comes first and the others once it answers: a scheduler started beside
        it can start a task (a ``@daily`` DAG's first run) whose worker finds nobody at the
        execution API yet and fails with "connection refused".
        """
        wanted = list(components)
        if "api-server" in wanted:
            self.start_component("api-server")
            self.wait_healthy(timeout)
        for component in wanted:
            if component != "api-server":
                self.start_component(component)

    def wait_healthy(
        self,
        timeout: float = 180,
        *,
        name: str = "api-server",
        port: int | None = None,
        component: str = "api-server",
    ) -> None:
        """Wait until an API server (and the airhook receiver in it) answers.

        :param component: ``receiver`` for the standalone receiver (its health URL).
        """
        deadline = time.monotonic() + timeout
        url = f"http://127.0.0.1:{port or self.port}{HEALTH_PATHS[component]}"
        while time.monotonic() < deadline:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.tail(name)}")
            try:
                with urllib.request.urlopen(url, timeout=2):
                    return
            except (urllib.error.URLError, OSError):
                time.sleep(0.5)
        raise TimeoutError(f"{name} did not answer in {timeout} s:\n{self.tail(name)}")

    def wait_log(self, name: str, text: str, timeout: float = 180) -> None:
        """Wait until a component's log, since it last started, has ``text``.

        E.g. a Celery worker's ``ready.``: it takes tasks from then on.
        """
        deadline = time.monotonic() + timeout
        path = self.log_path(name)
        while time.monotonic() < deadline:
            process = self.processes.get(name)
            if process is not None and process.poll() is not None:
                raise RuntimeError(f"{name} exited:\n{self.tail(name)}")
            with path.open("rb") as log:
                log.seek(self.log_starts.get(name, 0))
                if text.encode() in log.read():
                    return
            time.sleep(0.5)
        raise TimeoutError(f"{name} did not log {text!r} in {timeout} s:\n{self.tail(name)}")

    def stop_component(
        self, component: str, *, sig: int = signal.SIGTERM, timeout: float = 30
    ) -> None:
        """Stop one component's process group (SIGKILL if it does not stop in time)."""
        process = self.processes.pop(component, None)
        if process is None or process.poll() is not None:
            return
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            return
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)

    def kill_component(self, component: str) -> None:
        """``kill -9`` a component's whole process group, as a crash would."""
        self.stop_component(component, sig=signal.SIGKILL)

    def stop(self) -> None:
        """Stop every component this stack started."""
        for component in list(self.processes):
            self.stop_component(component)

    def tail(self, component: str, lines: int = 60) -> str:
        """The end of a component's log."""
        path = self.log_path(component)
        if not path.exists():
            return ""
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])

    # --- REST API ----------------------------------------------------------------------------

    def token(self) -> str:
        """A JWT for the admin user (simple auth manager)."""
        body = json.dumps({"username": ADMIN_USER, "password": self.admin_password}).encode()
        request = urllib.request.Request(  # noqa: S310
            f"{self.base_url}/auth/token",
            data=body,
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310
            return str(json.loads(response.read())["access_token"])

    def api(self, method: str, path: str, body: Any = None, *, token: str | None = None) -> Any:
        """Call the REST API as the admin user; return the parsed JSON."""
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(  # noqa: S310
            f"{self.base_url}{path}",
            data=data,
            headers={
                "Content-Type": "application/json",
                "Authorization": f"Bearer {token or self.token()}",
            },
            method=method,
        )
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            raw = response.read()
        return json.loads(raw) if raw else None

    def local_dag_ids(self) -> list[str]:
        """The DAG ids Airflow's own parser finds in the DAGs folder (``dags list --local``)."""
        output = self.airflow("dags", "list", "--local", "--output", "json")
        # The JSON is the last line; warnings logged while parsing come before it.
        return sorted(row["dag_id"] for row in json.loads(output.strip().splitlines()[-1]))

    def wait_for_dags(self, dag_ids: Iterable[str], timeout: float = 180) -> None:
        """Wait until the DAG processor has parsed these DAGs."""
        wanted = set(dag_ids)
        deadline = time.monotonic() + timeout
        token = self.token()
        seen: set[str] = set()
        while time.monotonic() < deadline:
            listing = self.api("GET", "/api/v2/dags?limit=1000", token=token)
            seen = {dag["dag_id"] for dag in listing["dags"]}
            if wanted <= seen:
                return
            time.sleep(1)
        raise TimeoutError(
            f"DAGs {sorted(wanted - seen)} not parsed in {timeout} s:\n{self.tail('dag-processor')}"
        )

    def dag_runs(self, dag_id: str, *, token: str | None = None) -> list[dict[str, Any]]:
        """Every run of a DAG (of every DAG for ``"~"``), page by page."""
        token = token or self.token()
        runs: list[dict[str, Any]] = []
        while True:
            page = self.api(
                "GET", f"/api/v2/dags/{dag_id}/dagRuns?limit=100&offset={len(runs)}", token=token
            )
            runs.extend(page["dag_runs"])
            if not page["dag_runs"] or len(runs) >= page["total_entries"]:
                return runs
