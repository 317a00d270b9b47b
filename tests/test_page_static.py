"""The page's script never turns data into HTML or code (a guard, read from the shipped files).

``app.js`` builds every element with ``document.createElement`` and sets data as text
(``textContent``, text nodes, attribute values): the API's data (payloads, event names, headers,
response excerpts, names, error details) comes from webhook senders and receivers, so any of
these sinks would make the page XSS-able by whoever can send an event. A headless Chromium run
against a stub API that put script-bearing strings in every field ran none of them (checked
in a security review; this test keeps the sinks out).
"""

from __future__ import annotations

import re

import pytest

from airhook.page import STATIC_DIR

SCRIPT = (STATIC_DIR / "app.js").read_text(encoding="utf-8")

# Each is a way text becomes markup or code in a page.
SINKS = {
    "innerHTML": r"\.innerHTML\b",
    "outerHTML": r"\.outerHTML\b",
    "insertAdjacentHTML": r"\binsertAdjacentHTML\b",
    "document.write": r"\bdocument\.write(ln)?\s*\(",
    "eval": r"(?<![\w.])eval\s*\(",
    "new Function": r"\bnew\s+Function\s*\(",
    "a string to setTimeout/setInterval": r"\bset(Timeout|Interval)\s*\(\s*[\"'`]",
    "srcdoc": r"\bsrcdoc\b",
    "createContextualFragment": r"\bcreateContextualFragment\b",
    "an inline event handler attribute": r"setAttribute\(\s*[\"']on",
    "a javascript: URL": r"javascript:",
}


@pytest.mark.parametrize("sink", SINKS)
def test_the_page_script_has_no_html_or_code_sink(sink: str) -> None:
    found = [
        f"line {n}: {line.strip()}"
        for n, line in enumerate(SCRIPT.splitlines(), 1)
        if re.search(SINKS[sink], line) and not line.lstrip().startswith("//")
    ]
    assert not found, f"{sink} in app.js: {found}"


def test_the_one_parser_of_html_only_reads_its_text() -> None:
    # A non-JSON error page is parsed to show its text: DOMParser's document runs no script,
    # loads nothing, and only its textContent leaves it.
    uses = [line.strip() for line in SCRIPT.splitlines() if "DOMParser" in line]
    assert uses, "the test's premise changed: app.js no longer parses HTML"
    assert all(".body?.textContent" in line for line in uses), uses
