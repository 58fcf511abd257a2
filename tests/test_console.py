"""The web console (/ui/) in a real browser against one real Gunicorn server with two real versions.

Headless Debian Chromium driven by Playwright (tests/support/browser.py). The server serves the
default PP-OCRv4 weights as two versions that read digits differently (tests/support/lifecycle.py),
under an access policy with a viewer key and a releaser + auditor key. The tests share that server
and run in file order: the last two pin a version from the page (which changes what the server serves),
then start a canary from the page, read its A/B report and abort it.

With OCR_CONSOLE_SCREENSHOTS=DIR the Models and Audit pages are also saved as PNG into DIR (docs/ holds
them; the Read page's picture is a real receipt: docs/read_screenshot.py).
"""

from __future__ import annotations

import base64
import io
import os
import re
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests
import yaml

from server.config import Settings
from server.governance.access import hash_api_key
from server.http.app import create_app
from server.http.console.views import CSP, STATIC
from server.repository.layout import ModelRepository
from server.repository.publish import publish
from tests.support import browser as browser_support
from tests.support.browser import chromium
from tests.support.images import encode, render_text, squash
from tests.support.lifecycle import (
    DIGITS,
    digit_permutation,
    make_source,
    publish_variant,
    wait_for,
    write_golden_set,
)
from tests.support.pdfs import build_pdf, text_page
from tests.support.server import RunningServer, gunicorn_server

VIEWER_KEY = "ocrk_console-viewer"
OPS_KEY = "ocrk_console-ops"  # releaser and auditor
OLD, NEW = "1.0.0", "1.1.0"  # NEW reads digit d as digit_permutation(3)[d]
GARBAGE = "1.2.0"  # every class of its dictionary shifted by one: reads garbage, rejected by the gate
XSS = "<img src=x onerror=alert(1)>"
SHOTS = os.environ.get("OCR_CONSOLE_SCREENSHOTS")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path) -> Iterator[RunningServer]:
    base = tmp_path_factory.mktemp("console")
    root = base / "models"
    publish(default_version_dir, ModelRepository(root), OLD, created_by="tests")
    publish_variant(default_version_dir, root, NEW, 3, base)
    publish(make_source(default_version_dir, base / "src-garbage", rotate_all=True), ModelRepository(root), GARBAGE)
    write_golden_set(root / "golden")
    policy = base / "policy.yaml"
    policy.write_text(yaml.safe_dump({"anonymous": [], "api_keys": [
        {"name": "viewer", "sha256": hash_api_key(VIEWER_KEY), "roles": ["viewer"]},
        {"name": "ops", "sha256": hash_api_key(OPS_KEY), "roles": ["releaser", "auditor"]}]}))
    env = {"OCR_AUTH_CONFIG": str(policy), "OCR_MODEL_POLL_S": "1", "OCR_MODEL_DEBOUNCE_S": "0.3",
           "OCR_MODEL_SETTLE_S": "1", "OCR_WARMUP_SHAPES": "320x320", "OCR_TIMEOUT": "600"}
    with gunicorn_server(root, base / "logs", workers=1, threads=4, env=env) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture()
def page(browser: Any, server: RunningServer) -> Iterator[Any]:
    """A fresh browser context (no credential, no state) on the console; dialogs and page errors kept."""
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    tab = context.new_page()
    tab.dialogs, tab.errors = [], []
    tab.on("dialog", lambda dialog: (tab.dialogs.append(dialog.message), dialog.dismiss()))
    tab.on("pageerror", lambda error: tab.errors.append(str(error)))
    # 4xx answers are expected (the feature probes, a viewer's refused audit page) and logged by the
    # browser as console errors; a server error or a script error is a failure.
    tab.on("console", lambda message: tab.errors.append(message.text)
           if message.type == "error" and not message.text.startswith("Failed to load resource") else None)
    tab.on("response", lambda response: tab.errors.append(f"{response.status} {response.url}")
           if response.status >= 500 else None)
    tab.goto(f"{server.url}/ui/")
    yield tab
    context.close()
    assert not tab.dialogs, tab.dialogs


def sign_in(tab: Any, key: str, expected: str) -> None:
    tab.fill("#credential", key)
    tab.click("#credential-use")
    tab.wait_for_function("(e) => document.getElementById('identity').textContent.startsWith(e)", arg=expected)


def upload(tab: Any, path: Path) -> None:
    tab.set_input_files("#file", str(path))
    tab.wait_for_selector("#answered-version, #read-summary .error", timeout=180_000)


def shot(tab: Any, name: str) -> None:
    if SHOTS:
        tab.screenshot(path=str(Path(SHOTS) / f"console-{name}.png"), full_page=True)


def as_read(text: str, version: str) -> str:
    """What `version` reads for `text`: NEW reads digits through its permutation."""
    return text.translate(str.maketrans(DIGITS, digit_permutation(3))) if version == NEW else text


def page_lines(tab: Any) -> list[str]:
    return tab.locator("li.line .text").all_text_contents()


def test_console_headers_and_whoami(server: RunningServer) -> None:
    index = requests.get(f"{server.url}/ui/", timeout=30)
    assert index.status_code == 200 and index.headers["Content-Security-Policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert "<script>" not in index.text and " style=" not in index.text  # nothing inline for the CSP to allow
    script = requests.get(f"{server.url}/ui/static/read.js", timeout=30)
    assert script.status_code == 200 and script.headers["Content-Security-Policy"] == CSP
    scripts = "".join(p.read_text() for p in STATIC.glob("*.js"))
    assert not [sink for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(")
                if sink in scripts]
    assert requests.get(f"{server.url}/ui", timeout=30, allow_redirects=False).status_code == 308

    me = requests.get(f"{server.url}/v1/whoami", headers={"Authorization": f"Bearer {VIEWER_KEY}"}, timeout=30).json()
    assert (me["actor"], me["roles"], me["kind"]) == ("key:viewer", ["viewer"], "api_key")
    assert "models.read" in me["permissions"] and "models.activate" not in me["permissions"]
    ops = requests.get(f"{server.url}/v1/whoami", headers={"Authorization": f"Bearer {OPS_KEY}"}, timeout=30).json()
    assert {"models.activate", "models.rollback", "audit.read"} <= set(ops["permissions"])
    anonymous = requests.get(f"{server.url}/v1/whoami", timeout=30).json()
    assert anonymous["actor"] == "anonymous" and "models.read" not in anonymous["permissions"]
    wrong = requests.get(f"{server.url}/v1/whoami", headers={"Authorization": "Bearer nope"}, timeout=30)
    assert wrong.status_code == 401 and wrong.json()["error"] == "invalid_token"


def two_page_pdf() -> bytes:
    return build_pdf([text_page(["INVOICE 1001", "FIRST PAGE OF TWO"], size=14, width=300, height=200),
                      text_page(["SECOND PAGE", "TOTAL 99.00"], size=14, width=300, height=200)])


def test_pages_renders_what_the_server_reads(server: RunningServer) -> None:
    url = f"{server.url}/ui/pages"
    pdf = requests.post(url, data=two_page_pdf(), headers={"Content-Type": "application/pdf"}, timeout=60)
    assert pdf.status_code == 200, pdf.text
    assert [(p["page"], p["width"], p["height"]) for p in pdf.json()["pages"]] == [(1, 833, 556), (2, 833, 556)]
    second = requests.post(url, params={"pages": "2"}, data=two_page_pdf(), timeout=60).json()["pages"]
    assert [p["page"] for p in second] == [2] and second[0]["image"].startswith("data:image/jpeg;base64,")
    image = requests.post(url, data=encode(render_text(["ONE LINE"])), headers={"Content-Type": "image/png"},
                          timeout=60).json()
    assert image["kind"] == "image" and len(image["pages"]) == 1
    tiff = io.BytesIO()
    first, second = render_text(["PAGE ONE"]), render_text(["THE SECOND PAGE"])
    first.save(tiff, format="TIFF", save_all=True, append_images=[second])
    pages = requests.post(url, data=tiff.getvalue(), headers={"Content-Type": "image/tiff"}, timeout=60).json()
    assert pages["kind"] == "tiff" and [(p["width"], p["height"]) for p in pages["pages"]] == [first.size, second.size]
    for data, params, status, code in ((b"not an image", {}, 422, "invalid_image"), (b"", {}, 400, "empty_image"),
                                       (two_page_pdf(), {"pages": "3"}, 422, "page_out_of_range"),
                                       (two_page_pdf(), {"colour": "1"}, 400, "unknown_option")):
        answer = requests.post(url, params=params, data=data, headers={"Content-Type": "application/octet-stream"},
                               timeout=60)
        assert (answer.status_code, answer.json()["error"]) == (status, code), answer.text


def test_console_can_be_switched_off(tmp_path: Path) -> None:
    for console, status in ((False, 404), (True, 200)):
        settings = Settings(model_repo=tmp_path / "models", console=console)
        client = create_app(settings, start=False).test_client()
        assert client.get("/ui/").status_code == status
        assert client.get("/v1/whoami").status_code == 200


def test_without_chromium_the_tests_skip_locally_and_fail_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(browser_support.shutil, "which", lambda name: None)
    monkeypatch.delenv("OCR_REQUIRE_BROWSER", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install chromium"):
        browser_support.chromium_path()
    monkeypatch.setenv("OCR_REQUIRE_BROWSER", "1")
    with pytest.raises(pytest.fail.Exception, match="OCR_REQUIRE_BROWSER=1"):
        browser_support.chromium_path()


def test_read_an_image_draws_numbered_boxes_and_lines(page: Any, tmp_path: Path) -> None:
    lines = ["CASH PAYMENT RECEIVED", "TOTAL DUE 42.50"]
    image = tmp_path / "receipt.png"
    image.write_bytes(encode(render_text(lines)))
    page.select_option("#opt-fields", "receipt")
    upload(page, image)
    version = page.text_content("#answered-version")
    assert version in {OLD, NEW}
    shown = page_lines(page)
    assert len(shown) >= 2 and squash("".join(shown)) == squash(as_read("".join(lines), version))
    assert page.locator("svg.boxes g.box polygon").count() == len(shown)
    assert page.locator("svg.boxes g.box text").all_text_contents() == [str(i + 1) for i in range(len(shown))]
    assert page.evaluate("document.querySelector('img.page-image').naturalWidth") > 0
    page.locator("li.line").nth(1).click()
    assert page.locator("svg.boxes g.box").nth(1).get_attribute("class") == "box selected"
    assert page.locator("svg.boxes g.box.selected").count() == 1
    page.locator("svg.boxes g.box").nth(0).dispatch_event("click")  # and a box finds its line
    assert page.locator("li.line").nth(0).get_attribute("class") == "line selected"
    assert page.locator("table.fields").count() == 1 and "total" in page.text_content("table.fields")
    timings = page.text_content(".page-side dl.kv")
    assert all(stage in timings for stage in ("decode", "det", "cls", "rec", "fields", "total")), timings
    assert not page.errors, page.errors


def test_a_pdf_shows_its_pages(page: Any) -> None:
    page.select_option("#opt-pdf_text", "layer")
    # Dropped on the page, as a person would (the image test chooses its file instead).
    transfer = page.evaluate_handle("""(b64) => {
        const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
        const transfer = new DataTransfer();
        transfer.items.add(new File([bytes], "two-pages.pdf", {type: "application/pdf"}));
        return transfer; }""", base64.b64encode(two_page_pdf()).decode())
    page.dispatch_event("#drop", "drop", {"dataTransfer": transfer})
    page.wait_for_selector("#answered-version, #read-summary .error", timeout=180_000)
    articles = page.locator("article.page-result")
    assert articles.count() == 2
    for number, expected in ((1, "INVOICE1001FIRSTPAGEOFTWO"), (2, "SECONDPAGETOTAL99.00")):
        article = articles.nth(number - 1)
        assert article.get_attribute("data-page") == str(number)
        assert squash("".join(article.locator("li.line .text").all_text_contents())) == expected
        assert article.locator("g.box").count() == 2
        size = article.evaluate("a => { const i = a.querySelector('img.page-image'); "
                                "return [i.naturalWidth, i.naturalHeight, i.src.slice(0, 23)]; }")
        assert size == [833, 556, "data:image/jpeg;base64,"]  # 300x200 pt at 200 dpi, rendered by the server
    assert not page.errors, page.errors


def test_text_that_reads_as_html_stays_text(page: Any, tmp_path: Path) -> None:
    image = tmp_path / "xss.png"
    image.write_bytes(encode(render_text([XSS], size=64, padding=60)))
    upload(page, image)
    read = "".join(page_lines(page))
    assert "<img" in read and "onerror" in read.replace(" ", "") and read.rstrip().endswith(">"), read
    assert page.locator("#read-results img").count() == 1  # the page's own picture, nothing injected
    assert page.evaluate("document.querySelectorAll('[onerror], script:not([src])').length") == 0
    assert not page.dialogs and not page.errors, (page.dialogs, page.errors)


def test_a_viewer_sees_no_mutating_buttons(page: Any) -> None:
    sign_in(page, VIEWER_KEY, "key:viewer")
    page.goto(page.url.split("#")[0] + "#models")
    page.wait_for_selector(f"#models-table tr[data-version='{OLD}']")
    assert page.locator("#models-table tbody tr").count() == 3
    assert page.locator("#page-models button.mutating:visible").count() == 0
    assert page.locator("#page-models .detail-button").count() == 3
    rejected = page.locator(f"#models-table tr[data-version='{GARBAGE}']")
    assert rejected.locator("td.state").text_content() == "rejected"
    assert "CER" in rejected.locator("td.reason").text_content()
    page.locator(f"#models-table tr[data-version='{NEW}'] .detail-button").click()
    page.wait_for_selector("#model-detail h3")
    assert "signature (checked now)" in page.text_content("#model-detail")
    page.goto(page.url.split("#")[0] + "#audit")
    page.wait_for_function("() => document.getElementById('status').textContent.includes('auditor')")
    assert not page.errors, page.errors


def test_pinning_from_the_page_changes_what_serves(page: Any, server: RunningServer) -> None:
    digits = encode(render_text(["TOTAL DUE", DIGITS]))
    read = lambda: requests.post(f"{server.url}/v1/ocr", data=digits, headers={"Content-Type": "image/png"},  # noqa: E731
                                 timeout=120)
    before = read()
    assert before.headers["X-Model-Version"] == NEW and digit_permutation(3) in squash(before.json()["results"][0]["text"])

    sign_in(page, OPS_KEY, "key:ops")
    page.goto(page.url.split("#")[0] + "#models")
    row = page.locator(f"#models-table tr[data-version='{OLD}']")
    row.locator(".pin-button").wait_for()
    assert page.locator("#models-unpin").is_visible() and page.locator("#models-rollback").is_visible()
    # No canary runs: canary and shadow shares are offered for the version that does not serve, not for
    # the serving one nor the rejected one, and promote and abort for none.
    assert row.get_by_role("button", name="Canary %").count() == 1 and row.get_by_role("button", name="Shadow %").count() == 1
    for other in (NEW, GARBAGE):
        assert page.locator(f"#models-table tr[data-version='{other}'] button", has_text=re.compile("Canary|Shadow")).count() == 0
    assert page.locator("#models-table button", has_text=re.compile("Promote|Abort")).count() == 0
    assert page.locator("#models-routing *").count() == 0
    assert page.locator(f"#models-table tr[data-version='{GARBAGE}'] .pin-button").count() == 0
    assert "null" not in page.text_content("#page-models") and "undefined" not in page.text_content("#page-models")
    row.locator(".pin-button").click()
    page.wait_for_function("(v) => document.getElementById('models-pin').textContent === v", arg=OLD)
    wait_for(lambda: read().headers["X-Model-Version"] == OLD, 300, f"the server to serve {OLD}", interval=2)
    after = read()
    assert squash(after.json()["results"][0]["text"]).endswith(DIGITS)
    page.wait_for_function("(v) => document.querySelector(`#models-table tr[data-version='${v}'] td.state`)"
                           ".textContent === 'serving'", arg=OLD, timeout=60_000)
    shot(page, "models")

    page.goto(page.url.split("#")[0] + "#audit")
    page.wait_for_selector("#audit-table tbody tr")
    rows = page.eval_on_selector_all("#audit-table tbody tr",
                                     "trs => trs.map(tr => [...tr.cells].map(td => td.textContent))")
    assert any(row[2:7] == ["key:ops", "auditor, releaser", "pin", OLD, "ok"] for row in rows), rows
    shot(page, "audit")
    assert not page.errors, page.errors


def test_a_canary_from_the_page_shows_its_judge_and_report_and_is_aborted(page: Any, server: RunningServer) -> None:
    """After the pin above, OLD serves and NEW may enter a canary beside it."""
    sign_in(page, OPS_KEY, "key:ops")
    page.goto(page.url.split("#")[0] + "#models")
    row = page.locator(f"#models-table tr[data-version='{NEW}']")
    row.get_by_role("button", name="Canary %").wait_for()
    row.locator("input.percent").fill("25")
    row.get_by_role("button", name="Canary %").click()
    page.wait_for_selector("#models-rollout")
    assert page.text_content("#rollout-candidate") == NEW
    assert "25% of clients" in page.text_content("#models-rollout")
    page.wait_for_function("() => document.getElementById('models-rollout').textContent.includes('worker(s) 0')",
                           timeout=180_000)  # the worker loaded the candidate beside OLD
    page.wait_for_function("() => document.getElementById('rollout-judge').dataset.decision === 'pending'")
    assert row.locator("td.delivery").text_content().startswith("canary 25%")
    assert page.locator(f"#models-table tr[data-version='{OLD}'] td.delivery").text_content() == "stable"
    assert page.locator("#workers-table tbody td", has_text=NEW).count() == 1  # the canary column
    row = page.locator(f"#models-table tr[data-version='{NEW}']")
    row.locator(".detail-button").click()
    page.wait_for_selector("#model-detail .report table.metrics")
    metrics = page.eval_on_selector_all("#model-detail .report table.metrics tbody tr", "trs => trs.map(tr => tr.dataset.metric)")
    assert metrics == ["latency_p50", "latency_p95", "error_rate", "empty_rate", "confidence", "lines",
                       "feedback_accuracy", "shadow_agreement"]
    assert page.text_content("#model-detail .report .decision").startswith("in_progress")
    shot(page, "canary")

    row.get_by_role("button", name="Abort").click()
    page.wait_for_function("() => !document.getElementById('models-rollout')")
    rejected = page.locator(f"#models-table tr[data-version='{NEW}']")
    page.wait_for_function("(v) => document.querySelector(`#models-table tr[data-version='${v}'] td.state`)"
                           ".textContent === 'rejected'", arg=NEW)
    assert "aborted from the console" in rejected.locator("td.reason").text_content()
    rejected.locator(".detail-button").click()
    page.wait_for_function("() => (document.querySelector('#model-detail .report .decision') || {}).textContent"
                           "?.startsWith('rolled_back by key:ops')")
    shown = requests.get(f"{server.url}/v1/models/{NEW}/report", headers={"Authorization": f"Bearer {OPS_KEY}"},
                         timeout=30).json()
    assert shown["decision"] == "rolled_back" and shown["decided_by"] == "key:ops"
    assert not page.errors, page.errors
