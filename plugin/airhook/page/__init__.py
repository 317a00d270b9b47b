"""The "Webhooks" page in Airflow's UI: plain HTML, CSS and JavaScript modules in ``static/``.

The management API serves ``static/`` at ``/airhook/manage/ui/`` and the plugin registers it as
an ``external_views`` navigation entry (Admin → Webhooks, ``/plugin/airhook``), which Airflow's UI
shows in an iframe. The files hold no data and need no login; every call they make goes to the
management API (``../api/v1/`` from ``app.js``), which authenticates the UI's own session.

Why ``external_views`` and not ``react_apps`` (Airflow 3.3.2, checked in a real API server and
in headless Chromium):

- **No build chain.** The page is ES modules the browser loads as they are: the files in
  ``static/`` are the source and what the wheel ships, so ``make test`` checks exactly what users
  get, with no Node.js, no bundler and nothing generated to keep in sync. A ``react_apps`` entry
  must be a bundle that assigns a React component to ``globalThis.AirflowPlugin`` and borrows
  the host UI's ``React``, ``ReactDOM``, ``ChakraUI`` and ``EmotionReact`` globals (Airflow's own
  edge3 provider builds one with Vite to a UMD file); without JSX that means hand-written
  ``React.createElement`` against Chakra versions airhook does not choose.
- **Stability.** ``react_apps`` is marked experimental in Airflow 3.1+ and its contract is the
  host UI's globals, which any Airflow release may change; an iframe page depends on nothing but
  the ``external_views`` entry (``name``, ``href``, ``url_route``, ``category``).
- **Auth works as is.** The iframe is same-origin (``sandbox="allow-scripts allow-same-origin
  allow-forms allow-downloads"``), so the browser sends the UI's ``_token`` cookie with every
  ``fetch(..., {credentials: "same-origin"})`` and Airflow's ``get_user`` accepts it: verified as
  viewer and op from ``/plugin/<route>``. On a 401 the page sends the top window to Airflow's
  ``/api/v2/auth/login?next=...``, as the host UI does.
- **Testable.** Selenium drives it in Debian's headless Chromium by switching into the iframe
  (``tests/e2e/test_page.py``: login through Airflow's form, then every action of the page
  against a real Airflow).
- **Look.** It does not inherit Chakra's components; ``app.css`` follows the light or dark theme
  (``prefers-color-scheme``, and the host UI's ``<html class="dark">`` when it can read it).

Rules the files keep: no framework, no CDN, no external asset (airhook runs on closed networks);
API URLs relative to the page's own location, so an ``[api] base_url`` path prefix works; a
secret reaches the DOM only in the one-time reveal box and is cleared when it closes; an API
error is shown where it happened, with the API's detail, never as a blank page.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["STATIC_DIR"]

#: The page's files, as shipped in the wheel (``index.html``, ``app.js``, ``app.css``).
STATIC_DIR = Path(__file__).resolve().parent / "static"
