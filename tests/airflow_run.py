"""Run a script against a fresh Airflow: its own ``AIRFLOW_HOME``, migrated, in a subprocess.

Airflow's configuration is global to a process, so tests that need a real metadata DB (a
``dag.test()`` run, the dispatcher's scenarios) run their script in a child process with an
environment of its own.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

__all__ = ["airflow_env", "run_in_fresh_airflow"]


def airflow_env(home: Path, dags: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment without any ``AIRFLOW*`` variable, for an Airflow at ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            **(extra or {}),
        }
    )
    return env


def run_in_fresh_airflow(
    home: Path,
    dags: Path,
    script_args: list[str],
    extra_env: dict[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """``airflow db migrate`` at ``home``, then ``python <script_args>``; both must succeed.

    Returns the script's completed process (its output, for the test to read).
    """
    env = airflow_env(home, dags, extra_env)
    result: subprocess.CompletedProcess[str] | None = None
    for args in (["-m", "airflow", "db", "migrate"], script_args):
        result = subprocess.run(
            [sys.executable, *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert result is not None
    return result
