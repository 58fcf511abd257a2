"""The console's files and the headers that make it safe by construction.

Every `/ui/` response carries a Content-Security-Policy that allows scripts and styles from this
server's own files only (no inline script or style, no `eval`), pictures from the server, `blob:` (the
file the user chose) and `data:` (pages rendered by `pages`), and API calls to this server only; the
console writes recognised text with `textContent`, never as markup, so text that reads like HTML stays
text. `OCR_CONSOLE=0` leaves the blueprint out (404 under `/ui/`).
"""

from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, redirect, send_from_directory

STATIC = Path(__file__).parent / "static"

CSP = "; ".join([
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' blob: data:",
    "connect-src 'self'",
    "form-action 'none'",
    "frame-ancestors 'none'",
    "base-uri 'none'",
])

bp = Blueprint("console", __name__, url_prefix="/ui", static_folder=str(STATIC), static_url_path="/static")


@bp.after_request
def _secure(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = CSP
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Cache-Control"] = "no-cache"
    return response


@bp.get("")
def _no_slash() -> Response:
    return redirect("/ui/", code=308)  # type: ignore[return-value]


@bp.get("/")
def index() -> Response:
    return send_from_directory(STATIC, "index.html")
