"""docs/production.md: its YAML parses, and the receiver it deploys is one that runs.

The page's blocks are YAML (values for Airflow's Helm chart, the standalone receiver's
Kubernetes objects), a Dockerfile, and ```` ```sh not-run ```` blocks of ``helm``, ``kubectl``,
``docker`` and the wheel build, which need a cluster, a registry or minutes (the wheel build is
``tests/test_packaging.py``'s). Checked here: every YAML block parses; every ``[airhook]`` option
the page names as ``AIRFLOW__AIRHOOK__…`` exists; the Dockerfile installs extras that setup.cfg
declares; the chart values run CeleryExecutor and hand the store's URL to every container from a
secret; the receiver's arguments are ones ``python -m airhook.receiver`` accepts, and its probes,
container port, Service and Ingress meet on one port and one name; and the receiver, started with
those arguments (on 127.0.0.1 and a free port instead of 0.0.0.0:8081), answers the probes' path.
"""

from __future__ import annotations

import configparser
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from cryptography.fernet import Fernet

from airhook.config import OPTIONS
from airhook.receiver.__main__ import _parser
from devstack import free_port
from tests.airflow_run import airflow_env

REPO = Path(__file__).resolve().parents[1]
DOC = REPO / "docs" / "production.md"
#: What a not-run block may call: a cluster, a registry, or the wheel build.
NOT_RUN = ("helm ", "kubectl ", "docker ", "python -m build ")


def _blocks() -> list[tuple[str, str]]:
    """(info string, text) of every fenced block of the page."""
    text = DOC.read_text(encoding="utf-8")
    return re.findall(r"^```([^\n]*)\n(.*?)^```", text, re.DOTALL | re.MULTILINE)


def _documents() -> list[Any]:
    return [
        document
        for info, text in _blocks()
        if info == "yaml"
        for document in yaml.safe_load_all(text)
        if document is not None
    ]


def _values() -> dict[str, Any]:
    return next(d for d in _documents() if "executor" in d)


def _objects(kind: str) -> list[dict[str, Any]]:
    return [d for d in _documents() if d.get("kind") == kind]


def _container() -> dict[str, Any]:
    (deployment,) = _objects("Deployment")
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return dict(container)


def test_every_block_is_yaml_a_dockerfile_or_a_marked_command() -> None:
    kinds = [info for info, _ in _blocks()]
    assert set(kinds) <= {"yaml", "dockerfile", "sh not-run", ""}, kinds
    assert kinds.count("yaml") >= 2
    for info, text in _blocks():
        if info == "sh not-run":
            lines = [line for line in text.splitlines() if line and not line.startswith(" ")]
            assert all(line.startswith(NOT_RUN) for line in lines), text


def test_every_yaml_block_parses_and_names_kubernetes_objects_completely() -> None:
    documents = _documents()
    assert len(documents) == 4  # the chart's values, a Deployment, a Service, an Ingress
    for document in documents:
        if "kind" in document:
            assert document["apiVersion"]
            assert document["metadata"]["name"] == "airhook-receiver"


def test_every_airhook_option_the_page_names_exists() -> None:
    named = set(re.findall(r"AIRFLOW__AIRHOOK__([A-Z_]+)", DOC.read_text(encoding="utf-8")))
    assert "DATABASE_URL" in named
    assert {name.lower() for name in named} <= {option.name for option in OPTIONS}


def test_the_image_installs_extras_setup_cfg_declares() -> None:
    (dockerfile,) = [text for info, text in _blocks() if info == "dockerfile"]
    found = re.search(r"\.whl\)\[([a-z,]+)\]", dockerfile)
    assert found, dockerfile
    extras = set(found.group(1).split(","))
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    declared = set(config["options.extras_require"])
    assert extras == {"postgres", "celery"}
    assert extras <= declared
    celery = config["options.extras_require"]["celery"]
    assert "apache-airflow-providers-celery" in celery
    assert "redis" in celery


def test_the_chart_values_run_celery_and_give_every_container_the_store() -> None:
    values = _values()
    assert values["executor"] == "CeleryExecutor"
    assert values["postgresql"]["enabled"] is False
    assert {"envName": "AIRFLOW__AIRHOOK__DATABASE_URL", "secretName": "airhook-store"}.items() <= (
        values["secret"][0].items()
    )
    assert values["apiServer"]["replicas"] >= 2
    host = values["ingress"]["apiServer"]["hosts"][0]
    assert host["tls"] == {"enabled": True, "secretName": "airflow-tls"}


def test_the_receivers_port_probe_service_and_ingress_agree() -> None:
    container = _container()
    assert container["command"] == ["python", "-m", "airhook.receiver"]
    args = _parser().parse_args(container["args"])
    assert args.proxy_headers  # behind the ingress, for sources' allow-lists
    (port,) = container["ports"]
    assert port["containerPort"] == args.port
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"] == {
            "path": "/airhook/receiver/health",
            "port": args.port,
        }
    env = {item["name"]: item for item in container["env"]}
    assert env["AIRFLOW__AIRHOOK__DATABASE_URL"]["valueFrom"]["secretKeyRef"] == {
        "name": "airhook-store",
        "key": "url",
    }
    assert (
        env["AIRFLOW__CORE__FERNET_KEY"]["valueFrom"]["secretKeyRef"]["name"]
        == (_values()["fernetKeySecretName"])
    )
    (service,) = _objects("Service")
    (deployment,) = _objects("Deployment")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert service["spec"]["ports"][0]["targetPort"] == args.port
    (ingress,) = _objects("Ingress")
    (rule,) = ingress["spec"]["rules"]
    (path,) = rule["http"]["paths"]
    assert path["path"] == "/airhook/webhooks/"
    assert path["backend"]["service"] == {
        "name": service["metadata"]["name"],
        "port": {"number": service["spec"]["ports"][0]["port"]},
    }
    assert rule["host"] == _values()["ingress"]["apiServer"]["hosts"][0]["name"]
    assert ingress["spec"]["tls"][0]["secretName"] == "airflow-tls"


@pytest.mark.timeout(120)
def test_the_receiver_starts_with_the_documented_arguments_and_answers_its_probe(
    tmp_path: Path,
) -> None:
    container = _container()
    args = list(container["args"])
    port = free_port()
    args[args.index("--host") + 1] = "127.0.0.1"  # everything here listens on 127.0.0.1 only
    args[args.index("--port") + 1] = str(port)
    env = airflow_env(
        tmp_path / "home",
        tmp_path / "dags",
        {
            "AIRFLOW__AIRHOOK__DATABASE_URL": f"sqlite:///{tmp_path / 'airhook.db'}",
            "AIRFLOW__CORE__FERNET_KEY": Fernet.generate_key().decode(),
            "FORWARDED_ALLOW_IPS": "127.0.0.1",
        },
    )
    command = [sys.executable if word == "python" else word for word in container["command"]]
    log = (tmp_path / "receiver.log").open("w")
    process = subprocess.Popen(
        [*command, *args], env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    try:
        url = f"http://127.0.0.1:{port}{container['readinessProbe']['httpGet']['path']}"
        deadline = time.monotonic() + 90
        while True:
            assert process.poll() is None, (tmp_path / "receiver.log").read_text()[-3000:]
            try:
                answer = requests.get(url, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "the receiver did not start"
                time.sleep(0.3)
        assert answer.status_code == 200
        assert answer.json()["running"] is True
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        log.close()
