"""`GET /openapi.json`: the API's contract, an OpenAPI 3.1 document kept by hand in `server/http/openapi.yaml`.

Kept by hand, not generated, because there is nothing to generate it from: the handlers validate with
plain code (the option parsers of `server.http.options`, the body checks of `server.http.inputs`), not
with a schema library, and what a client most needs from the contract - the error codes, which status
each comes with, the forms a request may take - lives in that code and in prose. Generating it would
mean rewriting every handler around a framework (apispec, pydantic) for a document that would still
need the same prose written by hand. A hand-written document reads as the contract it is, and the
tests keep it true instead:
- `tests/test_openapi.py`: the document is valid OpenAPI 3.1 (openapi-spec-validator); every Flask
  route has an entry and every entry a route; the option, audit and feedback names are the code's;
  real responses (OCR of images and PDFs, feedback, the admin calls, errors) match their schemas;
- `tests/test_properties.py`: the option parser accepts exactly the values the document's schemas allow;
- `tests/test_fuzz_api.py`: schemathesis sends what the document describes (and what it does not) to a
  live Gunicorn server; no answer may be a 5xx or break the document.

The document is read once per worker; `info.version` is the installed package's version.
"""

from __future__ import annotations

from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import yaml
from flask import Blueprint, Response, jsonify

bp = Blueprint("openapi", __name__)

DOCUMENT = Path(__file__).resolve().parents[1] / "openapi.yaml"


@lru_cache(maxsize=1)
def document() -> dict[str, Any]:
    """The OpenAPI document as served (YAML anchors resolved, `info.version` filled in)."""
    loaded: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text(encoding="utf-8"))
    try:
        loaded["info"]["version"] = version("ocr-server")
    except PackageNotFoundError:  # run from a source tree that is not installed
        pass
    return loaded


@bp.get("/openapi.json")
def openapi() -> Response:
    return jsonify(document())
