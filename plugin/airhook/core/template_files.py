"""Template files: which strings name one, where they are found, what their headers claim. Pure.

- :func:`is_template_name`: the rule telling a file name from inline template source.
- :class:`TemplateLoader`: caller folders first, then airhook's shipped templates
  (:func:`shipped_templates`); only files ending in :data:`TEMPLATE_SUFFIX`, so
  ``{% include %}`` cannot read ``airflow.cfg`` out of a search folder. It remembers which file
  each name came from, so errors name templates, not absolute paths.
- :class:`TemplateDoc` and :func:`template_doc`: the documentation comment a template starts
  with and the ``Supports:`` events it claims (tests render each claim).

The renderer (:mod:`airhook.core.rendering`) re-exports the public names.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path

import jinja2
from jinja2 import BaseLoader, FileSystemLoader, TemplateNotFound
from jinja2.loaders import split_template_path

from airhook.core.errors import TemplateRenderError

__all__ = [
    "TEMPLATE_SUFFIX",
    "TemplateDoc",
    "TemplateLoader",
    "is_template_name",
    "shipped_templates",
    "template_doc",
]

#: Only files with this suffix are templates, in caller folders and among the shipped ones.
TEMPLATE_SUFFIX = ".j2"

_PACKAGE = "airhook.templates"
_HEADER = re.compile(r"\A\s*\{#(.*?)#\}", re.DOTALL)


def is_template_name(value: str) -> bool:
    """Return whether ``value`` names a template file rather than being template source.

    The rule Airflow applies to ``template_ext``: a one-line string ending in ``.j2`` is a file
    name; anything else (a ``{`` or a newline in it, another ending) is the template itself.
    """
    return value.endswith(TEMPLATE_SUFFIX) and "\n" not in value and "{" not in value


def shipped_templates() -> list[str]:
    """Return the names of airhook's shipped templates (``slack.json.j2``, ``envelope/rkt…``)."""

    def walk(folder: Traversable, prefix: str) -> Iterator[str]:
        for entry in folder.iterdir():
            if entry.is_dir():
                if entry.name != "__pycache__":
                    yield from walk(entry, f"{prefix}{entry.name}/")
            elif entry.name.endswith(TEMPLATE_SUFFIX):
                yield f"{prefix}{entry.name}"

    return sorted(walk(resources.files(_PACKAGE), ""))


class TemplateLoader(BaseLoader):
    """Caller folders first, in order, then airhook's shipped templates; ``.j2`` files only.

    It remembers which file each name came from, so an error raised in an included template can
    be reported under the template's name rather than its absolute path.
    """

    def __init__(self, searchpath: Sequence[Path], *, shipped: bool) -> None:
        self.searchpath = tuple(searchpath)
        self.shipped = shipped
        self._folders = FileSystemLoader([str(p) for p in self.searchpath]) if searchpath else None
        self.names: dict[str, str] = {}

    def get_source(
        self, environment: jinja2.Environment, template: str
    ) -> tuple[str, str | None, Callable[[], bool] | None]:
        if not template.endswith(TEMPLATE_SUFFIX):
            raise TemplateNotFound(template, f"template names end with {TEMPLATE_SUFFIX}")
        if self._folders is not None:
            try:
                source, filename, uptodate = self._folders.get_source(environment, template)
            except TemplateNotFound:
                pass
            else:
                if filename is not None:
                    self.names[filename] = template
                return source, filename, uptodate
        if self.shipped:
            resource = resources.files(_PACKAGE).joinpath(*split_template_path(template))
            if resource.is_file():
                filename = str(resource)
                self.names[filename] = template
                # Shipped files change only with a new installation, i.e. a new process.
                return resource.read_text(encoding="utf-8"), filename, lambda: True
        raise TemplateNotFound(template)

    def list_templates(self) -> list[str]:
        names = set(shipped_templates()) if self.shipped else set()
        if self._folders is not None:
            names.update(n for n in self._folders.list_templates() if n.endswith(TEMPLATE_SUFFIX))
        return sorted(names)

    def name_of(self, filename: str | None, default: str) -> str:
        """Return the template name a loaded file was asked for by, else ``default``
        (inline templates' frames say ``<template>``)."""
        if filename is None or filename == "<template>":
            return default
        return self.names.get(filename, default)


@dataclass(frozen=True)
class TemplateDoc:
    """The documentation comment a template starts with, and the events it claims to support.

    The header's ``Supports:`` line lists ``platform:event`` patterns (``*`` a wildcard), comma
    separated; tests render each claimed sample event, so the claim is checked, not just stated.
    """

    name: str
    text: str
    supports: tuple[str, ...]

    @property
    def summary(self) -> str:
        """The header's first paragraph, on one line."""
        return " ".join(self.text.split("\n\n", 1)[0].split())

    def supports_event(self, platform: str, event_name: str) -> bool:
        """Return whether the template claims to render this platform's event."""
        key = f"{platform}:{event_name}"
        for pattern in self.supports:
            full = pattern if ":" in pattern else f"{pattern}:*"
            regex = ".*".join(re.escape(part) for part in full.split("*"))
            if re.fullmatch(regex, key):
                return True
        return False


def template_doc(name: str, source: str) -> TemplateDoc:
    """Read the ``{# … #}`` comment template ``name`` starts with (its ``source``).

    :raises TemplateRenderError: when the source does not start with such a comment.
    """
    match = _HEADER.match(source)
    if match is None:
        raise TemplateRenderError(name, 1, "the template does not start with a {# … #} comment")
    lines = [line.rstrip() for line in match.group(1).strip("\n").splitlines()]
    margin = min((len(x) - len(x.lstrip()) for x in lines if x.strip()), default=0)
    text = "\n".join(line[margin:] for line in lines).strip()
    supports: tuple[str, ...] = ()
    for line in text.splitlines():
        if line.startswith("Supports:"):
            items = line.removeprefix("Supports:").split(",")
            supports = tuple(item.strip() for item in items if item.strip())
    return TemplateDoc(name=name, text=text, supports=supports)
