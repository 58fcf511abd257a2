"""The README's Read screenshot: a real SROIE receipt read by the console of a real server.

    .venv/bin/python -m docs.read_screenshot ../shared/data/sroie-dev/img/000.jpg docs/console-read.png

Starts `ocr-server serve` on the default version (one worker), opens `/ui/` in the system Chromium
(tests/support/browser.py), reads the receipt with `fields=receipt`, selects its total's line, and
saves the page.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from server.repository.install import install_default
from server.repository.layout import ModelRepository
from tests.support.browser import chromium
from tests.support.server import PADDLE_VERSION, ROOT, copy_version, gunicorn_server


def main(receipt: Path, out: Path) -> None:
    with tempfile.TemporaryDirectory() as work:
        root = Path(work) / "models"
        copy_version(install_default(ModelRepository(ROOT / "models")), root, PADDLE_VERSION)
        with gunicorn_server(root, Path(work) / "logs", workers=1, threads=2) as server, chromium() as browser:
            page = browser.new_page(viewport={"width": 1400, "height": 1100})
            page.goto(f"{server.url}/ui/")
            page.select_option("#opt-fields", "receipt")
            page.set_input_files("#file", str(receipt))
            page.wait_for_selector("#answered-version", timeout=300_000)
            total = page.locator("li.line", has_text="Total").first
            if total.count():
                total.click()
            page.screenshot(path=str(out), full_page=False)


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
