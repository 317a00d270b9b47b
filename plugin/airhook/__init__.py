"""airhook: webhooks for Apache Airflow 3.

The package root imports nothing heavy and nothing from Airflow: the pure core
(``airhook.core``) is imported where it is used. ``airhook.on`` and ``airhook.on_kind`` (which
build Airflow assets) are loaded on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["__version__", "on", "on_kind"]


def __getattr__(name: str) -> Any:
    if name in ("on", "on_kind"):
        from airhook import assets

        return getattr(assets, name)
    raise AttributeError(f"module 'airhook' has no attribute {name!r}")
