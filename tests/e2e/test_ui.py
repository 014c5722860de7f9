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
            # The API asks for the auth string: without it the UI shows its login page.
            page.goto(f"{ui}/deployments")
            page.get_by_role("button", name="Login").wait_for()
            page.screenshot(path=str(ARTIFACTS / "ui-login.png"), full_page=True)
            page.locator("input[type=password]").fill(service["env"]["PREFECT_API_AUTH_STRING"])
            page.get_by_role("button", name="Login").click()
            page.goto(f"{ui}/deployments")
            page.get_by_text("training", exact=True).first.wait_for()
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
            page.get_by_role("button", name="Submit").click()
            deadline = time.monotonic() + 60
            # Playwright's sync API runs an event loop in this thread: ask the API from another.
            with ThreadPoolExecutor(1) as other:
                while time.monotonic() < deadline:
                    if other.submit(runs_with_reason, service, REASON).result():
                        break
                    time.sleep(1)
            page.screenshot(path=str(ARTIFACTS / "ui-custom-run-submitted.png"), full_page=True)
        finally:
            browser.close()
    [run] = runs_with_reason(service, REASON)
    assert run.parameters["reason"] == REASON
    assert run.parameters["batches"] == ""  # the others kept their defaults
    assert run.parameters["dataset"] == "flights"
