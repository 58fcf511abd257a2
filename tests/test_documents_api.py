"""PDFs and multi-page TIFFs through `POST /v1/ocr` on a real Gunicorn server (the session's shared
server: default settings, real PP-OCRv4 weights): page by page in every request form, text layers in
the pixels of the rendered page, page selection and the request's page budget, fields, and every bad
PDF answered with its 4xx JSON error while the worker processes carry on."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import pytest
import requests
from PIL import Image

from server.config import Settings
from server.http.errors import ApiError
from server.http.options import parse_options
from server.quality.expected_fields import field_matches
from server.quality.field_documents import generate
from tests.support.images import encode, expected_text, read_text, receipt_lines, render_text, squash, truncated
from tests.support.pdfs import (
    build_pdf,
    corrupt_pdf,
    embedded_file_pdf,
    encrypted_pdf,
    image_page,
    javascript_pdf,
    jpeg_bytes,
    page_count_bomb,
    page_size_bomb,
    slow_page_pdf,
    text_page,
    truncated_pdf,
    zero_page_pdf,
)
from tests.support.server import PADDLE_VERSION, RunningServer

PAGES = [receipt_lines(k) for k in range(3)]
IMAGES = [render_text(lines) for lines in PAGES]
DPI = 200  # the server's default OCR_PDF_DPI: a page saved at it renders back pixel for pixel


def pillow_pdf(images: list[Image.Image], dpi: float = DPI) -> bytes:
    """What a phone's scanning app sends: one image per page, written by Pillow."""
    buffer = io.BytesIO()
    images[0].save(buffer, format="PDF", save_all=True, append_images=images[1:], resolution=dpi)
    return buffer.getvalue()


def tiff(images: list[Image.Image], **save: Any) -> bytes:
    buffer = io.BytesIO()
    images[0].save(buffer, format="TIFF", save_all=True, append_images=images[1:], **save)
    return buffer.getvalue()


def post(server: RunningServer, data: bytes, content_type: str = "application/pdf", query: str = "") -> requests.Response:
    return requests.post(f"{server.url}/v1/ocr{query}", data=data, headers={"Content-Type": content_type}, timeout=300)


def results_of(response: requests.Response) -> list[dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers["X-Model-Version"] == PADDLE_VERSION
    return response.json()["results"]


def where(results: list[dict[str, Any]]) -> list[tuple[int, int, str]]:
    return [(r["input"], r["page"], r["source"]) for r in results]


# -- documents read page by page ----------------------------------------------------------------------------


def test_pdf_comes_back_page_by_page(shared_server: RunningServer) -> None:
    results = results_of(post(shared_server, pillow_pdf(IMAGES)))
    assert where(results) == [(0, 1, "ocr"), (0, 2, "ocr"), (0, 3, "ocr")]
    for result, lines, image in zip(results, PAGES, IMAGES):
        assert read_text(result) == expected_text(lines)
        assert (result["width"], result["height"]) == image.size
        assert set(result["timing_ms"]) == {"decode", "det", "cls", "rec", "total"}


def test_every_request_form_takes_pdfs(shared_server: RunningServer) -> None:
    pdf = pillow_pdf(IMAGES)
    # Raw, labelled as a plain byte stream: found to be a PDF from its content.
    assert [read_text(r) for r in results_of(post(shared_server, pdf, "application/octet-stream", "?pages=2"))] == [
        expected_text(PAGES[1])]
    # Multipart: a PDF and an image; `pages` applies to every input (an image is a document of one page).
    files = [("image", ("scan.pdf", pdf, "application/pdf")), ("image", ("photo.png", encode(IMAGES[2]), "image/png"))]
    response = requests.post(f"{shared_server.url}/v1/ocr", files=files, data={"pages": "1"}, timeout=300)
    results = results_of(response)
    assert where(results) == [(0, 1, "ocr"), (1, 1, "ocr")]
    assert [read_text(r) for r in results] == [expected_text(PAGES[0]), expected_text(PAGES[2])]
    # JSON: base64 as a data URL.
    body = {"images": ["data:application/pdf;base64," + base64.b64encode(pdf).decode()], "pages": "2-3"}
    results = results_of(requests.post(f"{shared_server.url}/v1/ocr", json=body, timeout=300))
    assert where(results) == [(0, 2, "ocr"), (0, 3, "ocr")]
    assert [read_text(r) for r in results] == [expected_text(PAGES[1]), expected_text(PAGES[2])]


def test_multipage_tiff_comes_back_page_by_page(shared_server: RunningServer) -> None:
    """A colour page, a grayscale one and a 1-bit fax page in one TIFF; then only its last page."""
    pages = [IMAGES[0], IMAGES[1].convert("L"), IMAGES[2].convert("1")]
    data = tiff(pages, compression="tiff_deflate")
    results = results_of(post(shared_server, data, "image/tiff"))
    assert where(results) == [(0, 1, "ocr"), (0, 2, "ocr"), (0, 3, "ocr")]
    assert [read_text(r) for r in results] == [expected_text(lines) for lines in PAGES]
    assert [(r["width"], r["height"]) for r in results] == [image.size for image in pages]
    (last,) = results_of(post(shared_server, data, "image/tiff", "?pages=3-"))
    assert (last["page"], read_text(last)) == (3, expected_text(PAGES[2]))


BORN_DIGITAL = ["GREENLEAF GROCERS LTD", "RECEIPT NO: OR48213365", "DATE: 12/03/2026", "APPLES 1KG 4.20",
                "BREAD 2.10", "TOTAL 6.30"]


def test_text_layer_pages_answer_in_the_pixels_of_ocr(shared_server: RunningServer) -> None:
    """A born-digital page and a scan in one PDF: `auto` answers the first from its text layer and reads
    the second; the layer's boxes sit where OCR finds the same text on the rendered page."""
    scan = jpeg_bytes(IMAGES[1])
    data = build_pdf([text_page(BORN_DIGITAL, size=14), image_page(scan, IMAGES[1].size, DPI)])
    auto = results_of(post(shared_server, data, query="?fields=receipt"))
    assert where(auto) == [(0, 1, "text_layer"), (0, 2, "ocr")]
    layer, scanned = auto
    assert [line["text"] for line in layer["lines"]] == BORN_DIGITAL  # exactly what the producer wrote
    assert all(line["score"] == 1.0 for line in layer["lines"]) and layer["timing_ms"]["rec"] == 0
    assert (layer["width"], layer["height"]) == (1700, 2200)  # US Letter at 200 dpi
    assert read_text(scanned) == expected_text(PAGES[1])
    fields = layer["fields"]
    assert {name: fields[name]["value"] for name in ("vendor", "date", "total", "receipt_number")} == {
        "vendor": "GREENLEAF GROCERS LTD", "date": "2026-03-12", "total": "6.30", "receipt_number": "OR48213365"}

    (ocr,) = results_of(post(shared_server, data, query="?pdf_text=ocr&pages=1"))
    assert ocr["source"] == "ocr" and (ocr["width"], ocr["height"]) == (layer["width"], layer["height"])
    assert read_text(ocr) == squash("".join(BORN_DIGITAL))
    for line in layer["lines"]:  # every layer line has an OCR line of the same text on the same spot
        twin = [o for o in ocr["lines"] if squash(o["text"]) == squash(line["text"])]
        assert twin, line["text"]
        for (lx, ly), (ox, oy) in zip(line["box"], twin[0]["box"]):
            assert abs(lx - ox) <= 12 and abs(ly - oy) <= 12, (line, twin[0])


def test_pages_of_a_request_share_one_budget(shared_server: RunningServer) -> None:
    """OCR_MAX_IMAGES (16) bounds the results of a request, images and document pages together."""
    ten = build_pdf([text_page([f"PAGE {n} OF A STATEMENT WITH ENOUGH TEXT FOR ITS LAYER"]) for n in range(1, 11)])
    files = [("image", ("a.pdf", ten, "application/pdf")), ("image", ("b.pdf", ten, "application/pdf"))]
    refused = requests.post(f"{shared_server.url}/v1/ocr", files=files, timeout=300)
    assert refused.status_code == 413, refused.text
    assert refused.json()["error"] == "too_many_images"
    assert refused.json()["details"] == {"pages": 20, "max_images": 16}
    results = results_of(requests.post(f"{shared_server.url}/v1/ocr", files=files, data={"pages": "3-10"}, timeout=300))
    assert where(results) == [(i, n, "text_layer") for i in (0, 1) for n in range(3, 11)]
    assert results[-1]["text"] == "PAGE 10 OF A STATEMENT WITH ENOUGH TEXT FOR ITS LAYER"


def test_cheque_fields_and_the_mismatched_amounts(shared_server: RunningServer) -> None:
    """The synthetic cheques (printed and captured like the golden set, fields known by construction):
    every field, each with its source text, box and confidence; the last one's words and figures
    disagree."""
    cheques = generate(cheques=6, invoices=0)
    files = [("image", (f"{doc.name}.png", encode(Image.fromarray(doc.image[:, :, ::-1])), "image/png"))
             for doc in cheques]
    results = results_of(requests.post(f"{shared_server.url}/v1/ocr", files=files, data={"fields": "cheque"},
                                       timeout=300))
    assert [r["input"] for r in results] == list(range(6))
    for doc, result in zip(cheques, results):
        fields = result["fields"]
        assert fields["kind"] == "cheque"
        assert fields["amounts_agree"] is doc.fields["amounts_agree"], doc.name
        for name, expected in doc.fields.items():
            if name == "amounts_agree":
                continue
            found = fields[name]
            assert found is not None and field_matches(name, expected, found["value"]), (doc.name, name, found)
            assert found["text"] and 0 < found["confidence"] <= 1
            xs, ys = [x for x, _ in found["box"]], [y for _, y in found["box"]]
            assert 0 <= min(xs) < max(xs) <= result["width"] and 0 <= min(ys) < max(ys) <= result["height"]
    assert [r["fields"]["amounts_agree"] for r in results] == [True] * 5 + [False]


# -- bad documents ------------------------------------------------------------------------------------------

TEXT_PDF = build_pdf([text_page(["ONE PAGE"])])

BAD: dict[str, tuple[bytes, str, int, str]] = {  # name: (body, query, status, error)
    "encrypted": (encrypted_pdf(), "", 422, "encrypted_pdf"),
    "corrupt": (corrupt_pdf(), "", 422, "corrupt_pdf"),
    "truncated": (truncated_pdf(), "", 422, "corrupt_pdf"),
    "zero_pages": (zero_page_pdf(), "", 422, "empty_document"),
    "page_count_bomb": (page_count_bomb(), "", 413, "too_many_pages"),
    "page_size_bomb": (page_size_bomb(), "", 413, "image_too_large"),
    "javascript": (javascript_pdf(), "", 422, "pdf_javascript"),
    "embedded_files": (embedded_file_pdf(), "", 422, "pdf_embedded_files"),
    "over_the_time_budget": (slow_page_pdf(), "", 422, "pdf_too_complex"),
    "page_out_of_range": (TEXT_PDF, "?pages=2", 422, "page_out_of_range"),
    "image_page_out_of_range": (encode(IMAGES[0]), "?pages=2", 422, "page_out_of_range"),
    "bad_pages": (TEXT_PDF, "?pages=3-1", 400, "invalid_option"),
    "bad_pdf_text": (TEXT_PDF, "?pdf_text=both", 400, "invalid_option"),
    "bad_fields": (TEXT_PDF, "?fields=passport", 400, "invalid_option"),
    "truncated_tiff": (truncated(tiff(IMAGES, compression="tiff_deflate"), 0.7), "", 422, "corrupt_image"),
}


@pytest.fixture(scope="module")
def workers_before(shared_server: RunningServer) -> list[int]:
    return sorted(shared_server.worker_pids())


@pytest.mark.parametrize("name", list(BAD))
def test_bad_document_gets_its_json_error(shared_server: RunningServer, workers_before: list[int], name: str) -> None:
    data, query, status, code = BAD[name]
    response = post(shared_server, data, "application/octet-stream", query)
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"] == "application/json"
    body = response.json()
    assert body["error"] == code and body["message"] and body["request_id"] == response.headers["X-Request-Id"]


def test_a_bad_document_among_several_is_named(shared_server: RunningServer) -> None:
    files = [("image", ("good.png", encode(IMAGES[0]), "image/png")), ("image", ("bad.pdf", encrypted_pdf(), ""))]
    response = requests.post(f"{shared_server.url}/v1/ocr", files=files, timeout=300)
    assert response.status_code == 422 and response.json()["details"] == {"image_index": 1}
    pages = [("image", ("ok.pdf", pillow_pdf(IMAGES[:1]), "")), ("image", ("big.pdf", page_size_bomb(), ""))]
    response = requests.post(f"{shared_server.url}/v1/ocr", files=pages, timeout=300)
    assert response.status_code == 413
    assert response.json()["details"] == {"page": 2, "width": 40000, "height": 40000, "dpi": 200,
                                          "max_pixels": 40_000_000, "image_index": 1}


def _states(pids: list[int]) -> list[str]:
    out = []
    for pid in pids:
        try:
            out.append(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0])
        except OSError:
            pass  # ended meanwhile
    return out


def test_workers_survived_the_bad_documents(shared_server: RunningServer, workers_before: list[int]) -> None:
    """Runs after the cases above (pytest keeps file order): the same worker processes, none restarted,
    no renderer left behind as a zombie, and PDFs still read."""
    assert sorted(shared_server.worker_pids()) == workers_before
    log = shared_server.log()
    assert "Traceback" not in log and "unhandled error" not in log and "WORKER TIMEOUT" not in log
    assert log.count("Booting worker with pid") == shared_server.workers, "a worker was restarted"
    assert "Z" not in _states(shared_server.process_tree())
    assert [read_text(r) for r in results_of(post(shared_server, pillow_pdf(IMAGES[:1])))] == [expected_text(PAGES[0])]


# -- options, in-process ------------------------------------------------------------------------------------


def test_document_options_and_their_server_defaults() -> None:
    settings = Settings(default_fields="invoice", pdf_text="ocr")
    defaults = parse_options({}, settings)
    assert (defaults.pages, defaults.pdf_text, defaults.fields) == (None, "ocr", "invoice")
    given = parse_options({"pages": "5,1-3", "pdf_text": "layer", "fields": "none", "use_cls": "false"}, settings)
    assert given.pages is not None and given.pages.resolve(9) == (1, 2, 3, 5)
    assert (given.pdf_text, given.fields, given.ocr.use_cls) == ("layer", None, False)
    assert parse_options({"fields": None, "pages": None}, Settings()).fields is None  # null: the default (none)
    with pytest.raises(ApiError) as caught:
        parse_options({"pages": "0"}, settings)
    assert (caught.value.status, caught.value.code, caught.value.details) == (400, "invalid_option", {"option": "pages"})
