"""deploy/nginx/ocr-server.conf in front of a real server: slow uploads wait in nginx, not in a worker.

nginx (Debian's package; `.ci/run` installs it) runs unprivileged-style from a temporary prefix with
the shipped file included as is, only its two addresses changed. One worker with two threads behind
it, six stalled uploads (three times its threads): a normal request is still answered, and the
stalled ones never reach Gunicorn. Skipped without nginx, a failure in CI (OCR_REQUIRE_NGINX=1).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import requests

from tests.support.images import encode, render_text
from tests.support.lifecycle import wait_for
from tests.support.server import ROOT, free_port, gunicorn_server

CONFIG = ROOT / "deploy" / "nginx" / "ocr-server.conf"
STALLED = 6


def _nginx() -> str:
    found = shutil.which("nginx") or next((p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None)
    if found:
        return found
    message = "no nginx: apt-get install nginx (.ci/run does)"
    if os.environ.get("OCR_REQUIRE_NGINX") == "1":
        pytest.fail(message + "; OCR_REQUIRE_NGINX=1 makes this a failure")
    pytest.skip(message)


def _main_config(prefix: Path, upstream_port: int, port: int) -> Path:
    site = CONFIG.read_text().replace("server 127.0.0.1:8000;", f"server 127.0.0.1:{upstream_port};")
    site = site.replace("listen 80;", f"listen 127.0.0.1:{port};")
    assert f"127.0.0.1:{port}" in site and f"127.0.0.1:{upstream_port}" in site, "the shipped addresses changed"
    (prefix / "site.conf").write_text(site)
    temp = " ".join(f"{kind}_temp_path {prefix / kind};"
                    for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    main = prefix / "nginx.conf"
    main.write_text(f"worker_processes 1;\npid {prefix / 'nginx.pid'};\nerror_log {prefix / 'error.log'};\n"
                    f"events {{ worker_connections 256; }}\n"
                    f"http {{ access_log off; {temp} include {prefix / 'site.conf'}; }}\n")
    return main


def _stall(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"POST /v1/ocr HTTP/1.1\r\nHost: test\r\nContent-Type: image/png\r\nContent-Length: 2000\r\n\r\n"
                 + b"\x89" * 1000)
    return sock


def test_slow_uploads_wait_in_nginx(model_repo: Path, tmp_path: Path) -> None:
    nginx = _nginx()
    page = encode(render_text(["TOTAL DUE 12.50"]))
    with gunicorn_server(model_repo, tmp_path / "logs", workers=1, threads=2) as server:
        port = free_port()
        prefix = tmp_path / "nginx"
        prefix.mkdir()
        config = _main_config(prefix, server.port, port)
        proxy = subprocess.Popen([nginx, "-p", str(prefix), "-c", str(config), "-g", "daemon off;"],
                                 stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        stalled: list[socket.socket] = []
        try:
            deadline = time.monotonic() + 30
            while True:
                try:
                    assert requests.get(f"http://127.0.0.1:{port}/healthz", timeout=5).status_code == 200
                    break
                except requests.ConnectionError:
                    assert proxy.poll() is None and time.monotonic() < deadline, proxy.stdout.read().decode()
                    time.sleep(0.2)
            stalled = [_stall(port) for _ in range(STALLED)]
            time.sleep(1.0)
            response = requests.post(f"http://127.0.0.1:{port}/v1/ocr", data=page,
                                     headers={"Content-Type": "image/png"}, timeout=30)
            assert response.status_code == 200, response.text
            assert response.headers["X-Model-Version"] and response.json()["results"]
            # Gunicorn writes the access line after the response has gone out: wait for it, then
            # check that it is the only one (the stalled uploads never reached a worker).
            wait_for(lambda: server.log().count('"POST /v1/ocr') >= 1, 10, "the access log line of the POST")
            assert server.log().count('"POST /v1/ocr') == 1
        finally:
            for sock in stalled:
                sock.close()
            proxy.terminate()
            proxy.wait(timeout=10)
