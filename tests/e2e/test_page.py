"""The "Webhooks" page in a real browser: Debian's headless Chromium, driven by Selenium.

One Airflow (api-server, scheduler, dag-processor, triggerer on 127.0.0.1, SimpleAuthManager
with ``admin``, ``op`` and ``viewer``) serves the module. Through Airflow's own login form and
its ``/plugin/airhook`` route (the page in an iframe), the admin adds an RKT source, copies its
URL and secret from the one-time reveal box, and a signed event sent from Python to that URL
shows up on the page with the run of ``e2e_page`` (tests/e2e/dags) it started; re-dispatched
from the page, it starts a second run, which publishes it to a subscription added on the page
(a local HTTP server on 127.0.0.1): the page tests that subscription and shows the delivery with
its attempts. Then the secrets are rotated (the old one is refused, the new one accepted), the
source and the subscription disabled and deleted. A duplicate name shows the API's error in
place; a viewer sees no write control; the page without its API shows errors, never a blank page.

Selenium Manager never runs (it would try to download a browser): the driver is
``/usr/bin/chromedriver`` and the browser ``/usr/bin/chromium`` (``.ci/run`` installs both from
Debian's packages). Waits are explicit conditions on the DOM or the API, never fixed sleeps.
Screenshots go to ``tests/e2e/screenshots/`` (not committed; ``docs/images/`` holds the ones
the README shows).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import (
    ElementClickInterceptedException,
    ElementNotInteractableException,
    NoSuchElementException,
    StaleElementReferenceException,
    TimeoutException,
    WebDriverException,
)
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support import expected_conditions as EC
from selenium.webdriver.support.ui import Select, WebDriverWait

from airhook.core.catalog import load_catalog
from airhook.page import STATIC_DIR
from devstack import ADMIN_USER, AirflowStack
from tests.e2e import senders
from tests.e2e.conftest import E2E_DAGS, unique, wait_for

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SCREENSHOTS = Path(__file__).parent / "screenshots"
PAGE_PATH = "/airhook/manage/ui/"
DAG_ID = "e2e_page"
SOURCE = "page-rkt"
SUBSCRIPTION = "page-hook"
PASSWORDS = {"op": "op-page-pw", "viewer": "viewer-page-pw"}
#: How long a condition on the page may take: a DAG run on a loaded 2-core machine included.
PATIENCE = 180
STEP = 30

IGNORED = (StaleElementReferenceException, NoSuchElementException)


def _browser_or_skip() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    reason = f"{', '.join(missing)} missing (Debian: apt-get install chromium chromium-driver)"
    if os.environ.get("CI", "").lower() not in ("", "0", "false", "no"):
        pytest.fail(f"{reason}; .ci/run installs them")
    pytest.skip(reason)


def new_browser(profile: Path) -> webdriver.Chrome:
    """Headless Chromium from Debian's packages, a fresh profile, nothing fetched on its own."""
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1280,800",
        f"--user-data-dir={profile}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(120)
    return driver


class Browser:
    """A Chromium session on the page: waits, clicks and screenshots by ``data-testid``."""

    def __init__(self, driver: webdriver.Chrome, base_url: str) -> None:
        self.driver = driver
        self.base_url = base_url

    # --- waiting ---------------------------------------------------------------------------

    def until(self, condition: Callable[[Any], Any], timeout: float = STEP, what: str = "") -> Any:
        try:
            return WebDriverWait(
                self.driver, timeout, poll_frequency=0.25, ignored_exceptions=IGNORED
            ).until(condition)
        except TimeoutException:
            raise AssertionError(f"not within {timeout} s: {what or condition}") from None

    def find(self, css: str, timeout: float = STEP) -> WebElement:
        return self.until(EC.visibility_of_element_located((By.CSS_SELECTOR, css)), timeout, css)

    def gone(self, css: str, timeout: float = STEP) -> None:
        self.until(lambda d: not d.find_elements(By.CSS_SELECTOR, css), timeout, f"{css} gone")

    def all(self, css: str) -> list[WebElement]:
        return self.driver.find_elements(By.CSS_SELECTOR, css)

    def text(self, css: str, timeout: float = STEP) -> str:
        return str(self.find(css, timeout).text)

    def click(self, css: str, timeout: float = STEP) -> None:
        """Click the element once it is there and clickable (a refresh may replace it)."""

        def clicked(driver: Any) -> bool:
            try:
                element = driver.find_element(By.CSS_SELECTOR, css)
                if not (element.is_displayed() and element.is_enabled()):
                    return False
                element.click()
                return True
            except (ElementClickInterceptedException, ElementNotInteractableException):
                return False

        self.until(clicked, timeout, f"click {css}")

    def notice(self, text: str) -> None:
        """Wait until the page's notice line says ``text``."""
        self.until(
            lambda d: text in d.find_element(By.CSS_SELECTOR, "[data-testid=notice]").text,
            what=f"the notice {text!r}",
        )

    def viewport(self, width: int, height: int) -> None:
        """Make the top window's viewport this size (the window is larger by its frame)."""
        self.driver.set_window_size(width, height)
        inner = self.driver.execute_script(
            "const t = window.top; return [t.innerWidth, t.innerHeight];"
        )
        self.driver.set_window_size(2 * width - inner[0], 2 * height - inner[1])

    def type(self, css: str, text: str) -> None:
        element = self.find(css)
        element.clear()
        element.send_keys(text)

    # --- the page --------------------------------------------------------------------------

    def login(self, user: str, password: str) -> None:
        """Log in through Airflow's own form, then open the page's route and enter its iframe."""
        self.driver.switch_to.default_content()
        self.driver.get(f"{self.base_url}/auth/login?next=/plugin/airhook")
        self.find("input[name=username]", 60).send_keys(user)
        self.find("input[name=password]").send_keys(password)
        self.click("button[type=submit]")
        self.until(EC.url_contains("/plugin/airhook"), 60, "the page's route after login")
        self.enter_page()

    def enter_page(self) -> None:
        self.driver.switch_to.default_content()
        self.until(
            EC.frame_to_be_available_and_switch_to_it((By.TAG_NAME, "iframe")), 60, "the iframe"
        )
        self.until(
            lambda d: d.execute_script("return document.documentElement.dataset.ready") == "true",
            60,
            "the page ready",
        )

    def tab(self, name: str) -> None:
        self.click(f"[data-testid=tab-{name}]")
        self.find(f"[data-testid={name}-panel]")

    def row(self, kind: str, name: str) -> str:
        return f"[data-testid={kind}-row][data-name='{name}']"

    def shot(self, name: str) -> Path:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        path = SCREENSHOTS / f"{name}.png"
        self.driver.save_screenshot(str(path))
        return path

    def holds_text(self, text: str) -> bool:
        """Whether ``text`` is anywhere in the page's DOM: fields' values and visible text."""
        return bool(
            self.driver.execute_script(
                "const t = arguments[0];"
                "return [...document.querySelectorAll('input, textarea')]"
                "  .some(e => e.value.includes(t))"
                " || document.documentElement.outerHTML.includes(t)"
                " || document.body.innerText.includes(t);",
                text,
            )
        )

    def console(self) -> list[str]:
        try:
            return [entry["message"] for entry in self.driver.get_log("browser")]
        except WebDriverException:
            return []

    @contextmanager
    def evidence(self, name: str) -> Iterator[None]:
        """On a failure: a screenshot, the iframe's DOM and the browser console, for the report."""
        try:
            yield
        except BaseException:
            try:
                self.shot(f"failed-{name}")
                (SCREENSHOTS / f"failed-{name}.html").write_text(self.driver.page_source)
                print("--- browser console ---\n" + "\n".join(self.console()))
            except WebDriverException:
                pass
            raise


# --- a receiver for the subscription --------------------------------------------------------


class Receiver:
    """An HTTP server on 127.0.0.1 that answers 200 with JSON and keeps what it received."""

    def __init__(self) -> None:
        self.answer = {"received": True, "by": "page-test-receiver"}
        self.requests: list[dict[str, Any]] = []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                outer.requests.append(
                    {
                        "method": self.command,
                        "path": self.path,
                        "body": body.decode(errors="replace"),
                    }
                )
                data = json.dumps(outer.answer).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_POST = do_PUT = do_PATCH = _answer

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hooks/page"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


# --- fixtures --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def page_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AirflowStack]:
    """Airflow with the e2e_page DAG, three users, and outbound calls allowed to 127.0.0.1."""
    _browser_or_skip()
    root = tmp_path_factory.mktemp("page")
    dags = root / "dags"
    dags.mkdir()
    shutil.copy(E2E_DAGS / f"{DAG_ID}.py", dags / f"{DAG_ID}.py")
    passwords = root / "passwords.json"
    airflow = AirflowStack(
        home=root / "home",
        dags_folder=dags,
        extra_env={
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{ADMIN_USER}:admin,op:op,viewer:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
            "AIRFLOW__AIRHOOK__OUTBOUND_ALLOW_NETWORKS": "127.0.0.1/32",
        },
    )
    passwords.write_text(json.dumps({ADMIN_USER: airflow.admin_password, **PASSWORDS}))
    airflow.migrate()
    try:
        airflow.start()
        airflow.wait_for_dags([DAG_ID])
        yield airflow
    except BaseException:
        for component in ("api-server", "scheduler", "dag-processor", "triggerer"):
            print(f"--- {component} ---\n{airflow.tail(component)}")
        raise
    finally:
        airflow.stop()


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[Callable[[str], Browser]]:
    """Opens Chromium sessions on a base URL; quits every one at the end of the test."""
    _browser_or_skip()
    drivers: list[webdriver.Chrome] = []

    def open_browser(base_url: str) -> Browser:
        profile = Path(tempfile.mkdtemp(prefix="chromium-", dir=tmp_path))
        driver = new_browser(profile)
        drivers.append(driver)
        browser = Browser(driver, base_url)
        browser.viewport(1280, 800)
        return browser

    yield open_browser
    for driver in drivers:
        driver.quit()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    server = Receiver()
    yield server
    server.close()


# --- helpers ---------------------------------------------------------------------------------


def signed_rkt_event(url: str, secret: str) -> requests.Response:
    payload = unique(dict(load_catalog().event("rkt", "lead.captured").sample), "data", "leadId")
    headers, body = senders.rkt(payload, secret=secret)
    return requests.post(url, data=body, headers=headers, timeout=30)


def runs_of(stack: AirflowStack, token: str) -> list[dict[str, Any]]:
    return stack.dag_runs(DAG_ID, token=token)


def reveal(page: Browser) -> tuple[str, str]:
    """The one-time reveal box's receiver URL (if any) and secret."""
    page.find("[data-testid=reveal]")
    urls = page.all("[data-testid=reveal-url]")
    url = urls[0].get_attribute("value") if urls else ""
    secret = page.find("[data-testid=reveal-secret]").get_attribute("value")
    assert secret, "the reveal box shows no secret"
    return str(url or ""), str(secret)


def close_reveal(page: Browser, secret: str) -> None:
    page.click("[data-testid=reveal-close]")
    page.gone("dialog")
    assert not page.holds_text(secret), "the secret stayed in the DOM after the reveal closed"


# --- tests -----------------------------------------------------------------------------------


def test_without_its_api_the_page_shows_errors_not_a_blank_page(
    browser: Callable[[str], Browser], tmp_path: Path
) -> None:
    """The page's own files served alone (no API behind them): every panel says what failed."""
    root = tmp_path / "site"
    shutil.copytree(STATIC_DIR, root / PAGE_PATH.strip("/"))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        page = browser(f"http://127.0.0.1:{server.server_address[1]}")
        page.driver.get(page.base_url + PAGE_PATH)
        with page.evidence("no-api"):
            page.until(
                lambda d: (
                    d.execute_script("return document.documentElement.dataset.ready") == "true"
                ),
                what="the page ready",
            )
            assert not page.all("[data-testid=boot]"), "the loading text was not replaced"
            errors = page.all("[data-testid=error]")
            texts = "\n".join(e.text for e in errors)
            assert len(errors) >= 3, texts
            assert "HTTP 404" in texts, texts
            assert "/api/v1/sources" in texts, texts
            assert page.find("[data-testid=tab-sources]").is_displayed()
            # Read only when who you are is unknown.
            assert not page.all("[data-write]")
            page.click("[data-testid=tab-events]")
            page.find("#events-list [data-testid=error]")
    finally:
        server.shutdown()
        server.server_close()


def test_manage_webhooks_through_the_page(
    page_stack: AirflowStack, browser: Callable[[str], Browser], receiver: Receiver
) -> None:
    stack = page_stack
    token = stack.token()
    stack.api("PATCH", f"/api/v2/dags/{DAG_ID}", {"is_paused": False}, token=token)
    page = browser(stack.base_url)
    started = time.monotonic()

    with page.evidence("login"):
        page.login(ADMIN_USER, stack.admin_password)
        assert "admin" in page.text("[data-testid=whoami]")
        page.find("[data-testid=activity] [data-testid=chart-received]")

    # --- add a source: the URL and the secret are shown once ---------------------------------
    with page.evidence("add-source"):
        page.click("[data-testid=add-source]")
        page.type("[data-testid=source-name]", SOURCE)
        Select(page.find("[data-testid=source-platform]")).select_by_value("rkt")
        page.find("[data-testid=events-picker] input[value='message.*']")
        page.shot("add-source-form")
        page.click("[data-testid=source-submit]")
        url, secret = reveal(page)
        assert url == f"{stack.base_url}/airhook/webhooks/{SOURCE}"
        assert page.all("[data-testid=setup-steps] li"), "no setup steps for RKT"
        page.click("[data-testid=reveal-secret-copy]")
        page.until(
            lambda d: (
                d.find_element(By.CSS_SELECTOR, "[data-testid=reveal-secret-copy]").text == "Copied"
            ),
            what="the copy button's answer",
        )
        page.shot("add-source-secret")
        close_reveal(page, secret)
        page.find(page.row("source", SOURCE))

    # --- the same name again: the API's answer is shown in the form ---------------------------
    with page.evidence("duplicate"):
        page.click("[data-testid=add-source]")
        page.type("[data-testid=source-name]", SOURCE)
        page.click("[data-testid=source-submit]")
        error = page.find("[data-testid=source-form] [data-testid=error]")
        assert error.get_attribute("data-status") in {"409", "422"}, error.text
        assert SOURCE in error.text or "exist" in error.text, error.text
        page.shot("error-in-place")
        page.click("[data-testid=dialog-close]")
        page.gone("dialog")

    # --- a signed event from Python is recorded, with its DAG run ----------------------------
    with page.evidence("event"):
        answer = signed_rkt_event(url, secret)
        assert answer.status_code == 202, answer.text
        event_id = answer.json()["id"]
        page.click(f"{page.row('source', SOURCE)} [data-testid=source-events]")
        event_row = f"[data-testid=event-row][data-id='{event_id}']"
        page.click(event_row, PATIENCE)
        page.find(f"[data-testid=event-detail][data-id='{event_id}']")
        run = f"[data-testid=event-run][data-dag={DAG_ID}][data-state=success]"
        page.find(run, PATIENCE)
        assert "leadId" in page.text("[data-testid=event-payload]")

    # --- the source's own test: a signed sample through its receiver -------------------------
    with page.evidence("source-test"):
        page.tab("sources")
        page.click(f"{page.row('source', SOURCE)} [data-testid=source-test]")
        Select(page.find("[data-testid=test-event]")).select_by_value("lead.captured")
        page.click("[data-testid=test-send]")
        result = page.text("[data-testid=test-result]")
        assert "202" in result, result
        assert DAG_ID in result, result
        page.click("[data-testid=dialog-close]")
        page.gone("dialog")

    # --- a subscription to a local server: tested from the page ------------------------------
    with page.evidence("subscription"):
        page.tab("subscriptions")
        page.click("[data-testid=add-subscription]")
        page.type("[data-testid=subscription-name]", SUBSCRIPTION)
        page.type("[data-testid=subscription-url]", receiver.url)
        page.click("[data-testid=subscription-submit]")
        _, subscription_secret = reveal(page)
        close_reveal(page, subscription_secret)
        row = page.row("subscription", SUBSCRIPTION)
        page.find(row)
        page.click(f"{row} [data-testid=subscription-test]")
        Select(page.find("[data-testid=test-event]")).select_by_value("rkt:lead.captured")
        page.click("[data-testid=test-send]")
        assert page.text("[data-testid=test-status]") == "200"
        assert "page-test-receiver" in page.text("[data-testid=test-response]")
        page.shot("subscription-test")
        page.click("[data-testid=dialog-close]")
        page.gone("dialog")
        assert receiver.requests, "the test call did not reach the receiver"

    # --- re-dispatch from the page: a second run, which delivers to the subscription ---------
    with page.evidence("redispatch"):
        page.tab("events")
        page.click(event_row)
        page.click("[data-testid=event-redispatch]")
        page.until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, run)) >= 2,
            PATIENCE,
            "two successful runs of the event",
        )
        assert page.text("[data-testid=detail-redispatches]").startswith("1")
        page.shot("event-runs")
        assert len(runs_of(stack, token)) >= 2

    with page.evidence("deliveries"):
        page.tab("subscriptions")
        page.click(
            f"{page.row('subscription', SUBSCRIPTION)} [data-testid=subscription-deliveries]"
        )
        delivered = (
            f"[data-testid=delivery-row][data-subscription={SUBSCRIPTION}][data-status=delivered]"
        )
        page.click(delivered, PATIENCE)
        attempt = "[data-testid=delivery-detail] [data-testid=attempt-row][data-status='200']"
        page.find(attempt)
        assert page.text(f"{attempt} [data-testid=latency]").endswith("ms")
        page.shot("delivery-attempts")
        before = len(receiver.requests)
        page.click("[data-testid=delivery-replay]")
        page.notice("sent again")
        wait_for(lambda: len(receiver.requests) > before, timeout=STEP)
        page.until(
            lambda d: len(d.find_elements(By.CSS_SELECTOR, attempt)) >= 2,
            STEP,
            "the replay's attempt in the delivery's log",
        )

    # --- the activity charts count what happened ---------------------------------------------
    with page.evidence("activity"):
        page.click("[data-testid=refresh]")
        page.until(
            lambda d: (
                int(
                    d.find_element(
                        By.CSS_SELECTOR, "[data-testid=chart-received] [data-testid=chart-total]"
                    ).text
                )
                >= 1
            ),
            what="the received chart counts the event",
        )
        page.tab("sources")
        page.shot("overview")
        page.driver.execute_cdp_cmd(
            "Emulation.setEmulatedMedia",
            {"features": [{"name": "prefers-color-scheme", "value": "dark"}]},
        )
        page.until(
            lambda d: (
                d.execute_script("return getComputedStyle(document.body).backgroundColor").replace(
                    " ", ""
                )
                != "rgb(255,255,255)"
            ),
            what="the dark theme",
        )
        page.shot("overview-dark")
        page.driver.execute_cdp_cmd("Emulation.setEmulatedMedia", {"features": []})

    # --- rotate the source's secret: the old one is refused, the new one accepted ------------
    with page.evidence("rotate"):
        row = page.row("source", SOURCE)
        page.click(f"{row} [data-testid=source-secrets]")
        page.click("[data-testid=secret-generate-secondary]")
        _, new_secret = reveal(page)
        assert new_secret != secret
        close_reveal(page, new_secret)
        page.click(f"{row} [data-testid=source-secrets]")
        assert page.text("[data-testid=has-secondary]") == "yes"
        page.click("[data-testid=secret-rotate]")
        page.gone("dialog")
        page.notice("Rotate")
        # The old primary is the secondary now: both are accepted until it is dropped.
        page.click(f"{row} [data-testid=source-secrets]")
        page.click("[data-testid=secret-drop-secondary]")
        page.gone("dialog")
        page.notice("Drop the secondary")
        wait_for(lambda: signed_rkt_event(url, secret).status_code >= 400, timeout=STEP)
        assert signed_rkt_event(url, new_secret).status_code == 202

    # --- disable, then delete --------------------------------------------------------------
    with page.evidence("disable"):
        page.click(f"{row} [data-testid=source-toggle]")
        page.find(f"{row} [data-testid=state].disabled")
        wait_for(lambda: signed_rkt_event(url, new_secret).status_code >= 400, timeout=STEP)
        page.tab("subscriptions")
        sub_row = page.row("subscription", SUBSCRIPTION)
        page.click(f"{sub_row} [data-testid=subscription-toggle]")
        page.find(f"{sub_row} [data-testid=state].disabled")

    with page.evidence("narrow"):
        page.viewport(480, 900)
        page.find(page.row("subscription", SUBSCRIPTION))
        page.shot("narrow")
        page.viewport(1280, 800)

    with page.evidence("delete"):
        page.tab("subscriptions")
        page.click(f"{page.row('subscription', SUBSCRIPTION)} [data-testid=subscription-delete]")
        page.click("[data-testid=confirm-ok]")
        page.gone(page.row("subscription", SUBSCRIPTION))
        page.tab("sources")
        page.click(f"{page.row('source', SOURCE)} [data-testid=source-delete]")
        page.find("[data-testid=confirm]")
        page.click("[data-testid=confirm-ok]")
        page.gone(page.row("source", SOURCE))
        assert stack.api("GET", "/airhook/manage/api/v1/sources", token=token)["total"] == 0
    print(f"page flow: {time.monotonic() - started:.0f} s")


def test_a_viewer_sees_no_write_controls(
    page_stack: AirflowStack, browser: Callable[[str], Browser]
) -> None:
    page = browser(page_stack.base_url)
    with page.evidence("viewer"):
        page.login("viewer", PASSWORDS["viewer"])
        assert "read only" in page.text("[data-testid=whoami]")
        page.find("[data-testid=sources-panel]")
        for tab in ("sources", "subscriptions", "deliveries", "events"):
            page.tab(tab)
            page.gone("#panel [data-testid=loading]")
            assert not page.all("[data-write]"), f"write controls on {tab}"
            assert not page.all("[data-testid=error]"), page.text("[data-testid=error]")
        rows = page.all("[data-testid=event-row]")
        if rows:
            rows[0].click()
            page.find("[data-testid=event-detail]")
            assert not page.all("[data-testid=event-redispatch]")
        page.shot("viewer")

    with page.evidence("session-ended"):
        # The session ends (logged out elsewhere): the next call's 401 sends the whole window,
        # not just the iframe, to Airflow's login, to come back here.
        page.driver.delete_cookie("_token")
        page.click("[data-testid=refresh]")
        page.driver.switch_to.default_content()
        page.until(EC.url_contains("/auth/login"), 60, "Airflow's login page")
        assert "plugin%2Fairhook" in page.driver.current_url or "plugin/airhook" in (
            page.driver.current_url
        )


def test_the_page_is_served_without_login_and_the_api_is_not(page_stack: AirflowStack) -> None:
    page = requests.get(page_stack.base_url + PAGE_PATH, timeout=30)
    assert page.status_code == 200
    assert "app.js" in page.text
    script = requests.get(page_stack.base_url + PAGE_PATH + "app.js", timeout=30)
    assert script.status_code == 200
    assert "javascript" in script.headers["Content-Type"]
    api = requests.get(page_stack.base_url + "/airhook/manage/api/v1/sources", timeout=30)
    assert api.status_code == 401
