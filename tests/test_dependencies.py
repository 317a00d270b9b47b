"""Every package the shipped code imports is declared in setup.cfg's install_requires."""

from __future__ import annotations

import ast
import configparser
import re
import sys
from importlib.metadata import packages_distributions
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHIPPED = [REPO / "plugin" / "airhook", REPO / "templates", REPO / "schemas"]


def _imported_top_levels() -> dict[str, set[str]]:
    """Top-level module name -> the files that import it (absolute imports only)."""
    found: dict[str, set[str]] = {}
    for folder in SHIPPED:
        for path in folder.rglob("*.py"):
            tree = ast.parse(path.read_text(encoding="utf-8"))
            for node in ast.walk(tree):
                if isinstance(node, ast.Import):
                    names = [alias.name for alias in node.names]
                elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                    names = [node.module]
                else:
                    continue
                for name in names:
                    found.setdefault(name.split(".")[0], set()).add(str(path.relative_to(REPO)))
    return found


def _declared() -> set[str]:
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    lines = config["options"]["install_requires"].strip().splitlines()
    return {
        re.split(r"[<>=!~\[ ;]", line.strip(), maxsplit=1)[0].lower().replace("_", "-")
        for line in lines
        if line.strip() and not line.strip().startswith("#")
    }


def test_every_imported_package_is_declared() -> None:
    distributions = packages_distributions()
    declared = _declared()
    undeclared: dict[str, set[str]] = {}
    for module, files in _imported_top_levels().items():
        if module in sys.stdlib_module_names or module == "airhook":
            continue
        owners = {d.lower().replace("_", "-") for d in distributions.get(module, [])}
        # Airflow's own modules ship in apache-airflow-core / -task-sdk, which apache-airflow
        # brings: declaring apache-airflow covers them.
        if module == "airflow":
            owners = {"apache-airflow"}
        if not owners & declared:
            undeclared[module] = files
    assert undeclared == {}, undeclared
