"""The canary judge on a real Gunicorn server (2 workers x 2 threads, real PP-OCRv4 weights, 8 clients):
candidates that pass the golden-set gate yet are worse on live traffic are rolled back by the judge
alone, with no failed client request and a report naming the cause; a good candidate's promotion waits
for a passing report (OCR_PROMOTE_REQUIRES_REPORT=1). The tests share one server and run in file order;
the judge's windows are made small (15 canary requests) so that each verdict comes in seconds."""

from __future__ import annotations

import json
import threading
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Iterator

import pytest
import requests

from server.lifecycle.ab_report import report_digest
from server.repository.layout import ModelRepository
from server.repository.manifest import read_manifest
from server.repository.publish import publish
from tests.support.lifecycle import (
    ADMIN_TOKEN,
    Admin,
    audit_lines,
    expected_text,
    load_image,
    make_source,
    publish_variant,
    wait_converged,
    wait_for,
    write_golden_set,
)
from tests.support.load import LoadGenerator
from tests.support.server import RunningServer, free_port, gunicorn_server

VERSIONS = {"1.0.0", "2.0.0", "3.0.0", "4.0.0", "5.0.0"}
# From the canary's start to the judge's decision, on a busy 2-core machine (a few windows of seconds).
DECISION_BOUND_S = 240


class Webhook(ThreadingHTTPServer):
    """A real HTTP receiver for OCR_ROLLOUT_WEBHOOK: keeps every JSON body POSTed to it."""

    def __init__(self) -> None:
        self.received: list[dict[str, Any]] = []
        received = self.received

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (the stdlib's name)
                received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(204)
                self.end_headers()

            def log_message(self, *_: Any) -> None:
                pass

        super().__init__(("127.0.0.1", free_port()), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/rollouts"


class Lab:
    def __init__(self, server: RunningServer, root: Path, default_version_dir: Path, webhook: Webhook) -> None:
        self.server, self.root, self.base, self.webhook = server, root, default_version_dir, webhook
        self.admin = Admin(server.url)
        self.repo_root = root / "models"

    def publish_slower(self, version: str) -> None:
        """The default weights with detection run on pages upscaled to a 640 px short side: the same
        reading of the golden set (so the gate admits it), several times the work per page."""
        source = make_source(self.base, self.root / "work" / f"src-{version}")
        manifest_path = source / "manifest.json"
        manifest = json.loads(manifest_path.read_text())
        manifest["settings"]["det"]["limit_side_len"] = 640
        manifest_path.write_text(json.dumps(manifest))
        read_manifest(source)  # still a valid manifest
        publish(source, ModelRepository(self.repo_root), version, created_by="tests")

    def load(self) -> LoadGenerator:
        """8 clients, every request a new client id (so the share splits requests, not connections)."""
        def answered(response: requests.Response) -> str:
            if response.status_code != 200 or response.headers.get("X-Model-Version") not in VERSIONS:
                return f"HTTP {response.status_code} from {response.headers.get('X-Model-Version')}: {response.text[:200]}"
            return ""
        return LoadGenerator(self.server.url, [load_image()], answered, clients=8,
                             client_id=lambda client, sent: f"load-{client}-{sent}")

    def wait_rollout_ended(self) -> None:
        wait_for(lambda: self.admin.models()["rollout"] is None, DECISION_BOUND_S, "the judge to end the canary")

    def start_canary(self, version: str, percent: float) -> None:
        wait_for(lambda: self.admin.version(version), 60, f"{version} to be listed")
        started = self.admin.canary(version, percent)
        assert started.status_code == 202, started.text
        wait_for(lambda: sorted((self.admin.models()["rollout"] or {}).get("workers", [])) == [0, 1], 180,
                 f"both workers to hold {version}")

    def judge_record(self, version: str) -> dict[str, object]:
        records = [r for r in audit_lines(self.repo_root / ".state" / "audit.log")
                   if r["action"] in ("abort", "promote") and r["version"] == version and r["result"] != "refused"]
        assert len(records) == 1, records
        return records[0]


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory, default_version_dir: Path) -> Iterator[Lab]:
    root = tmp_path_factory.mktemp("judge")
    publish(default_version_dir, ModelRepository(root / "models"), "1.0.0", created_by="tests")
    write_golden_set(root / "models" / "golden")
    webhook = Webhook()
    env = {"OCR_ROLLOUT_WEBHOOK": webhook.url, "OCR_ADMIN_TOKEN": ADMIN_TOKEN, "OCR_MODEL_POLL_S": "1", "OCR_MODEL_DEBOUNCE_S": "0.3",
           "OCR_MODEL_SETTLE_S": "1", "OCR_WARMUP_SHAPES": "320x320", "OCR_TIMEOUT": "600",
           "OCR_ROLLOUT_WINDOW_REQUESTS": "15", "OCR_ROLLOUT_WINDOWS": "2", "OCR_ROLLOUT_JUDGE_S": "1",
           "OCR_PROMOTE_REQUIRES_REPORT": "1", "OCR_ROLLOUT_BAKE_S": "0"}  # promote pins at once (no bake)
    with gunicorn_server(root / "models", root / "logs", workers=2, threads=2, env=env) as server:
        lab = Lab(server, root, default_version_dir, webhook)
        wait_converged(lab.admin, server.worker_pids(), "1.0.0", 120)
        assert lab.admin.activate("1.0.0").status_code == 202  # new versions wait for a canary
        yield lab
    webhook.shutdown()


def test_a_slower_candidate_is_rolled_back_by_the_judge_on_latency(lab: Lab) -> None:
    lab.publish_slower("2.0.0")
    load = lab.load().start()
    try:
        with load.window() as window:
            lab.start_canary("2.0.0", 25)
            lab.wait_rollout_ended()
        window.assert_clean(minimum=20)
    finally:
        load.stop()
    assert {o.version for o in window.outcomes} == {"1.0.0", "2.0.0"}
    entry = lab.admin.version("2.0.0")
    assert entry is not None and entry["state"] == "rejected" and "rollout-judge" in entry["reason"]
    report = lab.admin.report("2.0.0")
    assert report["decision"] == "rolled_back" and report["decided_by"] == "rollout-judge"
    assert report["judgement"]["metric"].startswith("latency"), report["judgement"]["rule"]
    assert report["candidate"]["gate"]["passed"] is True  # the gate had admitted it
    assert report["candidate"]["digest"] and report["stable"]["digest"] and report["samples"]["canary"] >= 30
    assert lab.judge_record("2.0.0")["report_digest"] == report_digest(report)
    markdown = requests.get(f"{lab.server.url}/v1/models/2.0.0/report?format=md", timeout=30)
    assert markdown.status_code == 200 and markdown.headers["Content-Type"].startswith("text/markdown")
    assert "**Decision: rolled_back** by rollout-judge" in markdown.text and "| latency_p50 |" in markdown.text
    assert lab.admin.models()["pin"]["version"] == "1.0.0"  # the stable pin was the operator's: it stays
    told = wait_for(lambda: [e for e in lab.webhook.received if e["candidate"] == "2.0.0"], 30, "the webhook call")
    assert len(told) == 1 and told[0]["decision"] == "rolled_back" and told[0]["metric"].startswith("latency")
    assert told[0]["report"]["decision"] == "rolled_back"


def test_a_candidate_that_reads_live_documents_worse_is_caught_by_feedback_not_by_the_gate(lab: Lab) -> None:
    """Variant 3 reads every digit wrong and every letter right: the letters-only golden set passes it,
    the clerks' corrections of the live receipts (digits) do not."""
    publish_variant(lab.base, lab.repo_root, "3.0.0", 3, lab.root / "work")
    lab.start_canary("3.0.0", 50)
    truth = expected_text(0)

    def read_and_correct(n: int) -> tuple[str, int]:
        answer = requests.post(f"{lab.server.url}/v1/ocr", data=load_image(), timeout=300,
                               headers={"Content-Type": "image/png", "X-Client-Id": f"clerk-{n}"})
        assert answer.status_code == 200, answer.text
        feedback = requests.post(f"{lab.server.url}/v1/feedback", timeout=60,
                                 json={"request_id": answer.json()["request_id"], "text": truth})
        return answer.json()["model"]["version"], feedback.status_code

    with ThreadPoolExecutor(8) as pool:
        outcomes = list(pool.map(read_and_correct, range(80)))
    assert {status for _, status in outcomes} == {200}
    assert {version for version, _ in outcomes} == {"1.0.0", "3.0.0"}
    lab.wait_rollout_ended()
    report = lab.admin.report("3.0.0")
    assert report["decision"] == "rolled_back" and report["judgement"]["metric"] == "feedback_accuracy"
    assert report["candidate"]["gate"]["passed"] is True
    accuracy = next(m for m in report["judgement"]["overall"] if m["metric"] == "feedback_accuracy")
    assert accuracy["stable"] > 0.95 and accuracy["candidate"] < 0.7


def test_a_shadow_candidate_that_reads_differently_is_rolled_back_without_answering_anyone(lab: Lab) -> None:
    """Shadow only (no canary share): every client reads with 1.0.0, the candidate reads their requests
    afterwards, unseen, and its readings disagree (variant 5 reads the digits differently)."""
    publish_variant(lab.base, lab.repo_root, "5.0.0", 5, lab.root / "work")
    wait_for(lambda: lab.admin.version("5.0.0"), 60, "5.0.0 to be listed")
    started = lab.admin.canary("5.0.0", shadow_percent=100)
    assert started.status_code == 202, started.text
    wait_for(lambda: sorted((lab.admin.models()["rollout"] or {}).get("workers", [])) == [0, 1], 180,
             "both workers to hold 5.0.0")
    load = lab.load().start()
    try:
        with load.window() as window:
            lab.wait_rollout_ended()
        window.assert_clean(minimum=10)
    finally:
        load.stop()
    assert {o.version for o in window.outcomes} == {"1.0.0"}
    report = lab.admin.report("5.0.0")
    assert report["decision"] == "rolled_back" and report["judgement"]["metric"] == "shadow_agreement"
    assert report["shadow_agreement"]["n_candidate"] >= 10 and report["shadow_agreement"]["candidate"] < 0.8
    assert report["samples"]["canary"] == 0  # it answered nobody


def test_a_good_candidate_is_promoted_only_with_a_passing_report(lab: Lab) -> None:
    publish_variant(lab.base, lab.repo_root, "4.0.0", 0, lab.root / "work")  # the same reading as 1.0.0
    load = lab.load().start()
    try:
        with load.window() as window:
            lab.start_canary("4.0.0", 50)
            early = lab.admin.promote("4.0.0")
            assert early.status_code == 409 and early.json()["error"] == "report_not_passing", early.text
            wait_for(lambda: lab.admin.report("4.0.0")["judgement"]["decision"] == "passed", DECISION_BOUND_S,
                     "the judge to pass 4.0.0")
            promoted = lab.admin.promote("4.0.0")
            assert promoted.status_code == 202, promoted.text
            wait_converged(lab.admin, lab.server.worker_pids(), "4.0.0", 180)
        window.assert_clean(minimum=20)
    finally:
        load.stop()
    report = lab.admin.report("4.0.0")
    assert (report["decision"], report["decided_by"], report["judgement"]["decision"]) == (
        "promoted", "admin-token", "passed")
    assert all(m["passed"] is not False for m in report["judgement"]["overall"])
    assert lab.judge_record("4.0.0")["report_digest"] == report_digest(report)
