"""A real headless browser (Debian's chromium through its chromedriver) and a folder for
the screenshots the tests leave as artifacts.

Without chromium these tests fail, never skip: ``scripts/setup_browser.sh`` installs it
(scripts/test.sh runs it first).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture(scope="session")
def artifacts() -> Path:
    """``MRT_TEST_ARTIFACTS`` (CI uploads it) or ``tmp/artifacts`` in the work tree."""
    path = Path(os.environ.get("MRT_TEST_ARTIFACTS", REPO / "tmp" / "artifacts")) / "report"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for binary in (CHROMIUM, CHROMEDRIVER):
        if not shutil.which(binary):
            pytest.fail(f"{binary} is missing: run scripts/setup_browser.sh (as root)", pytrace=False)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--window-size=1280,1600", "--hide-scrollbars"):
        options.add_argument(flag)
    # Console messages (errors included) come back through chromedriver's log endpoint.
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()

