"""README's first session, run as a reader would: every command of it, in order, for real.

The ``sh`` blocks of the section "Receive events: a first session" run in one ``bash -euo
pipefail`` (variables carry from block to block, as in the reader's shell), and its ``python``
block is the DAG file it names. The only replacements: ``~/airflow`` becomes a fresh folder of
the test's, the port ``8080`` a free one (with the execution API's URL to match, which on 8080
is Airflow's default), and ``whsec_…`` a secret. The Airflow components the page starts in the
background are this test's: it stops their process group at the end.

Checked: every command succeeds; the page's key is a Fernet key; the signed ``curl`` is answered
202 and the DAG runs on it and prints the lead's e-mail; the same body again is a duplicate and a
wrong signature is refused; and the page's last block lists the event and the run.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import requests
from cryptography.fernet import Fernet

from devstack import AirflowStack, free_port

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
TITLE = "## Receive events: a first session"
SECRET = "whsec_first-session-secret"


def section() -> str:
    """The README's first-session section, up to the next heading of its level."""
    text = README.read_text(encoding="utf-8")
    start = text.index(TITLE)
    end = text.find("\n## ", start + len(TITLE))
    return text[start : end if end != -1 else len(text)]


def blocks(language: str) -> list[str]:
    return re.findall(rf"^```{language}\n(.*?)^```", section(), re.DOTALL | re.MULTILINE)


@dataclass
class Session:
    home: Path
    port: int
    folder: Path
    env: dict[str, str]
    output: str = ""

    def run(self, script: str, timeout: float = 600) -> str:
        """Run shell lines in a ``bash -euo pipefail`` of this session's."""
        result = subprocess.run(
            ["bash", "-euo", "pipefail", "-c", script],
            cwd=self.folder,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        return result.stdout

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def _substitute(script: str, home: Path, port: int) -> str:
    return (
        script.replace("~/airflow", str(home)).replace("8080", str(port)).replace("whsec_…", SECRET)
    )


def _stop_group(leader: int) -> None:
    """SIGTERM the process group ``leader`` started (the page's background components)."""
    members = [p for p in psutil.process_iter() if _pgid(p.pid) == leader]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(leader, sig)
        except ProcessLookupError:
            return
        _gone, alive = psutil.wait_procs(members, timeout=30)
        if not alive:
            return


def _pgid(pid: int) -> int | None:
    try:
        return os.getpgid(pid)
    except ProcessLookupError:
        return None


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Session]:
    root = tmp_path_factory.mktemp("first-session")
    home, folder, port = root / "airflow", root / "shell", free_port()
    folder.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.update(
        {
            "PATH": f"{Path(sys.executable).parent}:{env.get('PATH', '')}",  # the venv's
            "HOME": str(root),
            # On port 8080 this is Airflow's default; on the test's free port it must be said.
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
            "PYTHONUNBUFFERED": "1",
        }
    )
    shell_blocks = [_substitute(block, home, port) for block in blocks("sh")]
    (python_block,) = blocks("python")
    dag_path = python_block.splitlines()[0].removeprefix("# ").replace("$AIRFLOW_HOME", str(home))
    # The page's blocks, the DAG file written where the page says, before Airflow starts (as a
    # reader saves it in step 3); all but the last block, which shows what came of the delivery
    # and runs once the run is there.
    first = next(i for i, block in enumerate(shell_blocks) if "airflow api-server" in block)
    dag_file = f"mkdir -p {Path(dag_path).parent}\ncat > {dag_path} <<'EOF'\n{python_block}EOF\n"
    script = "\n".join([*shell_blocks[:first], dag_file, *shell_blocks[first:-1]])
    process = subprocess.Popen(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # its own group: the background components are stopped by it
    )
    try:
        output, _ = process.communicate(timeout=600)
        assert process.returncode == 0, output[-3000:] + "\n" + _logs(folder)
        yield Session(home, port, folder, env, output)
    finally:
        if process.poll() is None:
            process.kill()
        _stop_group(process.pid)


def _logs(folder: Path) -> str:
    return "\n".join(
        f"--- {log.name}\n{log.read_text(errors='replace')[-2000:]}"
        for log in sorted(folder.glob("*.log"))
    )


def test_the_section_shows_each_step() -> None:
    text = section()
    for needed in (
        "$AIRFLOW_HOME/dags/",
        "airflow api-server --host 127.0.0.1",
        "airflow dags unpause",
        "/airhook/webhooks/rkt",
        "openssl dgst -sha256 -hmac",
        "Fernet.generate_key()",
        "curl",
    ):
        assert needed in text, needed


def test_the_key_the_page_makes_is_a_fernet_key(session: Session) -> None:
    keys = [line for line in session.output.splitlines() if re.fullmatch(r"[\w-]{43}=", line)]
    assert keys
    Fernet(keys[0].encode())  # raises if it is not one


def test_the_signed_curl_is_accepted_and_runs_the_dag(session: Session) -> None:
    answer = json.loads(session.output.strip().splitlines()[-1])
    assert answer["id"].startswith("evt_")
    stack = AirflowStack(home=session.home, dags_folder=session.home / "dags", port=session.port)
    stack.admin_password = json.loads(
        (session.home / "simple_auth_manager_passwords.json.generated").read_text()
    )["admin"]
    deadline = time.monotonic() + 180
    runs: list[dict[str, object]] = []
    while time.monotonic() < deadline:
        runs = stack.dag_runs("crm_sync")
        if runs and runs[0]["state"] in ("success", "failed"):
            break
        time.sleep(2)
    assert [run["state"] for run in runs] == ["success"]
    task_log = next(session.home.glob("logs/dag_id=crm_sync/*/task_id=upsert/attempt=1.log"))
    assert "john@example.com" in task_log.read_text()


def test_the_same_body_again_is_a_duplicate_and_a_wrong_signature_is_refused(
    session: Session,
) -> None:
    script = next(block for block in blocks("sh") if "openssl dgst" in block)
    again = session.run(_substitute(script, session.home, session.port))
    assert json.loads(again)["duplicate"] is True
    wrong = requests.post(
        f"{session.base_url}/airhook/webhooks/rkt",
        data=b'{"event":"lead.captured"}',
        headers={"X-RKT-Signature": "0" * 64, "Content-Type": "application/json"},
        timeout=10,
    )
    assert wrong.status_code == 401


def test_the_last_block_lists_the_event_and_the_run(session: Session) -> None:
    last = _substitute(blocks("sh")[-1], session.home, session.port)
    shown = session.run(
        f"export AIRFLOW_HOME={session.home} AIRFLOW__CORE__LOAD_EXAMPLES=False\n{last}"
    )
    assert "lead.captured" in shown
    assert "crm_sync" in shown
    assert "success" in shown
