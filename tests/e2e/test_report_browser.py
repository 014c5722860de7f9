"""The report opens in Debian's Chromium from a file, with no request leaving the machine, and
its plots are drawn. Needs /usr/bin/chromium (`make browser`); skipped without it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tasks.watch.report_page import render_page
from tests.e2e.test_ui import CHROMIUM, CHROMIUM_ARGS
from tests.unit.test_report import HOSTILE, history

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

LOCAL_SCHEMES = ("file:", "data:")


def open_page(path: Path) -> dict[str, Any]:
    """Load the page in Chromium; every request it made, the natural width of each image, and
    whether the hostile name ran as a script."""
    from playwright.sync_api import sync_playwright

    requests: list[str] = []
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 1200, "height": 900})
            page.on("request", lambda request: requests.append(request.url))
            dialogs: list[str] = []
            page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
            page.goto(path.as_uri(), wait_until="load")
            widths = page.eval_on_selector_all(
                "img", "images => images.map(i => i.complete ? i.naturalWidth : 0)"
            )
            headings = page.locator("h2").all_inner_texts()
        finally:
            browser.close()
    return {"requests": requests, "widths": widths, "headings": headings, "dialogs": dialogs}


def test_report_opens_offline_with_its_plots_and_no_request_leaving(tmp_path: Path) -> None:
    if not CHROMIUM.exists():
        pytest.skip("needs Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    path = tmp_path / "report.html"
    path.write_text(render_page(history(HOSTILE)))

    seen = open_page(path)

    assert seen["requests"], "the page load itself is a request: the listener must see it"
    leaving = [url for url in seen["requests"] if not url.startswith(LOCAL_SCHEMES)]
    assert leaving == []
    assert len(seen["widths"]) == 4 and all(width > 0 for width in seen["widths"])
    assert seen["dialogs"] == []  # the hostile feature name was shown, not run
    assert seen["headings"][:2] == ["Performance per batch", "Promotion decisions"]
