"""airhook as Airflow sees it: provider info, entry points, the plugin manager, the CLI.

Nothing here imports Airflow into the test process (importing it writes an ``airflow.cfg`` under
``AIRFLOW_HOME`` and sets up logging, which is global state): whatever needs Airflow runs in a
subprocess with its own temporary ``AIRFLOW_HOME``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib import metadata
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import jsonschema

import airhook
from airhook.provider_info import get_provider_info

DIST = "airflow-provider-airhook"
PROVIDER_ENTRY_POINT = "airhook.provider_info:get_provider_info"
PLUGIN_ENTRY_POINT = "airhook.plugin:AirhookPlugin"


def _airflow_schema() -> dict[str, Any]:
    """Airflow's own ``provider_info.schema.json``, found without importing ``airflow``."""
    spec = find_spec("airflow")
    assert spec is not None, "apache-airflow is not installed"
    assert spec.origin is not None
    path = Path(spec.origin).parent / "provider_info.schema.json"
    return json.loads(path.read_text(encoding="utf-8"))


def _run(
    code_or_args: list[str], home: Path, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run the venv's Python with a clean, temporary Airflow home; fail with its output."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
    env.pop("PYTHONPATH", None)
    env.update(
        AIRFLOW_HOME=str(home),
        AIRFLOW__CORE__LOAD_EXAMPLES="False",
        AIRFLOW__CORE__PLUGINS_FOLDER=str(home / "plugins"),
        AIRFLOW__CORE__DAGS_FOLDER=str(home / "dags"),
    )
    cmd = [sys.executable, "-I", *code_or_args]
    proc = subprocess.run(
        cmd,
        cwd=home,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{cmd} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc


def _last_json_line(stdout: str) -> Any:
    return json.loads(stdout.strip().splitlines()[-1])


# --- provider info -------------------------------------------------------------------------------


def test_provider_info_validates_against_airflows_schema() -> None:
    schema = _airflow_schema()
    # The same validator Airflow's ProvidersManager builds from this file.
    validator_class = jsonschema.validators.validator_for(schema)
    validator_class.check_schema(schema)
    validator = validator_class(schema)
    info = get_provider_info()
    assert [e.message for e in validator.iter_errors(info)] == []
    # The schema has teeth: the same info without a required key is rejected.
    broken = {k: v for k, v in info.items() if k != "description"}
    assert list(validator.iter_errors(broken))


def test_provider_info_matches_the_distribution() -> None:
    info = get_provider_info()
    dist = metadata.distribution(DIST)
    assert info["package-name"] == dist.metadata["Name"] == DIST
    assert info["name"] == "airhook"
    assert info["versions"][0] == dist.version == airhook.__version__
    assert isinstance(info["description"], str)
    assert info["description"].strip()


# --- entry points --------------------------------------------------------------------------------


def test_distribution_exposes_provider_info_entry_point() -> None:
    eps = [
        ep
        for ep in metadata.entry_points(group="apache_airflow_provider")
        if ep.value == PROVIDER_ENTRY_POINT
    ]
    assert len(eps) == 1, eps
    assert eps[0].dist is not None
    assert eps[0].dist.metadata["Name"] == DIST
    # Loading it imports only airhook (no Airflow), so it is safe in-process.
    loaded = eps[0].load()
    assert loaded is get_provider_info
    assert loaded() == get_provider_info()


def test_distribution_exposes_plugin_entry_point() -> None:
    eps = [ep for ep in metadata.entry_points(group="airflow.plugins") if ep.name == "airhook"]
    assert len(eps) == 1, eps
    assert eps[0].value == PLUGIN_ENTRY_POINT
    assert eps[0].dist is not None
    assert eps[0].dist.metadata["Name"] == DIST


# --- Airflow itself ------------------------------------------------------------------------------

# Airflow 3.3: plugins_manager._get_plugins() registers the plugins folder, then
# airflow._shared.plugins_manager._load_entrypoint_plugins() (the "airflow.plugins" group), then,
# unless providers load lazily, the plugins providers declare. get_plugin_info() triggers all that.
_PLUGINS_SNIPPET = """
import json
from airflow import plugins_manager

plugins_manager.ensure_plugins_loaded()
print(json.dumps({
    "plugins": plugins_manager.get_plugin_info(attrs_to_dump=["source"]),
    "errors": plugins_manager.get_import_errors(),
}, default=str))
"""


def test_airflow_plugin_manager_loads_the_plugin_from_its_entry_point(tmp_path: Path) -> None:
    result = _last_json_line(_run(["-c", _PLUGINS_SNIPPET], tmp_path).stdout)
    ours = [p for p in result["plugins"] if p["name"] == "airhook"]
    assert len(ours) == 1, result["plugins"]
    source = ours[0]["source"]
    # EntryPointSource: "<dist>==<version>: EntryPoint(name=..., value=..., group=...)"
    assert source.startswith(f"{DIST}=={airhook.__version__}: "), source
    assert f"value='{PLUGIN_ENTRY_POINT}'" in source
    assert "group='airflow.plugins'" in source
    assert not [k for k, v in result["errors"].items() if "airhook" in f"{k} {v}"], result["errors"]


def test_airflow_providers_list_shows_airhook(tmp_path: Path) -> None:
    proc = _run(["-m", "airflow", "providers", "list", "--output", "json"], tmp_path)
    providers = json.loads(proc.stdout)
    ours = [p for p in providers if p["package_name"] == DIST]
    assert len(ours) == 1, providers
    assert ours[0]["version"] == airhook.__version__


def test_every_airhook_option_is_documented_with_its_default() -> None:
    """Each ``[airhook]`` option is in a table row of docs/ that gives its default."""
    from airhook.config import OPTIONS

    docs = Path(__file__).resolve().parent.parent / "docs"
    rows = [
        line
        for page in docs.glob("*.md")
        for line in page.read_text().splitlines()
        if line.startswith("| `")
    ]
    for option in OPTIONS:
        documented = [
            row
            for row in rows
            if row.startswith((f"| `{option.name}` |", f"| `[airhook] {option.name}` |"))
        ]
        assert documented, f"[airhook] {option.name} has no row in a table of docs/"
        if option.default:
            assert any(option.default in row for row in documented), (
                f"[airhook] {option.name}: its default {option.default!r} is not in its row"
            )
