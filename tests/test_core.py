"""The pure core imports nothing from Airflow, an HTTP framework or client, or the database.

Every module of ``airhook.core`` is imported in a fresh interpreter in which those packages
cannot be imported at all (an import hook refuses them), so a forgotten import fails here even
where it would be harmless on this machine.
"""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import airhook.core

FORBIDDEN = (
    "airflow",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg2",
    "aiohttp",
    "requests",
    "urllib3",
    "httpx",
    "yarl",
)

_SNIPPET = """
import importlib, json, sys
from importlib.abc import MetaPathFinder

FORBIDDEN = set(sys.argv[1].split(","))


class Refuse(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in FORBIDDEN:
            raise ImportError(f"{name} may not be imported here")
        return None


sys.meta_path.insert(0, Refuse())
failed = {}
for name in sys.argv[2:]:
    try:
        importlib.import_module(name)
    except Exception as exc:
        failed[name] = f"{type(exc).__name__}: {exc}"
print(json.dumps(failed))
"""


def _import_refusing_forbidden(modules: list[str]) -> dict[str, str]:
    result = subprocess.run(
        [sys.executable, "-c", _SNIPPET, ",".join(FORBIDDEN), *modules],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def core_modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(airhook.core.__path__, prefix="airhook.core.")
    )


def test_the_core_has_the_modules_it_is_said_to_have() -> None:
    names = {name.rsplit(".", 1)[1] for name in core_modules()}
    assert {"signing", "secrets", "catalog", "rendering", "ssrf", "errors", "source"} <= names
    # rendering.py is a facade over these (each imported by the test below like any other).
    assert {
        "template_sandbox",
        "template_filters",
        "template_files",
        "template_errors",
        "template_variables",
    } <= names


def test_every_core_module_imports_with_airflow_http_and_the_database_unimportable() -> None:
    assert _import_refusing_forbidden(core_modules()) == {}


def test_the_check_refuses_what_it_should() -> None:
    # The control for the test above: a module that needs Airflow fails under the same hook.
    failed = _import_refusing_forbidden(["airhook.plugin", "airhook.store.engine"])
    assert set(failed) == {"airhook.plugin", "airhook.store.engine"}
    assert "may not be imported here" in failed["airhook.plugin"]
