"""A headless Chromium for the report tests: Debian's chromium driven by its chromedriver (Selenium).

:func:`open_page` loads a local HTML file and returns a :class:`Page` that
knows what the browser logged: JavaScript console messages (``SEVERE`` ones
are errors) and every network request the page made (from Chromium's
performance log, ``Network.requestWillBeSent``), so a test can fail on a
script error or on anything fetched from outside the file.
"""

from __future__ import annotations

import base64
import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


def available() -> str:
    """"" when Debian's chromium and chromium-driver are installed, else what is missing."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if shutil.which(p) is None]
    return f"{', '.join(missing)} missing (scripts/install-deps.sh installs chromium chromium-driver)" \
        if missing else ""


@dataclass
class Page:
    """A loaded page: the driver, plus what the browser logged while loading it."""

    driver: webdriver.Chrome
    console: list[dict[str, Any]]
    requests: list[str]

    def js(self, script: str, *args: object) -> Any:
        """Run ``script`` in the page (``return ...`` gives its value)."""
        return self.driver.execute_script(script, *args)

    def errors(self) -> list[str]:
        """The console's SEVERE messages (JavaScript errors, failed loads, CSP violations)."""
        return [str(m.get("message")) for m in self.console if m.get("level") == "SEVERE"]

    def screenshot(self, path: Path, full: bool = False) -> None:
        """A PNG of the viewport, or with ``full`` of the whole page (DevTools' captureBeyondViewport)."""
        if not full:
            self.driver.save_screenshot(str(path))
            return
        size = self.js("return [document.documentElement.scrollWidth, document.documentElement.scrollHeight]")
        shot = self.driver.execute_cdp_cmd("Page.captureScreenshot", {
            "captureBeyondViewport": True, "clip": {"x": 0, "y": 0, "width": size[0], "height": size[1],
                                                    "scale": 1}})
        path.write_bytes(base64.b64decode(shot["data"]))

    def element_screenshot(self, element_id: str, path: Path) -> None:
        """A PNG of the element with id ``element_id``, scrolled into view."""
        self.driver.find_element("id", element_id).screenshot(str(path))


def _requests(perf_log: list[dict[str, Any]]) -> list[str]:
    urls = []
    for entry in perf_log:
        message = json.loads(entry["message"])["message"]
        if message.get("method") == "Network.requestWillBeSent":
            urls.append(str(message["params"]["request"]["url"]))
    return urls


@contextmanager
def open_page(path: Path, width: int = 1280, height: int = 1000) -> Iterator[Page]:
    """Load ``path`` (a local file) in headless Chromium at ``width`` × ``height`` CSS pixels.

    The browser resolves no host name (``--host-resolver-rules``), so a page
    that tries to fetch anything fails visibly, and the request is still logged.
    """
    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                f"--window-size={width},{height}", "--host-resolver-rules=MAP * ~NOTFOUND",
                "--hide-scrollbars", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        driver.get(path.resolve().as_uri())
        console = driver.get_log("browser")  # type: ignore[no-untyped-call]
        performance = driver.get_log("performance")  # type: ignore[no-untyped-call]
        page = Page(driver, list(console), _requests(list(performance)))
        yield page
    finally:
        driver.quit()
