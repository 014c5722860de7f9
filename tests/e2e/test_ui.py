"""The Prefect UI in a real browser (Debian's Chromium driven by Playwright): sign in with the
served stack's auth string, open the flights `training` deployment, start a custom run with a
changed parameter, and check through the API that the run was created with it. Screenshots are
kept under test-artifacts/.

Needs /usr/bin/chromium (`make browser` installs it as root with apt; without it the test is
skipped) and Playwright's Python package (in the dev group; it drives that Chromium, it never
downloads a browser).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, served_stack
from tests.e2e.test_served_mode import api

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.slow,
    pytest.mark.timeout(900),
]

CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "test-artifacts"
REASON = "custom run from the UI test"
# Offline, quiet Chromium (shared NOTES): no update checks, no sync, no QUIC.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]


@pytest.fixture(scope="module")
def service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    home = tmp_path_factory.mktemp("ui") / "home"
    with served_stack(home) as state:
        yield state


def deployment_id(service: dict[str, Any]) -> str:
    async def call(client: Any) -> str:
        found = await client.read_deployment_by_name("training/flights")
        return str(found.id)

    return str(api(service, call))


def runs_with_reason(service: dict[str, Any], reason: str) -> list[Any]:
    from tests.e2e.test_served_mode import training_runs

    return [r for r in training_runs(service) if r.parameters.get("reason") == reason]


SUBMIT_ATTEMPTS = 10  # 3 refusals in a row seen; each attempt takes about a second


def refusals(failures: list[str]) -> int:
    """The UI's run submits the API refused."""
    return sum("/create_flow_run " in failure for failure in failures)


def wait_for_run(page: Any, service: dict[str, Any], failures: list[str], before: int) -> str:
    """Poll for 60 s until the API holds the UI's run ("created") or `failures` holds more
    refused submits than `before` ("refused"); else "timeout"."""
    deadline = time.monotonic() + 60
    # Playwright's sync API runs an event loop in this thread: ask the API from another.
    with ThreadPoolExecutor(1) as other:
        while time.monotonic() < deadline:
            if other.submit(runs_with_reason, service, REASON).result():
                return "created"
            if refusals(failures) > before:
                return "refused"
            page.wait_for_timeout(500)  # the page's own loop keeps running meanwhile
    return "timeout"


def test_custom_run_from_the_ui_carries_the_changed_parameter(service: dict[str, Any]) -> None:
    from playwright.sync_api import sync_playwright

    ui = service["prefect_ui"]
    identifier = deployment_id(service)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(60_000)
            # What the UI's requests got back when they failed: the UI itself only says
            # "Something went wrong".
            failures: list[str] = []
            page.on(
                "response",
                lambda r: (
                    failures.append(f"{r.request.method} {r.url} -> {r.status}: {r.text()}")
                    if r.status >= 400 and "/api/" in r.url
                    else None
                ),
            )
            # The API asks for the auth string: without it the UI shows its login page.
            page.goto(f"{ui}/deployments")
            page.get_by_role("button", name="Login").wait_for()
            page.screenshot(path=str(ARTIFACTS / "ui-login.png"), full_page=True)
            page.locator("input[type=password]").fill(service["env"]["PREFECT_API_AUTH_STRING"])
            page.get_by_role("button", name="Login").click()
            page.goto(f"{ui}/deployments")
            page.get_by_text("training", exact=True).first.wait_for()
            failures.clear()  # signed in: the 401s of the login page were expected
            page.locator(f"a[href*='/deployments/deployment/{identifier}']").first.click()
            page.wait_for_url(f"**/deployments/deployment/{identifier}**")
            page.get_by_role("button", name="Run", exact=True).click()
            page.get_by_text("Custom run", exact=True).click()
            page.wait_for_url(f"**/deployments/deployment/{identifier}/run**")
            # The form lists the parameters in signature order: batches, trials, reason, ...
            page.get_by_text("Why this run happens", exact=False).first.wait_for()
            reason_box = page.locator("textarea").nth(1)  # batches is the first text box
            reason_box.fill(REASON)
            page.screenshot(path=str(ARTIFACTS / "ui-custom-run-form.png"), full_page=True)
            # On SQLite, Prefect's server answers a write that meets another writer with 503
            # "database is locked" (PrefectHQ/prefect#16102, #18934); its Python client retries,
            # its UI shows "Oops. Something went wrong." and leaves the form as it was. A user
            # submits again, and so does this test, saying so in the output with what the API
            # answered. Served mode on PostgreSQL (PERENNIAL_DB_URL) does not lock.
            for attempt in range(1, SUBMIT_ATTEMPTS + 1):
                before = refusals(failures)
                page.get_by_role("button", name="Submit").click()
                outcome = wait_for_run(page, service, failures, before)
                if outcome != "refused":
                    break
                page.screenshot(path=str(ARTIFACTS / f"ui-refused-{attempt}.png"), full_page=True)
                warnings.warn(f"submit {attempt} refused: {failures[-1]}", stacklevel=1)
                page.wait_for_timeout(1000)  # as a user would: a moment, then submit again
            page.screenshot(path=str(ARTIFACTS / "ui-custom-run-submitted.png"), full_page=True)
        finally:
            browser.close()
    runs = runs_with_reason(service, REASON)
    assert len(runs) == 1, f"{len(runs)} runs with the reason; failed API calls: {failures}"
    [run] = runs
    assert run.parameters["reason"] == REASON
    assert run.parameters["batches"] == ""  # the others kept their defaults
    assert run.parameters["dataset"] == "flights"
