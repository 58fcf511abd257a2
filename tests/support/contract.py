"""Checking a real response against the OpenAPI document (`server/http/openapi.yaml`).

`check(response)` finds the operation the request was for, then checks what schemathesis checks when it
fuzzes: the status is one the operation documents, the Content-Type one of that response's, its
required headers are there, and the body matches the schema (schemathesis' `validate_response`).
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import requests
import schemathesis
from schemathesis.schemas import APIOperation

from server.http.api.openapi import document

ADMIN_TOKEN = "contract-admin-token"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}


@lru_cache(maxsize=1)
def _schema() -> Any:
    return schemathesis.openapi.from_dict(document())


def _path_pattern(template: str) -> re.Pattern[str]:
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$")


def operation_of(method: str, path: str) -> tuple[str, dict[str, Any], APIOperation]:
    """(path template, the document's operation, schemathesis' operation) for a request; literal paths
    win over templated ones, as in Flask's routing (/v1/models/rollback is not /v1/models/{version})."""
    paths = document()["paths"]
    matches = [t for t in paths if _path_pattern(t).match(path) and method.lower() in paths[t]]
    assert matches, f"{method} {path} is not in the OpenAPI document"
    template = min(matches, key=lambda t: t.count("{"))
    return template, paths[template][method.lower()], _schema()[template][method.upper()]


def _resolve(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def check(response: requests.Response) -> requests.Response:
    """Assert that `response` is what the document says its operation answers; returns it."""
    request = response.request
    assert request.method is not None and request.url is not None
    template, spec, operation = operation_of(request.method, urlsplit(request.url).path)
    where = f"{request.method} {template} -> {response.status_code}"
    documented = spec["responses"]
    assert str(response.status_code) in documented, f"{where}: status not documented ({sorted(documented)})"
    answer = _resolve(documented[str(response.status_code)])
    mimetype = response.headers.get("Content-Type", "").split(";")[0].strip()
    assert mimetype in answer.get("content", {}), f"{where}: Content-Type {mimetype} not documented"
    for name, header in answer.get("headers", {}).items():
        if _resolve(header).get("required"):
            assert name in response.headers, f"{where}: required header {name} missing"
    operation.validate_response(response)
    return response
