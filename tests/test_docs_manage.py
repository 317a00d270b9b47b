"""Every command in docs/manage.md, run against a real Airflow API server on 127.0.0.1.

The ``sh`` blocks run in order in one ``bash -euo pipefail`` (so ``TOKEN``, ``API`` and ``EVENT``
carry over from block to block, as a reader's shell would keep them), with three replacements:
the page's ``http://127.0.0.1:8080`` becomes this server, ``"password":"..."`` the admin's
password, and the CRM's ``https://crm.example.com`` an HTTP server of the test's on 127.0.0.1.
Every ``curl`` on the page uses ``-f`` but the first, so a 4xx or 5xx fails the script; the
first (the bare token request) is checked for its token. The ``python`` blocks run afterwards in
the API server's environment.

The same server shows the plugin's mount order for real: the management app at
``/airhook/manage`` and the receiver at ``/airhook`` both answer.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from pytest_httpserver import HTTPServer

from devstack import AirflowStack

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "manage.md"


def blocks(language: str) -> list[str]:
    """The page's fenced blocks of ``language``, in order."""
    text = DOC.read_text(encoding="utf-8")
    return re.findall(rf"^```{language}\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


@pytest.fixture(scope="module")
def crm() -> Iterator[HTTPServer]:
    server = HTTPServer(host="127.0.0.1", port=0)
    server.expect_request("/hooks/airhook").respond_with_json({"ok": True})
    server.start()
    yield server
    server.clear()
    if server.is_running():
        server.stop()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    root = tmp_path_factory.mktemp("docs-manage")
    dags = root / "dags"
    dags.mkdir()
    airflow = AirflowStack(
        home=root / "home",
        dags_folder=dags,
        extra_env={"AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32"},
    )
    airflow.migrate()
    try:
        airflow.start(["api-server"])
        yield airflow
    except BaseException:
        print(airflow.tail("api-server"))
        raise
    finally:
        airflow.stop()


def test_the_page_has_commands() -> None:
    assert len(blocks("sh")) >= 6
    assert any("/auth/token" in block for block in blocks("sh"))


def test_every_command_on_the_page_runs(
    stack: AirflowStack, crm: HTTPServer, tmp_path: Path
) -> None:
    script = "\n".join(blocks("sh"))
    script = script.replace("http://127.0.0.1:8080", stack.base_url)
    script = script.replace('"password":"..."', f'"password":"{stack.admin_password}"')
    script = script.replace("https://crm.example.com", f"http://127.0.0.1:{crm.port}")
    result = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    first, _ = json.JSONDecoder().raw_decode(result.stdout)  # the bare token request's answer
    assert first["access_token"]
    secret = (tmp_path / "rkt-secret.txt").read_text().strip()
    assert secret.startswith("whsec_")
    assert (tmp_path / "rkt-new-secret.txt").read_text().strip().startswith("whsec_")
    assert (tmp_path / "crm-secret.txt").read_text().strip().startswith("whsec_")
    # Shown once: no later answer on the page's run carried the first secret.
    assert result.stdout.count(secret) == 0
    assert json.loads((tmp_path / "airhook-openapi.json").read_text())["servers"]
    assert any(request.path == "/hooks/airhook" for request, _ in crm.log)
    assert '"status":202' in result.stdout  # the source's signed sample was recorded
    assert '"outcome":"delivered"' in result.stdout  # the subscription's test reached the CRM


def test_the_python_on_the_page_runs(stack: AirflowStack, tmp_path: Path) -> None:
    for block in blocks("python"):
        result = subprocess.run(
            [sys.executable, "-c", block],
            env=stack.env(),
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-3000:]


def test_both_apps_answer_under_their_prefixes(stack: AirflowStack) -> None:
    token = stack.token()
    who = requests.get(
        f"{stack.base_url}/airhook/manage/api/v1/whoami",
        headers={"Authorization": f"Bearer {token}"},
        timeout=10,
    )
    assert who.json() == {"user": "admin", "can_write": True}
    assert requests.get(f"{stack.base_url}/airhook/manage/ui/", timeout=10).status_code == 200
    unknown = requests.post(
        f"{stack.base_url}/airhook/webhooks/no-such-source", json={}, timeout=10
    )
    assert unknown.status_code == 404
    assert unknown.json() == {"error": "unknown_source"}
