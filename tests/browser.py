"""Opening the platform's HTML reports in headless Chromium (Debian's chromium and chromium-driver,
driven by Selenium), with no network: any request leaving the page fails and logs a SEVERE error,
which :class:`PageCheck` collects so a test can prove the page is self-contained."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",
    # Any request leaving the page fails (and logs a SEVERE error): proves it needs no network.
    "--host-resolver-rules=MAP * ~NOTFOUND",
)


@dataclass
class PageCheck:
    """A page as the browser drew it: its title, what ``script`` returned, its SEVERE log entries."""

    title: str
    result: Any
    severe: list[dict[str, Any]]


@contextmanager
def chromium(profile: Path) -> Iterator[Any]:
    """A headless Chromium WebDriver with a fresh profile in ``profile``. Without Chromium the test
    fails under ``make test`` (which installs it and sets ``LAVIE_REQUIRE_BROWSER``) and is skipped
    in a bare ``pytest`` run."""
    binary, driver_binary = shutil.which("chromium"), shutil.which("chromedriver")
    if not (binary and driver_binary):
        reason = "Debian's chromium and chromium-driver are not installed (run scripts/ensure_chromium.sh)"
        if os.environ.get("LAVIE_REQUIRE_BROWSER"):  # `make test` installs them first: never skip there
            pytest.fail(reason)
        pytest.skip(reason)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_binary), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(page: Path, profile: Path, script: str) -> PageCheck:
    """Load ``page`` (a local HTML file), run ``script`` in it and collect its SEVERE log entries."""
    with chromium(profile) as driver:
        driver.get(page.as_uri())
        result = driver.execute_script(script)
        severe = [entry for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]
        return PageCheck(driver.title, result, severe)
