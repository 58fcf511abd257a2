"""The OpenAPI document is valid, covers every route and only real ones, names what the code knows, and
describes the real answers of a live Gunicorn server: OCR of images, multipart, JSON and PDFs, with
fields; feedback; the admin calls with and without credentials; health, metrics; errors."""

from __future__ import annotations

import base64
import re
from typing import Any

import pytest
import requests
from flask import Flask
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from server.config import Settings
from server.http.api import audit, feedback
from server.http.api.openapi import document
from server.http.app import create_app
from server.http.options import _DOCUMENT_PARSERS, _OPTION_PARSERS
from tests.support.contract import ADMIN, check
from tests.support.images import encode, render_text
from tests.support.pdfs import build_pdf, text_page
from tests.support.server import PADDLE_VERSION, ROOT, RunningServer

PNG = encode(render_text(["TOTAL 12.50", "CASH 20.00"]))
IGNORED_METHODS = {"HEAD", "OPTIONS"}  # answered by Flask itself for every route


def _nested(depth: int) -> Any:
    value: Any = []
    for _ in range(depth - 1):
        value = [value]
    return value


def test_the_document_is_valid_openapi_3_1() -> None:
    doc = document()
    assert doc["openapi"].startswith("3.1.")
    validate(doc)  # raises on any violation of the OpenAPI 3.1 schema or a dangling $ref


def test_the_validator_would_catch_a_broken_document() -> None:
    broken = {**document(), "paths": {"/v1/ocr": {"post": {"responses": {"200": {"content": {}}}}}}}  # no description
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def _app() -> Flask:
    return create_app(Settings(model_repo=ROOT / "models"), start=False)


def _flask_routes(app: Flask) -> set[tuple[str, str]]:
    routes = set()
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static":
            continue
        path = re.sub(r"<(?:[^:<>]+:)?([^<>]+)>", r"{\1}", rule.rule)
        routes |= {(method, path) for method in rule.methods or () if method not in IGNORED_METHODS}
    return routes


def _documented() -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document()["paths"].items() for method in item
            if method in ("get", "put", "post", "delete", "patch")}


def test_every_route_is_documented_and_every_entry_is_a_route() -> None:
    routes, documented = _flask_routes(_app()), _documented()
    assert routes - documented == set(), "routes without an entry in server/http/openapi.yaml"
    assert documented - routes == set(), "entries of server/http/openapi.yaml without a route"


def test_a_new_route_without_an_entry_is_caught() -> None:
    app = _app()
    app.add_url_rule("/v1/models/<version>/shadow", "shadow", lambda version: "", methods=["POST"])
    assert _flask_routes(app) - _documented() == {("POST", "/v1/models/{version}/shadow")}


def _properties(name: str) -> set[str]:
    return set(document()["components"]["schemas"][name]["properties"])


def test_the_options_are_the_parsers_options() -> None:
    known = set(_OPTION_PARSERS) | set(_DOCUMENT_PARSERS)
    assert _properties("Options") == known
    query = {p["$ref"].rsplit("/", 1)[1] for p in document()["paths"]["/v1/ocr"]["post"]["parameters"]}
    assert query == known


def test_feedback_fields_and_audit_parameters_are_the_handlers() -> None:
    assert _properties("Feedback") == set(feedback._FIELDS)
    parameters = {p["name"] for p in document()["paths"]["/v1/audit"]["get"]["parameters"]}
    assert parameters == set(audit._PARAMETERS)


# --- real answers of a live server ---------------------------------------------------------------------

def _post_ocr(server: RunningServer, **kwargs: Any) -> requests.Response:
    return check(requests.post(f"{server.url}/v1/ocr", timeout=120, **kwargs))


def test_ocr_answers_match_the_document(admin_server: RunningServer) -> None:
    raw = _post_ocr(admin_server, data=PNG, headers={"Content-Type": "image/png"}, params={"fields": "receipt"})
    assert raw.status_code == 200 and "TOTAL" in raw.json()["results"][0]["text"]
    assert raw.json()["results"][0]["fields"]["kind"] == "receipt"
    parts = [("image", ("a.png", PNG, "image/png")), ("image", ("b.png", PNG, "image/png"))]
    multipart = _post_ocr(admin_server, files=parts, data={"use_cls": "false", "drop_score": "0.6"})
    assert multipart.status_code == 200 and len(multipart.json()["results"]) == 2
    as_json = _post_ocr(admin_server, json={"images": [base64.b64encode(PNG).decode()], "det_limit_type": "max",
                                      "det_limit_side_len": 960, "use_cls": None})
    assert as_json.status_code == 200
    pdf = build_pdf([text_page(["INVOICE 5512", "TOTAL 9.99"]), text_page(["PAGE TWO"])])
    document_pages = _post_ocr(admin_server, data=pdf, headers={"Content-Type": "application/pdf"},
                               params={"pages": "1-2", "pdf_text": "layer", "fields": "invoice"})
    assert [r["source"] for r in document_pages.json()["results"]] == ["text_layer", "text_layer"]


@pytest.mark.parametrize(("kwargs", "status", "code"), [
    ({"data": b"<html>hi</html>", "headers": {"Content-Type": "image/png"}}, 422, "invalid_image"),
    ({"data": b"", "headers": {"Content-Type": "image/png"}}, 400, "empty_image"),
    ({"data": "a=b", "headers": {"Content-Type": "application/x-www-form-urlencoded"}}, 415, "unsupported_media_type"),
    ({"json": {"image": "!!"}}, 400, "invalid_base64"),
    ({"json": {"image": "aGk=", "colour": 1}}, 400, "unknown_option"),
    ({"json": {"image": "aGk=", "det_thresh": 2}}, 400, "invalid_option"),
    ({"json": {"images": ["aGk="] * 17}}, 413, "too_many_images"),
    ({"data": b"[" * 100_000 + b"]" * 100_000, "headers": {"Content-Type": "application/json"}}, 400, "invalid_json"),
    ({"json": {"image": "aGk=", "use_cls": _nested(40)}}, 400, "invalid_json"),
    ({"json": {"image": "aGk=", "pages": "9" * 5000}}, 400, "invalid_option"),  # past int()'s 4300 digits
    # JSON's NaN / Infinity for an integer option reached int() (ValueError / OverflowError: 500)
    ({"data": '{"image": "aGk=", "det_limit_side_len": Infinity}', "headers": {"Content-Type": "application/json"}},
     400, "invalid_option"),
    ({"data": '{"image": "aGk=", "det_limit_side_len": NaN}', "headers": {"Content-Type": "application/json"}},
     400, "invalid_option"),
    ({"json": {"image": "aGk=", "pages": -2}}, 400, "invalid_option"),
    ({"data": '{"image": "aGk=", "det_thresh": 1' + "0" * 400 + "}", "headers": {"Content-Type": "application/json"}},
     400, "invalid_option"),  # float() of it raised OverflowError: a 500
])
def test_ocr_errors_match_the_document(admin_server: RunningServer, kwargs: dict[str, Any], status: int, code: str) -> None:
    response = _post_ocr(admin_server, **kwargs)
    assert (response.status_code, response.json()["error"]) == (status, code)


def test_feedback_answers_match_the_document(admin_server: RunningServer) -> None:
    read = _post_ocr(admin_server, data=PNG, headers={"Content-Type": "image/png"})
    url = f"{admin_server.url}/v1/feedback"
    recorded = check(requests.post(url, json={"request_id": read.json()["request_id"], "text": "TOTAL 12.50"}))
    assert recorded.status_code == 200
    again = check(requests.post(url, json={"request_id": read.json()["request_id"], "text": "TOTAL 12.50"}))
    assert again.status_code == 409
    assert check(requests.post(url, json={"request_id": "nope", "text": "x"})).status_code == 404
    assert check(requests.post(url, json={"text": "x", "recognized_text": "y",
                                          "model_version": "9.9.9"})).status_code == 422
    assert check(requests.post(url, data="x", headers={"Content-Type": "text/plain"})).status_code == 415


def test_health_metrics_and_the_document_itself(admin_server: RunningServer) -> None:
    assert check(requests.get(f"{admin_server.url}/healthz")).json() == {"status": "ok"}
    assert check(requests.get(f"{admin_server.url}/readyz")).json()["model"]["version"] == PADDLE_VERSION
    assert "ocr_requests_total" in check(requests.get(f"{admin_server.url}/metrics")).text
    check(requests.get(f"{admin_server.url}/metrics", headers={"Accept": "application/openmetrics-text"}))
    served = check(requests.get(f"{admin_server.url}/openapi.json")).json()
    assert served["paths"] == document()["paths"]


def test_admin_answers_match_the_document(admin_server: RunningServer) -> None:
    url = f"{admin_server.url}/v1/models"
    listing = check(requests.get(url, headers=ADMIN)).json()
    assert [v["version"] for v in listing["versions"]] == [PADDLE_VERSION]
    assert check(requests.get(f"{url}/{PADDLE_VERSION}", headers=ADMIN)).status_code == 200
    assert check(requests.get(f"{url}/9.9.9", headers=ADMIN)).status_code == 404
    assert check(requests.get(f"{url}/..bad", headers=ADMIN)).status_code == 400
    assert check(requests.post(f"{url}/{PADDLE_VERSION}/request-promotion", headers=ADMIN)).status_code == 201
    assert check(requests.post(f"{url}/{PADDLE_VERSION}/activate", headers=ADMIN)).status_code == 202
    assert check(requests.post(f"{url}/rollback", headers=ADMIN)).status_code == 409
    assert check(requests.delete(f"{url}/pin", headers=ADMIN)).json()["removed"] == PADDLE_VERSION
    page = check(requests.get(f"{admin_server.url}/v1/audit", headers=ADMIN, params={"limit": 5, "action": "pin"}))
    records = page.json()["records"]  # the fuzzing shares this server and may have pinned before this test
    assert records and {r["action"] for r in records} == {"pin"}
    assert (records[0]["version"], records[0]["actor"]) == (PADDLE_VERSION, "admin-token")
    for limit in ("0", "²", "99999"):  # "²".isdigit(), but int("²") raised: a 500 before
        assert check(requests.get(f"{admin_server.url}/v1/audit", headers=ADMIN, params={"limit": limit})).status_code == 400


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic x"}])
def test_admin_calls_without_valid_credentials_match_the_document(admin_server: RunningServer, headers: dict) -> None:
    url = f"{admin_server.url}/v1/models"
    for method, path in [("POST", f"/{PADDLE_VERSION}/activate"), ("POST", "/rollback"), ("DELETE", "/pin"),
                         ("POST", f"/{PADDLE_VERSION}/request-promotion")]:
        refused = check(requests.request(method, url + path, headers=headers))
        assert refused.status_code == 401 and refused.headers["WWW-Authenticate"].startswith("Bearer")
    assert check(requests.get(f"{admin_server.url}/v1/audit", headers=headers)).status_code == 401
    assert check(requests.get(url, headers=headers)).status_code == 200  # the listing is open without a policy
