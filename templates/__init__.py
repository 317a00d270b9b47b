"""airhook's shipped outbound body templates (package data: ``.j2`` files only).

Found with ``importlib.resources.files("airhook.templates")``; rendered by
:mod:`airhook.core.rendering`. See ``docs/templates.md``.
"""
