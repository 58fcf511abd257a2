"""A real browser for the console tests: Debian's `chromium`, driven by Playwright for Python.

Playwright's own browser download cannot reach its host here, so the system browser is launched by
path (`executable_path`), headless, with `--no-sandbox` (the tests run as root, where Chromium's
sandbox refuses to start). `.ci/run` installs the package (apt-get install chromium); without it the
tests skip with the reason, and with `OCR_REQUIRE_BROWSER=1` (CI) they fail instead.
"""

from __future__ import annotations

import os
import shutil
from contextlib import contextmanager
from typing import Any, Iterator

import pytest

CANDIDATES = ("chromium", "chromium-browser")


def chromium_path() -> str:
    """The system Chromium, or skip (fail in CI) saying how to get it."""
    for name in CANDIDATES:
        found = shutil.which(name)
        if found:
            return found
    message = "no system Chromium: apt-get install chromium (.ci/run does)"
    if os.environ.get("OCR_REQUIRE_BROWSER") == "1":
        pytest.fail(message + "; OCR_REQUIRE_BROWSER=1 makes this a failure")
    pytest.skip(message)


@contextmanager
def chromium() -> Iterator[Any]:
    """A headless Chromium (a Playwright `Browser`), closed at exit."""
    path = chromium_path()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=path, headless=True,
                                             args=["--no-sandbox", "--disable-dev-shm-usage"])
        try:
            yield browser
        finally:
            browser.close()
