"""``make demo`` keeps working: the demo runs to the end with every DAG run successful."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def test_demo_sends_every_sample_and_every_dag_run_succeeds(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "devstack.demo",
            "--exit",
            "--home",
            str(tmp_path / "demo"),
            "--dags",
            str(REPO / "dags"),
            "--port",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    lines = result.stdout.splitlines()
    sent = [line for line in lines if line.startswith("  202 ")]
    assert len(sent) == 39  # every platform event of the catalog, each recorded
    assert "Airflow UI: http://127.0.0.1:" in result.stdout
    table = lines[lines.index(next(x for x in lines if x.startswith("DAG "))) + 1 :]
    runs = [line for line in table if line.startswith("airhook_")]
    assert len(runs) >= 6
    assert all("failed" not in line for line in runs)
