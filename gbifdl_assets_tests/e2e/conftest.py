"""Fixtures of the end-to-end tests: a headless Chromium driven by Selenium."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gbifdl_assets_tests.harness.debian import ensure_command


@pytest.fixture
def browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    # the Debian chromium and chromedriver are given explicitly: Selenium Manager must not download any
    monkeypatch.setenv("SE_OFFLINE", "true")
    chromium = ensure_command("chromium", "chromium")
    chromedriver = ensure_command("chromedriver", "chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = chromium
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})  # console errors, CSP violations
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                "--window-size=1400,900", f"--user-data-dir={tmp_path / 'chrome-profile'}"):  # fmt: skip
        options.add_argument(arg)
    driver = webdriver.Chrome(
        service=Service(executable_path=chromedriver, log_output=str(tmp_path / "chromedriver.log")),
        options=options,
    )
    try:
        yield driver
    finally:
        driver.quit()
