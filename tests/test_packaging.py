"""The wheel ships everything airhook needs: schemas, templates, ``py.typed``, entry points.

The wheel is built non-editably from a clean copy of the repository (so a stale ``build/`` left
in the working tree cannot leak old files into it, and the test leaves no ``build/`` behind),
installed into a fresh virtual environment with only the catalog's two dependencies, and then
inspected by a probe that runs in that environment in isolated mode, from outside the repository:
whatever it sees came from the wheel, not from the source tree or the editable install.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import zipfile
from configparser import ConfigParser
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
SCHEMAS = REPO / "schemas"
TEMPLATES = REPO / "templates"
CONSTRAINTS = REPO / "constraints" / "constraints-3.11.txt"
DIST = "airflow-provider-airhook"

# Not part of a build, or produced by one: never copied into the build directory.
_NOT_SOURCES = shutil.ignore_patterns(
    ".git",
    ".venv",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    "*.pyc",
    ".pytest_cache",
    ".ruff_cache",
    ".hypothesis",
)

# Runs inside the fresh environment; prints one JSON line on stdout.
PROBE = textwrap.dedent(
    """
    import json
    import sys
    from importlib.resources import files


    def walk(folder, prefix=()):
        for entry in folder.iterdir():
            if entry.is_dir():
                if entry.name != "__pycache__":
                    yield from walk(entry, (*prefix, entry.name))
            else:
                yield "/".join((*prefix, entry.name))


    import airhook
    from airhook.core.catalog import load_catalog

    catalog = load_catalog()
    count = 0
    for event in catalog.events():
        event.validate(event.sample)
        count += 1

    print(json.dumps({
        "schemas": sorted(walk(files("airhook.schemas"))),
        "templates": sorted(walk(files("airhook.templates"))),
        "events": count,
        "platforms": sorted(catalog.platforms),
        "airhook_file": airhook.__file__,
        "py_typed": files("airhook").joinpath("py.typed").is_file(),
        "airflow_imported": "airflow" in sys.modules,
    }))
    """
)


def _env() -> dict[str, str]:
    """The current environment, minus what would point a child at this interpreter's paths."""
    env = dict(os.environ)
    for name in ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PIP_USER"):
        env.pop(name, None)
    return env


def _run(cmd: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        cmd,
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
    assert proc.returncode == 0, (
        f"{' '.join(map(str, cmd))} exited {proc.returncode}\n"
        f"--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"
    )
    return proc


def _base_python() -> str:
    """The interpreter the test's virtualenv was made from (a venv inside a venv is fragile)."""
    base = getattr(sys, "_base_executable", None)
    return base if base and Path(base).exists() else sys.executable


def _venv_python(venv: Path) -> Path:
    if os.name == "nt":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def _repo_files(root: Path, pattern: str) -> set[str]:
    """Paths relative to ``root`` of the files matching ``pattern``, without package markers."""
    return {
        path.relative_to(root).as_posix()
        for path in root.rglob(pattern)
        if path.is_file()
        and "__pycache__" not in path.parts
        and path.name != "__init__.py"
        and path.suffix != ".pyc"
    }


def _event_schema_count() -> int:
    platforms = [p for p in SCHEMAS.iterdir() if p.is_dir() and p.name != "__pycache__"]
    return sum(
        1
        for platform in platforms
        for path in platform.rglob("*.json")
        if path.name != "envelope.json"
    )


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A wheel built from a clean copy of the repository, without build isolation or network."""
    source = tmp_path_factory.mktemp("source") / "airhook"
    shutil.copytree(REPO, source, ignore=_NOT_SOURCES)
    out = tmp_path_factory.mktemp("wheelhouse")
    _run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-w",
            str(out),
            str(source),
        ],
        cwd=out,
        timeout=180,
    )
    wheels = sorted(out.glob("*.whl"))
    assert len(wheels) == 1, f"expected one wheel, got {wheels}"
    assert wheels[0].name.startswith("airflow_provider_airhook-"), wheels[0].name
    return wheels[0]


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory, wheel: Path) -> Path:
    """A fresh virtual environment holding the wheel plus the pure core's dependencies only."""
    root = tmp_path_factory.mktemp("fresh")
    venv = root / "venv"
    _run([_base_python(), "-m", "venv", str(venv)], cwd=root, timeout=180)
    python = str(_venv_python(venv))
    _run(
        [python, "-m", "pip", "install", "--no-deps", "--no-index", str(wheel)],
        cwd=root,
        timeout=180,
    )
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-c",
            str(CONSTRAINTS),
            "jsonschema",
            "fastjsonschema",
            "orjson",
        ],
        cwd=root,
        timeout=300,
    )
    return venv


@pytest.fixture(scope="module")
def probe(tmp_path_factory: pytest.TempPathFactory, venv: Path) -> dict[str, Any]:
    """What the installed airhook reports about itself, run isolated from outside the repo."""
    cwd = tmp_path_factory.mktemp("probe")
    script = cwd / "probe.py"
    script.write_text(PROBE, encoding="utf-8")
    proc = _run([str(_venv_python(venv)), "-I", str(script)], cwd=cwd, timeout=120)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_probe_imports_airhook_from_the_fresh_venv(probe: dict[str, Any], venv: Path) -> None:
    installed = Path(probe["airhook_file"]).resolve()
    assert installed.is_relative_to(venv.resolve()), installed
    assert not installed.is_relative_to(REPO / "plugin"), installed
    assert "site-packages" in installed.parts
    # The catalog and the package root must not need Airflow (it is not even installed there).
    assert probe["airflow_imported"] is False


@pytest.mark.slow
def test_every_schema_is_installed(probe: dict[str, Any]) -> None:
    expected = _repo_files(SCHEMAS, "*.json")
    assert expected, "no schemas found in the repository"
    installed = {name for name in probe["schemas"] if name.endswith(".json")}
    assert sorted(expected - installed) == [], "schemas missing from the wheel"
    assert sorted(installed - expected) == [], "schemas in the wheel but not in the repository"


@pytest.mark.slow
def test_every_template_is_installed(probe: dict[str, Any]) -> None:
    expected = _repo_files(TEMPLATES, "*")
    assert expected, "no templates found in the repository"
    installed = {name for name in probe["templates"] if Path(name).name != "__init__.py"}
    assert sorted(expected - installed) == [], "templates missing from the wheel"
    assert sorted(installed - expected) == [], "files in the wheel but not in templates/"


@pytest.mark.slow
def test_installed_catalog_loads_and_validates_every_sample(probe: dict[str, Any]) -> None:
    expected = _event_schema_count()
    assert expected > 0
    assert probe["events"] == expected
    platforms = sorted(p.name for p in SCHEMAS.iterdir() if p.is_dir() and p.name != "__pycache__")
    assert probe["platforms"] == platforms


@pytest.mark.slow
def test_py_typed_is_installed(probe: dict[str, Any], wheel: Path) -> None:
    assert probe["py_typed"] is True
    with zipfile.ZipFile(wheel) as zf:
        assert "airhook/py.typed" in zf.namelist()


@pytest.mark.slow
def test_wheel_holds_only_airhook_and_its_metadata(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
    strays = [n for n in names if not n.startswith(("airhook/", "airflow_provider_airhook-"))]
    assert strays == []
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.slow
def test_wheel_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        found = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        assert len(found) == 1, zf.namelist()
        text = zf.read(found[0]).decode("utf-8")
        metadata_name = next(n for n in zf.namelist() if n.endswith(".dist-info/METADATA"))
        metadata = zf.read(metadata_name).decode("utf-8")
    parser = ConfigParser()
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep names' case
    parser.read_string(text)
    assert "apache_airflow_provider" in parser, text
    assert "airhook.provider_info:get_provider_info" in parser["apache_airflow_provider"].values()
    assert "airflow.plugins" in parser, text
    assert dict(parser["airflow.plugins"]) == {"airhook": "airhook.plugin:AirhookPlugin"}
    assert f"\nName: {DIST}\n" in metadata


@pytest.mark.slow
def test_wheel_holds_every_module_of_the_package(wheel: Path) -> None:
    # setup.cfg lists packages by name: a new subpackage left out would import in the editable
    # install and vanish from the wheel.
    with zipfile.ZipFile(wheel) as archive:
        shipped = {name for name in archive.namelist() if name.endswith(".py")}
    source = REPO / "plugin"
    expected = {
        path.relative_to(source).as_posix()
        for path in source.rglob("*.py")
        if "__pycache__" not in path.parts and ".egg-info" not in str(path)
    }
    assert sorted(expected - shipped) == []
