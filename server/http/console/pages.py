"""`POST /ui/pages`: a document's pages as pictures, for the Read page to draw boxes on.

A browser shows JPEG and PNG itself, but not a PDF page or a TIFF, and the boxes of `POST /v1/ocr`
are in the pixels of the page as the server rendered it (at `OCR_PDF_DPI`, EXIF orientation applied).
So the console sends a document here too and gets each selected page back as the server reads it: the
same forms, the `pages` option, limits and errors as `POST /v1/ocr`, the same role (`client` when
`OCR_INFERENCE_AUTH=1`), every page rendered (never answered from its text layer), as JPEG `data:`
URLs. Rendering a PDF twice (here and for OCR) is the price of showing it without a PDF viewer.
"""

from __future__ import annotations

import base64
from contextlib import ExitStack, closing
from typing import Any

import cv2
from flask import Response, jsonify, request

from server.documents.sources import open_source
from server.governance.roles import Action
from server.http.auth import authorize
from server.http.console.views import bp
from server.http.context import current_context
from server.http.errors import ApiError
from server.http.inputs import read_request
from server.http.options import parse_options

_JPEG_QUALITY = 85


@bp.post("/pages")
def pages() -> Response:
    authorize(Action.INFER)
    ctx = current_context()
    blobs, raw_options = read_request(request, 1)
    options = parse_options(raw_options, ctx.settings)
    rendered: list[dict[str, Any]] = []
    with ExitStack() as stack:
        source = open_source(blobs[0], ctx.documents, options.pages, "ocr", ctx.pdf_renderer)
        stack.callback(source.close)
        limit = ctx.settings.max_images_per_request
        if len(source.numbers) > limit:
            raise ApiError(413, "too_many_images", f"{len(source.numbers)} pages to render; the limit is {limit} "
                                                   "(OCR_MAX_IMAGES): choose pages with the pages option",
                           pages=len(source.numbers), max_images=limit)
        with closing(source.pages()) as pages_read:
            for page in pages_read:
                assert page.image is not None  # pdf_text="ocr": every page is rendered
                ok, jpeg = cv2.imencode(".jpg", page.image, [cv2.IMWRITE_JPEG_QUALITY, _JPEG_QUALITY])
                if not ok:
                    raise RuntimeError(f"could not encode page {page.number}")
                rendered.append({"page": page.number, "width": page.width, "height": page.height,
                                 "image": "data:image/jpeg;base64," + base64.b64encode(jpeg.tobytes()).decode()})
    return jsonify({"kind": source.kind, "pages": rendered})
