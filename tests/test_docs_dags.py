"""Every Python block of the platform guides and of docs/dags-on-events.md is a DAG file that works.

Each ```` ```python ```` block of ``docs/platforms/*.md`` and ``docs/dags-on-events.md`` is a
complete file: it is written to a DAG folder of its own and parsed by Airflow's ``DagBag`` (what
the DAG processor runs) in a fresh ``AIRFLOW_HOME``, in a child process: no import error, at
least one DAG per file, each DAG with tasks and serializable as the DAG processor stores it. DAGs
scheduled on airhook's assets name only events their source's platform has (``airhook.on("rkt",
"ticket.*")`` without ``platform="rkt"`` would also name eeV.ai's ``ticket.assigned``).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from airhook.core.catalog import CANONICAL_KINDS, load_catalog
from tests.airflow_run import airflow_env

REPO = Path(__file__).resolve().parents[1]
PAGES = [*sorted((REPO / "docs" / "platforms").glob("*.md")), REPO / "docs" / "dags-on-events.md"]


def python_blocks(page: Path) -> list[tuple[int, str]]:
    """(line, source) of each ```python block of the page."""
    found = []
    text = page.read_text(encoding="utf-8")
    for match in re.finditer(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        found.append((text.count("\n", 0, match.start()) + 1, match.group(1)))
    return found


BLOCKS = [(page, line, source) for page in PAGES for line, source in python_blocks(page)]
IDS = [f"{page.name}:{line}" for page, line, _ in BLOCKS]

#: Run in the child: parse the folder, report every DAG, its tasks and the assets it waits for.
_PARSE = r"""
import json, sys
from airflow.dag_processing.dagbag import DagBag
from airflow.serialization.serialized_objects import DagSerialization
from airflow.sdk import Asset

def names(condition):
    if condition is None:
        return []
    if isinstance(condition, Asset):
        return [condition.name]
    return [name for part in getattr(condition, "objects", ()) for name in names(part)]

bag = DagBag(dag_folder=sys.argv[1])
report = {"errors": {str(k): str(v) for k, v in bag.import_errors.items()}, "dags": {}}
for dag_id, dag in bag.dags.items():
    DagSerialization.to_dict(dag)  # what the DAG processor stores; raises if it cannot
    assets = sorted(set(names(getattr(dag.timetable, "asset_condition", None))))
    report["dags"][dag_id] = {
        "file": dag.fileloc, "tasks": sorted(dag.task_dict), "assets": assets,
    }
print(json.dumps(report))
"""


def test_the_pages_have_dags() -> None:
    assert {page.name for page, _, _ in BLOCKS} == {page.name for page in PAGES}
    assert len(BLOCKS) >= 12


@pytest.mark.parametrize(("page", "line", "source"), BLOCKS, ids=IDS)
def test_every_block_is_a_complete_dag_file(page: Path, line: int, source: str) -> None:
    compile(source, f"{page.name}:{line}", "exec")  # a syntax error names the block
    assert re.search(r"^@dag\(|DAG\(", source, re.MULTILINE), "every block defines a DAG"
    assert "from __future__ import annotations" in source  # a file, not a fragment
    assert re.search(r"^\w+\(\)$", source, re.MULTILINE), "the DAG function is called"


def test_every_dag_parses_builds_and_serializes(tmp_path: Path) -> None:
    dags = tmp_path / "dags"
    dags.mkdir()
    files = {}
    for (page, line, source), name in zip(BLOCKS, IDS, strict=True):
        path = dags / f"{page.stem.replace('-', '_')}_{line}.py"
        path.write_text(source, encoding="utf-8")
        files[str(path)] = name
    result = subprocess.run(
        [sys.executable, "-c", _PARSE, str(dags)],
        env=airflow_env(tmp_path / "home", dags),
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    errors = {files.get(path, path): error for path, error in report["errors"].items()}
    assert not errors, errors
    by_file: dict[str, list[str]] = {}
    for dag_id, dag in report["dags"].items():
        by_file.setdefault(files[dag["file"]], []).append(dag_id)
        assert dag["tasks"], dag_id
    # Every block builds at least one DAG, and DAG ids are unique across the pages (a DagBag
    # keeps one DAG per id: a duplicate would have been reported as an import error).
    assert sorted(by_file) == sorted(IDS)

    catalog = load_catalog()
    for dag_id, dag in report["dags"].items():
        for asset in dag["assets"]:
            scheme, _, rest = asset.partition("://")
            if scheme == "airhook-kind":
                assert rest in CANONICAL_KINDS, (dag_id, asset)
                continue
            assert scheme == "airhook", (dag_id, asset)
            source, _, event = rest.partition("/")
            if source in catalog.platforms and event:
                assert event in {e.name for e in catalog.events(source)}, (dag_id, asset)
