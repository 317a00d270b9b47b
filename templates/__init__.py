"""Outbound templates: the shipped ``.j2`` files, and the sandboxed renderer that reads them.

This package is both the folder of airhook's shipped templates (package data, found with
``importlib.resources.files("airhook.templates")``) and the module that renders them. The
renderer lives here rather than in a sibling ``airhook/templates.py`` because a module and a
package of the same name collide: an installed wheel would import the package and an editable
install the module. The names below are loaded on first use, so that reading the shipped files
costs no ``jinja2`` import (the catalog-only environment of the packaging test has no Jinja).

Pure core: jinja2 and orjson only, no Airflow. See ``docs/templates.md``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "DEFAULT_MAX_OUTPUT_CHARS",
    "INLINE",
    "STANDARD_VARIABLES",
    "TEMPLATE_SUFFIX",
    "TemplateDoc",
    "TemplateRenderer",
    "is_template_name",
    "renderer_for",
    "shipped_templates",
    "template_context",
]

if TYPE_CHECKING:
    from airhook.templates._render import (
        DEFAULT_MAX_OUTPUT_CHARS,
        INLINE,
        STANDARD_VARIABLES,
        TEMPLATE_SUFFIX,
        TemplateDoc,
        TemplateRenderer,
        is_template_name,
        renderer_for,
        shipped_templates,
        template_context,
    )


def __getattr__(name: str) -> Any:
    if name in __all__:
        from airhook.templates import _render

        return getattr(_render, name)
    raise AttributeError(f"module 'airhook.templates' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
